//! Durability: kill -9 in the middle of concurrent pushes, graceful restarts, upload sessions
//! that outlive the process.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// What the pushers observed: only 201-acknowledged writes must survive a crash.
#[derive(Default)]
struct Ledger {
    acked_blobs: Vec<(String, Vec<u8>)>,
    acked_manifests: Vec<(String, String, Vec<u8>)>, // tag, digest, bytes
    attempted_blobs: Vec<(String, Vec<u8>)>,
    attempted_manifests: Vec<(String, String, Vec<u8>)>,
    acks: usize,
}

type Shared = Arc<Mutex<Ledger>>;

/// Streams a blob in 64 KiB PATCHes (keeping it in flight for a while), then PUTs the digest.
/// Transport errors (the server was killed) end the push with `Err`.
async fn push_blob_in_chunks(srv: &Server, repo: &str, data: &[u8], ledger: &Shared) -> Result<String, reqwest::Error> {
    let digest = sha256_digest(data);
    ledger.lock().unwrap().attempted_blobs.push((digest.clone(), data.to_vec()));
    let r = try_send(srv.post(&format!("/v2/{repo}/blobs/uploads/"))).await?;
    r.expect_status(202);
    let mut upload = r.location(srv);
    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
        let start = i * 64 * 1024;
        let r = try_send(
            srv.client
                .patch(upload.clone())
                .header("content-range", format!("{}-{}", start, start + chunk.len() - 1))
                .body(chunk.to_vec()),
        )
        .await?;
        r.expect_status(202);
        upload = r.location(srv);
    }
    let r = try_send(srv.client.put(with_query(&upload, "digest", &digest))).await?;
    r.expect_status(201);
    let mut l = ledger.lock().unwrap();
    l.acked_blobs.push((digest.clone(), data.to_vec()));
    l.acks += 1;
    Ok(digest)
}

async fn pusher(srv: Arc<Server>, task: usize, ledger: Shared) -> Result<(), reqwest::Error> {
    for image in 0..3 {
        let config = config_json("amd64");
        let layer = random_bytes(512 * 1024 + task * 37_000 + image * 101_000);
        push_blob_in_chunks(&srv, "crash/app", &config, &ledger).await?;
        push_blob_in_chunks(&srv, "crash/app", &layer, &ledger).await?;
        let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[descriptor(OCI_LAYER, &layer)]);
        let digest = sha256_digest(&manifest);
        let tag = format!("t{task}-{image}");
        ledger.lock().unwrap().attempted_manifests.push((tag.clone(), digest.clone(), manifest.clone()));
        let r = try_send(
            srv.put(&format!("/v2/crash/app/manifests/{tag}"))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.clone()),
        )
        .await?;
        r.expect_status(201);
        let mut l = ledger.lock().unwrap();
        l.acked_manifests.push((tag, digest, manifest));
        l.acks += 1;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_pushes_loses_nothing_acknowledged() {
    const TASKS: usize = 12;
    const TOTAL_ACKS: usize = TASKS * 3 * 3;
    let srv = Arc::new(Server::start());
    let ledger: Shared = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        tasks.push(tokio::spawn(pusher(srv.clone(), task, ledger.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ledger.lock().unwrap().acks < TOTAL_ACKS / 3 {
        assert!(Instant::now() < deadline, "pushes made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    srv.crash();
    let acks_at_kill = ledger.lock().unwrap().acks;
    let mut interrupted = 0;
    for t in tasks {
        let finished = tokio::time::timeout(Duration::from_secs(60), t).await.expect("pusher hangs after the kill");
        if finished.expect("pusher panicked").is_err() {
            interrupted += 1;
        }
    }
    assert!(interrupted > 0 && acks_at_kill < TOTAL_ACKS, "the kill did not interrupt any push");
    println!(
        "killed after {acks_at_kill} of {TOTAL_ACKS} acknowledged writes; {interrupted} of {TASKS} pushers cut off"
    );

    let mut srv = Arc::try_unwrap(srv).ok().expect("server still shared");
    srv.start_again();
    send(srv.get("/v2/")).await.expect_status(200);

    let ledger = Arc::try_unwrap(ledger).ok().expect("ledger still shared").into_inner().unwrap();
    assert!(ledger.acked_blobs.len() + ledger.acked_manifests.len() >= TOTAL_ACKS / 3);
    for (digest, data) in &ledger.acked_blobs {
        expect_blob(&srv, "crash/app", digest, data).await;
    }
    for (tag, digest, manifest) in &ledger.acked_manifests {
        expect_manifest(&srv, "crash/app", digest, OCI_MANIFEST, manifest, digest).await;
        expect_manifest(&srv, "crash/app", tag, OCI_MANIFEST, manifest, digest).await;
    }
    // Writes that were not acknowledged are either absent or complete and correct.
    let acked: std::collections::HashSet<&str> = ledger.acked_blobs.iter().map(|(d, _)| d.as_str()).collect();
    for (digest, data) in ledger.attempted_blobs.iter().filter(|(d, _)| !acked.contains(d.as_str())) {
        let h = send(srv.head(&format!("/v2/crash/app/blobs/{digest}"))).await;
        match h.status() {
            404 => {}
            200 => expect_blob(&srv, "crash/app", digest, data).await,
            s => panic!("HEAD of an unacknowledged blob answered {s}"),
        }
    }
    let acked_m: std::collections::HashSet<&str> = ledger.acked_manifests.iter().map(|(_, d, _)| d.as_str()).collect();
    for (tag, digest, manifest) in ledger.attempted_manifests.iter().filter(|(_, d, _)| !acked_m.contains(d.as_str())) {
        let r = send(srv.get(&format!("/v2/crash/app/manifests/{digest}"))).await;
        match r.status() {
            404 => {
                send(srv.get(&format!("/v2/crash/app/manifests/{tag}"))).await.expect_status(404);
            }
            200 => assert!(r.body == *manifest, "unacknowledged manifest {digest} stored with other bytes"),
            s => panic!("GET of an unacknowledged manifest answered {s}"),
        }
    }
    // Every listed tag resolves to a manifest whose blobs are all there.
    let tags = send(srv.get("/v2/crash/app/tags/list")).await;
    tags.expect_status(200);
    for tag in tags.json()["tags"].as_array().cloned().unwrap_or_default() {
        let r =
            send(srv.get(&format!("/v2/crash/app/manifests/{}", tag.as_str().unwrap())).header("accept", OCI_MANIFEST))
                .await;
        r.expect_status(200);
        let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            let h = send(srv.head(&format!("/v2/crash/app/blobs/{}", d["digest"].as_str().unwrap()))).await;
            h.expect_status(200);
        }
    }
    // The restarted server takes new pushes.
    let img = push_image(&srv, "crash/app", Some("after")).await;
    expect_manifest(&srv, "crash/app", "after", OCI_MANIFEST, &img.manifest, &img.digest).await;
}

#[tokio::test]
async fn everything_survives_a_graceful_restart() {
    let mut srv = Server::start();
    let img = push_image(&srv, "persist/app", Some("v1")).await;
    let blob = random_bytes(10_000);
    let blob_digest = push_blob(&srv, "persist/other", &blob).await;

    srv.restart();

    expect_manifest(&srv, "persist/app", "v1", OCI_MANIFEST, &img.manifest, &img.digest).await;
    expect_blob(&srv, "persist/app", &sha256_digest(&img.layers[0]), &img.layers[0]).await;
    expect_blob(&srv, "persist/other", &blob_digest, &blob).await;
    let catalog = send(srv.get("/v2/_catalog")).await;
    assert_eq!(catalog.json()["repositories"], serde_json::json!(["persist/app", "persist/other"]));
}

#[tokio::test]
async fn an_upload_session_continues_after_a_restart() {
    let mut srv = Server::start();
    let data = random_bytes(200_000);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "resume").await;
    let r = send(srv.client.patch(upload).header("content-range", "0-99999").body(data[..100_000].to_vec())).await;
    r.expect_status(202);
    // The port changes on restart: keep only path and query of the session URL.
    let session = r.location_path(&srv);

    srv.restart();

    let status = send(srv.get(&session)).await;
    status.expect_status(204);
    assert_eq!(status.header("range"), Some("0-99999"), "{}", status.describe());
    let session = status.location_path(&srv);
    let r = send(srv.patch(&session).header("content-range", "100000-199999").body(data[100_000..].to_vec())).await;
    r.expect_status(202);
    assert_eq!(r.header("range"), Some("0-199999"));
    let r = send(srv.client.put(with_query(&srv.resolve(&r.location_path(&srv)), "digest", &digest))).await;
    expect_blob_created(&srv, &r, "resume", &digest);
    expect_blob(&srv, "resume", &digest, &data).await;
}

#[tokio::test]
async fn an_upload_session_is_consistent_after_kill_9() {
    let mut srv = Server::start();
    let data = random_bytes(300_000);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "resume9").await;
    let r = send(srv.client.patch(upload).header("content-range", "0-149999").body(data[..150_000].to_vec())).await;
    r.expect_status(202);
    let session = r.location_path(&srv);

    srv.kill9();
    srv.start_again();

    // The session may have lost unsynced data or be gone, but what it reports must be true.
    let status = send(srv.get(&session)).await;
    match status.status() {
        404 => {
            status.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
            return;
        }
        204 => {}
        s => panic!("upload status after kill -9 answered {s}"),
    }
    let range = status.must_header("range");
    let end: i64 =
        range.strip_prefix("0-").and_then(|e| e.parse().ok()).unwrap_or_else(|| panic!("bad Range {range:?}"));
    // `0-0` is an empty session; otherwise `0-N` means N+1 bytes are stored.
    let stored = if end == 0 { 0 } else { end as usize + 1 };
    assert!(stored <= 150_000, "session claims {stored} bytes, only 150000 were sent");
    let session = status.location_path(&srv);
    let r = send(
        srv.patch(&session)
            .header("content-range", format!("{}-{}", stored, data.len() - 1))
            .body(data[stored..].to_vec()),
    )
    .await;
    r.expect_status(202);
    let r = send(srv.client.put(with_query(&srv.resolve(&r.location_path(&srv)), "digest", &digest))).await;
    expect_blob_created(&srv, &r, "resume9", &digest);
    expect_blob(&srv, "resume9", &digest, &data).await;
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let mut srv = Server::start();
    push_image(&srv, "term", Some("v1")).await;
    let status = srv.stop();
    assert!(status.success(), "berth exited with {status} on SIGTERM");
    srv.start_again();
    send(srv.get("/v2/term/manifests/v1")).await.expect_status(200);
}
