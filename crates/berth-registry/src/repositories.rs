//! Repositories as the ECR API manages them: explicit creation with settings, listing, deletion
//! (with `force`), tag mutability and resource tags.

use berth_iam::RequestContext;
use berth_meta::{MetaError, Millis, Repository, SettingsUpdate};
use berth_spec::RepositoryName;

use crate::settings::{MAX_RESOURCE_TAGS, ResourceTag, TagMutability, TagMutabilityFilter};
use crate::{Registry, RegistryError, RepositorySettings, Result, now_millis};

/// How often a settings change is applied before giving up on a document that other servers keep
/// changing meanwhile.
const SETTINGS_ATTEMPTS: usize = 8;

/// A repository with its settings parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub name: RepositoryName,
    pub created_at: Millis,
    pub settings: RepositorySettings,
    /// The version of `settings`, which a push's write checks is still current.
    pub settings_version: i64,
}

impl TryFrom<Repository> for RepositoryInfo {
    type Error = RegistryError;

    fn try_from(repository: Repository) -> Result<Self> {
        let name = repository
            .name
            .parse()
            .map_err(|e| RegistryError::Internal(format!("stored repository name {:?}: {e}", repository.name)))?;
        let settings = RepositorySettings::from_json(&repository.settings).map_err(|e| {
            RegistryError::SettingsUnreadable { repository: repository.name.clone(), reason: e.to_string() }
        })?;
        Ok(RepositoryInfo {
            name,
            created_at: repository.created_at,
            settings,
            settings_version: repository.settings_version,
        })
    }
}

impl Registry {
    /// Creates a repository; `RepositoryExists` if it is there already.
    pub async fn create_repository(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        settings: &RepositorySettings,
    ) -> Result<RepositoryInfo> {
        self.meta.create_repository(&self.origin(ctx), name, &settings.to_json(), now_millis()).await?.try_into()
    }

    pub async fn describe_repository(&self, name: &RepositoryName) -> Result<RepositoryInfo> {
        self.repository(name).await?.try_into()
    }

    /// Repositories sorted by name, strictly after `after`, at most `limit` (and whether more remain).
    pub async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<(Vec<RepositoryInfo>, bool)> {
        let mut repos = self.meta.list_repositories(after, limit.saturating_add(1)).await?;
        let more = repos.len() > limit;
        repos.truncate(limit);
        let repos = repos.into_iter().map(RepositoryInfo::try_from).collect::<Result<_>>()?;
        Ok((repos, more))
    }

    /// Deletes a repository; with `force` also its images, otherwise `RepositoryNotEmpty` while it
    /// has any. Blob data stays for garbage collection (other repositories may share it).
    pub async fn delete_repository(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        force: bool,
    ) -> Result<RepositoryInfo> {
        // Read first: the answer describes the repository, and settings that cannot be read
        // refuse the deletion before anything changed.
        self.describe_repository(name).await?;
        // Its upload sessions go with it (their rows by cascade): listed first, ended after.
        let uploads = self.meta.repository_uploads(name.as_str()).await?;
        let deleted = self.meta.delete_repository(&self.origin(ctx), name, force).await;
        self.manifests.invalidate_repo(name);
        self.authorizer.invalidate(name);
        let deleted = deleted?;
        self.end_uploads(name, uploads.into_iter().map(|session| session.id).collect());
        deleted.try_into()
    }

    /// Sets the tag mutability mode (and its exclusion filters); it applies to pushes on both planes.
    pub async fn set_tag_mutability(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        mutability: TagMutability,
        exclusion_filters: Vec<TagMutabilityFilter>,
    ) -> Result<RepositoryInfo> {
        self.update_settings(ctx, name, |settings| {
            settings.image_tag_mutability = mutability;
            settings.image_tag_mutability_exclusion_filters = exclusion_filters.clone();
            Ok(())
        })
        .await
    }

    /// Records whether images pushed to the repository are to be scanned (Berth runs no scanner;
    /// the setting is kept so ECR clients read back what they set).
    pub async fn set_scan_on_push(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        scan_on_push: bool,
    ) -> Result<RepositoryInfo> {
        self.update_settings(ctx, name, |settings| {
            settings.scan_on_push = scan_on_push;
            Ok(())
        })
        .await
    }

    /// Adds or overwrites resource tags; `TooManyTags` if the repository would exceed the limit.
    pub async fn tag_repository(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        tags: &[ResourceTag],
    ) -> Result<RepositoryInfo> {
        self.update_settings(ctx, name, |settings| {
            if settings.merge_resource_tags(tags) {
                Ok(())
            } else {
                Err(RegistryError::TooManyTags { limit: MAX_RESOURCE_TAGS })
            }
        })
        .await
    }

    pub async fn untag_repository(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        keys: &[String],
    ) -> Result<RepositoryInfo> {
        self.update_settings(ctx, name, |settings| {
            settings.remove_resource_tags(keys);
            Ok(())
        })
        .await
    }

    /// Read-modify-write of a settings document by compare-and-set: when another server wrote
    /// the document in between, it is read again and `change` applied anew (a bounded number of
    /// times), so no concurrent change is lost. Writes nothing when `change` changes nothing.
    pub(crate) async fn update_settings(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        mut change: impl FnMut(&mut RepositorySettings) -> Result<()>,
    ) -> Result<RepositoryInfo> {
        // Writers in this process take turns; the compare-and-set orders them against other servers.
        let _guard = self.settings_writes.lock().await;
        let origin = self.origin(ctx);
        for attempt in 0..SETTINGS_ATTEMPTS {
            if attempt > 0 {
                // Two servers retrying in lockstep could keep beating each other: back off a
                // random, growing while (a UUID's random bits are the jitter).
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 10 + 1;
                tokio::time::sleep(std::time::Duration::from_millis(jitter * attempt as u64)).await;
            }
            let repository = self.repository(name).await?;
            let expected_version = repository.settings_version;
            let mut info = RepositoryInfo::try_from(repository)?;
            let before = info.settings.clone();
            change(&mut info.settings)?;
            let changed = before.changed_fields(&info.settings);
            if changed.is_empty() {
                return Ok(info);
            }
            let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
            let settings = info.settings.to_json();
            let update = SettingsUpdate { settings: &settings, expected_version, changed: &changed };
            let written = self.meta.set_repository_settings(&origin, name, update).await;
            self.authorizer.invalidate(name);
            match written {
                Ok(_) => return Ok(info),
                Err(MetaError::SettingsConflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Internal(format!("the settings of repository {name} kept changing under this update")))
    }
}
