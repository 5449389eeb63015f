//! The pull-through cache's data path: a pull of a repository a cache rule covers that misses
//! (or finds a tag due for its upstream check) is answered from the rule's upstream while the
//! content is stored.
//!
//! - **One fill per key.** Manifests are resolved under a lock per repository and reference, so
//!   concurrent pulls wait for the first one's answer and then find it stored; blobs have one
//!   [`BlobFill`] per digest, which every concurrent pull joins.
//! - **Fills outlive their clients.** Both run on tasks of their own ([`Registry::detached`],
//!   `tokio::spawn`): a client that goes away stops receiving, never the fill others wait on.
//! - **Nothing unverified is stored or served whole.** Manifests are stored only after their bytes
//!   hashed to the upstream digest (berth-remote checks). A blob streams to the clients that joined
//!   before its first byte (tees) while it is written to a staged upload, one piece behind the
//!   store; the last piece is released only after the digest matched and the blob was committed
//!   and linked. A lying upstream ends every tee with an error before its last byte and stores
//!   nothing. Clients that join later, or ask for a range, get the stored blob once committed.
//! - **Indexes are stored whole** (sparse: children and blobs may be absent); each child is
//!   fetched in the background at once (as ECR caches an index's every image), or fills when a
//!   client pulls it first, and then becomes a protected child of the index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_iam::{RequestContext, actions};
use berth_meta::{ManifestRecord, UploadSession};
use berth_remote::FetchedManifest;
use berth_spec::manifest::TypeNames;
use berth_spec::{ByteRange, Digest, Manifest, Reference, RepositoryName, Tag};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::blobs::BlobBody;
use crate::cache_stats::Served;
use crate::manifests::PushedManifest;
use crate::pull_through::{CachedRepository, PullThroughError, UpstreamTrouble};
use crate::templates::AppliedFor;
use crate::{Registry, RegistryError, RepositoryInfo, Result, now_millis};

/// The task name of a prefetch's requests (`RequestContext::server`).
const PREFETCH_TASK: &str = "pull-through-prefetch";
/// How long after an index is stored its platforms are prefetched (see `prefetch_children`).
const PREFETCH_DELAY: Duration = Duration::from_secs(5);
/// The most images one index's prefetch fetches (a platform each; real indexes have a dozen).
const PREFETCH_CHILDREN: usize = 64;
/// A tee whose client takes no piece for this long is dropped, so one stalled client cannot
/// hold up the fill everyone else waits on.
const TEE_STALL: Duration = Duration::from_secs(30);
/// Pieces buffered per tee.
const TEE_BUFFER: usize = 16;
/// After a failed upstream check of a cached tag, the next is tried no sooner than this.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// How long a cached tag's re-check waits for the upstream before the cached manifest is
/// served: a pull must not take the client's whole timeout because the upstream hangs.
const RECHECK_WAIT: Duration = Duration::from_secs(5);

type ManifestKey = (String, String);

/// The lock a reference's resolutions take turns on, holding how the last one failed.
type ManifestLock = Arc<tokio::sync::Mutex<Option<FailedResolution>>>;

/// An upstream failure to resolve a reference, shared with the pulls that waited for it: each
/// asking the upstream again in turn made the k-th of k concurrent pulls wait k timeouts.
struct FailedResolution {
    at: Instant,
    /// `None`: the upstream has no such manifest.
    not_cached: Option<(UpstreamTrouble, String)>,
    reference: String,
}

impl FailedResolution {
    /// What of `error` is the upstream's answer for every caller (a denial is the caller's own).
    fn of(error: &RegistryError) -> Option<FailedResolution> {
        let at = Instant::now();
        match error {
            RegistryError::ManifestUnknown(reference) => {
                Some(FailedResolution { at, not_cached: None, reference: reference.clone() })
            }
            RegistryError::PullThrough(PullThroughError::ManifestNotCached { trouble, message }) => {
                Some(FailedResolution { at, not_cached: Some((*trouble, message.clone())), reference: String::new() })
            }
            _ => None,
        }
    }

    fn error(&self) -> RegistryError {
        match &self.not_cached {
            None => RegistryError::ManifestUnknown(self.reference.clone()),
            Some((trouble, message)) => {
                PullThroughError::ManifestNotCached { trouble: *trouble, message: message.clone() }.into()
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Fills {
    /// One lock per (repository, reference) being resolved upstream.
    manifests: Mutex<HashMap<ManifestKey, ManifestLock>>,
    blobs: Mutex<HashMap<Digest, Arc<BlobFill>>>,
    /// When each cached tag is next checked upstream.
    tag_checks: Mutex<HashMap<ManifestKey, Instant>>,
}

fn key(repo: &RepositoryName, reference: &Reference) -> ManifestKey {
    (repo.to_string(), reference.to_string())
}

impl Fills {
    fn manifest_lock(&self, key: &ManifestKey) -> ManifestLock {
        self.manifests.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone()
    }

    /// Forgets the reference's lock once no other pull holds or waits for it (their clones are
    /// taken under the map's lock, so none can arrive in between): a pull arriving while others
    /// wait queues with them, not on a new lock of its own that would ask the upstream at once.
    fn release_manifest_lock(&self, key: &ManifestKey, lock: &ManifestLock) {
        let mut locks = self.manifests.lock().unwrap_or_else(|e| e.into_inner());
        // Two: the map's and the caller's.
        if locks.get(key).is_some_and(|held| Arc::ptr_eq(held, lock)) && Arc::strong_count(lock) == 2 {
            locks.remove(key);
        }
    }

    /// Whether the reference may be served from the cache without asking the upstream: always
    /// for a digest (content never changes), for a tag until its check is due.
    fn fresh(&self, key: &ManifestKey, reference: &Reference) -> bool {
        match reference {
            Reference::Digest(_) => true,
            Reference::Tag(_) => self
                .tag_checks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .is_some_and(|due| Instant::now() < *due),
        }
    }

    fn checked(&self, key: ManifestKey, next_after: Duration) {
        self.tag_checks.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Instant::now() + next_after);
    }

    /// The fill of `digest` in progress, or a new one (`true`: the caller must start it).
    fn blob_fill(&self, digest: &Digest) -> (Arc<BlobFill>, bool) {
        let mut fills = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        match fills.get(digest) {
            Some(fill) => (fill.clone(), false),
            None => {
                let fill = Arc::new(BlobFill::new());
                fills.insert(digest.clone(), fill.clone());
                (fill, true)
            }
        }
    }

    fn blob_fill_done(&self, digest: &Digest) {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner()).remove(digest);
    }
}

/// Why a blob fill failed, as every client that waited on it is told.
#[derive(Debug, Clone)]
enum FillError {
    /// The upstream does not have it.
    NotFound(Digest),
    NotCached(String),
    Other(String),
}

impl From<FillError> for RegistryError {
    fn from(e: FillError) -> RegistryError {
        match e {
            FillError::NotFound(digest) => RegistryError::BlobUnknown(digest),
            FillError::NotCached(message) => PullThroughError::BlobNotCached(message).into(),
            FillError::Other(message) => RegistryError::Internal(message),
        }
    }
}

#[derive(Debug, Clone)]
enum Phase {
    /// Asking the upstream.
    Connecting,
    /// Bytes are arriving; `size` from the upstream's `Content-Length`.
    Streaming { size: Option<u64> },
    /// Stored and linked (`Ok`), or failed.
    Done(Result<(), FillError>),
}

type TeeSender = mpsc::Sender<std::io::Result<Bytes>>;

/// One blob being fetched from upstream and stored, with the clients it streams to.
struct BlobFill {
    phase: watch::Sender<Phase>,
    tees: Mutex<Tees>,
    /// What made the upstream's stream fail, for the clients' answer.
    upstream_error: Mutex<Option<berth_remote::Error>>,
}

#[derive(Default)]
struct Tees {
    /// Set when the first byte arrived: from then on a client can no longer join at byte 0.
    started: bool,
    senders: Vec<TeeSender>,
    /// The piece held back until the blob is verified and committed.
    last: Option<Bytes>,
}

impl BlobFill {
    fn new() -> BlobFill {
        BlobFill {
            phase: watch::Sender::new(Phase::Connecting),
            tees: Mutex::default(),
            upstream_error: Mutex::default(),
        }
    }

    fn tees(&self) -> std::sync::MutexGuard<'_, Tees> {
        self.tees.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream of the blob from its first byte, if no byte has arrived yet.
    fn join_at_start(&self) -> Option<mpsc::Receiver<std::io::Result<Bytes>>> {
        let mut tees = self.tees();
        if tees.started {
            return None;
        }
        let (sender, receiver) = mpsc::channel(TEE_BUFFER);
        tees.senders.push(sender);
        Some(receiver)
    }

    /// Sends a piece to every tee; drops tees whose client is gone or stalled.
    async fn forward(&self, piece: Bytes) {
        let senders = self.tees().senders.clone();
        for sender in senders {
            if sender.send_timeout(Ok(piece.clone()), TEE_STALL).await.is_err() {
                self.tees().senders.retain(|s| !s.same_channel(&sender));
            }
        }
    }

    /// Ends every tee: with the held-back last piece when the blob is stored, else with an error.
    async fn end_tees(&self, stored: bool) {
        let (senders, last) = {
            let mut tees = self.tees();
            (std::mem::take(&mut tees.senders), tees.last.take())
        };
        for sender in senders {
            let end = match (&last, stored) {
                (Some(piece), true) => Ok(piece.clone()),
                (None, true) => continue,
                (_, false) => Err(std::io::Error::other("the upstream blob could not be stored; it was not served")),
            };
            // A client that is gone or stalled misses its end; its connection is closed either way.
            let _ = sender.send_timeout(end, TEE_STALL).await;
        }
    }
}

/// The upstream's stream as the store's append reads it: each piece goes to the tees when the
/// next one has arrived (so they never run ahead of the store), the last one is kept back.
fn teed(upstream: berth_remote::BlobStream, fill: Arc<BlobFill>) -> berth_storage::ByteStream {
    futures::stream::unfold(Some((upstream, None::<Bytes>, fill)), |state| async move {
        let (mut upstream, held, fill) = state?;
        match upstream.next().await {
            Some(Ok(piece)) => {
                fill.tees().started = true;
                if let Some(previous) = held {
                    fill.forward(previous).await;
                }
                Some((Ok(piece.clone()), Some((upstream, Some(piece), fill))))
            }
            Some(Err(e)) => {
                let message = e.to_string();
                *fill.upstream_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                Some((Err(std::io::Error::other(message)), None))
            }
            None => {
                fill.tees().last = held;
                None
            }
        }
    })
    .boxed()
}

impl Registry {
    /// `GET`/`HEAD /v2/<name>/manifests/<reference>` with the pull-through cache: a repository
    /// no rule covers is read as stored.
    /// An archived image is refused (`ImageArchived`), as ECR refuses its pulls.
    pub async fn pull_manifest(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        reference: &Reference,
        record_pull: bool,
    ) -> Result<Arc<ManifestRecord>> {
        let manifest = self.pull_manifest_of_any_class(ctx, repo, reference).await?;
        crate::archive::refuse_archived(&reference.to_string(), manifest.storage_class)?;
        if record_pull {
            self.record_pull(ctx, repo, &manifest.digest);
        }
        Ok(manifest)
    }

    /// [`Registry::pull_manifest`] without the archive check or a recorded pull: what the
    /// replicator reads, so a cache repository's image goes out whole (children it never served
    /// fetched now, as ECR holds an index's every image).
    pub(crate) async fn pull_manifest_of_any_class(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Arc<ManifestRecord>> {
        let Some(cached) = self.cached_repository(repo).await? else {
            return self.get_manifest(repo, reference, None).await;
        };
        let key = key(repo, reference);
        let manifest = match self.stored_manifest(repo, reference).await? {
            Some(stored) if self.pull_through.fills.fresh(&key, reference) => {
                self.pull_through.stats.served(&cached.rule.ecr_repository_prefix, Served::Cache { bytes: 0 });
                stored
            }
            _ => {
                let (ctx, repo, reference) = (ctx.clone(), repo.clone(), reference.clone());
                self.detached(move |registry| async move {
                    let asked_at = Instant::now();
                    let lock = registry.pull_through.fills.manifest_lock(&key);
                    let mut last_failure = lock.lock().await;
                    // The upstream failed the resolution this pull waited for: its answer too, for a
                    // caller who may import (one who may not is told so by `resolve_manifest`).
                    let shared = last_failure.as_ref().filter(|failed| failed.at >= asked_at).map(|f| f.error());
                    let shared = match shared {
                        Some(error) => registry.authorize_import(&ctx, &repo).await.ok().map(|()| error),
                        None => None,
                    };
                    let result = match shared {
                        Some(error) => {
                            let prefix = &cached.rule.ecr_repository_prefix;
                            registry.pull_through.stats.served(prefix, Served::Upstream { bytes: 0 });
                            Err(error)
                        }
                        None => {
                            let result = registry.resolve_manifest(&ctx, &cached, &repo, &reference).await;
                            *last_failure = result.as_ref().err().and_then(FailedResolution::of);
                            result
                        }
                    };
                    drop(last_failure);
                    registry.pull_through.fills.release_manifest_lock(&key, &lock);
                    result
                })
                .await?
            }
        };
        Ok(manifest)
    }

    pub(crate) async fn stored_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<Arc<ManifestRecord>>> {
        match self.get_manifest(repo, reference, None).await {
            Ok(manifest) => Ok(Some(manifest)),
            Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Under the reference's lock: what is stored if still fresh (another pull just resolved
    /// it), else what the upstream says, stored.
    async fn resolve_manifest(
        &self,
        ctx: &RequestContext,
        cached: &CachedRepository,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Arc<ManifestRecord>> {
        let prefix = cached.rule.ecr_repository_prefix.as_str();
        let key = key(repo, reference);
        let stored = self.stored_manifest(repo, reference).await?;
        if let Some(stored) = &stored
            && self.pull_through.fills.fresh(&key, reference)
        {
            self.pull_through.stats.served(prefix, Served::Cache { bytes: 0 });
            return Ok(stored.clone());
        }
        // Asking the upstream imports: without the permission to, the caller gets what is cached.
        if let Err(denied) = self.authorize_import(ctx, repo).await {
            return match stored {
                Some(stored) => Ok(stored),
                None => Err(denied),
            };
        }
        let upstream = match self.rule_remote(&cached.rule).await {
            Ok(remote) => remote,
            Err(e) => return self.manifest_upstream_failed(cached, repo, reference, stored, UpstreamFailure::Rule(e)),
        };
        let target = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(_) => {
                let head = upstream.head_manifest(&cached.upstream_name, reference);
                let answer = match &stored {
                    Some(_) => tokio::time::timeout(RECHECK_WAIT, head).await.unwrap_or_else(|_| {
                        Err(berth_remote::Error::Transport(format!("no answer within {} s", RECHECK_WAIT.as_secs())))
                    }),
                    None => head.await,
                };
                match answer {
                    Ok(head) => head.digest,
                    Err(e) => {
                        let failure = UpstreamFailure::Remote(e);
                        return self.manifest_upstream_failed(cached, repo, reference, stored, failure);
                    }
                }
            }
        };
        if let Some(stored) = stored.as_ref().filter(|s| s.digest == target) {
            self.pull_through.fills.checked(key, self.config.cache_tag_recheck);
            self.pull_through.stats.served(prefix, Served::Cache { bytes: 0 });
            return Ok(stored.clone());
        }
        // A moved tag may point at a manifest stored already (by digest, or under another tag).
        let by_digest = Reference::Digest(target.clone());
        let fetched = match self.stored_manifest(repo, &by_digest).await? {
            Some(known) => FetchedManifest {
                digest: known.digest.clone(),
                media_type: known.media_type.clone(),
                bytes: Bytes::from(known.content.clone()),
            },
            None => match upstream.get_manifest(&cached.upstream_name, &by_digest).await {
                Ok(fetched) => fetched,
                Err(e) => {
                    return self.manifest_upstream_failed(cached, repo, reference, stored, UpstreamFailure::Remote(e));
                }
            },
        };
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        match self.store_cached_manifest(ctx, repo, &fetched, tag).await {
            // An index a prefetch stored (an index's child) has its own children left to pulls.
            Ok(children) if !is_prefetch(ctx) => self.prefetch_children(repo, children),
            Ok(_) => {}
            Err(e) => {
                let Some(stored) = stored else { return Err(e) };
                tracing::warn!(repository = %repo, %reference, error = %e, "storing the upstream's manifest failed; serving the cached one");
                // Asked again after the recheck interval, not on every pull (an immutable tag
                // keeps refusing the move; each ask counts against the upstream's rate limit).
                if tag.is_some() {
                    self.pull_through.fills.checked(key, self.config.cache_tag_recheck);
                }
                return Ok(stored);
            }
        }
        if tag.is_some() {
            self.pull_through.fills.checked(key, self.config.cache_tag_recheck);
        }
        self.pull_through.stats.served(prefix, Served::Upstream { bytes: 0 });
        tracing::info!(repository = %repo, %reference, digest = %fetched.digest, "cached a manifest from the upstream registry");
        self.stored_manifest(repo, reference)
            .await?
            .ok_or_else(|| RegistryError::Internal(format!("the cached manifest {reference} of {repo} vanished")))
    }

    /// The answer when the upstream could not be asked: the cached manifest if there is one
    /// (checked again after a short while), else why there is none.
    fn manifest_upstream_failed(
        &self,
        cached: &CachedRepository,
        repo: &RepositoryName,
        reference: &Reference,
        stored: Option<Arc<ManifestRecord>>,
        failure: UpstreamFailure,
    ) -> Result<Arc<ManifestRecord>> {
        let prefix = cached.rule.ecr_repository_prefix.as_str();
        // Served from the cache or not, the pull counts: a miss is one the cache could not serve.
        let served = if stored.is_some() { Served::Cache { bytes: 0 } } else { Served::Upstream { bytes: 0 } };
        self.pull_through.stats.served(prefix, served);
        if let UpstreamFailure::Remote(berth_remote::Error::NotFound { .. }) = failure {
            return match stored {
                // The tag is gone upstream; what was cached stays as it is, as on ECR.
                Some(stored) => {
                    self.pull_through.fills.checked(key(repo, reference), self.config.cache_tag_recheck);
                    Ok(stored)
                }
                None => Err(RegistryError::ManifestUnknown(reference.to_string())),
            };
        }
        let message = self.record_upstream_failure(cached, repo, &failure);
        match stored {
            Some(stored) => {
                self.pull_through
                    .fills
                    .checked(key(repo, reference), RETRY_AFTER_FAILURE.min(self.config.cache_tag_recheck));
                Ok(stored)
            }
            None => Err(PullThroughError::ManifestNotCached {
                trouble: failure.trouble(),
                message: format!("manifest {reference} of {repo} is not cached, and {message}"),
            }
            .into()),
        }
    }

    /// Logs and counts an upstream failure; returns it as a sentence for the client.
    fn record_upstream_failure(
        &self,
        cached: &CachedRepository,
        repo: &RepositoryName,
        failure: &UpstreamFailure,
    ) -> String {
        let url = &cached.rule.upstream.upstream_registry_url;
        let message = match failure {
            UpstreamFailure::Rule(e) => format!("the pull through cache rule cannot be used: {e}"),
            UpstreamFailure::Remote(e) => format!("the upstream registry {url} cannot provide it: {e}"),
        };
        tracing::warn!(rule = cached.rule.ecr_repository_prefix, repository = %repo, upstream = url, error = %message, "pull-through cache upstream failed");
        self.pull_through.stats.upstream_failed(&cached.rule.ecr_repository_prefix, message.clone());
        message
    }

    /// Pulling from the upstream into `repo` needs `ecr:BatchImportUpstreamImage`, and
    /// `ecr:CreateRepository` while the repository does not exist.
    pub(crate) async fn authorize_import(&self, ctx: &RequestContext, repo: &RepositoryName) -> Result<()> {
        if self.meta.get_repository(repo).await?.is_some() {
            self.authorize(ctx, repo, &[actions::BATCH_IMPORT_UPSTREAM_IMAGE]).await
        } else {
            self.authorize(ctx, repo, &[actions::BATCH_IMPORT_UPSTREAM_IMAGE, actions::CREATE_REPOSITORY]).await
        }
    }

    /// The cached repository, created (through the one implicit-creation path) if missing.
    async fn cache_target(&self, ctx: &RequestContext, repo: &RepositoryName) -> Result<RepositoryInfo> {
        let repository = match self.meta.get_repository(repo).await? {
            Some(repository) => repository,
            None => self.create_implicitly(ctx, repo, AppliedFor::PullThroughCache).await?,
        };
        repository.try_into()
    }

    /// Stores the upstream's exact bytes (verified by berth-remote against their digest) as a
    /// sparse manifest: its blobs fill when pulled. Returns an index's children.
    async fn store_cached_manifest(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        fetched: &FetchedManifest,
        tag: Option<&Tag>,
    ) -> Result<Vec<Digest>> {
        let parsed = Manifest::parse(&fetched.bytes, Some(&fetched.media_type));
        let manifest = parsed.and_then(|m| m.check_type_names(TypeNames::Printable).map(|()| m)).map_err(|e| {
            PullThroughError::ManifestNotCached {
                trouble: UpstreamTrouble::Unavailable,
                message: format!("the upstream's manifest {} cannot be cached: {e}", fetched.digest),
            }
        })?;
        let repository = self.cache_target(ctx, repo).await?;
        let blobs: Vec<(Digest, u64)> = manifest.required_blobs().map(|d| (d.digest.clone(), d.size)).collect();
        let pushed = PushedManifest { parsed: &manifest, content: &fetched.bytes, digest: &fetched.digest };
        let tags: Vec<Tag> = tag.cloned().into_iter().collect();
        self.commit_manifest(ctx, &repository, pushed, &blobs, true, &tags).await?;
        Ok(manifest.manifests.iter().map(|child| child.digest.clone()).collect())
    }

    /// ECR caches an index's every image: once one is stored, its platforms (manifests and
    /// blobs) are fetched on a task of their own, one after the other, so each pulls later even
    /// while the upstream is down. It starts after [`PREFETCH_DELAY`], so the client that asked
    /// for the index has begun the fills of its own platform (a client joining a fill late waits
    /// for the whole blob), takes what is stored already as it is, stops if the repository goes,
    /// and fetches at most [`PREFETCH_CHILDREN`] images, none of them an index's children again.
    /// What fails here fills when pulled, as before.
    fn prefetch_children(&self, repo: &RepositoryName, mut children: Vec<Digest>) {
        children.truncate(PREFETCH_CHILDREN);
        if children.is_empty() {
            return;
        }
        let (this, repo) = (self.arc(), repo.clone());
        tokio::spawn(async move {
            tokio::time::sleep(PREFETCH_DELAY).await;
            let ctx = RequestContext::server(PREFETCH_TASK, uuid::Uuid::new_v4().to_string());
            for child in children {
                match this.meta.get_repository(&repo).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(e) => {
                        tracing::info!(repository = %repo, error = %e, "prefetching a cached index's platforms stopped");
                        return;
                    }
                }
                if let Err(e) = this.prefetch_image(&ctx, &repo, &child).await {
                    tracing::info!(repository = %repo, digest = %child, error = %e,
                        "prefetching a platform of a cached index failed; it fills when pulled");
                }
            }
        });
    }

    async fn prefetch_image(&self, ctx: &RequestContext, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let reference = Reference::Digest(digest.clone());
        if self.stored_manifest(repo, &reference).await?.is_some() {
            return Ok(()); // a client pulled it (and its blobs fill as it goes on)
        }
        let manifest = self.pull_manifest_of_any_class(ctx, repo, &reference).await?;
        let parsed = Manifest::parse(&manifest.content, Some(&manifest.media_type))
            .map_err(|e| RegistryError::Internal(format!("the cached manifest {digest} does not parse: {e}")))?;
        for blob in parsed.required_blobs() {
            if self.meta.linked_blob(repo, &blob.digest).await?.is_some() {
                continue;
            }
            let mut body = self.pull_blob(ctx, repo, &blob.digest, None).await?;
            while let Some(piece) = body.stream.next().await {
                piece.map_err(|e| RegistryError::Internal(format!("prefetching blob {}: {e}", blob.digest)))?;
            }
        }
        Ok(())
    }

    /// `GET /v2/<name>/blobs/<digest>` with the pull-through cache.
    pub async fn pull_blob(
        &self,
        ctx: &RequestContext,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody> {
        match self.get_blob(repo, digest, range).await {
            Err(RegistryError::BlobUnknown(_)) => {}
            other => {
                let served = other.as_ref().ok().map(|body| body.range.as_ref().map_or(body.size, |r| r.end - r.start));
                if let Some(bytes) = served
                    && let Some(cached) = self.cached_repository(repo).await?
                {
                    self.pull_through.stats.served(&cached.rule.ecr_repository_prefix, Served::Cache { bytes });
                }
                return other;
            }
        }
        let Some(cached) = self.cached_repository(repo).await? else {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        };
        self.authorize_import(ctx, repo).await?;
        let prefix = cached.rule.ecr_repository_prefix.clone();
        let (fill, new) = self.pull_through.fills.blob_fill(digest);
        let mut tee = if range.is_none() { fill.join_at_start() } else { None };
        let mut phase = fill.phase.subscribe();
        // A fill that ended between the miss above and this one's start stored the blob: no
        // second download.
        if new && self.blobs.stat(digest).await?.is_some() {
            self.pull_through.fills.blob_fill_done(digest);
            fill.phase.send_replace(Phase::Done(Ok(())));
        } else if new {
            let (this, fill, ctx, repo, digest) = (self.arc(), fill.clone(), ctx.clone(), repo.clone(), digest.clone());
            let cached = cached.clone();
            tokio::spawn(async move { this.run_blob_fill(fill, &ctx, &cached, &repo, &digest).await });
        }
        loop {
            let now = phase.borrow_and_update().clone();
            match now {
                Phase::Streaming { size: Some(size) } if tee.is_some() => {
                    let receiver = tee.take().expect("checked");
                    self.pull_through.stats.served(&prefix, Served::Upstream { bytes: size });
                    let stream = tokio_stream_from(receiver);
                    return Ok(BlobBody { size, range: None, stream });
                }
                // Without a length the response cannot start before the end: wait for the store.
                Phase::Streaming { .. } => tee = None,
                Phase::Connecting => {}
                Phase::Done(Ok(())) => break,
                Phase::Done(Err(e)) => return Err(e.into()),
            }
            if phase.changed().await.is_err() {
                return Err(RegistryError::Internal(format!("the fill of blob {digest} ended without an outcome")));
            }
        }
        // Stored for another repository (before, or by another rule's fill this one joined): linked
        // here only once this rule's upstream says it has the blob under this name, so a cache
        // repository never serves what its upstream would not (another repository's layers).
        if self.meta.linked_blob(repo, digest).await?.is_none() {
            self.upstream_blob_size(&cached, repo, digest).await?;
            let size = self.blobs.stat(digest).await?.ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
            self.cache_target(ctx, repo).await?;
            self.keep_from_collection(digest).await?;
            self.meta.link_blob(repo, digest, size, now_millis()).await?;
        }
        let body = self.get_blob(repo, digest, range).await?;
        let bytes = body.range.as_ref().map_or(body.size, |r| r.end - r.start);
        self.pull_through.stats.served(&prefix, Served::Cache { bytes });
        Ok(body)
    }

    /// `HEAD /v2/<name>/blobs/<digest>` with the pull-through cache: a miss asks the upstream for
    /// the size without fetching the blob.
    pub async fn pull_blob_size(&self, ctx: &RequestContext, repo: &RepositoryName, digest: &Digest) -> Result<u64> {
        match self.stat_blob(repo, digest).await {
            Err(RegistryError::BlobUnknown(_)) => {}
            other => return other,
        }
        let Some(cached) = self.cached_repository(repo).await? else {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        };
        self.authorize_import(ctx, repo).await?;
        self.upstream_blob_size(&cached, repo, digest).await
    }

    /// The size the rule's upstream gives the blob under the repository's upstream name
    /// (`BlobUnknown` if it has none there).
    async fn upstream_blob_size(
        &self,
        cached: &CachedRepository,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64> {
        let failure = match self.rule_remote(&cached.rule).await {
            Err(e) => UpstreamFailure::Rule(e),
            Ok(remote) => match remote.head_blob(&cached.upstream_name, digest).await {
                Ok(Some(size)) => return Ok(size),
                Ok(None) => return Err(RegistryError::BlobUnknown(digest.clone())),
                Err(e) => UpstreamFailure::Remote(e),
            },
        };
        let message = self.record_upstream_failure(cached, repo, &failure);
        Err(PullThroughError::BlobNotCached(format!("blob {digest} is not cached, and {message}")).into())
    }

    /// Fetches, stores and links one blob, streaming it to the fill's tees; then tells every
    /// waiting client how it went.
    async fn run_blob_fill(
        &self,
        fill: Arc<BlobFill>,
        ctx: &RequestContext,
        cached: &CachedRepository,
        repo: &RepositoryName,
        digest: &Digest,
    ) {
        let outcome = self.fill_blob(&fill, ctx, cached, repo, digest).await;
        fill.end_tees(outcome.is_ok()).await;
        let outcome = match outcome {
            Ok(size) => {
                tracing::info!(repository = %repo, %digest, size, "cached a blob from the upstream registry");
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.pull_through.fills.blob_fill_done(digest);
        fill.phase.send_replace(Phase::Done(outcome));
    }

    async fn fill_blob(
        &self,
        fill: &Arc<BlobFill>,
        ctx: &RequestContext,
        cached: &CachedRepository,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, FillError> {
        let failed = |failure: UpstreamFailure| -> FillError {
            if let UpstreamFailure::Remote(berth_remote::Error::NotFound { .. }) = failure {
                return FillError::NotFound(digest.clone());
            }
            let message = self.record_upstream_failure(cached, repo, &failure);
            FillError::NotCached(format!("blob {digest} is not cached, and {message}"))
        };
        let internal = |e: RegistryError| FillError::Other(e.to_string());
        let remote = self.rule_remote(&cached.rule).await.map_err(|e| failed(UpstreamFailure::Rule(e)))?;
        let upstream = remote
            .get_blob(&cached.upstream_name, digest, None)
            .await
            .map_err(|e| failed(UpstreamFailure::Remote(e)))?;
        self.cache_target(ctx, repo).await.map_err(internal)?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_millis();
        let session = UploadSession { id: id.clone(), repo: repo.to_string(), created_at: now, updated_at: now };
        self.meta.create_upload(&session).await.map_err(|e| internal(e.into()))?;
        // The session row only lets upload expiry remove staged data a crash left behind.
        self.finished_uploads().push(id.clone());
        self.blobs.create_upload(&id).await.map_err(|e| internal(e.into()))?;
        fill.phase.send_replace(Phase::Streaming { size: upstream.content_length() });
        let appended = self.blobs.append(&id, 0, teed(upstream, fill.clone()), &mut |_| {}).await;
        let stored = async {
            let size = appended?;
            self.keep_from_collection(digest).await?;
            self.blobs.commit(&id, digest).await?;
            self.meta.link_blob(repo, digest, size, now_millis()).await?;
            Ok::<_, RegistryError>(size)
        }
        .await;
        match stored {
            Ok(size) => Ok(size),
            Err(e) => {
                if let Err(abort) = self.blobs.abort(&id).await {
                    tracing::warn!(upload = id, error = %abort, "removing a failed fill's staged data failed");
                }
                let upstream_error = fill.upstream_error.lock().unwrap_or_else(|e| e.into_inner()).take();
                Err(match upstream_error {
                    Some(e) => failed(UpstreamFailure::Remote(e)),
                    None => internal(e),
                })
            }
        }
    }
}

/// Whether `ctx` is a prefetch's (see `prefetch_children`).
fn is_prefetch(ctx: &RequestContext) -> bool {
    matches!(&ctx.identity, berth_iam::Identity::Server { task, .. } if task == PREFETCH_TASK)
}

/// What stopped the cache from asking its upstream.
enum UpstreamFailure {
    /// The rule's credentials or URL cannot be used.
    Rule(RegistryError),
    Remote(berth_remote::Error),
}

impl UpstreamFailure {
    /// ECR's name for it in an image failure: an unusable secret or refused credentials deny
    /// access; everything else leaves the upstream unavailable.
    fn trouble(&self) -> UpstreamTrouble {
        use berth_remote::Error as Remote;
        match self {
            UpstreamFailure::Rule(RegistryError::PullThrough(
                PullThroughError::SecretNotFound(_)
                | PullThroughError::SecretInaccessible(_)
                | PullThroughError::SecretUndecryptable(_),
            ))
            | UpstreamFailure::Remote(Remote::Unauthorized { .. } | Remote::Denied { .. }) => {
                UpstreamTrouble::AccessDenied
            }
            UpstreamFailure::Remote(Remote::TooManyRequests { .. }) => UpstreamTrouble::TooManyRequests,
            UpstreamFailure::Rule(_) | UpstreamFailure::Remote(_) => UpstreamTrouble::Unavailable,
        }
    }
}

fn tokio_stream_from(receiver: mpsc::Receiver<std::io::Result<Bytes>>) -> berth_storage::ByteStream {
    futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) })
        .boxed()
}
