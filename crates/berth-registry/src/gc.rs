//! Online garbage collection: reclaims blob data that no repository links, while the registry
//! keeps serving pushes and pulls (ARCHITECTURE.md, "Garbage collection").
//!
//! One pass:
//! 1. releases links no manifest of their repository needs, once untouched for the grace period;
//! 2. lists storage and notes every blob without a link as a candidate (first sighting);
//! 3. deletes candidates first seen more than the grace period ago and still unlinked, each
//!    between `begin_blob_deletion` and `finish_blob_deletion`.
//!
//! A push reaching `commit` first ends the blob's candidacy ([`Registry::keep_from_collection`]),
//! waiting while a deletion is under way, so it never relies on data about to vanish.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_meta::Millis;
use berth_spec::Digest;
use futures::TryStreamExt;

use crate::{Registry, RegistryError, Result, now_millis};

/// Blobs checked against the metadata per call.
const BATCH: usize = 256;

/// A deletion begun this long ago is presumed dead (its GC crashed between marking the blob and
/// deleting it) and is redone. Far longer than one storage delete takes.
const STALLED_DELETION: Duration = Duration::from_secs(15 * 60);

/// How long a push waits for a deletion of the blob it is linking to finish.
const DELETION_WAIT: Duration = Duration::from_secs(30);

/// What a pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Links released (no manifest of the repository needs them, untouched for the grace period).
    pub links_released: u64,
    pub blobs_deleted: u64,
    pub bytes_deleted: u64,
    /// Blobs without a link still in their grace period (collected by a later pass).
    pub blobs_waiting: u64,
    pub bytes_waiting: u64,
}

impl Registry {
    /// One garbage-collection pass with `grace` (how long a link or blob must stay unused before
    /// it goes). `dry_run` changes nothing and reports what a pass would reclaim now.
    pub async fn collect_garbage(&self, grace: Duration, dry_run: bool) -> Result<GcReport> {
        let started = std::time::Instant::now();
        let outcome = self.gc_pass(grace, dry_run).await;
        if !dry_run {
            crate::status::record_run("gc", started, &outcome, |report| report.blobs_deleted);
            self.status.record(|status| status.last_gc = Some(crate::status::finished(&outcome)));
        }
        outcome
    }

    async fn gc_pass(&self, grace: Duration, dry_run: bool) -> Result<GcReport> {
        let millis = |d: Duration| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX);
        let now = now_millis();
        let before = now.saturating_sub(millis(grace));
        let stalled_before = now.saturating_sub(millis(STALLED_DELETION));
        let mut report = GcReport {
            links_released: self.meta.release_unreferenced_links(before, now, dry_run).await?,
            ..GcReport::default()
        };

        let mut unlinked: HashMap<Digest, u64> = HashMap::new();
        let mut listing = self.blobs.list_blobs();
        let mut batch: Vec<(Digest, u64)> = Vec::with_capacity(BATCH);
        loop {
            let next = listing.try_next().await?;
            let done = next.is_none();
            if let Some(blob) = next {
                batch.push(blob);
                if batch.len() < BATCH {
                    continue;
                }
            }
            let digests: Vec<Digest> = batch.iter().map(|(d, _)| d.clone()).collect();
            // A fresh time per batch: a candidate's grace period starts when it was really seen.
            let found = self.meta.note_unlinked_blobs(&digests, now_millis(), dry_run).await?;
            let sizes: HashMap<Digest, u64> = batch.drain(..).collect();
            unlinked.extend(found.into_iter().map(|d| {
                let size = sizes.get(&d).copied().unwrap_or(0);
                (d, size)
            }));
            if done {
                break;
            }
        }

        for digest in self.meta.due_blob_candidates(before, stalled_before).await? {
            let size = if dry_run {
                match unlinked.remove(&digest) {
                    Some(size) => size,
                    None => continue,
                }
            } else {
                match self.delete_candidate(&digest, before, stalled_before).await? {
                    Some(size) => size,
                    None => continue,
                }
            };
            unlinked.remove(&digest);
            report.blobs_deleted += 1;
            report.bytes_deleted += size;
        }
        report.blobs_waiting = unlinked.len() as u64;
        report.bytes_waiting = unlinked.values().sum();
        Ok(report)
    }

    /// Deletes a due candidate's data; its size if this pass deleted it. From the mark to its
    /// removal on a task of its own ([`Registry::finish_blob_deletions`] waits for it): a pass
    /// stopped half-way (a server stopping, `berth gc` interrupted) left the blob marked, and
    /// every push of it waited 30 s and failed until the mark was presumed stalled, 15 min later.
    async fn delete_candidate(&self, digest: &Digest, before: Millis, stalled_before: Millis) -> Result<Option<u64>> {
        let this = self.arc();
        let digest = digest.clone();
        let deletion = self.blob_deletions.spawn(async move {
            let started = now_millis();
            if !this.meta.begin_blob_deletion(&digest, before, stalled_before, started).await? {
                return Ok(None);
            }
            let deleted = async {
                let size = this.blobs.stat(&digest).await?;
                this.blobs.delete(&digest).await?;
                Ok::<_, RegistryError>(size)
            }
            .await;
            // Even after a failed delete: the blob is still unlinked, so a later pass finds it
            // again, and pushes waiting for this deletion can go on.
            this.meta.finish_blob_deletion(&digest, started).await?;
            let size = deleted?;
            tracing::info!(%digest, size, "garbage-collected blob");
            Ok(Some(size.unwrap_or(0)))
        });
        deletion.await.map_err(|e| RegistryError::Internal(format!("blob deletion task failed: {e}")))?
    }

    /// Waits for the blob deletions under way to end: for a stopping process, after its passes
    /// were stopped, so it leaves no blob marked as being deleted.
    pub async fn finish_blob_deletions(&self) {
        self.blob_deletions.close();
        self.blob_deletions.wait().await;
    }

    /// Called by a push right before it commits or links `digest`: ends the blob's candidacy, so
    /// GC will not delete data the push is about to reference. While a GC deletes the data right
    /// now, waits for it to finish: the push then writes the data anew.
    pub(crate) async fn keep_from_collection(&self, digest: &Digest) -> Result<()> {
        let deadline = Instant::now() + DELETION_WAIT;
        while !self.meta.cancel_blob_collection(digest).await? {
            if Instant::now() >= deadline {
                return Err(RegistryError::Internal(format!(
                    "blob {digest} is being garbage-collected and the deletion did not finish; retry the upload"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}
