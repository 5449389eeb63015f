//! Repositories as the ECR API manages them: explicit creation with settings, listing, deletion
//! (with `force`), tag mutability and resource tags.

use berth_iam::RequestContext;
use berth_meta::{Millis, Repository};
use berth_spec::RepositoryName;

use crate::settings::{MAX_RESOURCE_TAGS, ResourceTag, TagMutability, TagMutabilityFilter};
use crate::{Registry, RegistryError, RepositorySettings, Result, now_millis};

/// A repository with its settings parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub name: RepositoryName,
    pub created_at: Millis,
    pub settings: RepositorySettings,
}

impl TryFrom<Repository> for RepositoryInfo {
    type Error = RegistryError;

    fn try_from(repository: Repository) -> Result<Self> {
        let name = repository
            .name
            .parse()
            .map_err(|e| RegistryError::Internal(format!("stored repository name {:?}: {e}", repository.name)))?;
        Ok(RepositoryInfo {
            name,
            created_at: repository.created_at,
            settings: RepositorySettings::from_json(&repository.settings),
        })
    }
}

impl Registry {
    /// Creates a repository; `RepositoryExists` if it is there already.
    pub async fn create_repository(
        &self,
        _ctx: &RequestContext,
        name: &RepositoryName,
        settings: &RepositorySettings,
    ) -> Result<RepositoryInfo> {
        self.meta.create_repository(name, &settings.to_json(), now_millis()).await?.try_into()
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
        _ctx: &RequestContext,
        name: &RepositoryName,
        force: bool,
    ) -> Result<RepositoryInfo> {
        let deleted = self.meta.delete_repository(name, force).await;
        self.manifests.invalidate_repo(name);
        self.authorizer.invalidate(name);
        deleted?.try_into()
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
            settings.image_tag_mutability_exclusion_filters = exclusion_filters;
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

    /// Read-modify-write of a settings document. The metadata store has no compare-and-set, so
    /// concurrent updates are serialised in this process; two servers sharing one database could
    /// still interleave (the later write wins).
    pub(crate) async fn update_settings(
        &self,
        _ctx: &RequestContext,
        name: &RepositoryName,
        change: impl FnOnce(&mut RepositorySettings) -> Result<()>,
    ) -> Result<RepositoryInfo> {
        let _guard = self.settings_writes.lock().await;
        let mut info = self.describe_repository(name).await?;
        change(&mut info.settings)?;
        let written = self.meta.set_repository_settings(name, &info.settings.to_json()).await;
        self.authorizer.invalidate(name);
        written?;
        Ok(info)
    }
}
