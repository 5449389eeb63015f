//! Registry metadata: repositories, per-repository blob links, manifests (exact pushed bytes),
//! tags, index → child and subject → referrer edges, upload sessions and credentials.
//!
//! [`MetadataStore`] is the one trait every backend implements (SQLite embedded, PostgreSQL for
//! scale-out); [`testsuite::run_all`] is the behaviour every backend must show.
//!
//! Invariants every backend keeps, each inside one transaction:
//! - a manifest is stored only if every blob it needs is linked in its repository and every
//!   child of an index is a manifest in the same repository;
//! - a manifest that an index in the same repository lists as a child cannot be deleted;
//! - a tag always points at a manifest that exists in its repository.

mod gc;
pub mod postgres;
mod sql;
pub mod sqlite;
pub mod testsuite;

use async_trait::async_trait;
use berth_spec::{Digest, Reference, RepositoryName, Tag};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

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
    /// A blob a manifest needs is not linked in the repository.
    #[error("blob {0} is not in the repository")]
    BlobUnknown(Digest),
    /// A child an index lists is not a manifest in the repository.
    #[error("manifest {0} is not in the repository")]
    ManifestUnknown(Digest),
    /// The manifest is a child of this index in the same repository.
    #[error("manifest is referenced by index {index}")]
    ManifestReferenced { index: Digest },
    /// The tag is immutable and already points at `current`.
    #[error("tag {tag} is immutable and already points at {current}")]
    TagImmutable { tag: String, current: Digest },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("metadata backend error: {0}")]
    Backend(String),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub created_at: Millis,
    /// ECR settings (tag mutability, scanning, encryption, policies, resource tags) as a JSON
    /// document owned by the registry service; opaque to the store.
    pub settings: String,
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
}

/// An image as the ECR API lists it: a manifest and the tags pointing at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub manifest: ManifestRecord,
    /// Sorted byte-wise.
    pub tags: Vec<String>,
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
    /// Blobs (config, distributable layers) that must be linked in `repo`; their sizes add up to
    /// the image size.
    pub blobs: &'a [(Digest, u64)],
    /// Child manifests (of an index) that must exist in `repo`.
    pub children: &'a [Digest],
    pub tag: Option<&'a Tag>,
    /// When set, moving an existing `tag` to another digest fails with `TagImmutable`.
    pub tag_immutable: bool,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// False when a manifest with this digest already was in the repository.
    pub manifest_created: bool,
    /// Where `tag` pointed before, if it existed.
    pub previous_tag_target: Option<Digest>,
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
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    // ---- repositories
    /// Fails with `RepositoryExists`.
    async fn create_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository>;
    /// Returns the repository, creating it with `settings` if missing (create-on-push).
    async fn ensure_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository>;
    async fn get_repository(&self, name: &RepositoryName) -> Result<Option<Repository>>;
    /// Fails with `RepositoryNotFound`.
    async fn set_repository_settings(&self, name: &RepositoryName, settings: &str) -> Result<()>;
    /// Repositories sorted by name, strictly after `after`, at most `limit`.
    async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<Repository>>;
    /// Deletes a repository with its tags, manifests, blob links and uploads. Without `force`,
    /// fails with `RepositoryNotEmpty` if it holds manifests. Returns the removed repository.
    async fn delete_repository(&self, name: &RepositoryName, force: bool) -> Result<Repository>;

    // ---- blob links
    /// Links a committed blob into a repository (which must exist); linking twice is a no-op.
    async fn link_blob(&self, repo: &RepositoryName, digest: &Digest, size: u64, now: Millis) -> Result<()>;
    /// Size of the blob if it is linked in `repo`.
    async fn linked_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<u64>>;
    /// Removes the link; returns whether it existed.
    async fn unlink_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool>;
    /// Repositories (sorted) in which the blob is linked, for mounts without `from` and for GC.
    async fn repositories_with_blob(&self, digest: &Digest) -> Result<Vec<String>>;

    // ---- manifests and tags
    /// Stores a manifest (and moves `tag` to it) in one transaction, enforcing the invariants
    /// above. Re-putting identical bytes is fine (`manifest_created: false`).
    async fn put_manifest(&self, put: PutManifest<'_>) -> Result<PutOutcome>;
    /// Resolves a tag or digest in `repo`.
    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Option<ManifestRecord>>;
    /// Deletes a manifest, its tags and its child edges. `ManifestUnknown` if absent,
    /// `ManifestReferenced` if an index in the repository lists it.
    async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()>;
    /// Removes a tag (not the manifest); returns the digest it pointed at.
    async fn delete_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>>;
    /// Tags sorted byte-wise, strictly after `last`, at most `limit`.
    async fn list_tags(&self, repo: &RepositoryName, last: Option<&str>, limit: Option<usize>) -> Result<Vec<String>>;
    /// Manifests in `repo` whose `subject` is `subject`, sorted by digest.
    async fn referrers(&self, repo: &RepositoryName, subject: &Digest) -> Result<Vec<ManifestRecord>>;
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

    // ---- upload sessions
    async fn create_upload(&self, session: &UploadSession) -> Result<()>;
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>>;
    async fn touch_upload(&self, id: &str, now: Millis) -> Result<()>;
    /// Returns whether it existed.
    async fn delete_upload(&self, id: &str) -> Result<bool>;
    /// Deletes finished sessions in one write (one commit for many; missing ids are skipped).
    async fn delete_uploads(&self, ids: &[String]) -> Result<()>;
    /// Sessions not updated since `before`.
    async fn stale_uploads(&self, before: Millis) -> Result<Vec<UploadSession>>;

    // ---- garbage collection (ARCHITECTURE.md, "Garbage collection")
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

    // ---- credentials
    /// Fails with `UserExists` (same name or same access key id).
    async fn create_user(&self, user: &UserRecord) -> Result<()>;
    /// Users sorted by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>>;
    /// Returns whether it existed.
    async fn delete_user(&self, name: &str) -> Result<bool>;
    async fn user_by_access_key(&self, access_key_id: &str) -> Result<Option<UserRecord>>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;
    /// A counter that changes whenever users change, so caches in other processes can notice.
    async fn credentials_generation(&self) -> Result<i64>;

    /// Flushes and closes connections (graceful shutdown).
    async fn close(&self);
}
