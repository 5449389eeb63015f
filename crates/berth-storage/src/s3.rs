//! S3 backend: blobs in an S3-compatible bucket, so several servers can share them.
//!
//! Layout under the optional key prefix:
//!
//! - `blobs/<alg>/<hh>/<hex>`: committed blobs, the same paths as the filesystem backend.
//! - `uploads/<id>/created`: an empty marker; the upload exists exactly while it does.
//! - `uploads/<id>/chunk-<offset>-<nonce>`: one object per successful `append`, `offset` zero-padded
//!   to 20 digits so listings sort by it, `nonce` random so no two appends share a key.
//!
//! Every server sees the same staging because it lives in the bucket and S3 lists, reads and
//! writes with strong consistency. An upload's bytes are its *chain*: starting at offset 0, the
//! one chunk at the current offset, then the one at the offset after it, and so on; its length
//! is where the chain stops.
//!
//! - **Append** checks the offset against the chain, streams the body into a new chunk object
//!   (one PUT when it fits in a part, else a multipart upload of [`PART_SIZE`] parts), then lists
//!   again: if another chunk claimed the same offset meanwhile (two servers, one upload), it
//!   deletes its own and reports the offset as taken. Of two racing appends at most one
//!   succeeds; while both exist the chain stops before them, so a third cannot build on either.
//!   A failed body aborts the object before it is visible: all or nothing.
//! - **Commit** makes the blob appear atomically under its digest: a single chunk is copied
//!   server-side (S3 copies up to 5 GiB); several chunks are streamed through this server into
//!   one object, which is hashed on the way and discarded unless it matches the digest, so a
//!   chain changed by another server between the caller's check and the commit cannot be
//!   committed under the wrong digest. Committing a digest that exists only drops the upload.
//!
//! Memory per transfer is bounded: up to [`PARTS_IN_FLIGHT`] parts being sent plus one filling.
//! A server killed mid-append leaves an incomplete multipart upload that S3 never shows as an
//! object; a bucket lifecycle rule (`AbortIncompleteMultipartUpload`) reclaims its storage.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_spec::{Digest, Digester};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayloadMut, WriteMultipart};

use crate::{BlobStore, ByteStream, ChunkObserver, StoreError};

/// Size of a multipart part: S3's 10,000-part limit then allows 80 GiB per object, above ECR's
/// 52,000 MiB layer limit, while a transfer holds at most `(PARTS_IN_FLIGHT + 1) * PART_SIZE`.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one object uploaded at the same time.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Largest object S3's CopyObject accepts; a bigger single chunk is streamed instead.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;
const MARKER: &str = "created";
const CHUNK_PREFIX: &str = "chunk-";

/// Where the bucket is and how to reach it. Credentials not given here come from the standard
/// AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...).
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// `None`: AWS itself; otherwise the S3-compatible server's URL (path-style requests).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Key prefix for everything this store writes, so one bucket can hold several registries.
    pub prefix: Option<String>,
    /// Allow an `http://` endpoint.
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    /// The key prefix without slashes at either end; empty for the bucket's root.
    root: String,
}

fn store_error(e: object_store::Error) -> StoreError {
    StoreError::Io(e.into())
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3BlobStore {
    /// Connects and checks that the bucket answers, so a wrong name or credential fails at start.
    pub async fn open(config: S3Config) -> io::Result<S3BlobStore> {
        // reqwest is built without a TLS provider of its own: use ring, like the rest of Berth.
        // An error only means some provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            // No total deadline: a blob streams to a slow client for as long as it takes, but a
            // connection that stops delivering fails (and object_store resumes reads by range).
            // Before allow_http, which lives in the client options too.
            .with_client_options(
                ClientOptions::new().with_timeout_disabled().with_read_timeout(Duration::from_secs(60)),
            )
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(io::Error::other)?;
        let root = config.prefix.as_deref().unwrap_or("").trim_matches('/').to_owned();
        if !root.is_empty() {
            Path::parse(&root).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("invalid S3 key prefix {root:?}: {e}"))
            })?;
        }
        let this = S3BlobStore { store: Arc::new(store), root };
        this.store
            .list_with_delimiter(Some(&this.key("blobs")))
            .await
            .map_err(|e| io::Error::other(format!("S3 bucket {:?} is not usable: {e}", config.bucket)))?;
        Ok(this)
    }

    fn key(&self, rest: &str) -> Path {
        if self.root.is_empty() { Path::from(rest) } else { Path::from(format!("{}/{rest}", self.root)) }
    }

    fn upload_dir(&self, upload: &str) -> Result<Path, StoreError> {
        // Upload ids come from URLs: allow only characters that cannot form a key separator.
        if upload.is_empty() || !upload.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StoreError::UploadNotFound(upload.to_owned()));
        }
        Ok(self.key(&format!("uploads/{upload}")))
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.key(&format!("blobs/{}/{}/{hex}", digest.algorithm().as_str(), &hex[..2]))
    }

    async fn staging(&self, dir: &Path) -> Result<Staging, StoreError> {
        let objects: Vec<_> = self.store.list(Some(dir)).try_collect().await.map_err(store_error)?;
        let mut staging = Staging { exists: false, chunks: Vec::new() };
        for object in objects {
            let Some(name) = object.location.filename() else { continue };
            if name == MARKER {
                staging.exists = true;
            } else if let Some(offset) = chunk_offset(name) {
                staging.chunks.push(Chunk { offset, size: object.size, location: object.location });
            }
        }
        staging.chunks.sort_by_key(|c| c.offset);
        Ok(staging)
    }

    /// The staging of an existing upload, else `UploadNotFound`.
    async fn existing_staging(&self, upload: &str) -> Result<Staging, StoreError> {
        let staging = self.staging(&self.upload_dir(upload)?).await?;
        if !staging.exists {
            return Err(StoreError::UploadNotFound(upload.to_owned()));
        }
        Ok(staging)
    }

    /// Streams `chunks` in order, as one byte stream.
    fn read_chunks(&self, chunks: Vec<Path>) -> ByteStream {
        let store = self.store.clone();
        stream::iter(chunks)
            .then(move |location| {
                let store = store.clone();
                async move { store.get(&location).await.map(|got| got.into_stream()) }
            })
            .try_flatten()
            .map_err(io::Error::from)
            .boxed()
    }

    /// Writes the chain into one object at `to`, checking on the way that it hashes to `digest`.
    async fn compose(&self, chunks: Vec<Path>, to: &Path, digest: &Digest) -> Result<(), StoreError> {
        let mut writer = ObjectWriter::new(self.store.clone(), to.clone());
        let mut hasher = Digester::new(digest.algorithm());
        let mut data = self.read_chunks(chunks);
        let written: Result<(), StoreError> = async {
            while let Some(bytes) = data.next().await {
                let bytes = bytes?;
                hasher.update(&bytes);
                writer.write(&bytes).await.map_err(store_error)?;
            }
            Ok(())
        }
        .await;
        let result = written.and_then(|()| match hasher.finish() {
            actual if actual == *digest => Ok(()),
            actual => Err(StoreError::Io(io::Error::other(format!(
                "staged upload hashes to {actual}, not {digest}: it changed while being committed"
            )))),
        });
        match result {
            Ok(()) => writer.finish().await.map_err(store_error),
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        }
    }

    /// Deletes the marker first (the upload is gone from then on), then every chunk.
    async fn remove_staging(&self, dir: &Path) -> Result<(), StoreError> {
        match self.store.delete(&dir.clone().join(MARKER)).await {
            Err(e) if !is_not_found(&e) => return Err(store_error(e)),
            _ => {}
        }
        let objects = self.store.list(Some(dir)).map_ok(|meta| meta.location).boxed();
        let mut deleted = self.store.delete_stream(objects);
        while let Some(result) = deleted.next().await {
            match result {
                Err(e) if !is_not_found(&e) => return Err(store_error(e)),
                _ => {}
            }
        }
        Ok(())
    }
}

struct Chunk {
    offset: u64,
    size: u64,
    location: Path,
}

/// An upload's staging as one listing saw it; chunks sorted by offset.
struct Staging {
    exists: bool,
    chunks: Vec<Chunk>,
}

impl Staging {
    /// The chunks that make up the upload (see the module doc) and its length.
    fn chain(&self) -> (Vec<&Chunk>, u64) {
        let mut chain = Vec::new();
        let mut end = 0;
        loop {
            let mut at_end = self.chunks.iter().filter(|c| c.offset == end);
            match (at_end.next(), at_end.next()) {
                (Some(only), None) if only.size > 0 => {
                    chain.push(only);
                    end += only.size;
                }
                _ => return (chain, end),
            }
        }
    }

    fn len(&self) -> u64 {
        self.chain().1
    }

    /// Whether a chunk other than `own` starts at `offset`.
    fn contested(&self, offset: u64, own: &Path) -> bool {
        self.chunks.iter().any(|c| c.offset == offset && c.location != *own)
    }
}

fn chunk_offset(name: &str) -> Option<u64> {
    let (offset, _nonce) = name.strip_prefix(CHUNK_PREFIX)?.split_once('-')?;
    offset.parse().ok()
}

/// Writes one object of unknown length in bounded memory: one PUT if it stays under a part,
/// else a multipart upload. Nothing is visible under the key unless `finish` succeeds.
struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    location: Path,
    state: WriterState,
}

enum WriterState {
    Small(PutPayloadMut),
    Multipart(WriteMultipart),
    /// A multipart upload could not be started; nothing to clean up.
    Failed,
}

impl ObjectWriter {
    fn new(store: Arc<dyn ObjectStore>, location: Path) -> ObjectWriter {
        ObjectWriter { store, location, state: WriterState::Small(PutPayloadMut::new()) }
    }

    async fn write(&mut self, data: &[u8]) -> object_store::Result<()> {
        match &mut self.state {
            WriterState::Small(buffer) if buffer.content_length() + data.len() <= PART_SIZE => {
                buffer.extend_from_slice(data);
            }
            WriterState::Small(buffer) => {
                let buffered = std::mem::take(buffer).freeze();
                self.state = WriterState::Failed;
                let upload = self.store.put_multipart(&self.location).await?;
                let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                for bytes in buffered {
                    parts.put(bytes);
                }
                parts.write(data);
                self.state = WriterState::Multipart(parts);
            }
            WriterState::Multipart(parts) => {
                parts.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                parts.write(data);
            }
            WriterState::Failed => unreachable!("write after a failed write"),
        }
        Ok(())
    }

    async fn finish(self) -> object_store::Result<()> {
        match self.state {
            WriterState::Small(buffer) => self.store.put(&self.location, buffer.freeze()).await.map(drop),
            // Aborts the multipart upload itself when completing fails.
            WriterState::Multipart(parts) => parts.finish().await.map(drop),
            WriterState::Failed => unreachable!("finish after a failed write"),
        }
    }

    async fn abort(self) {
        if let WriterState::Multipart(parts) = self.state
            && let Err(e) = parts.abort().await
        {
            tracing::warn!(key = %self.location, error = %e, "could not abort a multipart upload; a bucket lifecycle rule reclaims it");
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn create_upload(&self, upload: &str) -> Result<(), StoreError> {
        let dir = self.upload_dir(upload)?;
        self.store.put(&dir.clone().join(MARKER), Bytes::new().into()).await.map_err(store_error)?;
        Ok(())
    }

    async fn append(
        &self,
        upload: &str,
        offset: u64,
        mut data: ByteStream,
        observe: ChunkObserver<'_>,
    ) -> Result<u64, StoreError> {
        let dir = self.upload_dir(upload)?;
        let current = self.existing_staging(upload).await?.len();
        if current != offset {
            return Err(StoreError::OffsetMismatch { current });
        }
        let own = dir.clone().join(format!("{CHUNK_PREFIX}{offset:020}-{}", uuid::Uuid::new_v4().simple()));
        let mut writer = ObjectWriter::new(self.store.clone(), own.clone());
        let mut written = 0u64;
        let streamed: Result<(), StoreError> = async {
            while let Some(bytes) = data.next().await {
                let bytes = bytes.map_err(StoreError::Body)?;
                writer.write(&bytes).await.map_err(store_error)?;
                observe(&bytes);
                written += bytes.len() as u64;
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            writer.abort().await;
            return Err(e);
        }
        if written == 0 {
            // An empty chunk would contest the offset with the next real one: store nothing.
            return Ok(offset);
        }
        writer.finish().await.map_err(store_error)?;

        let after = self.staging(&dir).await?;
        if !after.exists || after.contested(offset, &own) {
            // Aborted meanwhile, or another server appended at the same offset: give way.
            self.store.delete(&own).await.map_err(store_error)?;
            if !after.exists {
                return Err(StoreError::UploadNotFound(upload.to_owned()));
            }
            let current = self.staging(&dir).await?.len();
            return Err(StoreError::OffsetMismatch { current });
        }
        Ok(offset + written)
    }

    async fn upload_len(&self, upload: &str) -> Result<Option<u64>, StoreError> {
        let staging = self.staging(&self.upload_dir(upload)?).await?;
        Ok(staging.exists.then(|| staging.len()))
    }

    async fn read_upload(&self, upload: &str) -> Result<ByteStream, StoreError> {
        let staging = self.existing_staging(upload).await?;
        let chunks = staging.chain().0.into_iter().map(|c| c.location.clone()).collect();
        Ok(self.read_chunks(chunks))
    }

    async fn commit(&self, upload: &str, digest: &Digest) -> Result<(), StoreError> {
        let dir = self.upload_dir(upload)?;
        let to = self.blob_key(digest);
        match self.store.head(&to).await {
            Ok(_) => return self.remove_staging(&dir).await,
            Err(e) if !is_not_found(&e) => return Err(store_error(e)),
            Err(_) => {}
        }
        let staging = self.existing_staging(upload).await?;
        let (chain, len) = staging.chain();
        match chain.as_slice() {
            [only] if len <= MAX_COPY => self.store.copy(&only.location, &to).await.map_err(store_error)?,
            _ => self.compose(chain.iter().map(|c| c.location.clone()).collect(), &to, digest).await?,
        }
        self.remove_staging(&dir).await
    }

    async fn abort(&self, upload: &str) -> Result<(), StoreError> {
        self.remove_staging(&self.upload_dir(upload)?).await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match self.store.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        let key = self.blob_key(digest);
        let not_found = |e: object_store::Error| {
            if is_not_found(&e) { StoreError::BlobNotFound(digest.clone()) } else { store_error(e) }
        };
        let Some(range) = range else {
            return Ok(self.store.get(&key).await.map_err(not_found)?.into_stream().map_err(io::Error::from).boxed());
        };
        let size = self.store.head(&key).await.map_err(not_found)?.size;
        if range.start > range.end || range.end > size {
            return Err(StoreError::RangeNotSatisfiable { size });
        }
        if range.is_empty() {
            // S3 cannot express an empty range.
            return Ok(stream::empty().boxed());
        }
        let options = GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() };
        Ok(self.store.get_opts(&key, options).await.map_err(not_found)?.into_stream().map_err(io::Error::from).boxed())
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        match self.store.delete(&self.blob_key(digest)).await {
            Err(e) if !is_not_found(&e) => Err(store_error(e)),
            _ => Ok(()),
        }
    }

    fn list_blobs(&self) -> BoxStream<'static, Result<(Digest, u64), StoreError>> {
        let blobs = self.key("blobs");
        let below = format!("{blobs}/");
        self.store
            .list(Some(&blobs))
            .map_err(store_error)
            .try_filter_map(move |object| {
                let key = object.location.as_ref();
                // blobs/<alg>/<hh>/<hex>, anything else is not Berth's.
                let digest =
                    key.strip_prefix(below.as_str()).and_then(|rest| match rest.split('/').collect::<Vec<_>>()[..] {
                        [alg, hh, hex] if hex.starts_with(hh) => format!("{alg}:{hex}").parse::<Digest>().ok(),
                        _ => None,
                    });
                if digest.is_none() {
                    tracing::warn!(key, "not a blob; left alone");
                }
                futures::future::ready(Ok(digest.map(|d| (d, object.size))))
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use berth_spec::Algorithm;
    use futures::future::join;

    use super::*;

    const ENDPOINT_VAR: &str = "BERTH_TEST_S3_ENDPOINT";

    /// A store on the test server under a key prefix of its own, or None (after saying so where
    /// the test output shows it) when no server is configured.
    async fn scratch_store(prefix: &str) -> Option<S3BlobStore> {
        let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
            // Straight to stderr: the test harness captures print macros of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: {ENDPOINT_VAR} not set; scripts/s3.sh starts a server and prints it ***\n"
            );
            return None;
        };
        let config = S3Config {
            bucket: std::env::var("BERTH_TEST_S3_BUCKET").unwrap_or_else(|_| "berth-test".into()),
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            prefix: Some(prefix.to_owned()),
            allow_http: true,
            access_key_id: Some("berth-test".into()),
            secret_access_key: Some("berth-test".into()),
        };
        Some(S3BlobStore::open(config).await.expect("the test S3 server is unreachable"))
    }

    fn unique_prefix(name: &str) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        format!("berth-test/{name}-{}-{nanos}", std::process::id())
    }

    fn body(parts: Vec<Vec<u8>>) -> ByteStream {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).boxed()
    }

    async fn collect(s: ByteStream) -> Vec<u8> {
        s.try_fold(Vec::new(), |mut acc, c| async move {
            acc.extend_from_slice(&c);
            Ok(acc)
        })
        .await
        .unwrap()
    }

    /// Deterministic bytes that differ at every offset of a part, so a misplaced part shows.
    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
    }

    /// The chain needs no server: it stops at a gap and before an offset two chunks claim.
    #[test]
    fn chain_follows_offsets_and_stops_at_gaps_and_contests() {
        let chunk = |offset: u64, size: u64, nonce: &str| Chunk {
            offset,
            size,
            location: Path::from(format!("uploads/u/{CHUNK_PREFIX}{offset:020}-{nonce}")),
        };
        let staging = |chunks: Vec<Chunk>| Staging { exists: true, chunks };
        assert_eq!(staging(vec![]).len(), 0);
        assert_eq!(staging(vec![chunk(0, 3, "a"), chunk(3, 4, "b"), chunk(7, 1, "c")]).len(), 8);
        assert_eq!(staging(vec![chunk(0, 3, "a"), chunk(5, 4, "stray")]).len(), 3, "a gap ends the chain");
        let contested = staging(vec![chunk(0, 3, "a"), chunk(3, 4, "b"), chunk(3, 2, "c"), chunk(7, 1, "d")]);
        assert_eq!(contested.len(), 3, "two chunks at one offset end the chain before them");
        assert!(contested.contested(3, &chunk(3, 4, "b").location));
        assert!(!contested.contested(0, &chunk(0, 3, "a").location));
        assert_eq!(chunk_offset(&format!("{CHUNK_PREFIX}{:020}-abc", 42)), Some(42));
        assert_eq!(chunk_offset(MARKER), None);
    }

    #[tokio::test]
    async fn conformance() {
        let prefix = unique_prefix("conformance");
        let Some(store) = scratch_store(&prefix).await else { return };
        crate::testsuite::run_all(&store).await;
        // Again through a second server's store on the same prefix, which now holds data.
        crate::testsuite::run_all(&scratch_store(&prefix).await.unwrap()).await;
    }

    /// Staging lives in the bucket: an upload started on one server continues on another.
    #[tokio::test]
    async fn servers_share_uploads_and_blobs() {
        let prefix = unique_prefix("shared");
        let Some(one) = scratch_store(&prefix).await else { return };
        let two = scratch_store(&prefix).await.unwrap();
        one.create_upload("shared-1").await.unwrap();
        one.append("shared-1", 0, body(vec![b"written on ".to_vec()]), &mut |_| {}).await.unwrap();
        assert_eq!(two.upload_len("shared-1").await.unwrap(), Some(11));
        two.append("shared-1", 11, body(vec![b"two servers".to_vec()]), &mut |_| {}).await.unwrap();
        assert_eq!(collect(one.read_upload("shared-1").await.unwrap()).await, b"written on two servers");
        let digest = Digest::sha256_of(b"written on two servers");
        one.commit("shared-1", &digest).await.unwrap();
        assert_eq!(two.upload_len("shared-1").await.unwrap(), None);
        assert_eq!(collect(two.read(&digest, Some(11..14)).await.unwrap()).await, b"two");
        two.delete(&digest).await.unwrap();
        assert_eq!(one.stat(&digest).await.unwrap(), None);
    }

    /// Two servers appending at the same offset of one upload: never both succeed, and what
    /// stays staged is exactly what the successful append wrote.
    #[tokio::test]
    async fn racing_appends_at_one_offset_never_both_succeed() {
        let prefix = unique_prefix("race");
        let Some(one) = scratch_store(&prefix).await else { return };
        let two = scratch_store(&prefix).await.unwrap();
        for round in 0..5 {
            let id = format!("race-{round}");
            one.create_upload(&id).await.unwrap();
            let (a, b) = join(
                one.append(&id, 0, body(vec![b"from one".to_vec()]), &mut |_| {}),
                two.append(&id, 0, body(vec![b"from two".to_vec()]), &mut |_| {}),
            )
            .await;
            let staged = collect(one.read_upload(&id).await.unwrap()).await;
            match (a, b) {
                (Ok(8), Err(StoreError::OffsetMismatch { .. })) => assert_eq!(staged, b"from one"),
                (Err(StoreError::OffsetMismatch { .. }), Ok(8)) => assert_eq!(staged, b"from two"),
                (Err(StoreError::OffsetMismatch { .. }), Err(StoreError::OffsetMismatch { .. })) => {
                    assert_eq!(staged, b"")
                }
                other => panic!("round {round}: {other:?}"),
            }
            one.abort(&id).await.unwrap();
        }
    }

    /// Bodies larger than a part go up as multipart uploads; several chunks are composed and
    /// checked against the digest; a body failing after whole parts were sent leaves nothing.
    #[tokio::test]
    async fn multipart_appends_and_composed_commit() {
        let Some(store) = scratch_store(&unique_prefix("multipart")).await else { return };
        let first = pattern(PART_SIZE * 2 + 12345, 1);
        let second = pattern(PART_SIZE / 2, 2);
        store.create_upload("big").await.unwrap();
        let pieces: Vec<Vec<u8>> = first.chunks(1 << 20).map(<[u8]>::to_vec).collect();
        let mut hasher = Digester::new(Algorithm::Sha256);
        let len = store.append("big", 0, body(pieces), &mut |c| hasher.update(c)).await.unwrap();
        assert_eq!(len, first.len() as u64);

        let mut failing: Vec<io::Result<Bytes>> =
            (0..PART_SIZE * 2 / (1 << 20) + 1).map(|_| Ok(Bytes::from(vec![7u8; 1 << 20]))).collect();
        failing.push(Err(io::Error::other("client went away")));
        let broken: ByteStream = stream::iter(failing).boxed();
        let err = store.append("big", len, broken, &mut |_| {}).await.unwrap_err();
        assert!(matches!(err, StoreError::Body(_)), "{err:?}");
        assert_eq!(store.upload_len("big").await.unwrap(), Some(len));

        let len = store.append("big", len, body(vec![second.clone()]), &mut |c| hasher.update(c)).await.unwrap();
        let digest = hasher.finish();
        let whole = [first, second].concat();
        assert_eq!(len, whole.len() as u64);
        let wrong = Digest::sha256_of(b"not these bytes");
        assert!(store.commit("big", &wrong).await.is_err(), "a chain that does not hash to the digest is refused");
        assert_eq!(store.stat(&wrong).await.unwrap(), None);
        store.commit("big", &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(whole.len() as u64));
        assert!(collect(store.read(&digest, None).await.unwrap()).await == whole);
        let tail = whole.len() as u64 - 100..whole.len() as u64;
        assert_eq!(collect(store.read(&digest, Some(tail)).await.unwrap()).await, &whole[whole.len() - 100..]);
        store.delete(&digest).await.unwrap();
    }
}
