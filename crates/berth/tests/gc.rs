//! Online garbage collection against the real server: `berth gc` reclaims what deleted images
//! alone used while shared layers stay pullable, and the server's own passes race pushes of the
//! very layers they collect without losing an acknowledged image.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn blob_path(srv: &Server, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    srv.data_dir().join("blobs").join("sha256").join(&hex[..2]).join(hex)
}

/// The counts `berth gc` printed: links released, blobs deleted, bytes deleted, blobs waiting,
/// bytes waiting.
fn gc_pass(srv: &Server, args: &[&str]) -> [u64; 5] {
    let out = srv.cli(&[&["gc", "--gc-grace-secs", "1"], args].concat());
    let numbers: Vec<u64> = out.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    numbers.try_into().unwrap_or_else(|_| panic!("unexpected `berth gc` output: {out}"))
}

/// Lets a pass's notes age past the one-second grace period.
fn after_grace() {
    std::thread::sleep(Duration::from_millis(1200));
}

/// Pushes an image of a fresh config and `layers` under `tag`; returns its manifest digest and config.
async fn push_with_layers(srv: &Server, repo: &str, tag: &str, layers: &[Vec<u8>]) -> (String, Vec<u8>) {
    let config = config_json("amd64");
    push_blob(srv, repo, &config).await;
    for layer in layers {
        push_blob(srv, repo, layer).await;
    }
    let descriptors: Vec<_> = layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect();
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &descriptors);
    (push_manifest(srv, repo, tag, OCI_MANIFEST, &manifest).await, config)
}

/// Pulls the image at `reference` and every blob it lists, checking each blob's digest.
async fn pull_verified(srv: &Server, repo: &str, reference: &str) {
    let r = send(srv.get(&format!("/v2/{repo}/manifests/{reference}")).header("accept", OCI_MANIFEST)).await;
    r.expect_status(200);
    let manifest = r.json();
    let layers = manifest["layers"].as_array().expect("layers").iter();
    for d in std::iter::once(&manifest["config"]).chain(layers) {
        let digest = d["digest"].as_str().expect("digest");
        let blob = send(srv.get(&format!("/v2/{repo}/blobs/{digest}"))).await;
        blob.expect_status(200);
        assert_eq!(sha256_digest(&blob.body), digest, "{repo}:{reference} blob content");
    }
}

#[tokio::test]
async fn gc_reclaims_what_only_deleted_images_used() {
    let srv = Server::start_with(&["--gc-interval-secs", "0"]);
    let shared = random_bytes(64 * 1024);
    let (gone, kept_here, kept_there) = (random_bytes(32 * 1024), random_bytes(1000), random_bytes(2000));
    let (deleted, deleted_config) = push_with_layers(&srv, "gc/app", "old", &[shared.clone(), gone.clone()]).await;
    push_with_layers(&srv, "gc/app", "new", &[shared.clone(), kept_here.clone()]).await;
    push_with_layers(&srv, "gc/other", "v1", &[shared.clone(), kept_there.clone()]).await;
    send(srv.delete(&format!("/v2/gc/app/manifests/{deleted}"))).await.expect_status(202);

    // The deleted image's links are released one grace period after GC first sees them, its
    // blobs deleted one more grace period after GC first sees them unlinked.
    assert_eq!(gc_pass(&srv, &[]), [0; 5]);
    after_grace();
    let freed = (deleted_config.len() + gone.len()) as u64;
    assert_eq!(gc_pass(&srv, &[]), [2, 0, 0, 2, freed]);
    after_grace();
    assert_eq!(gc_pass(&srv, &["--dry-run"]), [0, 2, freed, 0, 0]);
    assert!(blob_path(&srv, &sha256_digest(&gone)).exists(), "a dry run deletes nothing");
    assert_eq!(gc_pass(&srv, &[]), [0, 2, freed, 0, 0]);
    assert_eq!(gc_pass(&srv, &[]), [0; 5], "nothing left to collect");

    for data in [&gone, &deleted_config] {
        assert!(!blob_path(&srv, &sha256_digest(data)).exists(), "the deleted image's blob data is gone");
    }
    for data in [&shared, &kept_here, &kept_there] {
        assert!(blob_path(&srv, &sha256_digest(data)).exists());
    }
    pull_verified(&srv, "gc/app", "new").await;
    pull_verified(&srv, "gc/other", "v1").await;
    send(srv.get(&format!("/v2/gc/app/blobs/{}", sha256_digest(&gone)))).await.expect_error(404, "BLOB_UNKNOWN");
}

/// A non-distributable layer need not be pushed, but one that was (`docker push
/// --allow-nondistributable-artifacts`, air-gapped mirrors) is kept like any other while an image
/// lists it: GC does not collect it and its DELETE is refused.
#[tokio::test]
async fn pushed_non_distributable_layers_are_kept_while_listed() {
    let srv = Server::start_with(&["--gc-interval-secs", "0"]);
    let (config, foreign, absent) = (config_json("amd64"), random_bytes(4000), random_bytes(100));
    for blob in [&config, &foreign] {
        push_blob(&srv, "gc/win", blob).await;
    }
    const FOREIGN: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    let mut elsewhere = descriptor(FOREIGN, &absent);
    elsewhere["urls"] = serde_json::json!(["https://example.com/layer"]);
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[descriptor(FOREIGN, &foreign), elsewhere]);
    push_manifest(&srv, "gc/win", "v1", OCI_MANIFEST, &manifest).await;
    let layer = sha256_digest(&foreign);
    send(srv.delete(&format!("/v2/gc/win/blobs/{layer}"))).await.expect_error(405, "UNSUPPORTED");
    for _ in 0..3 {
        gc_pass(&srv, &[]);
        after_grace();
    }
    assert_eq!(gc_pass(&srv, &[]), [0; 5], "nothing of the tagged image is collected");
    let blob = send(srv.get(&format!("/v2/gc/win/blobs/{layer}"))).await;
    assert_eq!(sha256_digest(&blob.expect_status(200).body), layer);
}

/// A random pause between `min_ms` and `max_ms` milliseconds.
fn pause(min_ms: u64, max_ms: u64) -> Duration {
    let n = u64::from_le_bytes(random_bytes(8).try_into().unwrap());
    Duration::from_millis(min_ms + n % (max_ms - min_ms))
}

/// Workers push images of the same layers, pull them, delete them and unlink the layers, round
/// after round, while the server's GC runs every second with a one-second grace period. After
/// each round's deletes the layers are garbage: GC notes them within a second and deletes them
/// one to two seconds later, while the workers upload them again 1.5 to 4 seconds after the
/// deletes, so some uploads land before, during and after a deletion; after the last round they
/// wait long enough for a collection to finish. Every acknowledged image must pull intact until
/// the test deletes it, and GC must in fact have collected the layers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_gc_never_lose_an_acknowledged_image() {
    const WORKERS: usize = 3;
    const ROUNDS: usize = 5;
    let srv = Arc::new(Server::start_with(&["--gc-interval-secs", "1", "--gc-grace-secs", "1"]));
    let layers: Vec<Vec<u8>> = (0..3).map(|_| random_bytes(48 * 1024)).collect();
    let round_over = Arc::new(tokio::sync::Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (srv, layers, round_over) = (srv.clone(), layers.clone(), round_over.clone());
            tokio::spawn(async move {
                let repo = format!("race/w{w}");
                for round in 0..ROUNDS {
                    let tag = format!("r{round}");
                    let (digest, config) = push_with_layers(&srv, &repo, &tag, &layers).await;
                    pull_verified(&srv, &repo, &tag).await;
                    tokio::time::sleep(pause(0, 700)).await;
                    pull_verified(&srv, &repo, &digest).await;
                    send(srv.delete(&format!("/v2/{repo}/manifests/{digest}"))).await.expect_status(202);
                    for blob in layers.iter().chain([&config]) {
                        send(srv.delete(&format!("/v2/{repo}/blobs/{}", sha256_digest(blob)))).await.expect_status(202);
                    }
                    round_over.wait().await;
                    // After the last round every worker waits out a whole collection (a pass
                    // notes the layers, the next one past the grace period deletes them), so GC
                    // certainly collects them once; the earlier rounds race it.
                    let last_round = round + 1 == ROUNDS;
                    tokio::time::sleep(if last_round { pause(4500, 5000) } else { pause(1500, 4000) }).await;
                }
                // The last image stays: it must outlive the passes that follow.
                push_with_layers(&srv, &repo, "last", &layers).await;
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker failed");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for w in 0..WORKERS {
        pull_verified(&srv, &format!("race/w{w}"), "last").await;
    }

    let log = srv.log();
    let collected = log
        .lines()
        .filter(|l| l.contains("garbage-collected blob"))
        .filter(|l| layers.iter().any(|layer| l.contains(&sha256_digest(layer))))
        .count();
    assert!(collected > 0, "GC never collected the shared layers, so nothing raced; log:\n{}", srv.log_tail());
}
