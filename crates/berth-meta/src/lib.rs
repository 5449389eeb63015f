//! Registry metadata: repositories, per-repository blob links, manifests (exact pushed bytes),
//! tags, index → child and subject → referrer edges, upload sessions, credentials and the event
//! log.
//!
//! [`MetadataStore`] is the whole store: one trait per area ([`RepositoryStore`],
//! [`BlobLinkStore`], [`ManifestStore`], [`UploadStore`], [`GcStore`], [`CredentialStore`],
//! [`RegistrySettingStore`], [`EventStore`], [`ReplicationStore`], [`PullThroughStore`], [`Health`],
//! [`Shutdown`]) and a blanket impl, so `Arc<dyn MetadataStore>` offers them all.
//! There is one implementation, [`SqlStore`], over two SQL dialects: [`SqliteStore`] (embedded)
//! and [`PostgresStore`] (scale-out). [`testsuite::run_all`] is the behaviour both must show.
//!
//! Invariants every backend keeps, each inside one transaction:
//! - a manifest is stored only if every blob it needs is linked in its repository with the size
//!   its descriptor states, and every child of an index is a manifest in the same repository;
//! - a manifest that an index in the same repository lists as a child cannot be deleted, nor
//!   can the link of a blob a manifest of the repository needs;
//! - a tag always points at a manifest that exists in its repository;
//! - every change to a repository, its settings, images, tags or blob links made through an
//!   [`Origin`]-taking method commits its event rows in the same transaction (none when it
//!   changed nothing or failed).

mod dialect;
mod durability;
mod events;
mod gc;
mod manifests;
mod migrations;
pub mod postgres;
mod prefixed;
mod pull_through;
mod replication;
mod sql;
pub mod sqlite;
mod store;
mod templates;
pub mod testsuite;

use async_trait::async_trait;
use berth_spec::{Digest, Reference, RepositoryName, Tag};

pub use dialect::Dialect;
pub use events::{ClaimedEvent, ConsumerRecord, ConsumerRemoval, Event, EventKind};
pub use postgres::PostgresStore;
pub use replication::ReplicationStatusRecord;
pub use sqlite::SqliteStore;
pub use store::SqlStore;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("repository {0} does not exist")]
    RepositoryNotFound(String),
    #[error("repository {0} already exists")]
    RepositoryExists(String),
    #[error("repository {0} still contains images")]
    RepositoryNotEmpty(String),
    /// Blobs a manifest needs that are not linked in the repository, in the manifest's order.
    #[error("blobs {0:?} are not in the repository")]
    BlobsUnknown(Vec<Digest>),
    /// A manifest's descriptor states another size than the linked blob has.
    #[error("the manifest says blob {digest} has {declared} bytes, but it has {stored}")]
    BlobSizeMismatch { digest: Digest, declared: u64, stored: u64 },
    #[error("the index says manifest {digest} has {declared} bytes, but it has {stored}")]
    ChildSizeMismatch { digest: Digest, declared: u64, stored: u64 },
    /// The blob's link cannot go: this manifest of the repository needs the blob.
    #[error("blob {digest} is needed by manifest {manifest}")]
    BlobInUse { digest: Digest, manifest: Digest },
    /// A child an index lists is not a manifest in the repository.
    #[error("manifest {0} is not in the repository")]
    ManifestUnknown(Digest),
    /// The manifest is a child of this index in the same repository.
    #[error("manifest is referenced by index {index}")]
    ManifestReferenced { index: Digest },
    /// The tag is immutable and already points at `current`.
    #[error("tag {tag} of {repository} is immutable and already points at {current}")]
    TagImmutable { repository: String, tag: String, current: Digest },
    /// A compare-and-set of the repository's settings found another version than expected.
    #[error("the settings of repository {0} changed meanwhile")]
    SettingsConflict(String),
    #[error("user {0} already exists (user names are not case-sensitive)")]
    UserExists(String),
    #[error("user {0} does not exist")]
    UserUnknown(String),
    #[error("a pull-through cache rule for prefix {0} already exists")]
    CacheRuleExists(String),
    #[error("there is no pull-through cache rule for prefix {0}")]
    CacheRuleNotFound(String),
    #[error("a repository creation template for prefix {0} already exists")]
    TemplateExists(String),
    #[error("there is no repository creation template for prefix {0}")]
    TemplateNotFound(String),
    /// The chosen template cannot be applied; nothing was created.
    #[error("{0}")]
    TemplateUnusable(String),
    #[error("a pull-time update exclusion for {0} already exists")]
    ExclusionExists(String),
    #[error("there is no pull-time update exclusion for {0}")]
    ExclusionNotFound(String),
    /// The database's disk (or quota) is full; the write was rolled back.
    #[error("the metadata database's storage is full")]
    StorageFull,
    #[error("metadata backend error: {0}")]
    Backend(String),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// Who made a change, in which request; recorded with the change's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The caller's IAM ARN, `anonymous`, or `berth:<task>` for work the server does on its own
    /// (lifecycle expiry).
    pub actor: String,
    pub access_key_id: Option<String>,
    pub request_id: String,
    /// The change came from another registry's replication push: it is not replicated again.
    pub by_replication: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub created_at: Millis,
    /// ECR settings (tag mutability, scanning, encryption, policies, resource tags) as a JSON
    /// document owned by the registry service; opaque to the store.
    pub settings: String,
    /// Bumped by every settings write: what a compare-and-set expects.
    pub settings_version: i64,
}

/// A compare-and-set of a repository's settings document.
#[derive(Debug, Clone, Copy)]
pub struct SettingsUpdate<'a> {
    pub settings: &'a str,
    /// The version the new document was derived from; another fails with `SettingsConflict`.
    pub expected_version: i64,
    /// Which parts of the document changed (the event says so; the store does not parse it).
    pub changed: &'a [&'a str],
}

/// A stored manifest with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
    /// `artifactType`, or the config media type of an image manifest (what referrers report).
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The manifest's `annotations` as a JSON object, `None` if it had none.
    pub annotations: Option<String>,
    /// Config + layer sizes for an image; for an index the largest of its children (as ECR does).
    pub image_size: u64,
    pub pushed_at: Millis,
    pub last_pulled_at: Option<Millis>,
    /// STANDARD pulls; ARCHIVE is listed and described but refused on pull until restored.
    pub storage_class: StorageClass,
    pub last_archived_at: Option<Millis>,
    pub last_activated_at: Option<Millis>,
}

/// ECR's storage classes of an image. Berth keeps archived images' blobs where they are: the
/// class decides only whether the image pulls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum StorageClass {
    #[default]
    Standard,
    Archive,
}

impl StorageClass {
    /// The stored (and ECR's wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::Archive => "ARCHIVE",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<StorageClass> {
        match text {
            "STANDARD" => Ok(StorageClass::Standard),
            "ARCHIVE" => Ok(StorageClass::Archive),
            other => Err(MetaError::Backend(format!("stored storage class {other:?} is unknown"))),
        }
    }
}

/// A manifest as a referrers listing describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// The manifest's length in bytes.
    pub size: u64,
    /// Its `annotations` JSON object when it has one of at most [`INLINE_ANNOTATIONS`] bytes.
    pub annotations: Option<String>,
    /// Bytes of its `annotations` JSON, 0 without: a listing budgets its pages by it.
    pub annotations_len: u64,
}

/// Annotations longer than this are left out of [`ManifestStore::referrers`]' records.
pub const INLINE_ANNOTATIONS: u64 = 64 * 1024;

/// An image an `update_storage_class` moved (the image named, or a child that went with its index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageClassChange {
    pub digest: Digest,
    pub media_type: String,
}

/// An image as the ECR API lists it: a manifest and the tags pointing at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub manifest: ManifestRecord,
    /// Sorted byte-wise.
    pub tags: Vec<String>,
}

/// A tag a push sets, and whether it is immutable (moving it elsewhere fails with `TagImmutable`).
#[derive(Debug, Clone, Copy)]
pub struct PutTag<'a> {
    pub tag: &'a Tag,
    pub immutable: bool,
}

/// Everything `put_manifest` needs; the service parsed and validated the bytes already.
#[derive(Debug, Clone)]
pub struct PutManifest<'a> {
    pub repo: &'a RepositoryName,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub content: &'a [u8],
    pub artifact_type: Option<&'a str>,
    pub annotations: Option<&'a str>,
    pub subject: Option<&'a Digest>,
    /// Blobs (config, distributable layers) that must be linked in `repo` with these sizes
    /// (unless `sparse`); their sizes add up to the image size.
    pub blobs: &'a [(Digest, u64)],
    /// Blobs the manifest lists that the registry need not hold (non-distributable layers,
    /// which clients may fetch from elsewhere): never required, but recorded as needed like
    /// `blobs`, so one that was pushed is kept, not collected, while the manifest lists it.
    pub foreign_blobs: &'a [Digest],
    /// Child manifests (of an index) that must exist in `repo` (unless `sparse`) with these
    /// sizes in bytes, as their descriptors state.
    pub children: &'a [(Digest, u64)],
    /// A sparse manifest: blobs and children absent from `repo` are allowed (mirroring tools
    /// copy a subset of platforms, or manifests without their layers). An absent child counts
    /// nothing towards the image size and becomes a protected child when pushed; an absent
    /// blob is still recorded as needed, so once pushed it cannot be deleted under the manifest.
    pub sparse: bool,
    /// Tags moved to the manifest with it, all or none.
    pub tags: Vec<PutTag<'a>>,
    /// The repository's settings version `tags` were judged by (their immutability): a
    /// different one when the write holds the repository is `SettingsConflict`, so a push in
    /// flight cannot move a tag after immutability was switched on. `None`: not checked (tools
    /// populating a store).
    pub settings_version: Option<i64>,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// False when a manifest with this digest already was in the repository.
    pub manifest_created: bool,
    /// Where each of `tags` pointed before (in the same order), if it existed.
    pub previous_tag_targets: Vec<Option<Digest>>,
    /// The push brought the manifest (or children it lists) back from the archive.
    pub restored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub id: String,
    pub repo: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub access_key_id: String,
    /// The secret access key, encrypted by the auth layer (SigV4 needs the plaintext back).
    pub secret_ciphertext: Vec<u8>,
    pub created_at: Millis,
    pub key_status: AccessKeyStatus,
}

/// IAM's access key states. Deactivating is the reversible way to stop a key (an incident, a
/// rotation) without losing the user and its policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKeyStatus {
    Active,
    Inactive,
}

impl AccessKeyStatus {
    /// IAM's spelling, also the stored one.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessKeyStatus::Active => "Active",
            AccessKeyStatus::Inactive => "Inactive",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "Active" => Some(AccessKeyStatus::Active),
            "Inactive" => Some(AccessKeyStatus::Inactive),
            _ => None,
        }
    }
}

/// An identity policy attached to a user (ARCHITECTURE.md, "Authorization").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPolicy {
    /// An AWS managed policy's name, or the name the operator gave the user's own document.
    pub name: String,
    /// The user's own document; `None` for an AWS managed policy (Berth keeps those as data).
    pub document: Option<String>,
}

#[async_trait]
pub trait RepositoryStore: Send + Sync {
    /// Fails with `RepositoryExists`.
    async fn create_repository(
        &self,
        origin: &Origin,
        name: &RepositoryName,
        settings: &str,
        now: Millis,
    ) -> Result<Repository>;
    /// Returns the repository, creating it with `settings` if missing (create-on-push).
    async fn ensure_repository(
        &self,
        origin: &Origin,
        name: &RepositoryName,
        settings: &str,
        now: Millis,
    ) -> Result<Repository>;
    async fn get_repository(&self, name: &RepositoryName) -> Result<Option<Repository>>;
    /// Replaces the settings document if its version is still `expected_version` (else
    /// `SettingsConflict`), returning the new version. Fails with `RepositoryNotFound`.
    async fn set_repository_settings(
        &self,
        origin: &Origin,
        name: &RepositoryName,
        update: SettingsUpdate<'_>,
    ) -> Result<i64>;
    /// Repositories sorted by name, strictly after `after`, at most `limit`.
    async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<Repository>>;
    /// Deletes a repository with its tags, manifests, blob links and uploads. Without `force`,
    /// fails with `RepositoryNotEmpty` if it holds manifests. Returns the removed repository.
    async fn delete_repository(&self, origin: &Origin, name: &RepositoryName, force: bool) -> Result<Repository>;
}

#[async_trait]
pub trait BlobLinkStore: Send + Sync {
    /// Links a committed blob into a repository (which must exist); linking twice is a no-op.
    async fn link_blob(&self, repo: &RepositoryName, digest: &Digest, size: u64, now: Millis) -> Result<()>;
    /// Size of the blob if it is linked in `repo`.
    async fn linked_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<u64>>;
    /// Removes the link; returns whether it existed. `BlobInUse` while a manifest of the
    /// repository needs the blob.
    async fn unlink_blob(&self, origin: &Origin, repo: &RepositoryName, digest: &Digest) -> Result<bool>;
    /// Repositories (sorted) in which the blob is linked, for mounts without `from` and for GC.
    async fn repositories_with_blob(&self, digest: &Digest) -> Result<Vec<String>>;
    /// The blob's link in `repo` and whether its manifests are archived: what a pull needs to
    /// know (ECR refuses the layers of archived images).
    async fn blob_link(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<BlobLink>>;
    /// A manifest of `repo` that needs the blob (the smallest digest), to describe the blob as
    /// that manifest's descriptor does.
    async fn manifest_needing(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<Digest>>;
}

/// A blob linked in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLink {
    pub size: u64,
    /// The storage class of the manifests of the repository that need the blob (as config or
    /// layer): STANDARD if any of them is, ARCHIVE if all are archived, `None` if none needs it.
    pub needed_by: Option<StorageClass>,
}

#[async_trait]
pub trait ManifestStore: Send + Sync {
    /// Stores a manifest (and moves its tags to it) in one transaction, enforcing the invariants
    /// above. Re-putting identical bytes is fine (`manifest_created: false`).
    async fn put_manifest(&self, origin: &Origin, put: PutManifest<'_>) -> Result<PutOutcome>;
    /// Resolves a tag or digest in `repo`.
    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Option<ManifestRecord>>;
    /// Deletes a manifest, its tags and its child edges. `ManifestUnknown` if absent,
    /// `ManifestReferenced` if an index in the repository lists it.
    async fn delete_manifest(&self, origin: &Origin, repo: &RepositoryName, digest: &Digest) -> Result<()>;
    /// Removes a tag (not the manifest); returns the digest it pointed at.
    async fn delete_tag(&self, origin: &Origin, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>>;
    /// Tags sorted byte-wise, strictly after `last`, at most `limit`.
    async fn list_tags(&self, repo: &RepositoryName, last: Option<&str>, limit: Option<usize>) -> Result<Vec<String>>;
    /// Manifests in `repo` whose `subject` is `subject`, sorted by digest, after `after`, at most
    /// `limit`: what a referrers listing says of each, without the manifest's bytes, and with
    /// its annotations only up to [`INLINE_ANNOTATIONS`] bytes (a manifest's may be
    /// megabytes; [`ManifestStore::annotations`] reads longer ones).
    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ReferrerRecord>>;
    /// The `annotations` JSON object of manifest `digest` in `repo`, `None` if it has none (or
    /// the manifest is gone).
    async fn annotations(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<String>>;
    /// Digests of indexes in `repo` that list `child`, sorted.
    async fn parents(&self, repo: &RepositoryName, child: &Digest) -> Result<Vec<Digest>>;
    /// Images sorted by digest, strictly after `after`, at most `limit`.
    async fn list_images(
        &self,
        repo: &RepositoryName,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>>;
    /// One image with its tags.
    async fn get_image(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<ImageRecord>>;
    /// Records pull times in one batch (the pull path buffers them in memory).
    async fn record_pulls(&self, pulls: &[(RepositoryName, Digest, Millis)]) -> Result<()>;
    /// Moves the image `digest` to `class` as of `now`, in one transaction, with one
    /// `image.archived` / `image.restored` event per image that changed (returned in digest
    /// order; none if it was in `class` already). An index takes its children along: archiving
    /// the untagged ones no other STANDARD index lists, restoring all of them. Archiving an image a STANDARD
    /// index lists is `ManifestReferenced` (the index would no longer pull whole);
    /// `ManifestUnknown` if absent.
    async fn update_storage_class(
        &self,
        origin: &Origin,
        repo: &RepositoryName,
        digest: &Digest,
        class: StorageClass,
        now: Millis,
    ) -> Result<Vec<StorageClassChange>>;
}

/// Upload sessions are not made durable before their write returns (no sync of their own): a
/// session lost to a power failure is one whose staged bytes were not synced either, and the
/// client starts the upload again when told it is unknown. Any later durable write syncs them.
#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn create_upload(&self, session: &UploadSession) -> Result<()>;
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>>;
    async fn touch_upload(&self, id: &str, now: Millis) -> Result<()>;
    /// Returns whether it existed.
    async fn delete_upload(&self, id: &str) -> Result<bool>;
    /// Deletes finished sessions in one write (one commit for many; missing ids are skipped).
    async fn delete_uploads(&self, ids: &[String]) -> Result<()>;
    /// Sessions not updated since `before`.
    async fn stale_uploads(&self, before: Millis) -> Result<Vec<UploadSession>>;
    /// The sessions of repository `repo`, oldest first.
    async fn repository_uploads(&self, repo: &str) -> Result<Vec<UploadSession>>;
}

/// The bookkeeping of online garbage collection (ARCHITECTURE.md, "Garbage collection").
#[async_trait]
pub trait GcStore: Send + Sync {
    /// Removes blob links that no manifest of their repository needs and that no push touched
    /// since `before`; links released by a manifest delete are first stamped with `now` (their
    /// grace period starts when GC first sees them). Returns how many went. With `dry_run`, only
    /// counts the links past their grace period.
    async fn release_unreferenced_links(&self, before: Millis, now: Millis, dry_run: bool) -> Result<u64>;
    /// Of `digests` (blobs found in storage), returns those no repository links, and (unless
    /// `dry_run`) makes each a collection candidate as of `now` if it is not one already.
    async fn note_unlinked_blobs(&self, digests: &[Digest], now: Millis, dry_run: bool) -> Result<Vec<Digest>>;
    /// Candidates noted before `before`, and deletions begun before `stalled_before` (their GC died).
    async fn due_blob_candidates(&self, before: Millis, stalled_before: Millis) -> Result<Vec<Digest>>;
    /// Marks a due candidate (see `due_blob_candidates`) as being deleted, as of `now`, and
    /// returns true: the caller then deletes the data and calls `finish_blob_deletion` with the
    /// same `now`. False if it is not due, or is linked again (which ends its candidacy).
    async fn begin_blob_deletion(
        &self,
        digest: &Digest,
        before: Millis,
        stalled_before: Millis,
        now: Millis,
    ) -> Result<bool>;
    async fn finish_blob_deletion(&self, digest: &Digest, started: Millis) -> Result<()>;
    /// A push is about to link `digest` (its data is in storage, or about to be): ends any
    /// candidacy, so GC cannot delete the data under the push. False while a GC is deleting the
    /// data: the caller waits for that to finish and asks again, then writes the data anew.
    async fn cancel_blob_collection(&self, digest: &Digest) -> Result<bool>;
}

#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Creates the user with its identity policies, in one transaction. Fails with `UserExists`
    /// (the same name in any letter case, or the same access key id).
    async fn create_user(&self, user: &UserRecord, policies: &[UserPolicy]) -> Result<()>;
    /// Users sorted by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>>;
    /// Returns whether it existed.
    async fn delete_user(&self, name: &str) -> Result<bool>;
    async fn user_by_access_key(&self, access_key_id: &str) -> Result<Option<UserRecord>>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;
    /// Sets the status of a user's access key; returns the previous one. Fails with `UserUnknown`.
    async fn set_access_key_status(&self, user: &str, status: AccessKeyStatus) -> Result<AccessKeyStatus>;
    /// Attaches a policy to a user, replacing the document of one attached under the same name.
    /// Fails with `UserUnknown`.
    async fn attach_user_policy(&self, user: &str, policy: &UserPolicy) -> Result<()>;
    /// Returns whether the policy was attached. Fails with `UserUnknown`.
    async fn detach_user_policy(&self, user: &str, policy_name: &str) -> Result<bool>;
    /// Every user's policies as (user name, policy), sorted by user and policy name.
    async fn list_user_policies(&self) -> Result<Vec<(String, UserPolicy)>>;
    /// A counter that changes whenever users or their policies change, so caches in other
    /// processes can notice.
    async fn credentials_generation(&self) -> Result<i64>;
    /// Records console session `id` as signed out until it would have expired (`expires_at`);
    /// records an hour past their expiry as of `now` are dropped.
    async fn sign_out_console_session(&self, id: &str, expires_at: Millis, now: Millis) -> Result<()>;
    /// Whether console session `id` was signed out.
    async fn console_session_signed_out(&self, id: &str) -> Result<bool>;
}

/// The registry's own settings by name (the registry policy, ECR's account settings).
#[async_trait]
pub trait RegistrySettingStore: Send + Sync {
    /// Every setting as (name, value), sorted by name.
    async fn registry_settings(&self) -> Result<Vec<(String, String)>>;
    /// Sets (`Some`) or removes (`None`) a setting; returns its previous value. A change moves
    /// [`RegistrySettingStore::registry_settings_generation`]; removing nothing changes nothing.
    async fn put_registry_setting(&self, name: &str, value: Option<&str>) -> Result<Option<String>>;
    /// A counter that changes whenever a setting changes, so caches in other processes can notice.
    async fn registry_settings_generation(&self) -> Result<i64>;
}

/// A document stored under a repository prefix (`ROOT`: every repository): the service owns
/// the document's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixedDocument {
    pub prefix: String,
    pub document: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A pull-through cache rule as stored.
pub type CacheRuleRecord = PrefixedDocument;

/// Counts of one rule's pulls since the last flush (added to the stored totals), or the totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatsDelta {
    /// Pulls answered from what the cache holds.
    pub hits: i64,
    /// Pulls that fetched from the upstream.
    pub misses: i64,
    pub bytes_from_cache: i64,
    pub bytes_from_upstream: i64,
    /// The latest upstream failure: when (ms) and what.
    pub last_error: Option<(Millis, String)>,
}

/// The pull-through cache's configuration: its rules, and the upstream credentials
/// (`berth secret put`) they name, sealed by the auth layer before they get here.
#[async_trait]
pub trait PullThroughStore: Send + Sync {
    /// Creates or replaces the sealed credentials stored under `name`.
    async fn put_upstream_secret(&self, name: &str, ciphertext: &[u8], now: Millis) -> Result<()>;
    async fn upstream_secret(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Fails with `CacheRuleExists`.
    async fn create_cache_rule(&self, prefix: &str, document: &str, now: Millis) -> Result<CacheRuleRecord>;
    /// Replaces the rule's document; fails with `CacheRuleNotFound`.
    async fn update_cache_rule(&self, prefix: &str, document: &str, now: Millis) -> Result<CacheRuleRecord>;
    /// Every rule, sorted by prefix.
    async fn cache_rules(&self) -> Result<Vec<CacheRuleRecord>>;
    /// Returns the rule it removed; fails with `CacheRuleNotFound`.
    async fn delete_cache_rule(&self, prefix: &str) -> Result<CacheRuleRecord>;
    /// Adds each rule's counts to its stored totals (a newer last error replaces an older one).
    async fn add_cache_stats(&self, deltas: &[(String, CacheStatsDelta)]) -> Result<()>;
    /// Every rule prefix's totals, sorted by prefix (also of rules deleted since).
    async fn cache_stats(&self) -> Result<Vec<(String, CacheStatsDelta)>>;
}

/// A repository creation template as stored.
pub type TemplateRecord = PrefixedDocument;

/// Chooses, from every stored template, the settings document of a repository being created
/// implicitly; `Err` (a reason) refuses the creation. Runs inside the creating transaction.
pub type TemplateChooser<'a> = &'a (dyn Fn(&[TemplateRecord]) -> std::result::Result<String, String> + Send + Sync);

/// Repository creation templates, and repositories created by them.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Fails with `TemplateExists`.
    async fn create_template(&self, prefix: &str, document: &str, now: Millis) -> Result<TemplateRecord>;
    /// Replaces the template's document; fails with `TemplateNotFound`.
    async fn update_template(&self, prefix: &str, document: &str, now: Millis) -> Result<TemplateRecord>;
    /// Every template, sorted by prefix.
    async fn templates(&self) -> Result<Vec<TemplateRecord>>;
    /// Returns the template it removed; fails with `TemplateNotFound`.
    async fn delete_template(&self, prefix: &str) -> Result<TemplateRecord>;
    /// Returns the repository, creating it if missing with the settings `choose` makes from the
    /// templates read in the same transaction (so the repository never exists without them),
    /// and whether this call created it.
    async fn ensure_repository_from_templates(
        &self,
        origin: &Origin,
        name: &RepositoryName,
        choose: TemplateChooser<'_>,
        now: Millis,
    ) -> Result<(Repository, bool)>;
}

/// Principals whose pulls leave `lastRecordedPullTime` alone (ECR's pull-time update exclusions).
#[async_trait]
pub trait PullExclusionStore: Send + Sync {
    /// Fails with `ExclusionExists`; returns when it was registered.
    async fn register_pull_exclusion(&self, principal_arn: &str, now: Millis) -> Result<Millis>;
    /// Fails with `ExclusionNotFound`.
    async fn deregister_pull_exclusion(&self, principal_arn: &str) -> Result<()>;
    /// Every exclusion with its registration time, sorted by ARN.
    async fn pull_exclusions(&self) -> Result<Vec<(String, Millis)>>;
}

/// Consumers of the event log (ARCHITECTURE.md, "Event log"). Each registered consumer gets its
/// own delivery of every event committed after it registered; a claim leases deliveries to one
/// claimer (`token`) until `lease_until`, and the claimer acknowledges them or releases them for
/// a retry. Within a repository a consumer sees events in commit order: a repository's deliveries
/// are claimed only from its oldest undelivered one on, by one claimer at a time.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Returns false if the consumer was registered already (nothing changes).
    async fn register_consumer(&self, name: &str, now: Millis) -> Result<bool>;
    /// Drops the consumer with its undelivered events; returns whether it existed.
    async fn unregister_consumer(&self, name: &str) -> Result<bool>;
    /// Leases up to `limit` of `consumer`'s deliveries that are due at `now` to the claimer
    /// `token`, in event order. Leases that ran out (their claimer crashed) are claimable again.
    async fn claim_events(
        &self,
        consumer: &str,
        token: &str,
        limit: usize,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<ClaimedEvent>>;
    /// Marks delivered those of `ids` still leased to `token`; returns how many.
    async fn ack_events(&self, consumer: &str, token: &str, ids: &[i64]) -> Result<u64>;
    /// Gives back those of `ids` still leased to `token`, due again at `retry_at`; returns how many.
    async fn release_events(&self, consumer: &str, token: &str, ids: &[i64], retry_at: Millis) -> Result<u64>;
    /// Deletes events recorded before `before` that every consumer has acknowledged.
    async fn prune_events(&self, before: Millis) -> Result<u64>;
    /// How many events `consumer` has not acknowledged yet (leased or not).
    async fn pending_events(&self, consumer: &str) -> Result<u64>;
    /// Whether `consumer` has yet to acknowledge a push, tag or restore of `digest` in `repo`
    /// that no replication push made (what replication would still send).
    async fn awaits_delivery(&self, consumer: &str, repo: &str, digest: &str) -> Result<bool>;
    /// Every registered consumer with its backlog, by name.
    async fn list_consumers(&self) -> Result<Vec<ConsumerRecord>>;
    /// Drops `name` with its undelivered events, unless it was registered or claimed for at or
    /// after `active_since` (a server still has it configured). One statement: a claim racing
    /// the removal either counts or finds the consumer gone.
    async fn remove_idle_consumer(&self, name: &str, active_since: Millis) -> Result<ConsumerRemoval>;
}

/// Replication's configuration document and per-image, per-destination status (the work itself
/// comes from the event log).
#[async_trait]
pub trait ReplicationStore: Send + Sync {
    /// The JSON document `put_replication_configuration` stored last, if any.
    async fn replication_configuration(&self) -> Result<Option<String>>;
    async fn put_replication_configuration(&self, document: &str, now: Millis) -> Result<()>;
    /// Records (replaces) where `digest` of `repo` stands at the status's destination.
    async fn set_replication_status(&self, repo: &str, digest: &str, status: &ReplicationStatusRecord) -> Result<()>;
    /// Every destination's status of `digest` in `repo`.
    async fn replication_statuses(&self, repo: &str, digest: &str) -> Result<Vec<ReplicationStatusRecord>>;
}

/// What the store holds in all, for the operator's gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Distinct blobs some repository links, and their bytes (each blob counted once).
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Upload sessions not yet finished, cancelled or expired.
    pub uploads: u64,
}

/// Readiness and totals for health probes and metrics.
#[async_trait]
pub trait Health: Send + Sync {
    /// One round trip to the database: an error when it cannot be reached, or when writes fail
    /// until a restart.
    async fn ping(&self) -> Result<()>;
    /// Counts over the whole store: one scan of the blob links' digest index, so callers run it
    /// periodically, not per request.
    async fn totals(&self) -> Result<StoreTotals>;
    /// This process's connection pools as they are now (no I/O).
    fn pools(&self) -> Vec<PoolStatus>;
}

/// One connection pool of this process, for the operator's gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// `readers` or `writer`.
    pub name: &'static str,
    /// Connections open, idle among them, and the most the pool opens.
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

#[async_trait]
pub trait Shutdown: Send + Sync {
    /// Flushes and closes connections (graceful shutdown).
    async fn close(&self);
}

/// The whole metadata store, as the service and the CLI hold it.
pub trait MetadataStore:
    RepositoryStore
    + BlobLinkStore
    + ManifestStore
    + UploadStore
    + GcStore
    + CredentialStore
    + RegistrySettingStore
    + EventStore
    + ReplicationStore
    + Health
    + PullThroughStore
    + TemplateStore
    + PullExclusionStore
    + Shutdown
    + 'static
{
}

impl<T> MetadataStore for T where
    T: RepositoryStore
        + BlobLinkStore
        + ManifestStore
        + UploadStore
        + GcStore
        + CredentialStore
        + RegistrySettingStore
        + EventStore
        + ReplicationStore
        + Health
        + PullThroughStore
        + TemplateStore
        + PullExclusionStore
        + Shutdown
        + 'static
{
}
