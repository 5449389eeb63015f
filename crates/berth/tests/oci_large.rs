//! A 2 GiB blob streamed up and down while the server's memory stays flat.

mod common;

use common::*;
use sha2::{Digest as _, Sha256};

const SIZE: u64 = 2 * 1024 * 1024 * 1024;
const MAX_RSS_KIB: u64 = 200 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "streams 4 GiB over loopback; run explicitly by scripts/test, which also records the peak RSS"]
async fn two_gib_blob_streams_with_flat_memory() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    println!("server VmHWM at start: {} KiB", srv.vm_hwm_kib());

    // Upload: one streamed PATCH without Content-Length, then PUT ?digest=.
    let upload = start_upload(&srv, "large/blob").await;
    let (body, writer) = generated_stream(dir.path(), SIZE, 0x5eed).await;
    let r = send(srv.client.patch(upload).header("content-type", OCTET_STREAM).body(reqwest::Body::from(body))).await;
    let digest = writer.join().expect("generator thread");
    r.expect_status(202);
    assert_eq!(r.header("range"), Some(format!("0-{}", SIZE - 1).as_str()));
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &digest))).await;
    expect_blob_created(&srv, &r, "large/blob", &digest);
    let after_upload = srv.vm_hwm_kib();
    println!("server VmHWM after 2 GiB upload: {after_upload} KiB");

    let h = send(srv.head(&format!("/v2/large/blob/blobs/{digest}"))).await;
    h.expect_status(200);
    assert_eq!(h.header("content-length"), Some(SIZE.to_string().as_str()));

    // Download, hashing as it arrives.
    let mut resp = srv.get(&format!("/v2/large/blob/blobs/{digest}")).send().await.expect("GET blob");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-length").and_then(|v| v.to_str().ok()), Some(SIZE.to_string().as_str()));
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    while let Some(chunk) = resp.chunk().await.expect("read blob") {
        hasher.update(&chunk);
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);
    assert_eq!(format!("sha256:{}", hex::encode(hasher.finalize())), digest);
    let after_download = srv.vm_hwm_kib();
    println!("server VmHWM after 2 GiB download: {after_download} KiB");

    // A range from the far end of the blob.
    let r = send(srv.get(&format!("/v2/large/blob/blobs/{digest}")).header("range", "bytes=-16")).await;
    r.expect_status(206);
    assert_eq!(r.body.len(), 16);
    assert_eq!(r.header("content-range"), Some(format!("bytes {}-{}/{SIZE}", SIZE - 16, SIZE - 1).as_str()));

    assert!(after_upload < MAX_RSS_KIB, "peak RSS {after_upload} KiB after upload exceeds {MAX_RSS_KIB} KiB");
    assert!(after_download < MAX_RSS_KIB, "peak RSS {after_download} KiB after download exceeds {MAX_RSS_KIB} KiB");
}

#[tokio::test]
async fn a_few_mebibytes_streamed_with_chunked_encoding() {
    // The same path as the 2 GiB test at a size that runs on every `cargo test`.
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let size = 24 * 1024 * 1024;
    let upload = start_upload(&srv, "medium/blob").await;
    let (body, writer) = generated_stream(dir.path(), size, 42).await;
    let r = send(srv.client.patch(upload).body(reqwest::Body::from(body))).await;
    let digest = writer.join().expect("generator thread");
    r.expect_status(202);
    assert_eq!(r.header("range"), Some(format!("0-{}", size - 1).as_str()));
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &digest))).await;
    expect_blob_created(&srv, &r, "medium/blob", &digest);
    let g = send(srv.get(&format!("/v2/medium/blob/blobs/{digest}"))).await;
    g.expect_status(200);
    assert_eq!(g.body.len() as u64, size);
    assert_eq!(sha256_digest(&g.body), digest);
}
