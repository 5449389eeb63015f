//! Pull times for ECR's `lastRecordedPullTime`, buffered in memory so the pull path never writes
//! to the database; `Registry::maintain` flushes them in one batch.
//!
//! Pulls by principals with a pull-time update exclusion (`RegisterPullTimeUpdateExclusion`) are
//! not recorded. The pull path checks an in-memory copy of the exclusions, replaced by every
//! change made through this server and re-read at every flush, so another server's change
//! applies within one flush interval.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use berth_iam::RequestContext;
use berth_meta::{MetaError, Millis};
use berth_spec::{Digest, RepositoryName};

use crate::{Registry, RegistryError, Result, now_millis};

#[derive(Default)]
pub(crate) struct PullRecorder {
    pending: Mutex<HashMap<(RepositoryName, Digest), Millis>>,
    excluded: RwLock<HashSet<String>>,
}

impl PullRecorder {
    /// Records a pull unless `principal_arn` is excluded.
    pub(crate) fn record(&self, repo: &RepositoryName, digest: &Digest, at: Millis, principal_arn: &str) {
        if self.excluded.read().unwrap_or_else(|p| p.into_inner()).contains(principal_arn) {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.insert((repo.clone(), digest.clone()), at);
    }

    /// A pull recorded since the last flush, so reads can show it before it is written.
    pub(crate) fn pending(&self, repo: &RepositoryName, digest: &Digest) -> Option<Millis> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.get(&(repo.clone(), digest.clone())).copied()
    }

    pub(crate) fn drain(&self) -> Vec<(RepositoryName, Digest, Millis)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.drain().map(|((r, d), t)| (r, d, t)).collect()
    }

    fn set_excluded(&self, principals: impl IntoIterator<Item = String>) {
        *self.excluded.write().unwrap_or_else(|p| p.into_inner()) = principals.into_iter().collect();
    }
}

/// Why a pull-time update exclusion request failed; each plane maps it once.
#[derive(Debug, thiserror::Error)]
pub enum ExclusionError {
    #[error("A pull time update exclusion for the principal '{0}' already exists")]
    Exists(String),
    #[error("There is no pull time update exclusion for the principal '{0}'")]
    NotFound(String),
}

fn meta_error(e: MetaError) -> RegistryError {
    match e {
        MetaError::ExclusionExists(arn) => ExclusionError::Exists(arn).into(),
        MetaError::ExclusionNotFound(arn) => ExclusionError::NotFound(arn).into(),
        other => other.into(),
    }
}

impl Registry {
    /// Marks the image pulled by the caller (unless the caller is excluded).
    pub(crate) fn record_pull(&self, ctx: &RequestContext, repo: &RepositoryName, digest: &Digest) {
        let principal = ctx.identity.arn(&self.config.account_id);
        self.pulls.record(repo, digest, now_millis(), &principal);
    }

    /// Marks the images answered to a BatchGetImage as pulled by the caller (see
    /// [`Registry::resolve_images`]).
    pub fn record_pulls<'a>(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        digests: impl IntoIterator<Item = &'a Digest>,
    ) {
        for digest in digests {
            self.record_pull(ctx, repo, digest);
        }
    }

    /// Re-reads the exclusions (each flush, so other servers' changes apply here too).
    pub(crate) async fn refresh_pull_exclusions(&self) -> Result<()> {
        let exclusions = self.meta.pull_exclusions().await?;
        self.pulls.set_excluded(exclusions.into_iter().map(|(arn, _)| arn));
        Ok(())
    }

    /// `RegisterPullTimeUpdateExclusion`: returns when it was registered.
    pub async fn register_pull_exclusion(&self, principal_arn: &str) -> Result<Millis> {
        let created = self.meta.register_pull_exclusion(principal_arn, now_millis()).await.map_err(meta_error)?;
        self.refresh_pull_exclusions().await?;
        Ok(created)
    }

    /// `DeregisterPullTimeUpdateExclusion`.
    pub async fn deregister_pull_exclusion(&self, principal_arn: &str) -> Result<()> {
        self.meta.deregister_pull_exclusion(principal_arn).await.map_err(meta_error)?;
        self.refresh_pull_exclusions().await
    }

    /// `ListPullTimeUpdateExclusions`: the principal ARNs with their registration times, sorted.
    pub async fn pull_exclusions(&self) -> Result<Vec<(String, Millis)>> {
        Ok(self.meta.pull_exclusions().await?)
    }
}
