//! Blob reads (HEAD, GET, Range), visibility per repository and blob DELETE (refused while a
//! manifest of the repository needs the blob).

mod common;

use common::*;

#[tokio::test]
async fn head_and_get() {
    let srv = Server::start();
    let data = random_bytes(12_345);
    let digest = push_blob(&srv, "lib/blobs", &data).await;

    let h = send(srv.head(&format!("/v2/lib/blobs/blobs/{digest}"))).await;
    h.expect_status(200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some("12345"), "{}", h.describe());
    assert_eq!(h.header("docker-content-digest"), Some(digest.as_str()));

    let g = send(srv.get(&format!("/v2/lib/blobs/blobs/{digest}"))).await;
    g.expect_status(200);
    assert_eq!(g.header("content-length"), Some("12345"));
    assert_eq!(g.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(sha256_digest(&g.body), digest);
    // Pushed bytes share the console's origin: a browser must not run them as a script.
    assert_eq!(g.header("x-content-type-options"), Some("nosniff"));
}

async fn get_range(srv: &Server, path: &str, range: &str) -> Resp {
    send(srv.get(path).header("range", range)).await
}

#[tokio::test]
async fn range_requests() {
    let srv = Server::start();
    let data = random_bytes(1000);
    let digest = push_blob(&srv, "ranges", &data).await;
    let path = format!("/v2/ranges/blobs/{digest}");

    let cases: [(&str, usize, usize); 5] = [
        ("bytes=0-9", 0, 9),
        ("bytes=-500", 500, 999),
        ("bytes=500-", 500, 999),
        ("bytes=990-5000", 990, 999),
        ("bytes=999-999", 999, 999),
    ];
    for (range, first, last) in cases {
        let r = get_range(&srv, &path, range).await;
        r.expect_status(206);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "{range}: {}",
            r.describe()
        );
        assert_eq!(r.header("content-length"), Some((last - first + 1).to_string().as_str()), "{range}");
        assert!(r.body == data[first..=last], "{range}: wrong bytes");
    }

    for range in ["bytes=500-0", "bytes=1000-", "bytes=5000-6000"] {
        let r = get_range(&srv, &path, range).await;
        r.expect_status(416);
        if let Some(cr) = r.header("content-range") {
            assert_eq!(cr, "bytes */1000", "{range}");
        }
    }
}

/// Blobs and manifests carry their digest as a strong `ETag`: `If-None-Match` naming it answers
/// 304 without a body, and a `Range` under an `If-Range` that is not it (another tag, a date) is
/// ignored, so the client gets the whole blob rather than a piece of something else.
#[tokio::test]
async fn conditional_requests() {
    let srv = Server::start();
    let data = random_bytes(1000);
    let digest = push_blob(&srv, "conditional", &data).await;
    let path = format!("/v2/conditional/blobs/{digest}");
    let etag = format!("\"{digest}\"");

    let g = send(srv.get(&path)).await;
    g.expect_status(200);
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    for matching in [etag.clone(), format!("W/{etag}"), format!("\"sha256:{}\", {etag}", "0".repeat(64)), "*".into()] {
        for request in [srv.get(&path), srv.head(&path)] {
            let r = send(request.header("if-none-match", &matching)).await;
            r.expect_status(304);
            assert!(r.body.is_empty(), "{matching}");
            // None, or the 200's (RFC 9110 8.6), never the empty body's.
            assert!(r.header("content-length").is_none_or(|n| n == "1000"), "{matching}: {}", r.describe());
            assert_eq!(r.header("etag"), Some(etag.as_str()), "{matching}");
        }
    }
    let other = format!("\"sha256:{}\"", "0".repeat(64));
    let r = send(srv.get(&path).header("if-none-match", &other)).await;
    r.expect_status(200);
    assert!(r.body == data);

    let r = send(srv.get(&path).header("range", "bytes=0-9").header("if-range", &etag)).await;
    r.expect_status(206);
    assert!(r.body == data[..10]);
    for stale in [other.as_str(), "Wed, 21 Oct 2015 07:28:00 GMT", "W/\"x\""] {
        let r = send(srv.get(&path).header("range", "bytes=0-9").header("if-range", stale)).await;
        r.expect_status(200);
        assert!(r.header("content-range").is_none() && r.body == data, "{stale}: {}", r.describe());
    }

    let image = push_image(&srv, "conditional", Some("v1")).await;
    let manifest = "/v2/conditional/manifests/v1";
    let etag = format!("\"{}\"", image.digest);
    let r = send(srv.get(manifest).header("if-none-match", &etag)).await;
    r.expect_status(304);
    assert!(r.body.is_empty());
    let r = send(srv.get(manifest).header("if-none-match", &other)).await;
    r.expect_status(200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    // A missing blob is still a 404, whatever the client holds.
    let missing = format!("/v2/conditional/blobs/sha256:{}", "1".repeat(64));
    send(srv.get(&missing).header("if-none-match", "*")).await.expect_error(404, "BLOB_UNKNOWN");
}

/// `Range` numbers are digits only and never overflow: one past `u64::MAX` means "to the end"
/// as RFC 9110's clamping says (it used to fail to parse, so the whole blob came back), and a
/// first position that large is unsatisfiable. A malformed header (spaces, signs, several
/// ranges) is ignored, as RFC 9110 allows: the whole blob, 200.
#[tokio::test]
async fn range_numbers_are_strict_and_overflow_safe() {
    let srv = Server::start();
    let data = random_bytes(1000);
    let digest = push_blob(&srv, "bigranges", &data).await;
    let path = format!("/v2/bigranges/blobs/{digest}");
    for range in ["bytes=0-18446744073709551616", "bytes=0-99999999999999999999999999", "bytes=-18446744073709551616"] {
        let r = get_range(&srv, &path, range).await;
        r.expect_status(206);
        assert_eq!(r.header("content-range"), Some("bytes 0-999/1000"), "{range}: {}", r.describe());
        assert!(r.body == data, "{range}");
    }
    for range in ["bytes=18446744073709551616-", "bytes=18446744073709551615-18446744073709551616"] {
        let r = get_range(&srv, &path, range).await;
        r.expect_error(416, "RANGE_INVALID");
        assert_eq!(r.header("content-range"), Some("bytes */1000"), "{range}");
    }
    for range in ["bytes= 0 - 9", "bytes=+0-+9", "bytes=0-9,20-29", "bytes=0x0-9", "pages=0-9"] {
        let r = get_range(&srv, &path, range).await;
        r.expect_status(200);
        assert!(r.header("content-range").is_none(), "{range}: {}", r.describe());
        assert!(r.body == data, "{range}");
    }
}

#[tokio::test]
async fn unknown_blob() {
    let srv = Server::start();
    push_blob(&srv, "known", b"present").await;
    let digest = sha256_digest(b"absent");
    let h = send(srv.head(&format!("/v2/known/blobs/{digest}"))).await;
    h.expect_status(404);
    assert!(h.body.is_empty());
    send(srv.get(&format!("/v2/known/blobs/{digest}"))).await.expect_error(404, "BLOB_UNKNOWN");

    // In a repository that does not exist.
    send(srv.head(&format!("/v2/nothing/here/blobs/{digest}"))).await.expect_status(404);
    let r = send(srv.get(&format!("/v2/nothing/here/blobs/{digest}"))).await;
    r.expect_status(404);
    r.expect_error_code_in(&["BLOB_UNKNOWN", "NAME_UNKNOWN"]);
}

#[tokio::test]
async fn malformed_blob_digest() {
    let srv = Server::start();
    push_blob(&srv, "known", b"present").await;
    for bad in ["sha256:abc", "latest", "sha256:ZZZZ"] {
        let r = send(srv.get(&format!("/v2/known/blobs/{bad}"))).await;
        r.expect_4xx();
        r.expect_error_code_in(&["DIGEST_INVALID", "BLOB_UNKNOWN"]);
        send(srv.head(&format!("/v2/known/blobs/{bad}"))).await.expect_4xx();
    }
}

#[tokio::test]
async fn blobs_are_visible_only_in_repositories_they_were_pushed_or_mounted_into() {
    let srv = Server::start();
    let data = random_bytes(777);
    let digest = push_blob(&srv, "repo/a", &data).await;
    push_blob(&srv, "repo/b", b"b has something").await;

    send(srv.head(&format!("/v2/repo/b/blobs/{digest}"))).await.expect_status(404);
    send(srv.get(&format!("/v2/repo/b/blobs/{digest}"))).await.expect_error(404, "BLOB_UNKNOWN");

    let r = send(srv.post(&format!("/v2/repo/b/blobs/uploads/?mount={digest}&from=repo/a"))).await;
    expect_blob_created(&srv, &r, "repo/b", &digest);
    expect_blob(&srv, "repo/b", &digest, &data).await;
}

#[tokio::test]
async fn delete_blob() {
    let srv = Server::start();
    let data = random_bytes(2000);
    let digest = push_blob(&srv, "del/a", &data).await;
    push_blob(&srv, "del/b", &data).await;

    send(srv.delete(&format!("/v2/del/a/blobs/{digest}"))).await.expect_status(202);
    send(srv.head(&format!("/v2/del/a/blobs/{digest}"))).await.expect_status(404);
    send(srv.get(&format!("/v2/del/a/blobs/{digest}"))).await.expect_error(404, "BLOB_UNKNOWN");
    send(srv.delete(&format!("/v2/del/a/blobs/{digest}"))).await.expect_error(404, "BLOB_UNKNOWN");

    // The same content linked into another repository is unaffected.
    expect_blob(&srv, "del/b", &digest, &data).await;

    // And it can be pushed again.
    push_blob(&srv, "del/a", &data).await;
    expect_blob(&srv, "del/a", &digest, &data).await;
}

/// Deleting a layer an image of the repository needs would leave the image unpullable (and GC
/// would then delete the data for good): refused with 405 UNSUPPORTED naming the manifest, its
/// `Allow` leaving DELETE out (RFC 9110: the methods the resource supports now), and nothing changes. Once the image is gone the blob can go.
#[tokio::test]
async fn delete_blob_a_manifest_needs() {
    let srv = Server::start();
    let image = push_image(&srv, "del/image", Some("v1")).await;
    let layer = sha256_digest(&image.layers[0]);
    let config = sha256_digest(&image.config);
    for needed in [&layer, &config] {
        let r = send(srv.delete(&format!("/v2/del/image/blobs/{needed}"))).await;
        r.expect_error(405, "UNSUPPORTED");
        assert!(r.text().contains(&image.digest), "the message names the manifest: {}", r.describe());
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{}", r.describe());
    }
    expect_blob(&srv, "del/image", &layer, &image.layers[0]).await;
    expect_manifest(&srv, "del/image", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;

    send(srv.delete(&format!("/v2/del/image/manifests/{}", image.digest))).await.expect_status(202);
    send(srv.delete(&format!("/v2/del/image/blobs/{layer}"))).await.expect_status(202);
    send(srv.get(&format!("/v2/del/image/blobs/{layer}"))).await.expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn repository_names_that_contain_route_words() {
    let srv = Server::start();
    for repo in ["blobs", "manifests/blobs", "a/blobs/uploads", "tags/list", "x/referrers"] {
        let data = random_bytes(100);
        let digest = push_blob(&srv, repo, &data).await;
        expect_blob(&srv, repo, &digest, &data).await;
        let img = push_image(&srv, repo, Some("v1")).await;
        expect_manifest(&srv, repo, "v1", OCI_MANIFEST, &img.manifest, &img.digest).await;
        let tags = send(srv.get(&format!("/v2/{repo}/tags/list"))).await;
        tags.expect_status(200);
        assert_eq!(tags.json()["name"], repo);
        assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));
    }
}
