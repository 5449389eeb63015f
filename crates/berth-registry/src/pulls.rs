//! Pull times for ECR's `lastRecordedPullTime`, buffered in memory so the pull path never writes
//! to the database; `Registry::maintain` flushes them in one batch.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_meta::Millis;
use berth_spec::{Digest, RepositoryName};

#[derive(Default)]
pub(crate) struct PullRecorder {
    pending: Mutex<HashMap<(RepositoryName, Digest), Millis>>,
}

impl PullRecorder {
    pub(crate) fn record(&self, repo: &RepositoryName, digest: &Digest, at: Millis) {
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
}
