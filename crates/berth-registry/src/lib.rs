//! The registry service: every operation of the OCI and ECR planes, over [`BlobStore`] and
//! [`MetadataStore`]. HTTP layers translate requests into calls here and [`RegistryError`]s into
//! their wire format; they hold no storage logic.

mod access;
mod archive;
mod blobs;
pub mod body_budget;
mod cache;
pub mod cache_stats;
mod downloads;
mod error;
pub mod events;
mod fills;
mod gc;
mod images;
mod layers;
pub mod lifecycle;
mod manifests;
mod policies;
mod principals;
pub mod pull_through;
pub mod pulls;
mod registry_settings;
pub mod replication;
mod repositories;
pub mod settings;
mod status;
pub mod templates;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_iam::RequestContext;
use berth_meta::{MetadataStore, Millis, Origin, Repository};
use berth_spec::RepositoryName;
use berth_storage::BlobStore;

pub use access::{AnonymousAccess, Authorizer, Explanation, Resource};
pub use berth_meta::{ImageRecord, ManifestRecord, StorageClass};
pub use berth_spec::{ByteRange, ChunkRange};
pub use blobs::{BlobBody, MountOutcome, UploadStatus};
pub use downloads::{SignedDownload, UrlSigningKey};
pub use error::PolicyKind;
pub use error::RegistryError;
pub use gc::GcReport;
pub use images::{DeletedImage, ImageFilter, ImageId, ImageSelector, PutImage, TagStatus};
pub use layers::MIN_LAYER_PART_BYTES;
pub use manifests::{PutManifestOutcome, REFERRERS_PAGE_BYTES, Referrer, ReferrersPage};
pub use policies::{LifecycleExplanation, LifecyclePolicyInfo, LifecyclePreviewOutcome, PreviewResult};
pub use registry_settings::{AccountSetting, ScanningRule};
pub use repositories::RepositoryInfo;
pub use settings::{RepositorySettings, SPARSE_INDEXES_TAG};
pub use status::{Finished, MaintenanceStatus};

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// A push to a repository that does not exist creates it. Off, only where a creation
    /// template for that kind of push covers the name (ECR's create-on-push).
    pub create_on_push: bool,
    /// Upload sessions untouched for this long are removed with their data.
    pub upload_expiry: Duration,
    /// Signs the time-limited layer download URLs of the ECR API.
    pub url_signing_key: UrlSigningKey,
    /// Other servers write to the same metadata (PostgreSQL): this process cannot see their
    /// writes, so it must not serve manifests or tag lists from its in-memory cache.
    pub shared_metadata: bool,
    /// How often lifecycle policies run (they also run right after one is put).
    pub lifecycle_interval: Duration,
    /// The registry's AWS account id: repository policies name its users by ARN in it.
    pub account_id: String,
    /// The region in repository ARNs.
    pub region: String,
    /// What callers without credentials may do.
    pub anonymous_access: AnonymousAccess,
    /// Whether an index may list children its repository does not hold (a sparse index), unless
    /// the repository's [`SPARSE_INDEXES_TAG`] says otherwise. ECR refuses them.
    pub sparse_indexes: bool,
    /// The replication destinations the server's configuration maps to registries: the only
    /// ones a replication configuration may name.
    pub replication_destinations: Vec<replication::DestinationId>,
    /// Opens the upstream credentials pull-through cache rules name.
    pub secrets: pull_through::Secrets,
    /// How long a cached tag is served before the cache asks its upstream (a HEAD) whether
    /// the tag moved. ECR: 24 hours.
    pub cache_tag_recheck: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            create_on_push: true,
            upload_expiry: Duration::from_secs(24 * 3600),
            url_signing_key: UrlSigningKey::random(),
            shared_metadata: false,
            lifecycle_interval: Duration::from_secs(3600),
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            anonymous_access: AnonymousAccess::default(),
            sparse_indexes: false,
            replication_destinations: Vec::new(),
            secrets: pull_through::Secrets::default(),
            cache_tag_recheck: Duration::from_secs(24 * 3600),
        }
    }
}

pub struct Registry {
    /// This registry itself, for work that must outlive the request that started it (see
    /// [`Registry::detached`]); a `Registry` only ever lives in the `Arc` [`Registry::new`] returns.
    me: Weak<Registry>,
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetadataStore>,
    config: RegistryConfig,
    uploads: Mutex<HashMap<String, blobs::UploadHandle>>,
    pulls: pulls::PullRecorder,
    manifests: cache::ManifestCache,
    /// Serialises read-modify-write of repository settings documents within this process.
    settings_writes: tokio::sync::Mutex<()>,
    /// Upload sessions known to exist, with their repository (saves a read per chunk).
    live_sessions: Mutex<HashMap<String, RepositoryName>>,
    /// Finished uploads whose session rows await deletion in one batch (see `maintain`).
    finished_uploads: Mutex<Vec<String>>,
    lifecycle: policies::LifecycleSchedule,
    previews: policies::PreviewCache,
    /// Authorization decisions, with the repository policies they read.
    authorizer: access::Authorizer,
    /// The last GC pass and lifecycle run, for the console.
    status: status::StatusLog,
    /// When maintenance last pruned delivered events.
    events_pruned_at: Mutex<Option<Instant>>,
    /// The connection pool to upstream registries, made on first use.
    remote_client: std::sync::OnceLock<berth_remote::Client>,
    /// The pull-through cache's rules, fills in progress and counters.
    pull_through: pull_through::CacheState,
    /// Blob deletions GC has begun, each on a task of its own (see `gc.rs`).
    blob_deletions: tokio_util::task::TaskTracker,
    /// Manifest bodies being received, held whole until they can be parsed.
    manifest_bodies: body_budget::BodyBudget,
}

/// Bytes of manifest bodies the server holds while they arrive, all together: sixteen of the
/// largest (4 MiB). A push's manifests are kilobytes; only a client holding many large ones
/// open at once (100 HTTP/2 streams of 4 MiB each would be 400 MiB) meets it.
const MANIFEST_BODY_BUDGET: usize = 64 << 20;
/// What one client address may hold of it: four of the largest.
const MANIFEST_BODY_ADDRESS_SHARE: usize = 16 << 20;

/// How often maintenance prunes the event log.
const EVENT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// What a push asks of a repository create-on-push would make, given the settings it would get.
type CreatableCheck<'a> = &'a (dyn Fn(&RepositorySettings) -> Result<()> + Sync);

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetadataStore>, config: RegistryConfig) -> Arc<Registry> {
        let authorizer = access::Authorizer::new(meta.clone(), &config);
        Arc::new_cyclic(|me| Registry {
            me: me.clone(),
            blobs,
            meta,
            manifests: cache::ManifestCache::new(!config.shared_metadata),
            authorizer,
            config,
            uploads: Mutex::default(),
            pulls: pulls::PullRecorder::default(),
            live_sessions: Mutex::default(),
            finished_uploads: Mutex::default(),
            settings_writes: tokio::sync::Mutex::default(),
            lifecycle: policies::LifecycleSchedule::default(),
            previews: policies::PreviewCache::default(),
            status: status::StatusLog::default(),
            events_pruned_at: Mutex::default(),
            remote_client: std::sync::OnceLock::new(),
            pull_through: pull_through::CacheState::default(),
            blob_deletions: tokio_util::task::TaskTracker::new(),
            manifest_bodies: body_budget::BodyBudget::new(MANIFEST_BODY_BUDGET, MANIFEST_BODY_ADDRESS_SHARE),
        })
    }

    /// This registry's own `Arc`, for a task that outlives the call that spawns it.
    fn arc(&self) -> Arc<Registry> {
        self.me.upgrade().expect("a Registry lives in the Arc that Registry::new returned")
    }

    /// Runs `work` on a task of its own and waits for it. A request's future is dropped when its
    /// client disconnects; work that must not stop half-way (an append, an upload's finish) runs
    /// here, so it completes, or fails and cleans up, either way.
    async fn detached<T, F>(&self, work: impl FnOnce(Arc<Registry>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        tokio::spawn(work(self.arc())).await.map_err(|e| RegistryError::Internal(format!("upload task failed: {e}")))?
    }

    /// The client for other registries (pull-through cache upstreams).
    fn remote_client(&self) -> Result<&berth_remote::Client> {
        if let Some(client) = self.remote_client.get() {
            return Ok(client);
        }
        let client = berth_remote::Client::new(berth_remote::ClientConfig::default())
            .map_err(|e| RegistryError::Internal(format!("cannot make the upstream registry client: {e}")))?;
        Ok(self.remote_client.get_or_init(|| client))
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// What manifest bodies arriving on `/v2/` may hold of memory (see `body_budget`).
    pub fn manifest_bodies(&self) -> &body_budget::BodyBudget {
        &self.manifest_bodies
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    /// The repository, or `NameUnknown`.
    pub async fn repository(&self, name: &RepositoryName) -> Result<Repository> {
        self.meta.get_repository(name).await?.ok_or_else(|| RegistryError::NameUnknown(name.to_string()))
    }

    /// Who made a change in `ctx`, as its events record it.
    fn origin(&self, ctx: &RequestContext) -> Origin {
        events::origin(ctx, &self.config.account_id)
    }

    /// The repository a push goes to, created if missing, create-on-push is on and the caller
    /// may `ecr:CreateRepository` it (as on ECR). Never one a pull-through cache rule covers.
    async fn push_target(&self, ctx: &RequestContext, name: &RepositoryName) -> Result<Repository> {
        self.push_target_if(ctx, name, None).await
    }

    /// [`Registry::push_target`], but a repository it would create must first pass `creatable`
    /// with the settings its creation template would give it, so that a push bound to fail is
    /// refused before it leaves a new, empty repository behind.
    async fn push_target_if(
        &self,
        ctx: &RequestContext,
        name: &RepositoryName,
        creatable: Option<CreatableCheck<'_>>,
    ) -> Result<Repository> {
        self.refuse_push_into_cache(name).await?;
        // A read first: the repository almost always exists, and a read never waits for the writer.
        if let Some(repository) = self.meta.get_repository(name).await? {
            return Ok(repository);
        }
        // Another Berth's replication (it says so) needs `ecr:ReplicateImage` too, as ECR's
        // destination registry policy grants it, and gets the REPLICATION template; the claim
        // only ever adds a permission to check.
        let (purpose, actions): (_, &[&'static str]) = if replication::is_replication(ctx) {
            let actions = &[berth_iam::actions::CREATE_REPOSITORY, berth_iam::actions::REPLICATE_IMAGE];
            (templates::AppliedFor::Replication, actions)
        } else {
            (templates::AppliedFor::CreateOnPush, &[berth_iam::actions::CREATE_REPOSITORY])
        };
        // Without create-on-push, as on ECR: only where a creation template for this kind of
        // push covers the name.
        if !self.config.create_on_push && !self.template_covers(name, purpose).await? {
            return Err(RegistryError::NameUnknown(name.to_string()));
        }
        self.authorize(ctx, name, actions).await?;
        if let Some(creatable) = creatable {
            creatable(&self.settings_for_new(name, purpose).await?)?;
        }
        self.create_implicitly(ctx, name, purpose).await
    }

    /// The names of the repositories the caller may describe, sorted, after `last`, at most `n`
    /// (and whether more remain).
    pub async fn catalog(
        &self,
        ctx: &RequestContext,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool)> {
        let limit = n.unwrap_or(usize::MAX / 2);
        let (repos, more) =
            self.list_repositories_for(ctx, berth_iam::actions::DESCRIBE_REPOSITORIES, last, limit).await?;
        Ok((repos.into_iter().map(|r| r.name).collect(), more))
    }

    /// Periodic housekeeping: expire abandoned uploads, flush recorded pull times, run
    /// lifecycle policies when due, prune delivered events.
    /// Call from a background task; it never fails the process, errors are logged.
    pub async fn maintain(&self) {
        if let Err(e) = self.flush_finished_uploads().await {
            tracing::warn!(error = %e, "deleting finished upload sessions failed");
        }
        let started = Instant::now();
        let expiry = self.expire_uploads().await;
        status::record_run("upload_expiry", started, &expiry, |expired| *expired);
        if let Err(e) = expiry {
            tracing::warn!(error = %e, "expiring stale uploads failed");
        }
        self.flush_pulls().await;
        self.flush_cache_stats().await;
        self.lifecycle_if_due().await;
        self.prune_events_if_due().await;
    }

    async fn prune_events_if_due(&self) {
        {
            let mut last = self.events_pruned_at.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < EVENT_PRUNE_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let log = events::EventLog::new(self.meta.clone());
        match log.prune(events::RETENTION).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned delivered events"),
            Err(e) => tracing::warn!(error = %e, "pruning the event log failed"),
        }
    }

    /// Writes buffered pull times (also called on shutdown).
    pub async fn flush_pulls(&self) {
        if let Err(e) = self.refresh_pull_exclusions().await {
            tracing::warn!(error = %e, "reading the pull-time update exclusions failed");
        }
        let batch = self.pulls.drain();
        if !batch.is_empty()
            && let Err(e) = self.meta.record_pulls(&batch).await
        {
            tracing::warn!(error = %e, "recording pull times failed");
        }
    }
}
