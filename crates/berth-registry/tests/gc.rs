//! Garbage collection over the real SQLite and filesystem backends, with GC's steps driven one
//! at a time, so the interleavings that matter happen deterministically: a push arriving while
//! GC deletes the very blob it uploads, and data committed but never linked (a crash between
//! commit and link).

use std::sync::Arc;
use std::time::Duration;

use berth_meta::SqliteStore;
use berth_registry::{GcReport, Registry, RegistryConfig, now_millis};
use berth_spec::{Digest, Reference, RepositoryName};
use berth_storage::{BlobStore, FsBlobStore};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

/// A request by the root user, as the planes would describe it.
fn ctx() -> RequestContext {
    as_ctx(root())
}

fn as_ctx(identity: Identity) -> RequestContext {
    RequestContext { identity, ..RequestContext::server("test", "test-request".into()) }
}

fn root() -> Identity {
    Identity::Root { access_key_id: "AKIAROOT".into(), via: CredentialKind::SigV4 }
}

use berth_iam::{CredentialKind, Identity, RequestContext};

async fn open(dir: &std::path::Path) -> (Arc<Registry>, Arc<FsBlobStore>) {
    let meta = SqliteStore::open(&dir.join("metadata.db")).await.unwrap();
    let blobs = Arc::new(FsBlobStore::open(dir).await.unwrap());
    (Registry::new(blobs.clone(), Arc::new(meta), RegistryConfig::default()), blobs)
}

async fn upload(registry: &Registry, repo: &RepositoryName, data: &'static [u8]) -> Result<Digest, String> {
    let digest = Digest::sha256_of(data);
    let body = futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed();
    registry.upload_monolithic(&ctx(), repo, &digest, body).await.map_err(|e| e.to_string())
}

async fn read(registry: &Registry, repo: &RepositoryName, digest: &Digest) -> Vec<u8> {
    let body = registry.get_blob(repo, digest, None).await.unwrap();
    let chunks: Vec<Bytes> = body.stream.try_collect().await.unwrap();
    chunks.concat()
}

/// Tags an artifact manifest whose one layer is `layer`: a link no manifest needs is itself
/// garbage once its grace period is over.
async fn reference(registry: &Registry, repo: &RepositoryName, layer: &Digest, size: usize) {
    let empty = Digest::sha256_of(b"{}");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x.test","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{layer}","size":{size}}}]}}"#
    );
    let tag = Reference::Tag("latest".parse().unwrap());
    registry
        .put_manifest(&ctx(), repo, &tag, Some("application/vnd.oci.image.manifest.v1+json"), manifest.as_bytes())
        .await
        .unwrap();
}

/// Long enough for a candidate noted by one pass to be due in the next.
const GRACE: Duration = Duration::from_millis(50);

async fn after_grace() {
    tokio::time::sleep(GRACE * 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_during_a_deletion_waits_and_writes_the_data_anew() {
    const DATA: &[u8] = b"layer pushed again while GC deletes it";
    let dir = tempfile::tempdir().unwrap();
    let (registry, blobs) = open(dir.path()).await;
    let repo: RepositoryName = "app".parse().unwrap();
    let digest = upload(&registry, &repo, DATA).await.unwrap();
    registry.delete_blob(&ctx(), &repo, &digest).await.unwrap();
    let first = registry.collect_garbage(GRACE, false).await.unwrap();
    assert_eq!((first.blobs_waiting, first.bytes_waiting), (1, DATA.len() as u64), "{first:?}");
    after_grace().await;

    // GC marks the blob as being deleted; its data is still there.
    let meta = registry.metadata().clone();
    let started = now_millis();
    let before = started - GRACE.as_millis() as i64;
    assert!(meta.begin_blob_deletion(&digest, before, 0, started).await.unwrap());
    assert_eq!(blobs.stat(&digest).await.unwrap(), Some(DATA.len() as u64));

    // A push of the same content now must not rely on that data.
    let push = tokio::spawn({
        let registry = registry.clone();
        let repo = repo.clone();
        async move { upload(&registry, &repo, DATA).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!push.is_finished(), "the push waits for the deletion");

    blobs.delete(&digest).await.unwrap();
    meta.finish_blob_deletion(&digest, started).await.unwrap();
    assert_eq!(push.await.unwrap().unwrap(), digest);
    assert_eq!(read(&registry, &repo, &digest).await, DATA, "the push wrote the data anew");

    // And GC leaves it alone once a manifest needs it.
    reference(&registry, &repo, &digest, DATA.len()).await;
    after_grace().await;
    let report = registry.collect_garbage(GRACE, false).await.unwrap();
    assert_eq!(report, GcReport::default());
    assert_eq!(read(&registry, &repo, &digest).await, DATA);
}

#[tokio::test]
async fn data_never_linked_is_collected_after_the_grace_period() {
    const ORPHAN: &[u8] = b"committed, then the server died before linking it";
    let dir = tempfile::tempdir().unwrap();
    let (registry, blobs) = open(dir.path()).await;
    let orphan = Digest::sha256_of(ORPHAN);
    blobs.create_upload("orphan").await.unwrap();
    let body = futures::stream::once(async { Ok(Bytes::from_static(ORPHAN)) }).boxed();
    blobs.append("orphan", 0, body, &mut |_| {}).await.unwrap();
    blobs.commit("orphan", &orphan).await.unwrap();
    let repo: RepositoryName = "kept".parse().unwrap();
    let kept = upload(&registry, &repo, b"needed by a manifest, so never collected").await.unwrap();
    reference(&registry, &repo, &kept, 40).await;

    let dry = registry.collect_garbage(GRACE, true).await.unwrap();
    assert_eq!((dry.blobs_deleted, dry.blobs_waiting), (0, 1), "{dry:?}");
    let first = registry.collect_garbage(GRACE, false).await.unwrap();
    assert_eq!((first.blobs_deleted, first.blobs_waiting), (0, 1), "first sighting starts the grace period");
    assert!(blobs.stat(&orphan).await.unwrap().is_some());

    after_grace().await;
    let dry = registry.collect_garbage(GRACE, true).await.unwrap();
    assert_eq!((dry.blobs_deleted, dry.bytes_deleted), (1, ORPHAN.len() as u64), "{dry:?}");
    assert!(blobs.stat(&orphan).await.unwrap().is_some(), "a dry run deletes nothing");
    let second = registry.collect_garbage(GRACE, false).await.unwrap();
    assert_eq!(second, GcReport { blobs_deleted: 1, bytes_deleted: ORPHAN.len() as u64, ..GcReport::default() });
    assert_eq!(blobs.stat(&orphan).await.unwrap(), None);
    assert_eq!(read(&registry, &repo, &kept).await, b"needed by a manifest, so never collected");
}

#[tokio::test]
async fn the_last_pass_that_could_delete_is_reported_for_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _blobs) = open(dir.path()).await;
    assert_eq!(registry.maintenance_status().last_gc, None, "no pass yet");
    registry.collect_garbage(GRACE, true).await.unwrap();
    assert_eq!(registry.maintenance_status().last_gc, None, "dry runs are not recorded");
    let before = now_millis();
    let report = registry.collect_garbage(GRACE, false).await.unwrap();
    let last = registry.maintenance_status().last_gc.expect("the pass is recorded");
    assert_eq!(last.outcome, Ok(report));
    assert!(last.at >= before, "{} < {before}", last.at);
}

/// A pass stopped half-way (a server stopping, `berth gc` interrupted) leaves no blob marked as
/// being deleted once the deletions it began have ended: a mark left behind made every push of
/// that blob wait 30 s and fail, until presumed stalled 15 minutes later. Passes are stopped
/// after longer and longer times until one is stopped with some but not all blobs deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_stopped_half_way_leaves_no_blob_marked() {
    const BLOBS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let (registry, blobs) = open(dir.path()).await;
    let repo: RepositoryName = "stopped".parse().unwrap();
    let mut digests = Vec::new();
    for i in 0..BLOBS {
        let data: &'static [u8] = format!("unlinked blob {i}").into_bytes().leak();
        let digest = upload(&registry, &repo, data).await.unwrap();
        registry.delete_blob(&ctx(), &repo, &digest).await.unwrap();
        digests.push(digest);
    }
    registry.collect_garbage(GRACE, false).await.unwrap();
    after_grace().await;
    let mut stopped_while_deleting = false;
    for millis in [5, 10, 20, 40, 80, 160] {
        let pass = registry.collect_garbage(GRACE, false);
        let stopped = tokio::time::timeout(Duration::from_millis(millis), pass).await.is_err();
        registry.finish_blob_deletions().await;
        let mut deleted = 0;
        for digest in &digests {
            deleted += usize::from(blobs.stat(digest).await.unwrap().is_none());
        }
        if stopped && deleted > 0 && deleted < BLOBS {
            stopped_while_deleting = true;
            break;
        }
    }
    assert!(stopped_while_deleting, "no pass was stopped in the middle of its deletions");
    let meta = registry.metadata();
    for digest in &digests {
        assert!(meta.cancel_blob_collection(digest).await.unwrap(), "{digest} is still marked as being deleted");
    }
}
