//! Content-addressed blob storage.
//!
//! One narrow trait, [`BlobStore`], in the spirit of CNCF distribution's storage driver: upload
//! staging (append-only, all-or-nothing per call), an atomic commit under the blob's digest, and
//! reads. It knows nothing of repositories: which repository may see which blob is metadata.
//! Every backend runs the same behaviour suite, [`testsuite::run_all`].
//!
//! Invariant: a blob is readable under a digest only after `commit` was called with that digest,
//! and the caller only commits after it verified the data hashes to that digest.

mod direct;
pub mod fs;
pub mod s3;
pub mod testsuite;

use std::io;
use std::ops::Range;

use async_trait::async_trait;
use berth_spec::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use direct::release_idle_buffers;
pub use fs::FsBlobStore;
pub use s3::{S3BlobStore, S3Config};

/// A stream of blob bytes, as received from a client or as served to one.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("upload {0} does not exist")]
    UploadNotFound(String),
    #[error("upload is at offset {current}, not at the requested offset")]
    OffsetMismatch { current: u64 },
    #[error("blob {0} does not exist")]
    BlobNotFound(Digest),
    #[error("range is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The client's body failed mid-stream (disconnect, truncated chunk); nothing was kept.
    #[error("request body failed: {0}")]
    Body(io::Error),
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Called with each chunk exactly once, in order, as it streams in: lets the caller hash while
/// the data is written, without a second pass. What it saw counts only if `append` succeeds.
pub type ChunkObserver<'a> = &'a mut (dyn FnMut(&[u8]) + Send);

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Creates an empty upload staging area named `upload` (an id the caller made unique).
    async fn create_upload(&self, upload: &str) -> Result<(), StoreError>;

    /// Appends `data` at `offset`, which must equal the upload's current length. All or nothing:
    /// if the stream or a write fails, the upload is truncated back to `offset`. Returns the new length.
    /// The rollback runs in this future, so it must be polled to the end: a caller whose own
    /// future may be dropped (a request whose client went away) runs it on a task of its own.
    async fn append(
        &self,
        upload: &str,
        offset: u64,
        data: ByteStream,
        observe: ChunkObserver<'_>,
    ) -> Result<u64, StoreError>;

    /// Current length of an upload, `None` if it does not exist.
    async fn upload_len(&self, upload: &str) -> Result<Option<u64>, StoreError>;

    /// Reads an upload back (to hash it with another algorithm, or after a restart lost the hash state).
    async fn read_upload(&self, upload: &str) -> Result<ByteStream, StoreError>;

    /// Durably moves a verified upload to its content address. If the blob already exists the
    /// upload is simply dropped (content addressing makes both copies identical).
    async fn commit(&self, upload: &str, digest: &Digest) -> Result<(), StoreError>;

    /// Removes an upload's staged data; removing a missing upload is not an error.
    async fn abort(&self, upload: &str) -> Result<(), StoreError>;

    /// Size of a committed blob, `None` if absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;

    /// Reads a committed blob, or the byte `range` of it (already clamped by the caller to the size).
    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, StoreError>;

    /// Deletes a committed blob's data; deleting a missing blob is not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), StoreError>;

    /// Every committed blob with its size, in no particular order, read lazily. Garbage
    /// collection compares it with the metadata: it also finds data no metadata knows (committed
    /// just before a crash, never linked). Blobs committed or deleted while it runs may or may
    /// not appear.
    fn list_blobs(&self) -> BoxStream<'static, Result<(Digest, u64), StoreError>>;

    /// Readiness (`/readyz`): an error when the store could not take a push now. By default a
    /// lookup of the empty blob, which costs one request whether or not it exists.
    async fn probe(&self) -> Result<(), StoreError> {
        self.stat(&Digest::sha256_of(b"")).await.map(|_| ())
    }
}
