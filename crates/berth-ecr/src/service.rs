//! [`EcrBackend`] over the registry service: requests in ECR's shapes become service calls, and
//! the results ECR's shapes again. No storage logic lives here; errors are translated in
//! `mapping.rs` only.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use berth_iam::{RequestContext, Tags};
use berth_registry::lifecycle::RuleAction;
use berth_registry::pull_through::{CacheRule, PullThroughError, ROOT_PREFIX, UpstreamSettings, normalize_prefix};
use berth_registry::replication;
use berth_registry::settings::{
    Encryption, EncryptionType as StoredEncryption, ResourceTag, TagMutability, TagMutabilityFilter,
};
use berth_registry::templates::{AppliedFor, CreationTemplate, TemplateSettings, TemplateUpdate};
use berth_registry::{
    ImageFilter, ImageId, ImageRecord, ImageSelector, LifecyclePolicyInfo, PreviewResult, PutImage, Registry,
    RegistryError, RepositoryInfo, RepositorySettings, Resource, ScanningRule, StorageClass, TagStatus as Status,
};
use berth_spec::{Digest, RepositoryName, Tag as OciTag};

use crate::authorization::Resources;
use crate::backend::EcrBackend;
use crate::download;
use crate::endpoint::Endpoint;
use crate::error::EcrError;
use crate::mapping::{Scope, ecr_error, image_failure, image_selector, scanning_failure};
use crate::pagination::{Pager, invalid_token};
use crate::policy_text::{as_ecr_returns, lifecycle_as_ecr_returns};
use crate::shapes::*;
use crate::tokens::TokenIssuer;
use crate::validate::{DEFAULT_PAGE_SIZE, RepositoryArn};

/// The part size InitiateLayerUpload advertises (ECR's quota table; parts up to 20 MiB pass).
pub const ADVERTISED_PART_SIZE: u64 = 10 * 1024 * 1024;

/// How long a GetDownloadUrlForLayer URL works.
pub const DOWNLOAD_URL_LIFETIME: Duration = Duration::from_secs(3600);

/// Who this registry is to ECR clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrConfig {
    /// The 12-digit account id in ARNs and `registryId` members.
    pub registry_id: String,
    pub region: String,
    /// How clients reach this server, `http(s)://host[:port]` without a trailing slash: the
    /// `proxyEndpoint` of tokens, the host of repository URIs, the base of download URLs.
    pub public_url: String,
}

impl EcrConfig {
    /// `host[:port]`, what repository URIs (and `docker login`) use.
    pub fn registry_host(&self) -> &str {
        self.public_url.split_once("://").map_or(&self.public_url, |(_, host)| host)
    }

    /// Where a token for `registry_id`'s registry is used: when this server's URL is an ECR
    /// registry name, that account's registry name, as ECR answers (this server refuses another
    /// account's repositories there, as it does on this API); otherwise this server's URL.
    pub fn proxy_endpoint(&self, registry_id: Option<&str>) -> String {
        let other = registry_id.filter(|id| *id != self.registry_id);
        let scheme = self.public_url.split_once("://").map_or("https", |(scheme, _)| scheme);
        match other.and_then(|id| crate::names::with_account(self.registry_host(), id)) {
            Some(host) => format!("{scheme}://{host}"),
            None => self.public_url.clone(),
        }
    }
}

pub struct RegistryBackend {
    registry: Arc<Registry>,
    config: EcrConfig,
    tokens: Arc<dyn TokenIssuer>,
}

/// Manifest bytes one BatchGetImage answer carries at most: 100 ids of 4 MiB manifests would make
/// a 400 MiB answer (twice over while it is encoded), which any reader could ask for many times
/// at once. Four of the largest manifests fit; retagging and pulls ask for one.
const BATCH_GET_IMAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why the scanning operations cannot do what they ask.
const NO_SCANNER: &str = "Berth has no vulnerability scanner: images are not scanned";
/// Why managed signing is refused.
const NO_SIGNER: &str = "Berth has no managed signing (AWS Signer): sign images with cosign or notation and push the \
                         signature as a referrer (ListImageReferrers lists it; Berth does not verify it)";

impl RegistryBackend {
    /// The digest of the image a request names (`ImageNotFoundException` if it is not there).
    async fn image_digest(&self, request: &ImageRequest) -> Result<Digest, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = request.repository_name.as_str();
        let selector =
            image_selector(&request.image_id).map_err(|failure| EcrError::InvalidParameter(failure.failure_reason))?;
        let found = self.registry.resolve_images(&name, &[selector], None).await.map_err(self.fail(repo))?;
        match found.into_iter().next() {
            Some(Ok(image)) => Ok(image.manifest.digest),
            Some(Err(RegistryError::ManifestUnknown(_) | RegistryError::TagDigestMismatch { .. })) | None => {
                Err(EcrError::image_not_found(&request.image_id, repo, &self.config.registry_id))
            }
            Some(Err(other)) => Err(self.fail(repo)(other)),
        }
    }

    fn no_signing_configuration(&self) -> EcrError {
        EcrError::SigningConfigurationNotFound(format!(
            "The registry with id '{}' has no signing configuration; {NO_SIGNER}",
            self.config.registry_id
        ))
    }

    pub fn new(registry: Arc<Registry>, config: EcrConfig, tokens: Arc<dyn TokenIssuer>) -> Self {
        RegistryBackend { registry, config, tokens }
    }

    fn scope<'a>(&'a self, repository: &'a str) -> Scope<'a> {
        Scope { registry_id: &self.config.registry_id, repository, upload_id: None }
    }

    /// Translates service errors of a call about `repository`.
    fn fail<'a>(&'a self, repository: &'a str) -> impl Fn(RegistryError) -> EcrError + 'a {
        move |err| ecr_error(err, &self.scope(repository))
    }

    /// The repository a request names, if it is in this registry: any other `registryId` is a
    /// repository that does not exist.
    fn repository(&self, registry_id: &Option<String>, name: &str) -> Result<RepositoryName, EcrError> {
        if registry_id.as_ref().is_some_and(|id| *id != self.config.registry_id) {
            return Err(EcrError::repository_not_found(name, registry_id.as_deref().unwrap_or_default()));
        }
        name.parse().map_err(|e: berth_spec::NameError| EcrError::invalid_parameter("repositoryName", &e.to_string()))
    }

    /// The repository an ARN names, if it is one of this registry's.
    fn repository_of_arn(&self, arn: &str) -> Result<RepositoryName, EcrError> {
        let arn: RepositoryArn = arn.parse()?;
        if arn.registry_id != self.config.registry_id || arn.region != self.config.region {
            return Err(EcrError::repository_not_found(&arn.repository_name, &arn.registry_id));
        }
        self.repository(&None, &arn.repository_name)
    }

    fn repository_shape(&self, info: &RepositoryInfo) -> Repository {
        let name = info.name.as_str();
        let settings = &info.settings;
        let filters = &settings.image_tag_mutability_exclusion_filters;
        Repository {
            repository_arn: RepositoryArn::new(&self.config.region, &self.config.registry_id, name).to_string(),
            registry_id: self.config.registry_id.clone(),
            repository_name: name.into(),
            repository_uri: format!("{}/{name}", self.config.registry_host()),
            created_at: Timestamp::from_millis(info.created_at),
            image_tag_mutability: wire_mutability(settings.image_tag_mutability),
            image_tag_mutability_exclusion_filters: (!filters.is_empty())
                .then(|| filters.iter().map(wire_filter).collect()),
            image_scanning_configuration: ImageScanningConfiguration { scan_on_push: settings.scan_on_push },
            encryption_configuration: wire_encryption(&settings.encryption),
        }
    }

    fn lifecycle_policy_shape(&self, repository_name: String, policy: LifecyclePolicyInfo) -> LifecyclePolicyResponse {
        LifecyclePolicyResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name,
            lifecycle_policy_text: lifecycle_as_ecr_returns(&policy.text),
            // ECR answers 0 for a policy not evaluated yet (its DeleteLifecyclePolicy example).
            last_evaluated_at: Timestamp::from_millis(policy.last_evaluated_at.unwrap_or(0)),
        }
    }

    fn repository_policy_shape(&self, repository_name: String, policy_text: String) -> RepositoryPolicyResponse {
        RepositoryPolicyResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name,
            policy_text: as_ecr_returns(&policy_text),
        }
    }

    fn image_detail(&self, repository: &str, image: ImageRecord) -> ImageDetail {
        let manifest = image.manifest;
        ImageDetail {
            registry_id: self.config.registry_id.clone(),
            repository_name: repository.into(),
            image_digest: manifest.digest.to_string(),
            image_tags: image.tags,
            image_size_in_bytes: Some(manifest.image_size),
            image_pushed_at: Some(Timestamp::from_millis(manifest.pushed_at)),
            image_manifest_media_type: Some(manifest.media_type),
            artifact_media_type: manifest.artifact_type,
            last_recorded_pull_time: manifest.last_pulled_at.map(Timestamp::from_millis),
            subject_manifest_digest: manifest.subject.map(|d| d.to_string()),
            image_status: Some(image_status(manifest.storage_class)),
            last_archived_at: manifest.last_archived_at.map(Timestamp::from_millis),
            last_activated_at: manifest.last_activated_at.map(Timestamp::from_millis),
        }
    }
}

/// The selectors of the identifiers that parse, and per identifier the failure if it did not.
fn selectors(ids: &[ImageIdentifier]) -> (Vec<ImageSelector>, Vec<Option<ImageFailure>>) {
    let mut selectors = Vec::new();
    let failures = ids.iter().map(|id| image_selector(id).map(|s| selectors.push(s)).err()).collect();
    (selectors, failures)
}

/// One outcome per identifier, in order: its parse failure, or the service's result for its
/// selector (`results` holds one per selector, in selector order).
fn outcomes<T>(
    failures: Vec<Option<ImageFailure>>,
    results: Vec<Result<T, RegistryError>>,
) -> impl Iterator<Item = Result<Result<T, RegistryError>, ImageFailure>> {
    let mut results = results.into_iter();
    failures.into_iter().map(move |failure| match failure {
        Some(failure) => Err(failure),
        None => Ok(results.next().unwrap_or_else(|| Err(RegistryError::Internal("a lookup result is missing".into())))),
    })
}

fn wire_mutability(mutability: TagMutability) -> ImageTagMutability {
    match mutability {
        TagMutability::Mutable => ImageTagMutability::Mutable,
        TagMutability::Immutable => ImageTagMutability::Immutable,
        TagMutability::ImmutableWithExclusion => ImageTagMutability::ImmutableWithExclusion,
        TagMutability::MutableWithExclusion => ImageTagMutability::MutableWithExclusion,
    }
}

/// Berth has no KMS: a repository (or a template for them) that asks for KMS encryption is
/// refused with the modeled `KmsException` rather than recorded as a promise nothing keeps. A
/// `kmsKey` with AES256 is refused as ECR refuses it.
fn stored_encryption(config: EncryptionConfiguration) -> Result<Encryption, EcrError> {
    let requested = match config.encryption_type {
        EncryptionType::Kms => "KMS",
        EncryptionType::KmsDsse => "KMS_DSSE",
        EncryptionType::Aes256 | EncryptionType::Unrecognized => {
            if config.kms_key.as_deref().is_some_and(|k| !k.is_empty()) {
                return Err(EcrError::invalid_parameter(
                    "encryptionConfiguration.kmsKey",
                    "kmsKey can only be specified when encryptionType is KMS or KMS_DSSE",
                ));
            }
            return Ok(Encryption { encryption_type: StoredEncryption::Aes256, kms_key: None });
        }
    };
    Err(EcrError::Kms(format!(
        "encryptionType {requested} cannot be honoured: Berth has no KMS. Omit encryptionConfiguration or use \
         AES256; data at rest is protected by the storage backend (the disk's or the S3 bucket's encryption)."
    )))
}

/// As [`stored_encryption`], but the template operations model no `KmsException`: the same
/// refusal comes as `InvalidParameterException`.
fn template_encryption(config: EncryptionConfiguration) -> Result<Encryption, EcrError> {
    stored_encryption(config).map_err(|e| match e {
        EcrError::Kms(message) => EcrError::InvalidParameter(message),
        other => other,
    })
}

fn wire_encryption(encryption: &Encryption) -> EncryptionConfiguration {
    EncryptionConfiguration {
        encryption_type: match encryption.encryption_type {
            StoredEncryption::Aes256 => EncryptionType::Aes256,
            StoredEncryption::Kms => EncryptionType::Kms,
            StoredEncryption::KmsDsse => EncryptionType::KmsDsse,
        },
        kms_key: encryption.kms_key.clone(),
    }
}

fn stored_applied_for(values: &[RctAppliedFor]) -> Vec<AppliedFor> {
    let mut stored = Vec::new();
    for value in values {
        let purpose = match value {
            RctAppliedFor::Replication => AppliedFor::Replication,
            RctAppliedFor::PullThroughCache => AppliedFor::PullThroughCache,
            RctAppliedFor::CreateOnPush | RctAppliedFor::Unrecognized => AppliedFor::CreateOnPush,
        };
        if !stored.contains(&purpose) {
            stored.push(purpose);
        }
    }
    stored
}

fn wire_applied_for(purpose: AppliedFor) -> RctAppliedFor {
    match purpose {
        AppliedFor::Replication => RctAppliedFor::Replication,
        AppliedFor::PullThroughCache => RctAppliedFor::PullThroughCache,
        AppliedFor::CreateOnPush => RctAppliedFor::CreateOnPush,
    }
}

/// The registry's scanning configuration as ECR answers it: BASIC (Berth refuses ENHANCED).
fn scanning_configuration(rules: Vec<ScanningRule>) -> RegistryScanningConfiguration {
    let rules = rules
        .into_iter()
        .map(|rule| RegistryScanningRule {
            scan_frequency: if rule.scan_on_push { ScanFrequency::ScanOnPush } else { ScanFrequency::Manual },
            repository_filters: scanning_filters(&rule.filters),
        })
        .collect();
    RegistryScanningConfiguration { scan_type: ScanType::Basic, rules }
}

fn scanning_filters(filters: &[String]) -> Vec<ScanningRepositoryFilter> {
    filters
        .iter()
        .map(|filter| ScanningRepositoryFilter {
            filter: filter.clone(),
            filter_type: ScanningRepositoryFilterType::Wildcard,
        })
        .collect()
}

/// Validation let only the model's values through.
fn stored_mutability(mutability: ImageTagMutability) -> TagMutability {
    match mutability {
        ImageTagMutability::Immutable => TagMutability::Immutable,
        ImageTagMutability::ImmutableWithExclusion => TagMutability::ImmutableWithExclusion,
        ImageTagMutability::MutableWithExclusion => TagMutability::MutableWithExclusion,
        ImageTagMutability::Mutable | ImageTagMutability::Unrecognized => TagMutability::Mutable,
    }
}

fn wire_filter(filter: &TagMutabilityFilter) -> ImageTagMutabilityExclusionFilter {
    ImageTagMutabilityExclusionFilter {
        filter_type: ImageTagMutabilityExclusionFilterType::Wildcard,
        filter: filter.filter.clone(),
    }
}

fn stored_filters(filters: Option<Vec<ImageTagMutabilityExclusionFilter>>) -> Vec<TagMutabilityFilter> {
    filters
        .unwrap_or_default()
        .into_iter()
        .map(|f| TagMutabilityFilter { filter_type: f.filter_type.as_str().into(), filter: f.filter })
        .collect()
}

/// A listing filter's two members with ECR's defaults (ANY tags, ACTIVE images).
fn image_filters(filter: &Option<ImagesFilter>) -> (TagStatus, ImageStatusFilter) {
    let filter = filter.clone().unwrap_or_default();
    (filter.tag_status.unwrap_or(TagStatus::Any), filter.image_status.unwrap_or(ImageStatusFilter::Active))
}

/// The service's filter for a listing's two members; `None` for ACTIVATING, which selects
/// nothing (Berth restores within the call).
fn service_filter(tags: TagStatus, status: ImageStatusFilter) -> Option<ImageFilter> {
    let tags = match tags {
        TagStatus::Tagged => Status::Tagged,
        TagStatus::Untagged => Status::Untagged,
        TagStatus::Any | TagStatus::Unrecognized => Status::Any,
    };
    let class = match status {
        ImageStatusFilter::Active => Some(StorageClass::Standard),
        ImageStatusFilter::Archived => Some(StorageClass::Archive),
        ImageStatusFilter::Any => None,
        ImageStatusFilter::Activating | ImageStatusFilter::Unrecognized => return None,
    };
    Some(ImageFilter { tags, class })
}

fn image_status(class: StorageClass) -> ImageStatus {
    match class {
        StorageClass::Standard => ImageStatus::Active,
        StorageClass::Archive => ImageStatus::Archived,
    }
}

fn resource_tags(tags: &[Tag]) -> Vec<ResourceTag> {
    tags.iter().map(|t| ResourceTag { key: t.key.clone(), value: t.value.clone() }).collect()
}

fn parse_digest(member: &str, digest: &str) -> Result<Digest, EcrError> {
    digest.parse().map_err(|e: berth_spec::DigestError| EcrError::invalid_parameter(member, &e.to_string()))
}

/// A token's key as a digest; a key that does not parse means the token was not ours.
fn token_digest(key: &str) -> Result<Digest, EcrError> {
    key.parse().map_err(|_| invalid_token())
}

#[async_trait]
impl EcrBackend for RegistryBackend {
    async fn authorize(
        &self,
        ctx: &RequestContext,
        action: &'static str,
        resources: Resources<'_>,
        request_tags: Option<&(dyn Tags + Sync)>,
    ) -> Result<(), EcrError> {
        let authorizer = self.registry.authorizer();
        let actions = [action];
        match resources {
            Resources::Registry => {
                authorizer.authorize_with(ctx, &actions, Resource::Registry, request_tags).await.map_err(self.fail(""))
            }
            Resources::AllRepositories { registry_id } => {
                if let Some(id) = registry_id.filter(|id| *id != self.config.registry_id) {
                    return Err(EcrError::registry_not_found(id));
                }
                authorizer
                    .authorize_with(ctx, &actions, Resource::AllRepositories, request_tags)
                    .await
                    .map_err(self.fail(""))
            }
            Resources::Repository { registry_id, name } => {
                let repo = self.repository(&registry_id.map(str::to_owned), name)?;
                let resource = Resource::Repository(repo.as_str());
                authorizer.authorize_with(ctx, &actions, resource, request_tags).await.map_err(self.fail(name))
            }
            Resources::Repositories { registry_id, names } => {
                let registry_id = registry_id.map(str::to_owned);
                for name in names {
                    let repo = self.repository(&registry_id, name)?;
                    let resource = Resource::Repository(repo.as_str());
                    authorizer.authorize_with(ctx, &actions, resource, request_tags).await.map_err(self.fail(name))?;
                }
                Ok(())
            }
            Resources::RepositoryArn(arn) => {
                let repo = self.repository_of_arn(arn)?;
                let resource = Resource::Repository(repo.as_str());
                authorizer.authorize_with(ctx, &actions, resource, request_tags).await.map_err(self.fail(repo.as_str()))
            }
        }
    }

    async fn get_authorization_token(
        &self,
        ctx: &RequestContext,
        request: GetAuthorizationTokenRequest,
    ) -> Result<GetAuthorizationTokenResponse, EcrError> {
        let token = self.tokens.issue(&ctx.identity).await?;
        let data = |registry_id: Option<&str>| AuthorizationData {
            authorization_token: BASE64.encode(format!("AWS:{}", token.password)),
            expires_at: token.expires_at.into(),
            proxy_endpoint: self.config.proxy_endpoint(registry_id),
        };
        // registryIds is deprecated: one token, one entry per id asked for (each naming that
        // account's registry, see `proxy_endpoint`).
        let authorization_data = match request.registry_ids {
            None => vec![data(None)],
            Some(ids) => ids.iter().map(|id| data(Some(id))).collect(),
        };
        Ok(GetAuthorizationTokenResponse { authorization_data })
    }

    async fn create_repository(
        &self,
        ctx: &RequestContext,
        request: CreateRepositoryRequest,
    ) -> Result<CreateRepositoryResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let encryption = match request.encryption_configuration {
            None => Encryption::default(),
            Some(config) => stored_encryption(config)?,
        };
        let mut settings = RepositorySettings {
            image_tag_mutability: stored_mutability(
                request.image_tag_mutability.unwrap_or(ImageTagMutability::Mutable),
            ),
            image_tag_mutability_exclusion_filters: stored_filters(request.image_tag_mutability_exclusion_filters),
            scan_on_push: request.image_scanning_configuration.is_some_and(|c| c.scan_on_push),
            encryption,
            ..RepositorySettings::default()
        };
        if !settings.merge_resource_tags(&resource_tags(request.tags.as_deref().unwrap_or_default())) {
            return Err(EcrError::too_many_tags(berth_registry::settings::MAX_RESOURCE_TAGS));
        }
        let info = self.registry.create_repository(ctx, &name, &settings).await.map_err(self.fail(name.as_str()))?;
        Ok(CreateRepositoryResponse { repository: self.repository_shape(&info) })
    }

    async fn describe_repositories(
        &self,
        ctx: &RequestContext,
        request: DescribeRepositoriesRequest,
    ) -> Result<DescribeRepositoriesResponse, EcrError> {
        if let Some(id) = request.registry_id.as_ref().filter(|id| **id != self.config.registry_id) {
            return Err(match request.repository_names.as_deref() {
                Some([first, ..]) => EcrError::repository_not_found(first, id),
                _ => EcrError::registry_not_found(id),
            });
        }
        if let Some(names) = &request.repository_names {
            let mut seen = HashSet::new();
            let mut repositories = Vec::new();
            for name in names.iter().filter(|name| seen.insert(name.as_str())) {
                let repo = self.repository(&None, name)?;
                let info = self.registry.describe_repository(&repo).await.map_err(self.fail(name))?;
                repositories.push(self.repository_shape(&info));
            }
            return Ok(DescribeRepositoriesResponse { repositories, next_token: None });
        }
        let pager = Pager::new(Endpoint::DescribeRepositories, &self.config.registry_id);
        let after = pager.resume(request.next_token.as_deref())?.and_then(|mut key| key.pop());
        // Only the repositories the caller may describe, as on ECR.
        let (listed, more) = self
            .registry
            .list_repositories_for(ctx, Endpoint::DescribeRepositories.action(), after.as_deref(), request.page_size())
            .await
            .map_err(self.fail(""))?;
        let infos =
            listed.into_iter().map(RepositoryInfo::try_from).collect::<Result<Vec<_>, _>>().map_err(self.fail(""))?;
        Ok(DescribeRepositoriesResponse {
            next_token: pager.next_token(more, &infos, |last| vec![last.name.to_string()]),
            repositories: infos.iter().map(|info| self.repository_shape(info)).collect(),
        })
    }

    async fn delete_repository(
        &self,
        ctx: &RequestContext,
        request: DeleteRepositoryRequest,
    ) -> Result<DeleteRepositoryResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let info =
            self.registry.delete_repository(ctx, &name, request.force).await.map_err(self.fail(name.as_str()))?;
        Ok(DeleteRepositoryResponse { repository: self.repository_shape(&info) })
    }

    async fn describe_images(
        &self,
        _: &RequestContext,
        request: DescribeImagesRequest,
    ) -> Result<DescribeImagesResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        // Images named by id are described whatever the filter says (it selects what a listing shows).
        if let Some(ids) = &request.image_ids {
            let (selectors, failures) = selectors(ids);
            let found = self.registry.resolve_images(&name, &selectors, None).await.map_err(self.fail(repo))?;
            let mut seen = HashSet::new();
            let mut image_details = Vec::new();
            for (id, outcome) in ids.iter().zip(outcomes(failures, found)) {
                let outcome = outcome.map_err(|failure| EcrError::InvalidParameter(failure.failure_reason))?;
                let image = match outcome {
                    Ok(image) => image,
                    Err(RegistryError::ManifestUnknown(_) | RegistryError::TagDigestMismatch { .. }) => {
                        return Err(EcrError::image_not_found(id, repo, &self.config.registry_id));
                    }
                    Err(other) => return Err(self.fail(repo)(other)),
                };
                if seen.insert(image.manifest.digest.clone()) {
                    image_details.push(self.image_detail(repo, image));
                }
            }
            return Ok(DescribeImagesResponse { image_details, next_token: None });
        }
        let (tag_status, image_status) = image_filters(&request.filter);
        let Some(filter) = service_filter(tag_status, image_status) else {
            return Ok(DescribeImagesResponse { image_details: vec![], next_token: None });
        };
        let scope = format!("{repo}|{}|{}", tag_status.as_str(), image_status.as_str());
        let pager = Pager::new(Endpoint::DescribeImages, &scope);
        let after = pager.resume(request.next_token.as_deref())?.map(|key| token_digest(&key[0])).transpose()?;
        let (images, more) = self
            .registry
            .list_images(&name, after.as_ref(), request.page_size(), filter)
            .await
            .map_err(self.fail(repo))?;
        Ok(DescribeImagesResponse {
            next_token: pager.next_token(more, &images, |last| vec![last.manifest.digest.to_string()]),
            image_details: images.into_iter().map(|image| self.image_detail(repo, image)).collect(),
        })
    }

    async fn list_images(
        &self,
        _: &RequestContext,
        request: ListImagesRequest,
    ) -> Result<ListImagesResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        let (tag_status, image_status) = image_filters(&request.filter);
        let Some(filter) = service_filter(tag_status, image_status) else {
            return Ok(ListImagesResponse { image_ids: vec![], next_token: None });
        };
        let scope = format!("{repo}|{}|{}", tag_status.as_str(), image_status.as_str());
        let pager = Pager::new(Endpoint::ListImages, &scope);
        let after = match pager.resume(request.next_token.as_deref())? {
            Some(key) => {
                let mut key = key.into_iter();
                let digest = token_digest(&key.next().unwrap_or_default())?;
                Some(ImageId { digest, tag: key.next() })
            }
            None => None,
        };
        let (ids, more) = self
            .registry
            .list_image_ids(&name, after.as_ref(), request.page_size(), filter)
            .await
            .map_err(self.fail(repo))?;
        let next_token = pager
            .next_token(more, &ids, |last| std::iter::once(last.digest.to_string()).chain(last.tag.clone()).collect());
        let image_ids = ids
            .into_iter()
            .map(|id| ImageIdentifier { image_digest: Some(id.digest.to_string()), image_tag: id.tag })
            .collect();
        Ok(ListImagesResponse { image_ids, next_token })
    }

    async fn batch_get_image(
        &self,
        ctx: &RequestContext,
        mut request: BatchGetImageRequest,
    ) -> Result<BatchGetImageResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        // An id asked for twice is answered once: each answer holds the whole manifest.
        let mut asked = HashSet::new();
        request.image_ids.retain(|id| asked.insert((id.image_digest.clone(), id.image_tag.clone())));
        let (selectors, failures) = selectors(&request.image_ids);
        // acceptedMediaTypes is not a filter: asked for by tag, an image manifest in a format it
        // leaves out is converted to one it names (as ECR does); otherwise, and by digest, the
        // exact bytes pushed, which is what retagging with PutImage needs.
        let accepted: Vec<&str> = request.accepted_media_types.iter().flatten().map(String::as_str).collect();
        let found = self.registry.resolve_images(&name, &selectors, Some(ctx)).await.map_err(self.fail(repo))?;
        let mut response = BatchGetImageResponse { images: vec![], failures: vec![] };
        let (mut answered_bytes, mut pulled) = (0, Vec::new());
        for (id, outcome) in request.image_ids.into_iter().zip(outcomes(failures, found)) {
            match outcome {
                Err(failure) => response.failures.push(failure),
                Ok(Ok(image)) => {
                    let manifest = image.manifest;
                    let converted = match id.image_digest {
                        None => Registry::converted_for(&manifest, &accepted).await,
                        Some(_) => None,
                    };
                    // The image keeps its digest: the converted bytes are not stored.
                    let (media_type, content) = match converted {
                        Some((media_type, content)) => (media_type.to_owned(), content),
                        None => (manifest.media_type, manifest.content),
                    };
                    answered_bytes += content.len();
                    if answered_bytes > BATCH_GET_IMAGE_BYTES {
                        return Err(EcrError::LimitExceeded(format!(
                            "the images asked for hold more than {} MiB of manifests; ask for fewer at a time",
                            BATCH_GET_IMAGE_BYTES >> 20
                        )));
                    }
                    response.images.push(Image {
                        registry_id: self.config.registry_id.clone(),
                        repository_name: repo.into(),
                        image_id: ImageIdentifier {
                            image_digest: Some(manifest.digest.to_string()),
                            image_tag: id.image_tag,
                        },
                        image_manifest: String::from_utf8_lossy(&content).into_owned(),
                        image_manifest_media_type: Some(media_type),
                    });
                    pulled.push(manifest.digest);
                }
                Ok(Err(err)) => response.failures.push(image_failure(id, err, &self.scope(repo))?),
            }
        }
        // Only an answer is a pull: a call refused for its size above pulled nothing.
        self.registry.record_pulls(ctx, &name, &pulled);
        Ok(response)
    }

    async fn put_image(&self, ctx: &RequestContext, request: PutImageRequest) -> Result<PutImageResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        // ECR's own checks, before the manifest grammar: JSON at all, and a media type from the
        // manifest or the request (the /v2/ plane would infer one from the shape instead).
        // Typed, so nothing but `mediaType` is kept: a tree of every value would take ~70 times
        // a 4 MiB manifest of small numbers.
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "mediaType")]
            media_type: Option<serde::de::IgnoredAny>,
        }
        let probe: Probe = serde_json::from_str(&request.image_manifest)
            .map_err(|_| EcrError::invalid_parameter("ImageManifest", "Invalid JSON syntax"))?;
        if probe.media_type.is_none() && request.image_manifest_media_type.is_none() {
            return Err(EcrError::invalid_parameter(
                "imageManifestMediaType",
                "If you push an image manifest that does not contain the mediaType field, you must specify the imageManifestMediaType in the request",
            ));
        }
        let tag = match &request.image_tag {
            Some(tag) => Some(
                tag.parse::<OciTag>()
                    .map_err(|e: berth_spec::NameError| EcrError::invalid_parameter("imageTag", &e.to_string()))?,
            ),
            None => None,
        };
        let digest = request.image_digest.as_deref().map(|d| parse_digest("imageDigest", d)).transpose()?;
        let put = PutImage {
            content: request.image_manifest.as_bytes(),
            media_type: request.image_manifest_media_type.as_deref(),
            tag: tag.as_ref(),
            digest: digest.as_ref(),
        };
        let (digest, media_type) = self.registry.put_image(ctx, &name, put).await.map_err(self.fail(repo))?;
        Ok(PutImageResponse {
            image: Image {
                registry_id: self.config.registry_id.clone(),
                repository_name: repo.into(),
                image_id: ImageIdentifier { image_digest: Some(digest.to_string()), image_tag: request.image_tag },
                image_manifest: request.image_manifest,
                image_manifest_media_type: Some(media_type),
            },
        })
    }

    async fn batch_delete_image(
        &self,
        ctx: &RequestContext,
        request: BatchDeleteImageRequest,
    ) -> Result<BatchDeleteImageResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        let (selectors, failures) = selectors(&request.image_ids);
        let deleted = self.registry.delete_images(ctx, &name, &selectors).await.map_err(self.fail(repo))?;
        let mut response = BatchDeleteImageResponse { image_ids: vec![], failures: vec![] };
        for (id, outcome) in request.image_ids.into_iter().zip(outcomes(failures, deleted)) {
            match outcome {
                Err(failure) => response.failures.push(failure),
                Ok(Ok(image)) if image.tags.is_empty() => response
                    .image_ids
                    .push(ImageIdentifier { image_digest: Some(image.digest.to_string()), image_tag: None }),
                Ok(Ok(image)) => {
                    response.image_ids.extend(image.tags.into_iter().map(|tag| ImageIdentifier {
                        image_digest: Some(image.digest.to_string()),
                        image_tag: Some(tag),
                    }))
                }
                Ok(Err(err)) => response.failures.push(image_failure(id, err, &self.scope(repo))?),
            }
        }
        Ok(response)
    }

    async fn batch_check_layer_availability(
        &self,
        _: &RequestContext,
        request: BatchCheckLayerAvailabilityRequest,
    ) -> Result<BatchCheckLayerAvailabilityResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        self.registry.describe_repository(&name).await.map_err(self.fail(repo))?;
        let mut response = BatchCheckLayerAvailabilityResponse { layers: vec![], failures: vec![] };
        for layer_digest in request.layer_digests {
            let Ok(digest) = layer_digest.parse::<Digest>() else {
                response.failures.push(LayerFailure {
                    failure_reason: format!("Invalid layer digest '{layer_digest}'"),
                    layer_digest,
                    failure_code: LayerFailureCode::InvalidLayerDigest,
                });
                continue;
            };
            match self.registry.blob_link(&name, &digest).await {
                Ok(link) => response.layers.push(Layer {
                    layer_digest,
                    layer_availability: match link.needed_by {
                        Some(StorageClass::Archive) => LayerAvailability::Archived,
                        Some(StorageClass::Standard) | None => LayerAvailability::Available,
                    },
                    layer_size: Some(link.size),
                    media_type: match link.needed_by {
                        Some(_) => self.registry.blob_media_type(&name, &digest).await.map_err(self.fail(repo))?,
                        None => None,
                    },
                }),
                Err(RegistryError::BlobUnknown(_)) => response.failures.push(LayerFailure {
                    failure_reason: format!("Layer digest '{layer_digest}' could not be found"),
                    layer_digest,
                    failure_code: LayerFailureCode::MissingLayerDigest,
                }),
                Err(other) => return Err(self.fail(repo)(other)),
            }
        }
        Ok(response)
    }

    async fn initiate_layer_upload(
        &self,
        ctx: &RequestContext,
        request: InitiateLayerUploadRequest,
    ) -> Result<InitiateLayerUploadResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let upload = self.registry.initiate_layer_upload(ctx, &name).await.map_err(self.fail(name.as_str()))?;
        Ok(InitiateLayerUploadResponse { upload_id: upload.id, part_size: ADVERTISED_PART_SIZE })
    }

    async fn upload_layer_part(
        &self,
        _: &RequestContext,
        request: UploadLayerPartRequest,
    ) -> Result<UploadLayerPartResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let scope = Scope { upload_id: Some(&request.upload_id), ..self.scope(name.as_str()) };
        let last = self
            .registry
            .upload_layer_part(
                &name,
                &request.upload_id,
                request.part_first_byte as u64,
                request.part_last_byte as u64,
                request.layer_part_blob,
            )
            .await
            .map_err(|e| ecr_error(e, &scope))?;
        Ok(UploadLayerPartResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name: request.repository_name,
            upload_id: request.upload_id,
            last_byte_received: last as i64,
        })
    }

    async fn complete_layer_upload(
        &self,
        _: &RequestContext,
        request: CompleteLayerUploadRequest,
    ) -> Result<CompleteLayerUploadResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let [layer_digest] = request.layer_digests.as_slice() else {
            return Err(EcrError::invalid_parameter("layerDigests", "An upload is one layer: give exactly one digest"));
        };
        let digest = parse_digest("layerDigests.1.member", layer_digest)?;
        let scope = Scope { upload_id: Some(&request.upload_id), ..self.scope(name.as_str()) };
        let digest = self
            .registry
            .complete_layer_upload(&name, &request.upload_id, &digest)
            .await
            .map_err(|e| ecr_error(e, &scope))?;
        Ok(CompleteLayerUploadResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name: request.repository_name,
            upload_id: request.upload_id,
            layer_digest: digest.to_string(),
        })
    }

    async fn get_download_url_for_layer(
        &self,
        ctx: &RequestContext,
        request: GetDownloadUrlForLayerRequest,
    ) -> Result<GetDownloadUrlForLayerResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let digest = parse_digest("layerDigest", &request.layer_digest)?;
        let expires_at = Timestamp::from(SystemTime::now() + DOWNLOAD_URL_LIFETIME).millis() / 1000;
        let signed = self
            .registry
            .sign_layer_download(ctx, &name, &digest, expires_at)
            .await
            .map_err(self.fail(name.as_str()))?;
        Ok(GetDownloadUrlForLayerResponse {
            download_url: download::url(&self.config.public_url, &name, &digest, expires_at, &signed),
            layer_digest: request.layer_digest,
        })
    }

    async fn tag_resource(
        &self,
        ctx: &RequestContext,
        request: TagResourceRequest,
    ) -> Result<TagResourceResponse, EcrError> {
        let name = self.repository_of_arn(&request.resource_arn)?;
        self.registry
            .tag_repository(ctx, &name, &resource_tags(&request.tags))
            .await
            .map_err(self.fail(name.as_str()))?;
        Ok(TagResourceResponse {})
    }

    async fn untag_resource(
        &self,
        ctx: &RequestContext,
        request: UntagResourceRequest,
    ) -> Result<UntagResourceResponse, EcrError> {
        let name = self.repository_of_arn(&request.resource_arn)?;
        self.registry.untag_repository(ctx, &name, &request.tag_keys).await.map_err(self.fail(name.as_str()))?;
        Ok(UntagResourceResponse {})
    }

    async fn list_tags_for_resource(
        &self,
        _: &RequestContext,
        request: ListTagsForResourceRequest,
    ) -> Result<ListTagsForResourceResponse, EcrError> {
        let name = self.repository_of_arn(&request.resource_arn)?;
        let info = self.registry.describe_repository(&name).await.map_err(self.fail(name.as_str()))?;
        let tags = info.settings.resource_tags.into_iter().map(|t| Tag { key: t.key, value: t.value }).collect();
        Ok(ListTagsForResourceResponse { tags })
    }

    /// BASIC without rules is what is in force (Berth does not scan): accepted and echoed.
    /// Anything else asks for scans Berth cannot run.
    async fn put_registry_scanning_configuration(
        &self,
        _: &RequestContext,
        request: PutRegistryScanningConfigurationRequest,
    ) -> Result<PutRegistryScanningConfigurationResponse, EcrError> {
        let rules = request.rules.unwrap_or_default();
        if matches!(request.scan_type, Some(ScanTypeInput::Enhanced)) {
            return Err(EcrError::Validation(format!(
                "{NO_SCANNER} (ENHANCED scanning, Amazon Inspector's, is not available; BASIC rules are stored \
                 and reported as ECR reports them)"
            )));
        }
        if rules.iter().any(|rule| rule.scan_frequency == ScanFrequency::ContinuousScan) {
            return Err(EcrError::Validation(
                "CONTINUOUS_SCAN is a frequency of ENHANCED scanning; BASIC scanning rules are SCAN_ON_PUSH or MANUAL"
                    .into(),
            ));
        }
        let stored = rules
            .into_iter()
            .map(|rule| ScanningRule {
                scan_on_push: rule.scan_frequency == ScanFrequency::ScanOnPush,
                filters: rule.repository_filters.into_iter().map(|f| f.filter).collect(),
            })
            .collect();
        let stored = self.registry.put_scanning_rules(stored).await.map_err(self.fail(""))?;
        Ok(PutRegistryScanningConfigurationResponse { registry_scanning_configuration: scanning_configuration(stored) })
    }

    /// Archives or restores at once (Berth keeps the blobs in place): the answer is ARCHIVED or
    /// ACTIVE, never ACTIVATING. An index takes its children along (see `berth_registry::archive`).
    async fn update_image_storage_class(
        &self,
        ctx: &RequestContext,
        request: UpdateImageStorageClassRequest,
    ) -> Result<UpdateImageStorageClassResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        let selector =
            image_selector(&request.image_id).map_err(|failure| EcrError::InvalidParameter(failure.failure_reason))?;
        let class = match request.target_storage_class {
            TargetStorageClass::Archive => StorageClass::Archive,
            TargetStorageClass::Standard | TargetStorageClass::Unrecognized => StorageClass::Standard,
        };
        let digest = match self.registry.update_image_storage_class(ctx, &name, &selector, class).await {
            Ok(digest) => digest,
            Err(RegistryError::ManifestUnknown(_) | RegistryError::TagDigestMismatch { .. }) => {
                return Err(EcrError::image_not_found(&request.image_id, repo, &self.config.registry_id));
            }
            Err(other) => return Err(self.fail(repo)(other)),
        };
        Ok(UpdateImageStorageClassResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name: request.repository_name,
            image_id: ImageIdentifier { image_digest: Some(digest.to_string()), image_tag: request.image_id.image_tag },
            image_status: image_status(class),
        })
    }

    async fn start_image_scan(&self, _: &RequestContext, request: ImageRequest) -> Result<Refused, EcrError> {
        self.image_digest(&request).await?;
        Err(EcrError::Validation(format!("{NO_SCANNER}, so StartImageScan cannot start one")))
    }

    /// No scan ever ran, so there are no findings: `ScanNotFoundException`, as ECR answers for an
    /// image it has not scanned.
    async fn describe_image_scan_findings(
        &self,
        _: &RequestContext,
        request: DescribeImageScanFindingsRequest,
    ) -> Result<Refused, EcrError> {
        let request = request.image();
        let digest = self.image_digest(&request).await?;
        Err(EcrError::ScanNotFound(format!(
            "Image scan does not exist for the image with '{{imageDigest:'{digest}', imageTag:'{}'}}' in the repository \
             with name '{}' in the registry with id '{}'; {NO_SCANNER}",
            request.image_id.image_tag.as_deref().unwrap_or("null"),
            request.repository_name,
            self.config.registry_id
        )))
    }

    async fn put_signing_configuration(
        &self,
        _: &RequestContext,
        _: PutSigningConfigurationRequest,
    ) -> Result<Refused, EcrError> {
        Err(EcrError::Validation(NO_SIGNER.into()))
    }

    async fn get_signing_configuration(
        &self,
        _: &RequestContext,
        _: SigningConfigurationRequest,
    ) -> Result<Refused, EcrError> {
        Err(self.no_signing_configuration())
    }

    async fn delete_signing_configuration(
        &self,
        _: &RequestContext,
        _: SigningConfigurationRequest,
    ) -> Result<Refused, EcrError> {
        Err(self.no_signing_configuration())
    }

    /// One COMPLETE entry per signature (cosign or Notary v2) attached to the image through the
    /// referrers API; Berth does not verify them.
    /// No signing statuses: they report ECR's managed signing under a signing configuration,
    /// which Berth does not have (`PutSigningConfiguration` is refused). A cosign or Notary
    /// Project signature pushed as a referrer is listed by `ListImageReferrers`, unverified: it
    /// must not read as COMPLETE, which anyone who may push could then fake.
    async fn describe_image_signing_status(
        &self,
        _: &RequestContext,
        request: ImageRequest,
    ) -> Result<DescribeImageSigningStatusResponse, EcrError> {
        let digest = self.image_digest(&request).await?;
        Ok(DescribeImageSigningStatusResponse {
            repository_name: request.repository_name,
            image_id: ImageIdentifier { image_digest: Some(digest.to_string()), image_tag: request.image_id.image_tag },
            registry_id: self.config.registry_id.clone(),
            signing_statuses: vec![],
        })
    }

    async fn describe_registry(
        &self,
        _: &RequestContext,
        _: DescribeRegistryRequest,
    ) -> Result<DescribeRegistryResponse, EcrError> {
        let stored = self.registry.replication_configuration().await.map_err(self.fail(""))?;
        Ok(DescribeRegistryResponse {
            registry_id: self.config.registry_id.clone(),
            replication_configuration: replication_to_wire(stored),
        })
    }

    async fn put_replication_configuration(
        &self,
        _: &RequestContext,
        request: PutReplicationConfigurationRequest,
    ) -> Result<PutReplicationConfigurationResponse, EcrError> {
        let rules = &request.replication_configuration.rules;
        if rules.iter().any(|rule| rule.delete_replication.as_ref().is_some_and(|d| d.enabled)) {
            // Refused rather than stored as a promise nothing keeps (as KMS encryption is).
            return Err(EcrError::InvalidParameter(
                "deleteReplication cannot be enabled: Berth replicates pushes and tag moves, not image deletions \
                 or tag removals. Omit deleteReplication or set enabled to false."
                    .into(),
            ));
        }
        let rules = request
            .replication_configuration
            .rules
            .into_iter()
            .map(|rule| replication::ReplicationRule {
                destinations: rule
                    .destinations
                    .into_iter()
                    .map(|d| replication::DestinationId { region: d.region, registry_id: d.registry_id })
                    .collect(),
                // PREFIX_MATCH is the only filter type (validation refused any other).
                repository_prefixes: rule
                    .repository_filters
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| f.filter)
                    .collect(),
            })
            .collect();
        let stored = self
            .registry
            .put_replication_configuration(replication::ReplicationConfiguration { rules, superseded: vec![] })
            .await
            .map_err(self.fail(""))?;
        Ok(PutReplicationConfigurationResponse { replication_configuration: replication_to_wire(stored) })
    }

    /// Statuses of the destinations a rule sends the image to (none for an image pushed before
    /// the rules, and none for an image no rule sends anywhere).
    async fn describe_image_replication_status(
        &self,
        _: &RequestContext,
        request: ImageRequest,
    ) -> Result<DescribeImageReplicationStatusResponse, EcrError> {
        let digest = self.image_digest(&request).await?;
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = request.repository_name.as_str();
        let statuses = self.registry.replication_statuses(&name, &digest).await.map_err(self.fail(repo))?;
        let replication_statuses = statuses
            .into_iter()
            .filter_map(|s| {
                let status = match s.status.as_str() {
                    "IN_PROGRESS" => ReplicationStatus::InProgress,
                    "COMPLETE" => ReplicationStatus::Complete,
                    "FAILED" => ReplicationStatus::Failed,
                    _ => return None,
                };
                Some(ImageReplicationStatus {
                    region: s.region,
                    registry_id: s.registry_id,
                    status,
                    failure_code: s.failure_code,
                })
            })
            .collect();
        Ok(DescribeImageReplicationStatusResponse {
            repository_name: request.repository_name,
            image_id: ImageIdentifier { image_digest: Some(digest.to_string()), image_tag: request.image_id.image_tag },
            replication_statuses,
        })
    }

    async fn put_image_scanning_configuration(
        &self,
        ctx: &RequestContext,
        request: PutImageScanningConfigurationRequest,
    ) -> Result<PutImageScanningConfigurationResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let scan_on_push = request.image_scanning_configuration.scan_on_push;
        let info = self.registry.set_scan_on_push(ctx, &name, scan_on_push).await.map_err(self.fail(name.as_str()))?;
        Ok(PutImageScanningConfigurationResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name: info.name.to_string(),
            image_scanning_configuration: ImageScanningConfiguration { scan_on_push: info.settings.scan_on_push },
        })
    }

    /// Berth has no registry-level scanning settings (PutRegistryScanningConfiguration is
    /// unsupported), so this is what a fresh ECR account answers: BASIC with no rules. Whether a
    /// repository scans on push is its own `scanOnPush`, as BatchGetRepositoryScanningConfiguration
    /// reports.
    async fn get_registry_scanning_configuration(
        &self,
        _: &RequestContext,
        _: GetRegistryScanningConfigurationRequest,
    ) -> Result<GetRegistryScanningConfigurationResponse, EcrError> {
        let rules = self.registry.scanning_rules().await.map_err(self.fail(""))?;
        Ok(GetRegistryScanningConfigurationResponse {
            registry_id: self.config.registry_id.clone(),
            scanning_configuration: scanning_configuration(rules),
        })
    }

    async fn put_registry_policy(
        &self,
        _: &RequestContext,
        request: PutRegistryPolicyRequest,
    ) -> Result<RegistryPolicyResponse, EcrError> {
        let policy_text = self.registry.put_registry_policy(&request.policy_text).await.map_err(self.fail(""))?;
        Ok(RegistryPolicyResponse {
            registry_id: self.config.registry_id.clone(),
            policy_text: as_ecr_returns(&policy_text),
        })
    }

    async fn get_registry_policy(
        &self,
        _: &RequestContext,
        _: GetRegistryPolicyRequest,
    ) -> Result<RegistryPolicyResponse, EcrError> {
        let policy_text = self.registry.registry_policy().await.map_err(self.fail(""))?;
        Ok(RegistryPolicyResponse {
            registry_id: self.config.registry_id.clone(),
            policy_text: as_ecr_returns(&policy_text),
        })
    }

    async fn delete_registry_policy(
        &self,
        _: &RequestContext,
        _: DeleteRegistryPolicyRequest,
    ) -> Result<RegistryPolicyResponse, EcrError> {
        let policy_text = self.registry.delete_registry_policy().await.map_err(self.fail(""))?;
        Ok(RegistryPolicyResponse {
            registry_id: self.config.registry_id.clone(),
            policy_text: as_ecr_returns(&policy_text),
        })
    }

    async fn get_account_setting(
        &self,
        _: &RequestContext,
        request: GetAccountSettingRequest,
    ) -> Result<AccountSettingResponse, EcrError> {
        let (setting, value) = self.registry.account_setting(&request.name).await.map_err(self.fail(""))?;
        Ok(AccountSettingResponse { name: setting.name().to_owned(), value })
    }

    async fn put_account_setting(
        &self,
        _: &RequestContext,
        request: PutAccountSettingRequest,
    ) -> Result<AccountSettingResponse, EcrError> {
        let (setting, value) =
            self.registry.put_account_setting(&request.name, &request.value).await.map_err(self.fail(""))?;
        Ok(AccountSettingResponse { name: setting.name().to_owned(), value })
    }

    async fn batch_get_repository_scanning_configuration(
        &self,
        _: &RequestContext,
        request: BatchGetRepositoryScanningConfigurationRequest,
    ) -> Result<BatchGetRepositoryScanningConfigurationResponse, EcrError> {
        let mut seen = HashSet::new();
        let mut scanning_configurations = Vec::new();
        let mut failures = Vec::new();
        let rules = self.registry.scanning_rules().await.map_err(self.fail(""))?;
        for name in request.repository_names.iter().filter(|name| seen.insert(name.as_str())) {
            let repo = self.repository(&None, name)?;
            match self.registry.describe_repository(&repo).await {
                Ok(info) => {
                    // Once the registry has rules they decide, as on ECR; before, the
                    // repository's own (deprecated) scanOnPush does.
                    let (scan_on_push, filters) = if rules.is_empty() {
                        (info.settings.scan_on_push, vec![])
                    } else {
                        ScanningRule::applying(&rules, name)
                            .map_or((false, vec![]), |rule| (rule.scan_on_push, scanning_filters(&rule.filters)))
                    };
                    scanning_configurations.push(RepositoryScanningConfiguration {
                        repository_arn: RepositoryArn::new(&self.config.region, &self.config.registry_id, name)
                            .to_string(),
                        repository_name: name.clone(),
                        scan_on_push,
                        scan_frequency: if scan_on_push { ScanFrequency::ScanOnPush } else { ScanFrequency::Manual },
                        applied_scan_filters: filters,
                    });
                }
                Err(err) => failures.push(scanning_failure(err, &self.scope(name))?),
            }
        }
        Ok(BatchGetRepositoryScanningConfigurationResponse { scanning_configurations, failures })
    }

    async fn list_image_referrers(
        &self,
        _: &RequestContext,
        request: ListImageReferrersRequest,
    ) -> Result<ListImageReferrersResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        let subject = parse_digest("subjectId.imageDigest", &request.subject_id.image_digest)?;
        self.registry.describe_repository(&name).await.map_err(self.fail(repo))?;
        let filter = request.filter.clone().unwrap_or_default();
        if !matches!(filter.artifact_status, None | Some(ArtifactStatusFilter::Active | ArtifactStatusFilter::Any)) {
            return Ok(ListImageReferrersResponse { referrers: vec![], next_token: None });
        }
        let types = filter.artifact_types.unwrap_or_default();
        let scope = format!("{repo}|{subject}|{}", types.join(","));
        let pager = Pager::new(Endpoint::ListImageReferrers, &scope);
        let after = pager.resume(request.next_token.as_deref())?.map(|key| token_digest(&key[0])).transpose()?;
        let limit = request.page_size();
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        // A page also ends early when its annotations reach `REFERRERS_PAGE_BYTES`.
        let page =
            self.registry.referrers(&name, &subject, &types, after.as_ref(), limit).await.map_err(self.fail(repo))?;
        let next_token = pager.next_token(page.more, &page.referrers, |last| vec![last.digest.to_string()]);
        let referrers = page
            .referrers
            .into_iter()
            .map(|r| ImageReferrer {
                digest: r.digest.to_string(),
                media_type: r.media_type,
                artifact_type: r.artifact_type,
                size: r.size,
                annotations: r.annotations,
                artifact_status: Some(ArtifactStatus::Active),
            })
            .collect();
        Ok(ListImageReferrersResponse { referrers, next_token })
    }

    async fn put_image_tag_mutability(
        &self,
        ctx: &RequestContext,
        request: PutImageTagMutabilityRequest,
    ) -> Result<PutImageTagMutabilityResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let info = self
            .registry
            .set_tag_mutability(
                ctx,
                &name,
                stored_mutability(request.image_tag_mutability),
                stored_filters(request.image_tag_mutability_exclusion_filters),
            )
            .await
            .map_err(self.fail(name.as_str()))?;
        let shape = self.repository_shape(&info);
        Ok(PutImageTagMutabilityResponse {
            registry_id: shape.registry_id,
            repository_name: shape.repository_name,
            image_tag_mutability: shape.image_tag_mutability,
            image_tag_mutability_exclusion_filters: shape.image_tag_mutability_exclusion_filters,
        })
    }

    async fn put_lifecycle_policy(
        &self,
        ctx: &RequestContext,
        request: PutLifecyclePolicyRequest,
    ) -> Result<PutLifecyclePolicyResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        self.registry
            .put_lifecycle_policy(ctx, &name, &request.lifecycle_policy_text)
            .await
            .map_err(self.fail(name.as_str()))?;
        Ok(PutLifecyclePolicyResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name: request.repository_name,
            lifecycle_policy_text: lifecycle_as_ecr_returns(&request.lifecycle_policy_text),
        })
    }

    async fn get_lifecycle_policy(
        &self,
        _: &RequestContext,
        request: GetLifecyclePolicyRequest,
    ) -> Result<GetLifecyclePolicyResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let policy = self.registry.lifecycle_policy(&name).await.map_err(self.fail(name.as_str()))?;
        Ok(self.lifecycle_policy_shape(request.repository_name, policy))
    }

    async fn delete_lifecycle_policy(
        &self,
        ctx: &RequestContext,
        request: DeleteLifecyclePolicyRequest,
    ) -> Result<DeleteLifecyclePolicyResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let policy = self.registry.delete_lifecycle_policy(ctx, &name).await.map_err(self.fail(name.as_str()))?;
        Ok(self.lifecycle_policy_shape(request.repository_name, policy))
    }

    async fn start_lifecycle_policy_preview(
        &self,
        ctx: &RequestContext,
        request: StartLifecyclePolicyPreviewRequest,
    ) -> Result<StartLifecyclePolicyPreviewResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        // A policy given is previewed and echoed as sent; the stored one as GetLifecyclePolicy
        // answers it.
        let given = match request.lifecycle_policy_text {
            Some(text) => text,
            None => {
                let stored = self.registry.lifecycle_policy(&name).await.map_err(self.fail(name.as_str()))?;
                lifecycle_as_ecr_returns(&stored.text)
            }
        };
        self.registry.start_lifecycle_preview(ctx, &name, &given).await.map_err(self.fail(name.as_str()))?;
        Ok(StartLifecyclePolicyPreviewResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name: request.repository_name,
            lifecycle_policy_text: given,
            // As ECR answers a start; the preview is ready for GetLifecyclePolicyPreview at once.
            status: LifecyclePolicyPreviewStatus::InProgress,
        })
    }

    async fn get_lifecycle_policy_preview(
        &self,
        _: &RequestContext,
        request: GetLifecyclePolicyPreviewRequest,
    ) -> Result<GetLifecyclePolicyPreviewResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let repo = name.as_str();
        let preview = self.registry.lifecycle_preview(&name).await.map_err(self.fail(repo))?;
        let transitioning = preview.results.iter().filter(|r| r.action == RuleAction::Transition).count();
        let expiring_image_total_count = preview.results.len() - transitioning;
        let tag_status = request.filter.as_ref().and_then(|f| f.tag_status).unwrap_or(TagStatus::Any);
        let scope = format!("{repo}|{}", tag_status.as_str());
        let pager = Pager::new(Endpoint::GetLifecyclePolicyPreview, &scope);
        let after = pager.resume(request.next_token.as_deref())?.map(|key| token_digest(&key[0])).transpose()?;
        let named = |result: &PreviewResult| {
            request.image_ids.as_ref().is_none_or(|ids| {
                ids.iter().any(|id| {
                    id.image_digest.as_ref().is_none_or(|d| *d == result.digest.to_string())
                        && id.image_tag.as_ref().is_none_or(|t| result.tags.contains(t))
                        && (id.image_digest.is_some() || id.image_tag.is_some())
                })
            })
        };
        let limit = request.page_size();
        // The results are sorted by digest: a page starts right after the token's.
        let start = after.as_ref().map_or(0, |after| preview.results.partition_point(|r| &r.digest <= after));
        let mut page: Vec<PreviewResult> = preview.results[start..]
            .iter()
            .filter(|r| match tag_status {
                TagStatus::Tagged => !r.tags.is_empty(),
                TagStatus::Untagged => r.tags.is_empty(),
                TagStatus::Any | TagStatus::Unrecognized => true,
            })
            .filter(|r| named(r))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        Ok(GetLifecyclePolicyPreviewResponse {
            registry_id: self.config.registry_id.clone(),
            repository_name: request.repository_name,
            lifecycle_policy_text: preview.policy_text.clone(),
            status: LifecyclePolicyPreviewStatus::Complete,
            next_token: pager.next_token(more, &page, |last| vec![last.digest.to_string()]),
            preview_results: page
                .into_iter()
                .map(|result| LifecyclePolicyPreviewResult {
                    image_tags: result.tags,
                    image_digest: result.digest.to_string(),
                    image_pushed_at: Timestamp::from_millis(result.pushed_at),
                    action: match result.action {
                        RuleAction::Expire => LifecyclePolicyRuleAction {
                            action_type: ImageActionType::Expire,
                            target_storage_class: None,
                        },
                        RuleAction::Transition => LifecyclePolicyRuleAction {
                            action_type: ImageActionType::Transition,
                            target_storage_class: Some(LifecyclePolicyTargetStorageClass::Archive),
                        },
                    },
                    applied_rule_priority: result.rule_priority,
                    storage_class: match result.storage_class {
                        StorageClass::Standard => LifecyclePolicyStorageClass::Standard,
                        StorageClass::Archive => LifecyclePolicyStorageClass::Archive,
                    },
                })
                .collect(),
            summary: LifecyclePolicyPreviewSummary {
                expiring_image_total_count,
                transitioning_image_total_counts: (transitioning > 0)
                    .then_some(TransitioningImageTotalCount {
                        target_storage_class: LifecyclePolicyTargetStorageClass::Archive,
                        image_total_count: transitioning,
                    })
                    .into_iter()
                    .collect(),
            },
        })
    }

    async fn set_repository_policy(
        &self,
        ctx: &RequestContext,
        request: SetRepositoryPolicyRequest,
    ) -> Result<SetRepositoryPolicyResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        self.registry
            .set_repository_policy(ctx, &name, &request.policy_text, request.force)
            .await
            .map_err(self.fail(name.as_str()))?;
        Ok(self.repository_policy_shape(request.repository_name, request.policy_text))
    }

    async fn get_repository_policy(
        &self,
        _: &RequestContext,
        request: GetRepositoryPolicyRequest,
    ) -> Result<GetRepositoryPolicyResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let text = self.registry.repository_policy(&name).await.map_err(self.fail(name.as_str()))?;
        Ok(self.repository_policy_shape(request.repository_name, text))
    }

    async fn delete_repository_policy(
        &self,
        ctx: &RequestContext,
        request: DeleteRepositoryPolicyRequest,
    ) -> Result<DeleteRepositoryPolicyResponse, EcrError> {
        let name = self.repository(&request.registry_id, &request.repository_name)?;
        let text = self.registry.delete_repository_policy(ctx, &name).await.map_err(self.fail(name.as_str()))?;
        Ok(self.repository_policy_shape(request.repository_name, text))
    }

    async fn create_pull_through_cache_rule(
        &self,
        ctx: &RequestContext,
        request: CreatePullThroughCacheRuleRequest,
    ) -> Result<CreatePullThroughCacheRuleResponse, EcrError> {
        self.own_registry(&request.registry_id)?;
        self.own_role(request.custom_role_arn.as_deref())?;
        let upstream = UpstreamSettings {
            upstream_registry_url: request.upstream_registry_url,
            upstream_registry: request.upstream_registry.map(|r| r.as_str().to_owned()),
            upstream_repository_prefix: request
                .upstream_repository_prefix
                .map_or_else(|| ROOT_PREFIX.to_owned(), |p| normalize_prefix(&p).to_owned()),
            credential_arn: request.credential_arn,
            custom_role_arn: request.custom_role_arn,
        };
        let rule = self
            .registry
            .create_cache_rule(ctx, &request.ecr_repository_prefix, upstream)
            .await
            .map_err(self.fail(""))?;
        Ok(CreatePullThroughCacheRuleResponse::created(self.cache_rule_shape(rule)))
    }

    async fn describe_pull_through_cache_rules(
        &self,
        _: &RequestContext,
        request: DescribePullThroughCacheRulesRequest,
    ) -> Result<DescribePullThroughCacheRulesResponse, EcrError> {
        self.own_registry(&request.registry_id)?;
        let mut rules = self.registry.cache_rules().await.map_err(self.fail(""))?;
        if let Some(named) = &request.ecr_repository_prefixes {
            let mut found = Vec::with_capacity(named.len());
            for prefix in named {
                let prefix = normalize_prefix(prefix);
                match rules.iter().find(|r| r.ecr_repository_prefix == prefix) {
                    Some(rule) => found.push(rule.clone()),
                    None => {
                        return Err(ecr_error(
                            PullThroughError::RuleNotFound(prefix.to_owned()).into(),
                            &self.scope(""),
                        ));
                    }
                }
            }
            // In the order of all rules, which the page token follows.
            found.sort_by(|a, b| a.ecr_repository_prefix.cmp(&b.ecr_repository_prefix));
            found.dedup_by(|a, b| a.ecr_repository_prefix == b.ecr_repository_prefix);
            rules = found;
        }
        let pager = Pager::new(Endpoint::DescribePullThroughCacheRules, &self.config.registry_id);
        let after = pager.resume(request.next_token.as_deref())?.and_then(|mut key| key.pop());
        let page_size = request.max_results.map_or(DEFAULT_PAGE_SIZE, |n| n as usize);
        let remaining: Vec<_> =
            rules.into_iter().filter(|r| after.as_ref().is_none_or(|a| r.ecr_repository_prefix > *a)).collect();
        let more = remaining.len() > page_size;
        let page: Vec<_> = remaining.into_iter().take(page_size).collect();
        Ok(DescribePullThroughCacheRulesResponse {
            next_token: pager.next_token(more, &page, |last| vec![last.ecr_repository_prefix.clone()]),
            pull_through_cache_rules: page.into_iter().map(|rule| self.cache_rule_shape(rule)).collect(),
        })
    }

    async fn update_pull_through_cache_rule(
        &self,
        ctx: &RequestContext,
        request: UpdatePullThroughCacheRuleRequest,
    ) -> Result<UpdatePullThroughCacheRuleResponse, EcrError> {
        self.own_registry(&request.registry_id)?;
        self.own_role(request.custom_role_arn.as_deref())?;
        let rule = self
            .registry
            .update_cache_rule(ctx, &request.ecr_repository_prefix, request.credential_arn, request.custom_role_arn)
            .await
            .map_err(self.fail(""))?;
        Ok(UpdatePullThroughCacheRuleResponse {
            ecr_repository_prefix: rule.ecr_repository_prefix,
            registry_id: self.config.registry_id.clone(),
            updated_at: Timestamp::from_millis(rule.updated_at),
            credential_arn: rule.upstream.credential_arn,
            custom_role_arn: rule.upstream.custom_role_arn,
            upstream_repository_prefix: rule.upstream.upstream_repository_prefix,
        })
    }

    async fn delete_pull_through_cache_rule(
        &self,
        _: &RequestContext,
        request: DeletePullThroughCacheRuleRequest,
    ) -> Result<DeletePullThroughCacheRuleResponse, EcrError> {
        self.own_registry(&request.registry_id)?;
        let rule = self.registry.delete_cache_rule(&request.ecr_repository_prefix).await.map_err(self.fail(""))?;
        Ok(DeletePullThroughCacheRuleResponse::deleted(self.cache_rule_shape(rule)))
    }

    async fn validate_pull_through_cache_rule(
        &self,
        ctx: &RequestContext,
        request: ValidatePullThroughCacheRuleRequest,
    ) -> Result<ValidatePullThroughCacheRuleResponse, EcrError> {
        self.own_registry(&request.registry_id)?;
        let validation =
            self.registry.validate_cache_rule(ctx, &request.ecr_repository_prefix).await.map_err(self.fail(""))?;
        let upstream = validation.rule.upstream;
        Ok(ValidatePullThroughCacheRuleResponse {
            ecr_repository_prefix: validation.rule.ecr_repository_prefix,
            registry_id: self.config.registry_id.clone(),
            upstream_registry_url: upstream.upstream_registry_url,
            credential_arn: upstream.credential_arn,
            custom_role_arn: upstream.custom_role_arn,
            upstream_repository_prefix: upstream.upstream_repository_prefix,
            is_valid: validation.failure.is_none(),
            failure: validation.failure,
        })
    }
    async fn create_repository_creation_template(
        &self,
        ctx: &RequestContext,
        request: CreateRepositoryCreationTemplateRequest,
    ) -> Result<RepositoryCreationTemplateResponse, EcrError> {
        let members = request.members;
        self.own_role(members.custom_role_arn.as_deref())?;
        let settings = TemplateSettings {
            description: members.description,
            encryption: members.encryption_configuration.map(template_encryption).transpose()?.unwrap_or_default(),
            resource_tags: resource_tags(members.resource_tags.as_deref().unwrap_or_default()),
            image_tag_mutability: stored_mutability(
                members.image_tag_mutability.unwrap_or(ImageTagMutability::Mutable),
            ),
            image_tag_mutability_exclusion_filters: stored_filters(members.image_tag_mutability_exclusion_filters),
            repository_policy: members.repository_policy,
            lifecycle_policy: members.lifecycle_policy,
            applied_for: stored_applied_for(members.applied_for.as_deref().unwrap_or_default()),
            custom_role_arn: members.custom_role_arn,
        };
        let template = self.registry.create_template(ctx, &members.prefix, settings).await.map_err(self.fail(""))?;
        Ok(self.template_response(template))
    }

    async fn describe_repository_creation_templates(
        &self,
        _: &RequestContext,
        request: DescribeRepositoryCreationTemplatesRequest,
    ) -> Result<DescribeRepositoryCreationTemplatesResponse, EcrError> {
        let templates = self.registry.templates().await.map_err(self.fail(""))?;
        let named: Option<Vec<&str>> = request
            .prefixes
            .as_ref()
            .map(|prefixes| prefixes.iter().map(|p| berth_registry::pull_through::normalize_prefix(p)).collect());
        // Named prefixes that have no template are left out, as ECR does.
        let templates: Vec<CreationTemplate> = templates
            .into_iter()
            .filter(|t| named.as_ref().is_none_or(|named| named.contains(&t.prefix.as_str())))
            .collect();
        let pager = Pager::new(Endpoint::DescribeRepositoryCreationTemplates, &self.config.registry_id);
        let after = pager.resume(request.next_token.as_deref())?.and_then(|mut key| key.pop());
        let page_size = request.max_results.map_or(DEFAULT_PAGE_SIZE, |n| n as usize);
        let remaining: Vec<_> =
            templates.into_iter().filter(|t| after.as_ref().is_none_or(|a| t.prefix > *a)).collect();
        let more = remaining.len() > page_size;
        let page: Vec<_> = remaining.into_iter().take(page_size).collect();
        Ok(DescribeRepositoryCreationTemplatesResponse {
            registry_id: self.config.registry_id.clone(),
            next_token: pager.next_token(more, &page, |last| vec![last.prefix.clone()]),
            repository_creation_templates: page.into_iter().map(template_shape).collect(),
        })
    }

    async fn update_repository_creation_template(
        &self,
        ctx: &RequestContext,
        request: UpdateRepositoryCreationTemplateRequest,
    ) -> Result<RepositoryCreationTemplateResponse, EcrError> {
        let members = request.members;
        self.own_role(members.custom_role_arn.as_deref())?;
        let filters = members.image_tag_mutability_exclusion_filters.map(|filters| stored_filters(Some(filters)));
        let update = TemplateUpdate {
            description: members.description,
            encryption: members.encryption_configuration.map(template_encryption).transpose()?,
            resource_tags: members.resource_tags.as_deref().map(resource_tags),
            image_tag_mutability: members.image_tag_mutability.map(stored_mutability),
            image_tag_mutability_exclusion_filters: filters,
            repository_policy: members.repository_policy,
            lifecycle_policy: members.lifecycle_policy,
            applied_for: members.applied_for.as_deref().map(stored_applied_for),
            custom_role_arn: members.custom_role_arn,
        };
        let template = self.registry.update_template(ctx, &members.prefix, update).await.map_err(self.fail(""))?;
        Ok(self.template_response(template))
    }

    async fn delete_repository_creation_template(
        &self,
        _: &RequestContext,
        request: DeleteRepositoryCreationTemplateRequest,
    ) -> Result<RepositoryCreationTemplateResponse, EcrError> {
        let template = self.registry.delete_template(&request.prefix).await.map_err(self.fail(""))?;
        Ok(self.template_response(template))
    }

    async fn register_pull_time_update_exclusion(
        &self,
        _: &RequestContext,
        request: PullTimeUpdateExclusionRequest,
    ) -> Result<RegisterPullTimeUpdateExclusionResponse, EcrError> {
        let created_at = self.registry.register_pull_exclusion(&request.principal_arn).await.map_err(self.fail(""))?;
        Ok(RegisterPullTimeUpdateExclusionResponse {
            principal_arn: request.principal_arn,
            created_at: Timestamp::from_millis(created_at),
        })
    }

    async fn deregister_pull_time_update_exclusion(
        &self,
        _: &RequestContext,
        request: PullTimeUpdateExclusionRequest,
    ) -> Result<DeregisterPullTimeUpdateExclusionResponse, EcrError> {
        self.registry.deregister_pull_exclusion(&request.principal_arn).await.map_err(self.fail(""))?;
        Ok(DeregisterPullTimeUpdateExclusionResponse { principal_arn: request.principal_arn })
    }

    async fn list_pull_time_update_exclusions(
        &self,
        _: &RequestContext,
        request: ListPullTimeUpdateExclusionsRequest,
    ) -> Result<ListPullTimeUpdateExclusionsResponse, EcrError> {
        let exclusions = self.registry.pull_exclusions().await.map_err(self.fail(""))?;
        let pager = Pager::new(Endpoint::ListPullTimeUpdateExclusions, &self.config.registry_id);
        let after = pager.resume(request.next_token.as_deref())?.and_then(|mut key| key.pop());
        let page_size = request.max_results.map_or(DEFAULT_PAGE_SIZE, |n| n as usize);
        let remaining: Vec<String> =
            exclusions.into_iter().map(|(arn, _)| arn).filter(|arn| after.as_ref().is_none_or(|a| arn > a)).collect();
        let more = remaining.len() > page_size;
        let page: Vec<String> = remaining.into_iter().take(page_size).collect();
        Ok(ListPullTimeUpdateExclusionsResponse {
            next_token: pager.next_token(more, &page, |last| vec![last.clone()]),
            pull_time_update_exclusions: page,
        })
    }
}

/// A template in ECR's shape.
fn template_shape(template: CreationTemplate) -> RepositoryCreationTemplate {
    let settings = template.settings;
    let filters = &settings.image_tag_mutability_exclusion_filters;
    RepositoryCreationTemplate {
        prefix: template.prefix,
        description: settings.description,
        encryption_configuration: wire_encryption(&settings.encryption),
        resource_tags: settings
            .resource_tags
            .iter()
            .map(|t| Tag { key: t.key.clone(), value: t.value.clone() })
            .collect(),
        image_tag_mutability: wire_mutability(settings.image_tag_mutability),
        image_tag_mutability_exclusion_filters: (!filters.is_empty())
            .then(|| filters.iter().map(wire_filter).collect()),
        repository_policy: settings.repository_policy,
        lifecycle_policy: settings.lifecycle_policy,
        applied_for: settings.applied_for.into_iter().map(wire_applied_for).collect(),
        custom_role_arn: settings.custom_role_arn,
        created_at: Timestamp::from_millis(template.created_at),
        updated_at: Timestamp::from_millis(template.updated_at),
    }
}

impl RegistryBackend {
    fn template_response(&self, template: CreationTemplate) -> RepositoryCreationTemplateResponse {
        RepositoryCreationTemplateResponse {
            registry_id: self.config.registry_id.clone(),
            repository_creation_template: template_shape(template),
        }
    }

    /// Registry-wide configuration exists for this registry only; another `registryId` is refused.
    fn own_registry(&self, registry_id: &Option<String>) -> Result<(), EcrError> {
        match registry_id {
            Some(id) if *id != self.config.registry_id => Err(EcrError::InvalidParameter(format!(
                "Invalid parameter: registryId '{id}' is not this registry ({})",
                self.config.registry_id
            ))),
            _ => Ok(()),
        }
    }

    /// A `customRoleArn` (cache rule or creation template) names an IAM role of this registry's
    /// account (`arn:aws:iam::<registry id>:role/<name>`), as ECR requires; empty clears it on an
    /// update.
    fn own_role(&self, arn: Option<&str>) -> Result<(), EcrError> {
        let Some(arn) = arn.filter(|arn| !arn.is_empty()) else { return Ok(()) };
        let own = format!("arn:aws:iam::{}:role/", self.config.registry_id);
        match arn.strip_prefix(&own) {
            Some(name) if !name.is_empty() => Ok(()),
            _ => Err(EcrError::invalid_parameter(
                "customRoleArn",
                &format!("the role must be an IAM role of this registry's account: {own}<name>"),
            )),
        }
    }

    fn cache_rule_shape(&self, rule: CacheRule) -> PullThroughCacheRule {
        let upstream = rule.upstream;
        // ECR names the upstream from its URL when the rule was created without the name.
        let upstream_registry = upstream
            .upstream_registry
            .or_else(|| UpstreamRegistry::of_url(&upstream.upstream_registry_url).map(|r| r.as_str().to_owned()));
        PullThroughCacheRule {
            ecr_repository_prefix: rule.ecr_repository_prefix,
            upstream_registry_url: upstream.upstream_registry_url,
            created_at: Timestamp::from_millis(rule.created_at),
            registry_id: self.config.registry_id.clone(),
            credential_arn: upstream.credential_arn,
            custom_role_arn: upstream.custom_role_arn,
            upstream_repository_prefix: upstream.upstream_repository_prefix,
            upstream_registry,
            updated_at: Timestamp::from_millis(rule.updated_at),
        }
    }
}

/// The stored replication configuration in ECR's shape.
fn replication_to_wire(stored: replication::ReplicationConfiguration) -> ReplicationConfiguration {
    let rules = stored
        .rules
        .into_iter()
        .map(|rule| ReplicationRule {
            destinations: rule
                .destinations
                .into_iter()
                .map(|d| ReplicationDestination { region: d.region, registry_id: d.registry_id })
                .collect(),
            repository_filters: (!rule.repository_prefixes.is_empty()).then(|| {
                rule.repository_prefixes
                    .into_iter()
                    .map(|filter| RepositoryFilter { filter, filter_type: RepositoryFilterType::PrefixMatch })
                    .collect()
            }),
            delete_replication: None,
        })
        .collect();
    ReplicationConfiguration { rules }
}
