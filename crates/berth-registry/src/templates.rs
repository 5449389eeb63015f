//! Repository creation templates (ECR's `CreateRepositoryCreationTemplate` …): the settings a
//! repository gets when Berth creates it without a `CreateRepository` — a push to a missing
//! repository (create-on-push), replication into this registry, a pull-through cache fill.
//!
//! Every such creation goes through [`Registry::create_implicitly`], which applies the most
//! specific template for its purpose (the longest matching prefix; `ROOT` matches every name and
//! is the least specific) in the transaction that creates the repository, so a repository never
//! exists, even for a moment, without its template's policies, tags and tag mutability.

use std::sync::atomic::Ordering;

use berth_iam::{RequestContext, Tags, actions};
use berth_meta::{MetaError, Millis, Repository, TemplateRecord};
use berth_spec::RepositoryName;
use serde::{Deserialize, Serialize};

use crate::lifecycle::LifecyclePolicy;
use crate::pull_through::{ROOT_PREFIX, normalize_prefix};
use crate::settings::{Encryption, MAX_RESOURCE_TAGS, ResourceTag, TagMutability, TagMutabilityFilter};
use crate::{PolicyKind, Registry, RegistryError, RepositorySettings, Resource, Result, now_millis};

/// Why Berth creates a repository implicitly: the template's `appliedFor` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppliedFor {
    Replication,
    PullThroughCache,
    CreateOnPush,
}

/// What a template says, as stored (the store does not parse it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TemplateSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Applied as `CreateRepository` applies it (the ECR API refuses KMS: Berth has none).
    pub encryption: Encryption,
    pub resource_tags: Vec<ResourceTag>,
    pub image_tag_mutability: TagMutability,
    pub image_tag_mutability_exclusion_filters: Vec<TagMutabilityFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_policy: Option<String>,
    pub applied_for: Vec<AppliedFor>,
    /// Echoed only: Berth assumes no roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
}

/// `UpdateRepositoryCreationTemplate`: the members given replace the stored ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateUpdate {
    pub description: Option<String>,
    pub encryption: Option<Encryption>,
    pub resource_tags: Option<Vec<ResourceTag>>,
    /// A new mode clears the stored exclusion filters unless filters come with it.
    pub image_tag_mutability: Option<TagMutability>,
    /// Filters alone replace the stored ones of a mode that has them.
    pub image_tag_mutability_exclusion_filters: Option<Vec<TagMutabilityFilter>>,
    pub repository_policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    pub applied_for: Option<Vec<AppliedFor>>,
    pub custom_role_arn: Option<String>,
}

/// A template as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationTemplate {
    /// `ROOT` or a repository-name prefix without its trailing `/`.
    pub prefix: String,
    pub settings: TemplateSettings,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Why a template request failed; each plane maps it once.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("A repository creation template with the prefix '{0}' already exists")]
    Exists(String),
    #[error("The repository creation template with the prefix '{0}' does not exist")]
    NotFound(String),
    /// A stored template does not parse: implicit creations it could apply to are refused rather
    /// than made without it.
    #[error("{0}")]
    Unusable(String),
}

impl TemplateSettings {
    /// What ECR checks of a template's content beyond the model: policies that parse, tags
    /// within the limit, at least one purpose.
    fn check(&self) -> Result<()> {
        if let Some(text) = &self.lifecycle_policy {
            LifecyclePolicy::parse(text)
                .map_err(|e| RegistryError::PolicyInvalid { kind: PolicyKind::Lifecycle, reason: e.to_string() })?;
        }
        if let Some(text) = &self.repository_policy {
            berth_iam::Policy::parse_repository(text)
                .map_err(|e| RegistryError::PolicyInvalid { kind: PolicyKind::Repository, reason: e.to_string() })?;
        }
        if self.resource_tags.len() > MAX_RESOURCE_TAGS {
            return Err(RegistryError::TooManyTags { limit: MAX_RESOURCE_TAGS });
        }
        if self.applied_for.is_empty() {
            return Err(RegistryError::SettingInvalid {
                member: "appliedFor",
                reason: "a template applies to at least one of REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH".into(),
            });
        }
        Ok(())
    }

    /// The settings of a repository created from this template.
    pub fn repository_settings(&self) -> RepositorySettings {
        let mut settings = RepositorySettings {
            image_tag_mutability: self.image_tag_mutability,
            image_tag_mutability_exclusion_filters: self.image_tag_mutability_exclusion_filters.clone(),
            encryption: self.encryption.clone(),
            lifecycle_policy: self.lifecycle_policy.clone(),
            repository_policy: self.repository_policy.clone(),
            ..RepositorySettings::default()
        };
        settings.merge_resource_tags(&self.resource_tags);
        settings
    }
}

/// Whether a template's prefix covers a repository name: `ROOT` every name, `prod` the names
/// under `prod/`.
pub fn prefix_matches(prefix: &str, name: &str) -> bool {
    prefix == ROOT_PREFIX || name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// The most specific template for `purpose` that covers `name`, or `None`.
fn most_specific<'t>(
    templates: &'t [CreationTemplate],
    name: &str,
    purpose: AppliedFor,
) -> Option<&'t CreationTemplate> {
    templates
        .iter()
        .filter(|t| t.settings.applied_for.contains(&purpose) && prefix_matches(&t.prefix, name))
        .max_by_key(|t| if t.prefix == ROOT_PREFIX { 0 } else { t.prefix.len() })
}

/// The templates among `records` that cover `name`. One that does not parse refuses the creation.
fn covering(records: &[TemplateRecord], name: &str) -> std::result::Result<Vec<CreationTemplate>, String> {
    let covering = records.iter().filter(|r| prefix_matches(&r.prefix, name)).cloned();
    covering.map(template_from_record).collect::<Result<_>>().map_err(|e| e.to_string())
}

/// The settings of a repository created implicitly: the most specific template's, or the
/// defaults when none applies. A template that does not parse refuses the creation.
fn settings_from(
    records: &[TemplateRecord],
    name: &str,
    purpose: AppliedFor,
) -> std::result::Result<RepositorySettings, String> {
    let templates = covering(records, name)?;
    Ok(most_specific(&templates, name, purpose)
        .map_or_else(RepositorySettings::default, |t| t.settings.repository_settings()))
}

fn template_from_record(record: TemplateRecord) -> Result<CreationTemplate> {
    let settings = serde_json::from_str(&record.document).map_err(|e| {
        TemplateError::Unusable(format!("the repository creation template {} does not parse: {e}", record.prefix))
    })?;
    Ok(CreationTemplate {
        prefix: record.prefix,
        settings,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

fn meta_error(e: MetaError) -> RegistryError {
    match e {
        MetaError::TemplateExists(p) => TemplateError::Exists(p).into(),
        MetaError::TemplateNotFound(p) => TemplateError::NotFound(p).into(),
        MetaError::TemplateUnusable(reason) => TemplateError::Unusable(reason).into(),
        other => other.into(),
    }
}

impl Registry {
    /// Creates `name` if missing, with the most specific template for `purpose` applied in the
    /// same metadata transaction. The caller has authorized the creation. Returns the repository
    /// (created now or found).
    pub async fn create_implicitly(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        purpose: AppliedFor,
    ) -> Result<Repository> {
        if name.as_str().len() < berth_spec::name::MIN_NEW_NAME_LEN {
            return Err(RegistryError::NameInvalid(format!(
                "repository name {:?} is shorter than {} characters, ECR's minimum",
                name.as_str(),
                berth_spec::name::MIN_NEW_NAME_LEN
            )));
        }
        // The template's policy is set on this repository now: its principals are bound to the
        // users of now (`principals`), looked up before the transaction that chooses the template.
        let expected = self.settings_for_new(name, purpose).await?;
        let choose = |records: &[TemplateRecord]| {
            let mut settings = settings_from(records, name.as_str(), purpose)?;
            if settings.repository_policy == expected.repository_policy {
                settings.repository_policy_principals = expected.repository_policy_principals.clone();
            }
            Ok(settings.to_json())
        };
        let (repository, created) = self
            .meta
            .ensure_repository_from_templates(&self.origin(ctx), name, &choose, now_millis())
            .await
            .map_err(meta_error)?;
        let has_lifecycle =
            || RepositorySettings::from_json(&repository.settings).is_ok_and(|s| s.lifecycle_policy.is_some());
        if created && has_lifecycle() {
            // As after a PutLifecyclePolicy: the policy runs at the next maintenance tick.
            self.lifecycle.requested.store(true, Ordering::Relaxed);
        }
        Ok(repository)
    }

    /// Whether a template for `purpose` covers `name`.
    pub(crate) async fn template_covers(&self, name: &RepositoryName, purpose: AppliedFor) -> Result<bool> {
        let records = self.meta.templates().await.map_err(meta_error)?;
        let templates = covering(&records, name.as_str()).map_err(TemplateError::Unusable)?;
        Ok(most_specific(&templates, name.as_str(), purpose).is_some())
    }

    /// The settings [`Registry::create_implicitly`] would give `name` now.
    pub(crate) async fn settings_for_new(
        &self,
        name: &RepositoryName,
        purpose: AppliedFor,
    ) -> Result<RepositorySettings> {
        let records = self.meta.templates().await.map_err(meta_error)?;
        let mut settings = settings_from(&records, name.as_str(), purpose).map_err(TemplateError::Unusable)?;
        if let Some(text) = &settings.repository_policy
            && let Ok(policy) = berth_iam::Policy::parse_repository(text)
        {
            settings.repository_policy_principals = self.principal_bindings(&policy).await?;
        }
        Ok(settings)
    }

    /// `CreateRepositoryCreationTemplate`.
    pub async fn create_template(
        &self,
        ctx: &RequestContext,
        prefix: &str,
        mut settings: TemplateSettings,
    ) -> Result<CreationTemplate> {
        for text in [&mut settings.description, &mut settings.repository_policy, &mut settings.lifecycle_policy] {
            *text = replaced(text.take(), None);
        }
        settings.custom_role_arn = replaced(settings.custom_role_arn.take(), None);
        settings.check()?;
        self.authorize_template(ctx, normalize_prefix(prefix), &settings).await?;
        self.check_template_principals(&settings).await?;
        let document = serde_json::to_string(&settings).expect("template serializes");
        let record =
            self.meta.create_template(normalize_prefix(prefix), &document, now_millis()).await.map_err(meta_error)?;
        template_from_record(record)
    }

    /// Every template, sorted by prefix.
    pub async fn templates(&self) -> Result<Vec<CreationTemplate>> {
        self.meta.templates().await?.into_iter().map(template_from_record).collect()
    }

    /// `UpdateRepositoryCreationTemplate`: the members given replace the stored ones.
    pub async fn update_template(
        &self,
        ctx: &RequestContext,
        prefix: &str,
        update: TemplateUpdate,
    ) -> Result<CreationTemplate> {
        let prefix = normalize_prefix(prefix);
        let mut template = self
            .templates()
            .await?
            .into_iter()
            .find(|t| t.prefix == prefix)
            .ok_or_else(|| TemplateError::NotFound(prefix.to_owned()))?;
        let settings = &mut template.settings;
        let TemplateUpdate {
            description,
            encryption,
            resource_tags,
            image_tag_mutability,
            image_tag_mutability_exclusion_filters: filters,
            repository_policy,
            lifecycle_policy,
            applied_for,
            custom_role_arn,
        } = update;
        settings.description = replaced(description, settings.description.take());
        settings.encryption = encryption.unwrap_or(settings.encryption.clone());
        settings.resource_tags = resource_tags.unwrap_or(std::mem::take(&mut settings.resource_tags));
        match (image_tag_mutability, filters) {
            (Some(mode), filters) => {
                settings.image_tag_mutability = mode;
                settings.image_tag_mutability_exclusion_filters = filters.unwrap_or_default();
            }
            (None, Some(_)) if !settings.image_tag_mutability.has_exclusions() => {
                return Err(RegistryError::SettingInvalid {
                    member: "imageTagMutabilityExclusionFilters",
                    reason: format!(
                        "ImageTagMutabilityExclusionFilters can only be set when imageTagMutability is \
                         IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION, not {}",
                        settings.image_tag_mutability.as_wire()
                    ),
                });
            }
            (None, Some(filters)) => settings.image_tag_mutability_exclusion_filters = filters,
            (None, None) => {}
        }
        settings.repository_policy = replaced(repository_policy, settings.repository_policy.take());
        settings.lifecycle_policy = replaced(lifecycle_policy, settings.lifecycle_policy.take());
        settings.applied_for = applied_for.unwrap_or(std::mem::take(&mut settings.applied_for));
        settings.custom_role_arn = replaced(custom_role_arn, settings.custom_role_arn.take());
        settings.check()?;
        // The template as it will stand, whatever members this update names.
        self.authorize_template(ctx, prefix, settings).await?;
        self.check_template_principals(settings).await?;
        let document = serde_json::to_string(settings).expect("template serializes");
        template_from_record(self.meta.update_template(prefix, &document, now_millis()).await.map_err(meta_error)?)
    }

    /// A template acts later, for whoever pushes: making one needs what it would do, as AWS
    /// documents — `ecr:CreateRepository` (with the tags it sets, as `aws:RequestTag`), and
    /// `ecr:PutLifecyclePolicy` / `ecr:SetRepositoryPolicy` for the policies it carries — on the
    /// repositories its prefix covers (`repository/<prefix>/*`; `repository/*` for ROOT). So a
    /// user allowed only the template actions cannot plant a policy on repositories others create.
    async fn authorize_template(&self, ctx: &RequestContext, prefix: &str, settings: &TemplateSettings) -> Result<()> {
        let mut needed = vec![actions::CREATE_REPOSITORY];
        if settings.lifecycle_policy.is_some() {
            needed.push(actions::PUT_LIFECYCLE_POLICY);
        }
        if settings.repository_policy.is_some() {
            needed.push(actions::SET_REPOSITORY_POLICY);
        }
        let covered = format!("{prefix}/*");
        let resource = if prefix == ROOT_PREFIX { Resource::AllRepositories } else { Resource::Repository(&covered) };
        let tags = &settings.resource_tags;
        let request_tags = (!tags.is_empty()).then_some(tags as &(dyn Tags + Sync));
        self.authorizer.authorize_with(ctx, &needed, resource, request_tags).await
    }

    /// What `SetRepositoryPolicy` refuses of principals, for the policy a template would set.
    async fn check_template_principals(&self, settings: &TemplateSettings) -> Result<()> {
        if let Some(text) = &settings.repository_policy
            && let Ok(policy) = berth_iam::Policy::parse_repository(text)
        {
            self.refuse_miscased_users(&policy, PolicyKind::Repository).await?;
        }
        Ok(())
    }

    /// `DeleteRepositoryCreationTemplate`: repositories created from it keep their settings.
    pub async fn delete_template(&self, prefix: &str) -> Result<CreationTemplate> {
        template_from_record(self.meta.delete_template(normalize_prefix(prefix)).await.map_err(meta_error)?)
    }
}

/// A text member of a template request: absent keeps what was there; empty (which ECR's model
/// allows, and Terraform sends to remove a policy) leaves none.
fn replaced(given: Option<String>, kept: Option<String>) -> Option<String> {
    match given {
        Some(text) if text.is_empty() => None,
        Some(text) => Some(text),
        None => kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(prefix: &str, applied_for: &[AppliedFor], tag: &str) -> CreationTemplate {
        let settings = TemplateSettings {
            applied_for: applied_for.to_vec(),
            resource_tags: vec![ResourceTag { key: "from".into(), value: tag.into() }],
            ..TemplateSettings::default()
        };
        CreationTemplate { prefix: prefix.into(), settings, created_at: 0, updated_at: 0 }
    }

    #[test]
    fn prefixes_cover_whole_components() {
        assert!(prefix_matches("prod", "prod/app"));
        assert!(prefix_matches("prod/team", "prod/team/app"));
        assert!(!prefix_matches("prod", "production/app"));
        assert!(!prefix_matches("prod", "prod"));
        assert!(prefix_matches("ROOT", "anything"));
    }

    #[test]
    fn the_longest_matching_prefix_for_the_purpose_wins() {
        use AppliedFor::*;
        let templates = [
            template("ROOT", &[CreateOnPush, Replication], "root"),
            template("prod", &[CreateOnPush], "prod"),
            template("prod/team", &[Replication], "team"),
        ];
        let chosen = |name, purpose| most_specific(&templates, name, purpose).map(|t| t.prefix.as_str());
        assert_eq!(chosen("prod/team/app", CreateOnPush), Some("prod"));
        assert_eq!(chosen("prod/team/app", Replication), Some("prod/team"));
        assert_eq!(chosen("dev/app", CreateOnPush), Some("ROOT"));
        assert_eq!(chosen("dev/app", PullThroughCache), None);
    }

    #[test]
    fn a_template_that_does_not_parse_refuses_the_creation() {
        let records =
            [TemplateRecord { prefix: "prod".into(), document: "{not json".into(), created_at: 0, updated_at: 0 }];
        assert!(settings_from(&records, "prod/app", AppliedFor::CreateOnPush).is_err());
        // One that does not cover the name is not read.
        assert_eq!(
            settings_from(&records, "dev/app", AppliedFor::CreateOnPush).unwrap().to_json(),
            RepositorySettings::default().to_json()
        );
    }
}
