//! The base endpoint, repository-name validation, path tricks and the error document format.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn base_endpoint() {
    let srv = Server::start();
    let r = send(srv.get("/v2/")).await;
    r.expect_status(200);
    assert_eq!(r.header("docker-distribution-api-version"), Some("registry/2.0"));
    let h = send(srv.head("/v2/")).await;
    h.expect_status(200);
    assert_eq!(h.header("docker-distribution-api-version"), Some("registry/2.0"));
    // Without the trailing slash too (some clients ping /v2).
    let r = send(srv.get("/v2")).await;
    assert!(r.status() == 200 || r.status() == 301 || r.status() == 308 || r.status() == 404, "{}", r.describe());
}

#[tokio::test]
async fn the_data_dir_is_created_when_missing() {
    let srv = Server::start_with_missing_data_dir();
    assert!(srv.data_dir().is_dir(), "data dir was not created");
    let img = push_image(&srv, "created", Some("v1")).await;
    expect_manifest(&srv, "created", "v1", OCI_MANIFEST, &img.manifest, &img.digest).await;
}

#[tokio::test]
async fn error_documents_are_json() {
    let srv = Server::start();
    let r = send(srv.get(&format!("/v2/nope/blobs/{}", sha256_digest(b"x")))).await;
    r.expect_status(404);
    assert!(r.header("content-type").unwrap_or_default().starts_with("application/json"), "{}", r.describe());
    let v = r.json();
    let errors = v["errors"].as_array().expect("errors list");
    assert!(!errors.is_empty());
    for e in errors {
        assert!(e["code"].is_string(), "{e}");
        assert!(e["message"].is_string(), "{e}");
    }
}

/// Every endpoint shape with `name` substituted, for name-validation checks.
fn endpoints(name: &str) -> Vec<(reqwest::Method, String)> {
    use reqwest::Method;
    let d = sha256_digest(b"x");
    vec![
        (Method::GET, format!("/v2/{name}/tags/list")),
        (Method::GET, format!("/v2/{name}/manifests/latest")),
        (Method::HEAD, format!("/v2/{name}/manifests/latest")),
        (Method::PUT, format!("/v2/{name}/manifests/latest")),
        (Method::DELETE, format!("/v2/{name}/manifests/{d}")),
        (Method::GET, format!("/v2/{name}/blobs/{d}")),
        (Method::HEAD, format!("/v2/{name}/blobs/{d}")),
        (Method::DELETE, format!("/v2/{name}/blobs/{d}")),
        (Method::POST, format!("/v2/{name}/blobs/uploads/")),
        (Method::POST, format!("/v2/{name}/blobs/uploads/?digest={d}")),
        (Method::GET, format!("/v2/{name}/referrers/{d}")),
    ]
}

#[tokio::test]
async fn invalid_repository_names() {
    let srv = Server::start();
    let img_manifest = {
        let img = push_image(&srv, "valid", None).await;
        img.manifest
    };
    let long = "a".repeat(300);
    let long_nested = format!("{}/x", "abcdefghij/".repeat(25).trim_end_matches('/'));
    assert!(long_nested.len() > 256);
    let names = [
        "UPPER",
        "Mixed/case",
        "a..b",
        "trailing/",
        "-leading",
        "a__-b",
        "a//b",
        "name with space",
        long.as_str(),
        long_nested.as_str(),
    ];
    for name in names {
        for (method, path) in endpoints(name) {
            let mut rb = srv.request(method.clone(), &path);
            if method == reqwest::Method::PUT {
                rb = rb.header("content-type", OCI_MANIFEST).body(img_manifest.clone());
            }
            let r = send(rb).await;
            assert!(
                r.status() == 400 || r.status() == 404,
                "{method} {path}: expected 400 NAME_INVALID or a 404, got:\n{}",
                r.describe()
            );
            // HEAD answers carry no body to hold an error code.
            if r.status() == 400 && method != reqwest::Method::HEAD {
                r.expect_error_code_in(&["NAME_INVALID"]);
            }
        }
    }
    // Nothing was created under any of those names.
    let r = send(srv.get("/v2/_catalog")).await;
    r.expect_status(200);
    assert_eq!(r.json()["repositories"], serde_json::json!(["valid"]));
}

#[tokio::test]
async fn upper_case_name_is_name_invalid() {
    let srv = Server::start();
    for path in ["/v2/UPPER/blobs/uploads/", "/v2/Foo/bar/blobs/uploads/"] {
        send(srv.post(path)).await.expect_error(400, "NAME_INVALID");
    }
    send(srv.get("/v2/UPPER/tags/list")).await.expect_error(400, "NAME_INVALID");
    send(srv.get("/v2/UPPER/manifests/latest")).await.expect_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn long_names_are_rejected() {
    let srv = Server::start();
    let long = format!("{}/z", "abcdefgh".repeat(40));
    assert!(long.len() > 256);
    let r = send(srv.post(&format!("/v2/{long}/blobs/uploads/"))).await;
    r.expect_4xx();
    if r.status() == 400 {
        r.expect_error_code_in(&["NAME_INVALID"]);
    }
    let r = send(srv.put(&format!("/v2/{long}/manifests/v1")).header("content-type", OCI_MANIFEST).body("{}")).await;
    r.expect_4xx();
}

#[tokio::test]
async fn path_tricks_never_reach_outside_a_repository() {
    let srv = Server::start();
    push_image(&srv, "bb", Some("x")).await;
    push_image(&srv, "aa", Some("x")).await;
    let d = sha256_digest(b"x");
    let targets = [
        "/v2/aa/../bb/manifests/x".to_string(),
        "/v2/aa/%2e%2e/bb/manifests/x".to_string(),
        "/v2/aa/%2E%2E/bb/manifests/x".to_string(),
        "/v2/%2e%2e/manifests/x".to_string(),
        "/v2/../v2/bb/manifests/x".to_string(),
        "/v2/aa%2f..%2fbb/manifests/x".to_string(),
        "/v2/./bb/manifests/x".to_string(),
        "/v2/aa/b%00/manifests/x".to_string(),
        "/v2/aa/blobs/..%2f..%2f..%2fetc%2fpasswd".to_string(),
        format!("/v2/aa/blobs/sha256:..%2f{}", &d[7..70]),
        "/v2/aa/blobs/uploads/..%2f..%2fsecret".to_string(),
        "/v2/aa/blobs/uploads/../../bb/manifests/x".to_string(),
        "/v2/aa/manifests/..".to_string(),
        "/v2/aa/manifests/%2e%2e".to_string(),
        format!("/v2/{}/manifests/x", "a/".repeat(200) + "a"),
        "/v2//bb/manifests/x".to_string(),
    ];
    for target in &targets {
        for method in ["GET", "HEAD", "DELETE", "PUT", "PATCH"] {
            let code = raw_status(&srv, method, target).await;
            assert!((400..500).contains(&code), "{method} {target}: expected a 4xx, got {code}");
        }
    }
    // Both repositories are intact.
    send(srv.get("/v2/aa/manifests/x")).await.expect_status(200);
    send(srv.get("/v2/bb/manifests/x")).await.expect_status(200);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_4xx() {
    let srv = Server::start();
    push_image(&srv, "rr", Some("x")).await;
    for (method, path) in [
        ("GET", "/v2/rr/unknown/thing"),
        ("POST", "/v2/rr/manifests/x"),
        ("PATCH", "/v2/rr/manifests/x"),
        ("POST", "/v2/rr/tags/list"),
        ("PUT", "/v2/rr/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        ("GET", "/v3/"),
        ("GET", "/"),
    ] {
        let code = raw_status(&srv, method, path).await;
        assert!((400..500).contains(&code), "{method} {path}: {code}");
    }
}

#[tokio::test]
async fn garbage_headers_are_4xx_not_5xx() {
    let srv = Server::start();
    let data = random_bytes(100);
    let digest = push_blob(&srv, "hdrs", &data).await;
    // Unparseable Range on a blob GET: ignore (200) or refuse (416/400).
    for range in ["bytes=abc", "bytes=", "items=0-1", "bytes=0-1,5-6", "bytes=--1"] {
        let r = send(srv.get(&format!("/v2/hdrs/blobs/{digest}")).header("range", range)).await;
        assert!([200, 206, 400, 416].contains(&r.status()), "Range {range}: {}", r.describe());
        if r.status() == 200 {
            assert!(r.body == data);
        }
    }
    // Manifest PUT with a garbage Content-Type.
    let r = send(srv.put("/v2/hdrs/manifests/x").header("content-type", ";;;").body("{}")).await;
    r.expect_4xx();
}

#[tokio::test]
async fn pushes_to_new_repositories_can_be_refused() {
    let srv = Server::start_with(&["--no-create-on-push"]);
    let r = send(srv.post("/v2/brand/new/blobs/uploads/")).await;
    r.expect_4xx();
    r.expect_error_code_in(&["NAME_UNKNOWN", "DENIED"]);
    let r = send(srv.post(&format!("/v2/brand/new/blobs/uploads/?digest={}", sha256_digest(b"x"))).body("x")).await;
    r.expect_4xx();
    let r =
        send(srv.put("/v2/brand/new/manifests/v1").header("content-type", OCI_INDEX).body(index_json(OCI_INDEX, &[])))
            .await;
    r.expect_4xx();
    r.expect_error_code_in(&["NAME_UNKNOWN", "DENIED"]);
    let r = send(srv.get("/v2/_catalog")).await;
    assert!(r.json()["repositories"].as_array().is_none_or(|a| a.is_empty()), "{}", r.describe());

    // As on ECR, a CREATE_ON_PUSH creation template lets pushes under its prefix create the
    // repository; a template for other kinds of creation does not.
    let template = |prefix: &str, applied_for: &str| {
        json!({"prefix": prefix, "appliedFor": [applied_for], "imageTagMutability": "IMMUTABLE"}).to_string()
    };
    ecr_call(&srv, "AKIAANY", "any", "CreateRepositoryCreationTemplate", &template("team", "CREATE_ON_PUSH"))
        .await
        .expect_status(200);
    ecr_call(&srv, "AKIAANY", "any", "CreateRepositoryCreationTemplate", &template("cache", "PULL_THROUGH_CACHE"))
        .await
        .expect_status(200);
    push_image(&srv, "team/app", Some("v1")).await;
    let r =
        ecr_call(&srv, "AKIAANY", "any", "DescribeRepositories", &json!({"repositoryNames": ["team/app"]}).to_string())
            .await;
    assert_eq!(r.json()["repositories"][0]["imageTagMutability"], "IMMUTABLE", "{}", r.describe());
    for refused in ["cache/app", "teamx/app"] {
        let r = send(srv.post(&format!("/v2/{refused}/blobs/uploads/"))).await;
        r.expect_error_code_in(&["NAME_UNKNOWN"]);
    }
}
