//! Uploads whose request goes away mid-body (its future dropped, as hyper does when the client
//! disconnects) or is cancelled mid-append, over the real SQLite store and each blob store: the
//! filesystem, and S3 when a test server is configured (`BERTH_TEST_S3_ENDPOINT`, started by
//! `scripts/s3.sh`). Bodies come from a channel, so the test decides when each byte arrives.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use berth_iam::RequestContext;
use berth_meta::SqliteStore;
use berth_registry::{Registry, RegistryConfig, RegistryError};
use berth_spec::{Digest, RepositoryName};
use berth_storage::{BlobStore, ByteStream, FsBlobStore, S3BlobStore, S3Config};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

/// Large enough that the filesystem store has written part of it (it writes 256 KiB batches)
/// and the S3 store has started a multipart upload (8 MiB parts).
const PIECE: usize = 1 << 20;
const PIECES_BEFORE_DROP: usize = 10;

struct Store {
    name: &'static str,
    registry: Arc<Registry>,
    blobs: Arc<dyn BlobStore>,
    dir: tempfile::TempDir,
}

/// The registry over each blob store this machine can run.
async fn stores() -> Vec<Store> {
    let mut stores = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path()).await.unwrap());
    stores.push(Store { name: "filesystem", registry: registry(dir.path(), blobs.clone()).await, blobs, dir });
    match std::env::var("BERTH_TEST_S3_ENDPOINT") {
        Ok(endpoint) => {
            let dir = tempfile::tempdir().unwrap();
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let config = S3Config {
                bucket: std::env::var("BERTH_TEST_S3_BUCKET").unwrap_or_else(|_| "berth-test".into()),
                endpoint: Some(endpoint),
                region: Some("us-east-1".into()),
                prefix: Some(format!("berth-test/registry-uploads-{}-{nanos}", std::process::id())),
                allow_http: true,
                access_key_id: Some("berth-test".into()),
                secret_access_key: Some("berth-test".into()),
            };
            let blobs: Arc<dyn BlobStore> = Arc::new(S3BlobStore::open(config).await.unwrap());
            stores.push(Store { name: "S3", registry: registry(dir.path(), blobs.clone()).await, blobs, dir });
        }
        Err(_) => {
            let _ =
                writeln!(io::stderr(), "\n*** S3 store SKIPPED: BERTH_TEST_S3_ENDPOINT not set (scripts/s3.sh) ***\n");
        }
    }
    stores
}

async fn registry(dir: &std::path::Path, blobs: Arc<dyn BlobStore>) -> Arc<Registry> {
    registry_with(dir, blobs, RegistryConfig::default()).await
}

async fn registry_with(dir: &std::path::Path, blobs: Arc<dyn BlobStore>, config: RegistryConfig) -> Arc<Registry> {
    let meta = SqliteStore::open(&dir.join("metadata.db")).await.unwrap();
    Registry::new(blobs, Arc::new(meta), config)
}

/// A registry on the filesystem whose uploads expire after `expiry`.
async fn expiring_registry(dir: &std::path::Path, expiry: Duration) -> Arc<Registry> {
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir).await.unwrap());
    registry_with(dir, blobs, RegistryConfig { upload_expiry: expiry, ..Default::default() }).await
}

/// A request body the test feeds; one piece in flight at a time, so a completed send means the
/// registry took the piece before.
fn fed_body() -> (mpsc::Sender<io::Result<Bytes>>, ByteStream) {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(1);
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
    (tx, body)
}

fn piece(i: usize) -> Bytes {
    Bytes::from(vec![i as u8; PIECE])
}

/// Sends `pieces` and waits until the registry has taken all but the last.
async fn feed(tx: &mpsc::Sender<io::Result<Bytes>>, pieces: std::ops::Range<usize>) {
    for i in pieces {
        tx.send(Ok(piece(i))).await.expect("the append is still reading its body");
    }
}

/// The server acting for itself: allowed everything, like the root user.
fn ctx() -> RequestContext {
    RequestContext::server("uploads-test", "test-request".into())
}

fn name() -> RepositoryName {
    "app".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_request_is_dropped_rolls_back_when_its_body_fails() {
    for store in stores().await {
        let registry = &store.registry;
        let upload = registry.start_upload(&ctx(), &name()).await.unwrap();
        registry.append_upload(&name(), &upload.id, None, fed_body_of(b"abc")).await.unwrap();

        let (tx, body) = fed_body();
        let request = tokio::spawn({
            let (registry, id) = (registry.clone(), upload.id.clone());
            async move { registry.append_upload(&name(), &id, None, body).await }
        });
        feed(&tx, 0..PIECES_BEFORE_DROP).await;
        // The client goes away: hyper drops the request's future, then fails its body.
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        tx.send(Err(io::Error::other("connection reset"))).await.ok();

        let status = registry.upload_status(&name(), &upload.id).await.unwrap();
        assert_eq!(status.offset, 3, "{}: the interrupted append was rolled back", store.name);
        // And the session goes on, its hash state consistent with the stored bytes.
        registry.append_upload(&name(), &upload.id, None, fed_body_of(b"def")).await.unwrap();
        let digest = Digest::sha256_of(b"abcdef");
        registry.finish_upload(&name(), &upload.id, &digest, None, None).await.unwrap();
        assert_eq!(registry.stat_blob(&name(), &digest).await.unwrap(), 6, "{}", store.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_request_is_dropped_completes_when_its_body_does() {
    for store in stores().await {
        let registry = &store.registry;
        let upload = registry.start_upload(&ctx(), &name()).await.unwrap();
        let (tx, body) = fed_body();
        let request = tokio::spawn({
            let (registry, id) = (registry.clone(), upload.id.clone());
            async move { registry.append_upload(&name(), &id, None, body).await }
        });
        feed(&tx, 0..PIECES_BEFORE_DROP).await;
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        feed(&tx, PIECES_BEFORE_DROP..PIECES_BEFORE_DROP + 2).await;
        drop(tx);

        let status = registry.upload_status(&name(), &upload.id).await.unwrap();
        let total = (PIECES_BEFORE_DROP + 2) * PIECE;
        assert_eq!(status.offset, total as u64, "{}: the append completed on its own", store.name);
        let data: Vec<u8> = (0..PIECES_BEFORE_DROP + 2).flat_map(|i| piece(i).to_vec()).collect();
        let digest = Digest::sha256_of(&data);
        registry.finish_upload(&name(), &upload.id, &digest, None, None).await.unwrap();
        assert_eq!(registry.stat_blob(&name(), &digest).await.unwrap(), total as u64, "{}", store.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_an_append_stops_it_and_the_append_reports_the_upload_unknown() {
    for store in stores().await {
        let registry = &store.registry;
        let upload = registry.start_upload(&ctx(), &name()).await.unwrap();
        let (tx, body) = fed_body();
        let append = tokio::spawn({
            let (registry, id) = (registry.clone(), upload.id.clone());
            async move { registry.append_upload(&name(), &id, None, body).await }
        });
        feed(&tx, 0..PIECES_BEFORE_DROP).await;
        // The client stalls mid-body; the cancel must not wait for it.
        tokio::time::timeout(Duration::from_secs(30), registry.cancel_upload(&name(), &upload.id))
            .await
            .expect("the cancel waited for a stalled body")
            .unwrap();
        let appended = tokio::time::timeout(Duration::from_secs(30), append).await.expect("the append kept waiting");
        assert!(
            matches!(appended.unwrap(), Err(RegistryError::BlobUploadUnknown)),
            "{}: an append cancelled mid-body must not succeed",
            store.name
        );
        drop(tx);
        assert!(matches!(registry.upload_status(&name(), &upload.id).await, Err(RegistryError::BlobUploadUnknown)));
        assert!(registry.metadata().get_upload(&upload.id).await.unwrap().is_none(), "{}", store.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monolithic_upload_whose_client_disconnects_leaves_nothing_behind() {
    for store in stores().await {
        let registry = &store.registry;
        let (tx, body) = fed_body();
        let digest = Digest::sha256_of(b"never sent whole");
        let request = tokio::spawn({
            let (registry, digest) = (registry.clone(), digest.clone());
            async move { registry.upload_monolithic(&ctx(), &name(), &digest, body).await }
        });
        feed(&tx, 0..PIECES_BEFORE_DROP).await;
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        tx.send(Err(io::Error::other("connection reset"))).await.ok();

        // No session row and no staged data, at once rather than at expiry.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let sessions = registry.metadata().stale_uploads(i64::MAX).await.unwrap();
            if sessions.is_empty() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}: session left behind: {sessions:?}", store.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if store.name == "filesystem" {
            let staged = std::fs::read_dir(store.dir.path().join("uploads")).unwrap().count();
            assert_eq!(staged, 0, "staged data left behind");
        }
    }
}

fn fed_body_of(data: &'static [u8]) -> ByteStream {
    futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_repository_ends_its_uploads_and_removes_their_data() {
    for store in stores().await {
        let registry = &store.registry;
        let idle = registry.start_upload(&ctx(), &name()).await.unwrap();
        registry.append_upload(&name(), &idle.id, None, fed_body_of(b"abc")).await.unwrap();
        let busy = registry.start_upload(&ctx(), &name()).await.unwrap();
        let (tx, body) = fed_body();
        let append = tokio::spawn({
            let (registry, id) = (registry.clone(), busy.id.clone());
            async move { registry.append_upload(&name(), &id, None, body).await }
        });
        feed(&tx, 0..PIECES_BEFORE_DROP).await;

        // The client of the busy upload stalls mid-body; the deletion must not wait for it.
        tokio::time::timeout(Duration::from_secs(30), registry.delete_repository(&ctx(), &name(), true))
            .await
            .expect("the deletion waited for a stalled body")
            .unwrap();
        let appended = tokio::time::timeout(Duration::from_secs(30), append).await.expect("the append kept waiting");
        assert!(matches!(appended.unwrap(), Err(RegistryError::BlobUploadUnknown)), "{}", store.name);
        drop(tx);

        // A session from before cannot go on, not even into a repository of the same name.
        fn unknown<T>(result: Result<T, RegistryError>) -> bool {
            matches!(result, Err(RegistryError::BlobUploadUnknown))
        }
        assert!(unknown(registry.upload_status(&name(), &idle.id).await), "{}", store.name);
        assert!(unknown(registry.append_upload(&name(), &idle.id, None, fed_body_of(b"def")).await));
        registry.create_repository(&ctx(), &name(), &Default::default()).await.unwrap();
        let digest = Digest::sha256_of(b"abc");
        assert!(unknown(registry.finish_upload(&name(), &idle.id, &digest, None, None).await), "{}", store.name);
        assert!(registry.stat_blob(&name(), &digest).await.is_err(), "{}: nothing was linked", store.name);
        // The staged data goes on a task of its own, soon.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for id in [&idle.id, &busy.id] {
            while store.blobs.upload_len(id).await.unwrap().is_some() {
                assert!(tokio::time::Instant::now() < deadline, "{}: staged data left", store.name);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        registry.delete_repository(&ctx(), &name(), true).await.unwrap();
    }
}

/// Another server sharing the database sees only an upload's row: one receiving bytes for longer
/// than the expiry (docker sends a layer as one PATCH) keeps its row touched meanwhile, so no
/// server's expiry sweep takes it as abandoned.
#[tokio::test]
async fn an_upload_receiving_bytes_keeps_its_session_touched() {
    let dir = tempfile::tempdir().unwrap();
    let expiry = Duration::from_secs(2);
    let registry = expiring_registry(dir.path(), expiry).await;
    let upload = registry.start_upload(&ctx(), &name()).await.unwrap();
    let (tx, body) = fed_body();
    let append = tokio::spawn({
        let (registry, id) = (registry.clone(), upload.id.clone());
        async move { registry.append_upload(&name(), &id, None, body).await }
    });
    let started = std::time::Instant::now();
    for i in 0.. {
        tx.send(Ok(Bytes::from(vec![i as u8; 1024]))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = berth_registry::now_millis();
        let stale = registry.metadata().stale_uploads(now - expiry.as_millis() as i64).await.unwrap();
        assert!(stale.iter().all(|s| s.id != upload.id), "stale after {:?} of receiving bytes", started.elapsed());
        if started.elapsed() > expiry * 3 {
            break;
        }
    }
    drop(tx);
    append.await.unwrap().unwrap();
}

/// Short PATCHes a few seconds apart keep a session however short the expiry: between requests
/// its row is touched at least every quarter of the expiry, not once a minute.
#[tokio::test]
async fn chunks_sent_within_the_expiry_keep_their_session() {
    let dir = tempfile::tempdir().unwrap();
    let expiry = Duration::from_secs(2);
    let registry = expiring_registry(dir.path(), expiry).await;
    let upload = registry.start_upload(&ctx(), &name()).await.unwrap();
    for i in 0..6u8 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let chunk = futures::stream::once(async move { Ok(Bytes::from(vec![i; 16])) }).boxed();
        registry.append_upload(&name(), &upload.id, None, chunk).await.unwrap();
        let now = berth_registry::now_millis();
        let stale = registry.metadata().stale_uploads(now - expiry.as_millis() as i64 + 500).await.unwrap();
        assert!(stale.iter().all(|s| s.id != upload.id), "the session looked abandoned after chunk {i}");
    }
}
