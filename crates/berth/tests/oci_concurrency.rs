//! Concurrent pushes racing on the same tag, blob and new repository.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use tokio::sync::Barrier;

const TASKS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_manifests_racing_for_one_tag() {
    let srv = Arc::new(Server::start());
    // Blobs first, so that the manifest PUTs really hit the tag at the same moment.
    let mut manifests = Vec::new();
    for _ in 0..TASKS {
        let config = config_json("amd64");
        push_blob(&srv, "race/tag", &config).await;
        manifests.push(oci_manifest(&descriptor(OCI_CONFIG, &config), &[]));
    }
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for manifest in manifests.clone() {
        let srv = srv.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = put_manifest(&srv, "race/tag", "latest", OCI_MANIFEST, &manifest).await;
            r.expect_status(201);
            assert_eq!(r.header("docker-content-digest"), Some(sha256_digest(&manifest).as_str()));
        }));
    }
    for t in tasks {
        t.await.expect("push task");
    }

    let r = send(srv.get("/v2/race/tag/manifests/latest").header("accept", OCI_MANIFEST)).await;
    r.expect_status(200);
    assert!(manifests.contains(&r.body), "the tag points at none of the pushed manifests");
    assert_eq!(r.header("docker-content-digest"), Some(sha256_digest(&r.body).as_str()));
    for m in &manifests {
        let d = sha256_digest(m);
        expect_manifest(&srv, "race/tag", &d, OCI_MANIFEST, m, &d).await;
    }
    let tags = send(srv.get("/v2/race/tag/tags/list")).await;
    assert_eq!(tags.json()["tags"], serde_json::json!(["latest"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_full_pushes_into_a_new_repository_at_once() {
    let srv = Arc::new(Server::start());
    let shared_layer = Arc::new(random_bytes(256 * 1024));
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let srv = srv.clone();
        let barrier = barrier.clone();
        let shared_layer = shared_layer.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // Every task uploads the same layer (racing on one content address) plus its own config.
            let layer_digest = push_blob(&srv, "race/new", &shared_layer).await;
            let config = config_json("amd64");
            push_blob(&srv, "race/new", &config).await;
            let manifest = oci_manifest(
                &descriptor(OCI_CONFIG, &config),
                &[serde_json::json!({"mediaType": OCI_LAYER, "digest": layer_digest, "size": shared_layer.len()})],
            );
            let digest = push_manifest(&srv, "race/new", &format!("t{i}"), OCI_MANIFEST, &manifest).await;
            (format!("t{i}"), digest, manifest)
        }));
    }
    let mut pushed = Vec::new();
    for t in tasks {
        pushed.push(t.await.expect("push task"));
    }
    let layer_digest = sha256_digest(&shared_layer);
    expect_blob(&srv, "race/new", &layer_digest, &shared_layer).await;
    for (tag, digest, manifest) in &pushed {
        expect_manifest(&srv, "race/new", tag, OCI_MANIFEST, manifest, digest).await;
    }
    let tags = send(srv.get("/v2/race/new/tags/list")).await;
    assert_eq!(tags.json()["tags"].as_array().unwrap().len(), TASKS);
    let catalog = send(srv.get("/v2/_catalog")).await;
    assert_eq!(catalog.json()["repositories"], serde_json::json!(["race/new"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_while_pushing_never_fails_the_server() {
    let srv = Arc::new(Server::start());
    let img = push_image(&srv, "churn", Some("v0")).await;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let srv = srv.clone();
        let barrier = barrier.clone();
        let manifest = img.manifest.clone();
        let digest = img.digest.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            for round in 0..5 {
                if (i + round) % 2 == 0 {
                    let r = put_manifest(&srv, "churn", &format!("t{i}"), OCI_MANIFEST, &manifest).await;
                    r.expect_status(201);
                } else {
                    let r = send(srv.delete(&format!("/v2/churn/manifests/{digest}"))).await;
                    assert!(r.status() == 202 || r.status() == 404, "{}", r.describe());
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Whatever the interleaving, every listed tag resolves to the manifest.
    let tags = send(srv.get("/v2/churn/tags/list")).await;
    tags.expect_status(200);
    for tag in tags.json()["tags"].as_array().cloned().unwrap_or_default() {
        let tag = tag.as_str().unwrap();
        expect_manifest(&srv, "churn", tag, OCI_MANIFEST, &img.manifest, &img.digest).await;
    }
}

/// Once `PutImageTagMutability IMMUTABLE` is answered, no push moves a tag — not even one that
/// read the old setting before the change and writes after it (its write finds the settings
/// changed and judges the tag again). Pushers keep moving `v1` while the setting flips; a digest
/// read after the answer must still be the tag's when the pushers have stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_tag_moves_after_immutability_is_answered() {
    let srv = Arc::new(Server::start());
    for round in 0..6 {
        let repo = format!("race/immutable{round}");
        push_manifest(&srv, &repo, "v1", OCI_MANIFEST, &artifact(round, 0)).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut pushers = Vec::new();
        for pusher in 0..4 {
            let (srv, stop, repo) = (srv.clone(), stop.clone(), repo.clone());
            pushers.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let manifest = artifact(round, pusher * 100_000 + n);
                    let r = put_manifest(&srv, &repo, "v1", OCI_MANIFEST, &manifest).await;
                    assert!(r.status == 201 || r.status == 400, "{}", r.describe());
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let body = json!({"repositoryName": repo, "imageTagMutability": "IMMUTABLE"}).to_string();
        ecr_call(&srv, "AKIDANY", "any", "PutImageTagMutability", &body).await.expect_status(200);
        let seen = tag_digest(&srv, &repo).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for p in pushers {
            p.await.expect("pusher");
        }
        assert_eq!(tag_digest(&srv, &repo).await, seen, "round {round}: v1 moved after IMMUTABLE was answered");
    }
}

/// A distinct artifact manifest (the empty config, no layers) per `(round, n)`.
fn artifact(round: usize, n: usize) -> Vec<u8> {
    let empty = descriptor("application/vnd.oci.empty.v1+json", b"{}");
    let mut manifest: Value = serde_json::from_slice(&oci_manifest(&empty, &[])).unwrap();
    manifest["annotations"] = json!({"n": format!("{round}-{n}")});
    serde_json::to_vec(&manifest).unwrap()
}

async fn tag_digest(srv: &Server, repo: &str) -> String {
    let r = send(srv.head(&format!("/v2/{repo}/manifests/v1")).header("accept", OCI_MANIFEST)).await;
    r.expect_status(200);
    r.header("docker-content-digest").expect("digest header").to_owned()
}
