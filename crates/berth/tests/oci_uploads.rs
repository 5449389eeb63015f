//! Blob uploads: monolithic, streamed, chunked, status, cancel, digests, cross-repository mount.

mod common;

use common::*;

#[tokio::test]
async fn post_then_put_monolithic() {
    let srv = Server::start();
    let data = random_bytes(4096);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "mono/app").await;

    let r = send(
        srv.client.put(with_query(&upload, "digest", &digest)).header("content-type", OCTET_STREAM).body(data.clone()),
    )
    .await;
    expect_blob_created(&srv, &r, "mono/app", &digest);
    expect_blob(&srv, "mono/app", &digest, &data).await;

    // The session is consumed by the successful PUT.
    send(srv.client.get(upload.clone())).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn post_with_digest_is_a_single_request_upload() {
    let srv = Server::start();
    let data = random_bytes(3000);
    let digest = sha256_digest(&data);
    let r = send(
        srv.post(&format!("/v2/single/blobs/uploads/?digest={digest}"))
            .header("content-type", OCTET_STREAM)
            .body(data.clone()),
    )
    .await;
    expect_blob_created(&srv, &r, "single", &digest);
    expect_blob(&srv, "single", &digest, &data).await;
}

#[tokio::test]
async fn post_with_wrong_digest_is_rejected_and_invisible() {
    let srv = Server::start();
    let data = random_bytes(3000);
    let claimed = sha256_digest(b"something else");
    send(srv.post(&format!("/v2/single/blobs/uploads/?digest={claimed}")).body(data.clone()))
        .await
        .expect_error(400, "DIGEST_INVALID");
    send(srv.head(&format!("/v2/single/blobs/{claimed}"))).await.expect_status(404);
    send(srv.head(&format!("/v2/single/blobs/{}", sha256_digest(&data)))).await.expect_status(404);
}

#[tokio::test]
async fn empty_blob() {
    let srv = Server::start();
    let digest = push_blob(&srv, "empty", b"").await;
    assert_eq!(digest, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    let h = send(srv.head(&format!("/v2/empty/blobs/{digest}"))).await;
    h.expect_status(200);
    assert_eq!(h.header("content-length"), Some("0"));
    expect_blob(&srv, "empty", &digest, b"").await;
}

#[tokio::test]
async fn streamed_patch_then_put() {
    let srv = Server::start();
    let data = random_bytes(100_000);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "streamed").await;

    let r = send(srv.client.patch(upload).header("content-type", OCTET_STREAM).body(data.clone())).await;
    r.expect_status(202);
    assert_eq!(r.header("range"), Some("0-99999"), "{}", r.describe());
    assert!(r.location_path(&srv).starts_with("/v2/streamed/blobs/uploads/"));
    let upload = r.location(&srv);

    let r = send(srv.client.put(with_query(&upload, "digest", &digest))).await;
    expect_blob_created(&srv, &r, "streamed", &digest);
    expect_blob(&srv, "streamed", &digest, &data).await;
}

/// Sends `data` in chunks with `Content-Range`, checking each 202; returns the last Location.
async fn patch_chunks(srv: &Server, repo: &str, mut upload: reqwest::Url, data: &[u8], chunk: usize) -> reqwest::Url {
    let mut start = 0;
    while start < data.len() {
        let end = (start + chunk).min(data.len());
        let r = send(
            srv.client
                .patch(upload.clone())
                .header("content-type", OCTET_STREAM)
                .header("content-range", format!("{}-{}", start, end - 1))
                .header("content-length", (end - start).to_string())
                .body(data[start..end].to_vec()),
        )
        .await;
        r.expect_status(202);
        assert_eq!(r.header("range"), Some(format!("0-{}", end - 1).as_str()), "{}", r.describe());
        assert!(r.location_path(srv).starts_with(&format!("/v2/{repo}/blobs/uploads/")), "{}", r.describe());
        upload = r.location(srv);
        start = end;
    }
    upload
}

#[tokio::test]
async fn chunked_patches_with_content_range() {
    let srv = Server::start();
    let data = random_bytes(30_001);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "chunks/repo").await;
    let upload = patch_chunks(&srv, "chunks/repo", upload, &data, 10_000).await;

    let status = send(srv.client.get(upload.clone())).await;
    status.expect_status(204);
    assert_eq!(status.header("range"), Some("0-30000"));

    let r = send(srv.client.put(with_query(&upload, "digest", &digest)).header("content-length", "0")).await;
    expect_blob_created(&srv, &r, "chunks/repo", &digest);
    expect_blob(&srv, "chunks/repo", &digest, &data).await;
}

#[tokio::test]
async fn put_with_final_chunk() {
    let srv = Server::start();
    let data = random_bytes(25_000);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "finalchunk").await;
    let upload = patch_chunks(&srv, "finalchunk", upload, &data[..20_000], 10_000).await;

    let r = send(
        srv.client
            .put(with_query(&upload, "digest", &digest))
            .header("content-type", OCTET_STREAM)
            .header("content-range", "20000-24999")
            .body(data[20_000..].to_vec()),
    )
    .await;
    expect_blob_created(&srv, &r, "finalchunk", &digest);
    expect_blob(&srv, "finalchunk", &digest, &data).await;
}

#[tokio::test]
async fn put_with_final_chunk_without_content_range() {
    let srv = Server::start();
    let data = random_bytes(25_000);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "finalchunk").await;
    let r = send(srv.client.patch(upload).body(data[..12_345].to_vec())).await;
    r.expect_status(202);
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &digest)).body(data[12_345..].to_vec())).await;
    expect_blob_created(&srv, &r, "finalchunk", &digest);
    expect_blob(&srv, "finalchunk", &digest, &data).await;
}

#[tokio::test]
async fn out_of_order_patch_is_416_and_the_session_survives() {
    let srv = Server::start();
    let data = random_bytes(30_000);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "ooo").await;
    let upload = patch_chunks(&srv, "ooo", upload, &data[..10_000], 10_000).await;

    // Skipping ahead.
    let r = send(
        srv.client
            .patch(upload.clone())
            .header("content-range", "20000-29999")
            .header("content-length", "10000")
            .body(data[20_000..].to_vec()),
    )
    .await;
    r.expect_status(416);
    // Rewinding to the start.
    let r = send(
        srv.client
            .patch(upload.clone())
            .header("content-range", "0-9999")
            .header("content-length", "10000")
            .body(data[..10_000].to_vec()),
    )
    .await;
    r.expect_status(416);
    // A final PUT out of order: the same 416, saying where the upload stands.
    let r = send(
        srv.client
            .put(with_query(&upload, "digest", &digest))
            .header("content-range", "20000-29999")
            .header("content-length", "10000")
            .body(data[20_000..].to_vec()),
    )
    .await;
    r.expect_status(416);
    assert_eq!(r.header("range"), Some("0-9999"), "{}", r.describe());
    assert!(r.header("location").is_some() && r.header("docker-upload-uuid").is_some(), "{}", r.describe());

    // Recover like the conformance suite: GET the status, then continue where it says.
    let status = send(srv.client.get(upload.clone())).await;
    status.expect_status(204);
    assert_eq!(status.header("range"), Some("0-9999"), "{}", status.describe());
    let upload = status.location(&srv);

    let upload = {
        let r = send(
            srv.client
                .patch(upload)
                .header("content-range", "10000-29999")
                .header("content-length", "20000")
                .body(data[10_000..].to_vec()),
        )
        .await;
        r.expect_status(202);
        assert_eq!(r.header("range"), Some("0-29999"));
        r.location(&srv)
    };
    let r = send(srv.client.put(with_query(&upload, "digest", &digest))).await;
    expect_blob_created(&srv, &r, "ooo", &digest);
    expect_blob(&srv, "ooo", &digest, &data).await;
}

#[tokio::test]
async fn content_range_that_disagrees_with_the_body_is_rejected() {
    let srv = Server::start();
    let upload = start_upload(&srv, "badrange").await;
    let r = send(srv.client.patch(upload.clone()).header("content-range", "nonsense").body(random_bytes(50))).await;
    r.expect_status(416);
    let r = send(srv.client.patch(upload.clone()).header("content-range", "10-5").body(random_bytes(50))).await;
    r.expect_4xx();
    let r = send(srv.client.patch(upload.clone()).header("content-range", "0-99").body(random_bytes(50))).await;
    r.expect_4xx();
    // None of that was appended.
    let status = send(srv.client.get(upload)).await;
    status.expect_status(204);
    assert_eq!(status.header("range"), Some("0-0"), "{}", status.describe());
}

#[tokio::test]
async fn upload_status_reports_location_and_range() {
    let srv = Server::start();
    let upload = start_upload(&srv, "status").await;

    let r = send(srv.client.get(upload.clone())).await;
    r.expect_status(204);
    assert_eq!(r.header("range"), Some("0-0"), "{}", r.describe());
    assert!(r.location_path(&srv).starts_with("/v2/status/blobs/uploads/"), "{}", r.describe());

    let r = send(srv.client.patch(upload).body(random_bytes(10))).await;
    r.expect_status(202);
    let r = send(srv.client.get(r.location(&srv))).await;
    r.expect_status(204);
    assert_eq!(r.header("range"), Some("0-9"), "{}", r.describe());
    assert!(r.location_path(&srv).starts_with("/v2/status/blobs/uploads/"), "{}", r.describe());
}

#[tokio::test]
async fn cancel_upload() {
    let srv = Server::start();
    let upload = start_upload(&srv, "cancel").await;
    let r = send(srv.client.patch(upload.clone()).body(random_bytes(100))).await;
    r.expect_status(202);
    let upload = r.location(&srv);

    send(srv.client.delete(upload.clone())).await.expect_status(204);
    send(srv.client.get(upload.clone())).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    send(srv.client.patch(upload.clone()).body(random_bytes(10))).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    send(srv.client.delete(upload)).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn unknown_upload_id() {
    let srv = Server::start();
    // Make the repository exist so the answer is about the session, not the name.
    push_blob(&srv, "uploads", b"x").await;
    let path = "/v2/uploads/blobs/uploads/3f1c1a2e-7f5b-4c54-9d2a-6b1f0e0f4e11";
    let digest = sha256_digest(b"data");
    send(srv.get(path)).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    send(srv.patch(path).body(b"data".to_vec())).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    send(srv.put(&format!("{path}?digest={digest}")).body(b"data".to_vec()))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    send(srv.delete(path)).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    // An id that is not even UUID-shaped is still just unknown.
    let r = send(srv.get("/v2/uploads/blobs/uploads/not-a-session")).await;
    r.expect_4xx();
    assert!(r.status() == 404 || r.status() == 400, "{}", r.describe());
}

#[tokio::test]
async fn a_session_belongs_to_its_repository() {
    let srv = Server::start();
    let upload = start_upload(&srv, "owner").await;
    let other = upload.path().replacen("/v2/owner/", "/v2/intruder/", 1);
    push_blob(&srv, "intruder", b"exists").await;
    send(srv.get(&other)).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let data = b"stolen".to_vec();
    send(srv.put(&format!("{other}?digest={}", sha256_digest(&data))).body(data))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    // The owner's session is untouched.
    send(srv.client.get(upload)).await.expect_status(204);
}

#[tokio::test]
async fn wrong_digest_at_put_is_rejected_and_nothing_becomes_visible() {
    let srv = Server::start();
    let data = random_bytes(5000);
    let real = sha256_digest(&data);
    let claimed = sha256_digest(b"not the data");
    let upload = start_upload(&srv, "wrongdigest").await;
    let r = send(srv.client.patch(upload).body(data.clone())).await;
    r.expect_status(202);
    let location = r.location(&srv);
    let r = send(srv.client.put(with_query(&location, "digest", &claimed))).await;
    r.expect_error(400, "DIGEST_INVALID");
    // No bytes came with the refused PUT: the session is as it was.
    let status = send(srv.client.get(location.clone())).await;
    status.expect_status(204);
    assert_eq!(status.header("range"), Some("0-4999"), "{}", status.describe());

    for d in [&claimed, &real] {
        send(srv.head(&format!("/v2/wrongdigest/blobs/{d}"))).await.expect_status(404);
        send(srv.get(&format!("/v2/wrongdigest/blobs/{d}"))).await.expect_error(404, "BLOB_UNKNOWN");
    }
    // Not in another repository either (storage is shared; visibility must not leak).
    let other = send(srv.post(&format!("/v2/elsewhere/blobs/uploads/?mount={real}"))).await;
    other.expect_status(202);
}

#[tokio::test]
async fn monolithic_put_with_wrong_digest() {
    let srv = Server::start();
    let data = random_bytes(5000);
    let claimed = sha256_digest(b"not the data");
    let upload = start_upload(&srv, "wrongdigest").await;
    let r = send(srv.client.put(with_query(&upload, "digest", &claimed)).body(data.clone())).await;
    r.expect_error(400, "DIGEST_INVALID");
    // The bytes it brought cannot be taken back: the upload ends, as distribution's does,
    // instead of holding bytes a retry would have to skip.
    assert!(r.text().contains("the upload is cancelled"), "{}", r.describe());
    send(srv.client.get(upload.clone())).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    send(srv.head(&format!("/v2/wrongdigest/blobs/{claimed}"))).await.expect_status(404);
    send(srv.head(&format!("/v2/wrongdigest/blobs/{}", sha256_digest(&data)))).await.expect_status(404);
}

#[tokio::test]
async fn malformed_digests_are_digest_invalid() {
    let srv = Server::start();
    let data = b"payload".to_vec();
    let hex = hex::encode(sha2_256(&data));
    let malformed = [
        "notadigest".to_string(),
        "sha256:abc".to_string(),
        format!("sha256:{}", hex.to_uppercase()),
        format!("sha256:{}zz", &hex[..62]),
        format!("sha512:{hex}"),
        "sha256:".to_string(),
        ":".to_string(),
    ];
    for bad in &malformed {
        let upload = start_upload(&srv, "malformed").await;
        let r = send(srv.client.put(with_query(&upload, "digest", bad)).body(data.clone())).await;
        r.expect_error(400, "DIGEST_INVALID");
    }
    // A PUT that does not name a digest at all cannot complete.
    let upload = start_upload(&srv, "malformed").await;
    let r = send(srv.client.put(upload).body(data.clone())).await;
    r.expect_status(400);
    r.expect_error_code_in(&["DIGEST_INVALID", "BLOB_UPLOAD_INVALID"]);
    // Monolithic POST with a malformed digest.
    let r = send(srv.post("/v2/malformed/blobs/uploads/?digest=sha256:nothex").body(data.clone())).await;
    r.expect_error(400, "DIGEST_INVALID");
}

fn sha2_256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).to_vec()
}

#[tokio::test]
async fn sha512_blobs() {
    let srv = Server::start();
    // Monolithic POST + PUT.
    let data = random_bytes(70_000);
    let digest = sha512_digest(&data);
    push_blob_as(&srv, "sha512/repo", &data, &digest).await;
    let h = send(srv.head(&format!("/v2/sha512/repo/blobs/{digest}"))).await;
    h.expect_status(200);
    assert_eq!(h.header("content-length"), Some("70000"));
    assert_eq!(h.header("docker-content-digest"), Some(digest.as_str()));
    expect_blob(&srv, "sha512/repo", &digest, &data).await;

    // Chunked PATCHes then PUT ?digest=sha512:...
    let data = random_bytes(50_000);
    let digest = sha512_digest(&data);
    let upload = start_upload(&srv, "sha512/repo").await;
    let upload = patch_chunks(&srv, "sha512/repo", upload, &data, 16_384).await;
    let r = send(srv.client.put(with_query(&upload, "digest", &digest))).await;
    expect_blob_created(&srv, &r, "sha512/repo", &digest);
    expect_blob(&srv, "sha512/repo", &digest, &data).await;

    // Single-request POST ?digest=sha512:...
    let data = random_bytes(1234);
    let digest = sha512_digest(&data);
    let r = send(srv.post(&format!("/v2/sha512/repo/blobs/uploads/?digest={digest}")).body(data.clone())).await;
    expect_blob_created(&srv, &r, "sha512/repo", &digest);
    expect_blob(&srv, "sha512/repo", &digest, &data).await;

    // A wrong sha512 is rejected.
    let upload = start_upload(&srv, "sha512/repo").await;
    send(srv.client.put(with_query(&upload, "digest", &sha512_digest(b"other"))).body(data.clone()))
        .await
        .expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn chunked_transfer_encoding_bodies() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(300_000);
    let digest = sha256_digest(&data);

    // PATCH without Content-Length (podman/buildah style).
    let upload = start_upload(&srv, "te/chunked").await;
    let r = send(srv.client.patch(upload).body(chunked_body(dir.path(), &data).await)).await;
    r.expect_status(202);
    assert_eq!(r.header("range"), Some("0-299999"), "{}", r.describe());
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &digest))).await;
    expect_blob_created(&srv, &r, "te/chunked", &digest);
    expect_blob(&srv, "te/chunked", &digest, &data).await;

    // PUT with a chunked final body.
    let data = random_bytes(200_000);
    let digest = sha256_digest(&data);
    let upload = start_upload(&srv, "te/chunked").await;
    let r =
        send(srv.client.put(with_query(&upload, "digest", &digest)).body(chunked_body(dir.path(), &data).await)).await;
    expect_blob_created(&srv, &r, "te/chunked", &digest);
    expect_blob(&srv, "te/chunked", &digest, &data).await;
}

#[tokio::test]
async fn mount_from_another_repository() {
    let srv = Server::start();
    let data = random_bytes(2048);
    let digest = push_blob(&srv, "source/repo", &data).await;
    send(srv.head(&format!("/v2/target/repo/blobs/{digest}"))).await.expect_status(404);

    let r = send(srv.post(&format!("/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"))).await;
    expect_blob_created(&srv, &r, "target/repo", &digest);
    expect_blob(&srv, "target/repo", &digest, &data).await;
    // Mounting again is still a success.
    let r = send(srv.post(&format!("/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"))).await;
    expect_blob_created(&srv, &r, "target/repo", &digest);
}

#[tokio::test]
async fn mount_of_a_blob_missing_from_the_source_falls_back_to_an_upload() {
    let srv = Server::start();
    push_blob(&srv, "source", b"something else").await;
    let data = random_bytes(2048);
    let digest = sha256_digest(&data);

    let r = send(srv.post(&format!("/v2/target/blobs/uploads/?mount={digest}&from=source"))).await;
    r.expect_status(202);
    assert!(r.location_path(&srv).starts_with("/v2/target/blobs/uploads/"), "{}", r.describe());
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &digest)).body(data.clone())).await;
    expect_blob_created(&srv, &r, "target", &digest);
    expect_blob(&srv, "target", &digest, &data).await;

    // The blob exists, but not in `from`: still an upload, not a mount from somewhere else.
    let data = random_bytes(500);
    let digest = push_blob(&srv, "third", &data).await;
    let r = send(srv.post(&format!("/v2/target/blobs/uploads/?mount={digest}&from=source"))).await;
    r.expect_status(202);
    send(srv.head(&format!("/v2/target/blobs/{digest}"))).await.expect_status(404);

    // A source repository that does not exist at all behaves the same.
    let data = random_bytes(100);
    let digest = sha256_digest(&data);
    let r = send(srv.post(&format!("/v2/target/blobs/uploads/?mount={digest}&from=no/such/repo"))).await;
    r.expect_status(202);
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &digest)).body(data)).await;
    expect_blob_created(&srv, &r, "target", &digest);
}

#[tokio::test]
async fn mount_without_from() {
    let srv = Server::start();
    let data = random_bytes(4096);
    let digest = push_blob(&srv, "somewhere/else", &data).await;

    let r = send(srv.post(&format!("/v2/fresh/blobs/uploads/?mount={digest}"))).await;
    expect_blob_created(&srv, &r, "fresh", &digest);
    expect_blob(&srv, "fresh", &digest, &data).await;

    let missing = random_bytes(64);
    let missing_digest = sha256_digest(&missing);
    let r = send(srv.post(&format!("/v2/fresh/blobs/uploads/?mount={missing_digest}"))).await;
    r.expect_status(202);
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &missing_digest)).body(missing.clone())).await;
    expect_blob_created(&srv, &r, "fresh", &missing_digest);
    expect_blob(&srv, "fresh", &missing_digest, &missing).await;
}

#[tokio::test]
async fn mount_with_a_malformed_digest_is_not_a_server_error() {
    let srv = Server::start();
    push_blob(&srv, "src", b"abc").await;
    let r = send(srv.post("/v2/dst/blobs/uploads/?mount=sha256:xyz&from=src")).await;
    // Either refused as a bad digest or treated as a plain upload start.
    if r.status() == 202 {
        assert!(r.location_path(&srv).starts_with("/v2/dst/blobs/uploads/"));
    } else {
        r.expect_error(400, "DIGEST_INVALID");
    }
    let r = send(srv.post(&format!("/v2/dst/blobs/uploads/?mount={}&from=Not..Valid", sha256_digest(b"abc")))).await;
    assert!(r.status() == 202 || r.status() == 400, "{}", r.describe());
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test]
async fn abandoned_upload_sessions_expire_and_their_data_is_removed() {
    // 0.0005 h = 1.8 s.
    let srv = Server::start_with(&["--upload-expiry-hours", "0.0005"]);
    let before = dir_size(srv.data_dir());
    let upload = start_upload(&srv, "expiring").await;
    let r = send(srv.client.patch(upload).body(random_bytes(4 * 1024 * 1024))).await;
    r.expect_status(202);
    let session = r.location(&srv);
    assert!(dir_size(srv.data_dir()) >= before + 4 * 1024 * 1024, "upload data is not on disk");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = send(srv.client.get(session.clone())).await;
        if r.status() == 404 {
            r.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
            break;
        }
        r.expect_status(204);
        assert!(std::time::Instant::now() < deadline, "the session did not expire within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dir_size(srv.data_dir()) >= before + 4 * 1024 * 1024 {
        assert!(std::time::Instant::now() < deadline, "expired upload data was not removed");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `Content-Range` is exactly `<start>-<end>` (the distribution spec's `^[0-9]+-[0-9]+$`): no
/// total, no spaces, no unit, and never an arithmetic overflow (a debug build would panic). Each
/// refusal is a 416 that names the problem and says where the upload stands; nothing is appended.
#[tokio::test]
async fn content_range_is_parsed_strictly() {
    let srv = Server::start();
    let upload = start_upload(&srv, "strictrange").await;
    let cases = [
        ("0-4/3", 5, "not of the form"),
        ("0 - 4", 5, "not of the form"),
        ("bytes 0-4/5", 5, "not of the form"),
        ("bytes=0-4", 5, "not of the form"),
        ("+0-4", 5, "not of the form"),
        ("0-18446744073709551615", 5, "more bytes than any chunk"),
        ("0-18446744073709551616", 5, "not of the form"),
        ("18446744073709551615-18446744073709551615", 1, "not satisfiable"),
        ("4-0", 5, "ends before it starts"),
        ("0-9", 5, "Content-Length is 5"),
    ];
    for (content_range, len, says) in cases {
        let r =
            send(srv.client.patch(upload.clone()).header("content-range", content_range).body(random_bytes(len))).await;
        r.expect_error(416, "RANGE_INVALID");
        assert!(r.text().contains(says), "{content_range}: {}", r.describe());
        assert_eq!(r.header("range"), Some("0-0"), "{content_range}: {}", r.describe());
        assert!(r.header("location").is_some(), "{content_range}: {}", r.describe());
    }
    let status = send(srv.client.get(upload.clone())).await;
    status.expect_status(204);
    assert_eq!(status.header("range"), Some("0-0"), "{}", status.describe());
    // The well-formed chunk still goes through.
    let data = random_bytes(5);
    let r = send(srv.client.patch(upload).header("content-range", "0-4").body(data.clone())).await;
    r.expect_status(202);
    assert_eq!(r.header("range"), Some("0-4"));
    let r = send(srv.client.put(with_query(&r.location(&srv), "digest", &sha256_digest(&data)))).await;
    expect_blob_created(&srv, &r, "strictrange", &sha256_digest(&data));
}
