//! Pull-through cache rules over the ECR API, SigV4-signed, with a second `berth serve` (auth on)
//! as the upstream: credentials stored by `berth secret put` open only with the server's master
//! key across restarts, rules survive them, and validation asks the upstream with them.

mod common;
// The Bearer token service of berth-remote's tests (Docker Hub's flow), in front of an upstream.
#[allow(dead_code)] // what only berth-remote's own tests use
#[path = "../../berth-remote/tests/common/token_server.rs"]
mod token_server;

/// What the token service's own reqwest client needs (it calls `super::install_tls_provider`).
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ROOT_KEY: &str = "AKIAPULLTHROUGHROOT1";
const ROOT_SECRET: &str = "pull-through-root-secret-0000000000000000";

/// `berth secret put NAME --username USER --password-stdin` on `srv`'s data directory.
fn secret_put(srv: &Server, name: &str, username: &str, password: &str) -> String {
    secret_put_for(srv, name, username, password, None)
}

/// [`secret_put`] with `--upstream URL` when given.
fn secret_put_for(srv: &Server, name: &str, username: &str, password: &str, upstream: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["secret", "put", name, "--username", username, "--password-stdin", "--data-dir"])
        .arg(srv.data_dir())
        .args(upstream.map(|url| ["--upstream", url]).into_iter().flatten())
        .env_remove("BERTH_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth secret put");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "berth secret put: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn call(srv: &Server, operation: &str, body: Value) -> Resp {
    ecr_call(srv, ROOT_KEY, ROOT_SECRET, operation, &body.to_string()).await
}

fn error_type(r: &Resp) -> String {
    r.json()["__type"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn rules_validate_against_an_upstream_berth_with_stored_credentials() {
    let upstream = Launch::new().start();
    let user: Value = serde_json::from_str(&upstream.cli(&[
        "user",
        "add",
        "puller",
        "--policy",
        "AmazonEC2ContainerRegistryPullOnly",
    ]))
    .unwrap();
    let (key, secret) = (user["accessKeyId"].as_str().unwrap(), user["secretAccessKey"].as_str().unwrap());

    let mut srv = Launch::new().root_keys(ROOT_KEY, ROOT_SECRET).start();
    let good = secret_put(&srv, "upstream", key, secret);
    assert_eq!(good, "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/upstream");
    let bad = secret_put(&srv, "upstream-wrong", key, "not-the-secret");

    let r = call(
        &srv,
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "up/", "upstreamRegistryUrl": upstream.base(), "credentialArn": good}),
    )
    .await;
    r.expect_status(200);
    assert_eq!(r.json()["ecrRepositoryPrefix"], "up");
    assert_eq!(r.json()["upstreamRepositoryPrefix"], "ROOT");
    // The members of CreatePullThroughCacheRuleResponse's model, no others.
    let create_members = [
        "createdAt",
        "credentialArn",
        "ecrRepositoryPrefix",
        "registryId",
        "upstreamRegistryUrl",
        "upstreamRepositoryPrefix",
    ];
    assert_eq!(members(&r.json()), create_members, "{}", r.describe());

    let r = call(&srv, "ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up"})).await;
    assert_eq!((r.status(), r.json()["isValid"].clone()), (200, json!(true)), "{}", r.describe());

    // Rules and secrets are in the database: a restart keeps both, and the secret still opens.
    srv.restart();
    let r = call(&srv, "DescribePullThroughCacheRules", json!({})).await;
    assert_eq!(r.json()["pullThroughCacheRules"][0]["credentialArn"], good.as_str(), "{}", r.describe());
    let r = call(&srv, "ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up"})).await;
    assert_eq!(r.json()["isValid"], true, "{}", r.describe());

    let r = call(&srv, "UpdatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up", "credentialArn": bad})).await;
    assert_eq!(r.json()["credentialArn"], bad.as_str(), "{}", r.describe());
    let r = call(&srv, "ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up"})).await;
    assert_eq!(r.json()["isValid"], false, "{}", r.describe());
    let failure = r.json()["failure"].as_str().unwrap().to_owned();
    assert!(failure.contains("authentication failed"), "{failure}");
    assert!(!failure.contains("not-the-secret") && !failure.contains(secret), "{failure}");

    let r = call(&srv, "DeletePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up/"})).await;
    assert_eq!(r.json()["ecrRepositoryPrefix"], "up", "{}", r.describe());
    assert_eq!(members(&r.json()), create_members, "DeletePullThroughCacheRuleResponse's: {}", r.describe());
    let r = call(&srv, "DeletePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up"})).await;
    assert_eq!(error_type(&r), "PullThroughCacheRuleNotFoundException", "{}", r.describe());
}

/// The member names of a JSON object, sorted.
fn members(object: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = object.as_object().expect("an object").keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// A user allowed to create rules must not be able to send a stored password to a server of
/// their own: a secret stored for an upstream serves rules of that upstream only, and one stored
/// without an upstream serves the root's rules only.
#[tokio::test]
async fn a_user_names_only_secrets_stored_for_the_rules_upstream() {
    let upstream = Launch::new().start();
    let srv = Launch::new().root_keys(ROOT_KEY, ROOT_SECRET).start();
    let user: Value =
        serde_json::from_str(&srv.cli(&["user", "add", "ptc", "--policy", "AmazonEC2ContainerRegistryFullAccess"]))
            .unwrap();
    let (key, secret) = (user["accessKeyId"].as_str().unwrap(), user["secretAccessKey"].as_str().unwrap());
    let srv_ref = &srv;
    let as_user = |operation: &'static str, body: Value| async move {
        ecr_call(srv_ref, key, secret, operation, &body.to_string()).await
    };
    let loose = secret_put(&srv, "loose", "alice", "loose-password");
    let bound = secret_put_for(&srv, "bound", "alice", "bound-password", Some(upstream.base()));
    let elsewhere = "http://127.0.0.1:9";

    for (prefix, url, arn) in [("pa", upstream.base(), &loose), ("pb", elsewhere, &bound)] {
        let body = json!({"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": url, "credentialArn": arn});
        let r = as_user("CreatePullThroughCacheRule", body).await;
        assert_eq!((r.status(), error_type(&r)), (400, "UnableToAccessSecretException".into()), "{}", r.describe());
    }
    let body = json!({"ecrRepositoryPrefix": "pc", "upstreamRegistryUrl": upstream.base(), "credentialArn": bound});
    as_user("CreatePullThroughCacheRule", body).await.expect_status(200);
    let r = as_user("UpdatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "pc", "credentialArn": loose})).await;
    assert_eq!(error_type(&r), "UnableToAccessSecretException", "{}", r.describe());
    assert!(r.json()["message"].as_str().unwrap().contains("berth secret put --upstream"), "{}", r.describe());

    // The root may name a secret stored without an upstream, as before `--upstream` existed.
    let body = json!({"ecrRepositoryPrefix": "pd", "upstreamRegistryUrl": elsewhere, "credentialArn": loose});
    call(&srv, "CreatePullThroughCacheRule", body).await.expect_status(200);
    // Nor may the root send a secret stored for one upstream to another.
    let body = json!({"ecrRepositoryPrefix": "pe", "upstreamRegistryUrl": elsewhere, "credentialArn": bound});
    let r = call(&srv, "CreatePullThroughCacheRule", body).await;
    assert_eq!(error_type(&r), "UnableToAccessSecretException", "{}", r.describe());
}

#[tokio::test]
async fn rule_requests_are_validated_before_anything_is_stored() {
    let srv = Launch::new().root_keys(ROOT_KEY, ROOT_SECRET).start();
    for (body, want) in [
        (json!({"ecrRepositoryPrefix": "a", "upstreamRegistryUrl": "quay.io"}), "InvalidParameterException"),
        (
            json!({"ecrRepositoryPrefix": "ok", "upstreamRegistryUrl": "http://quay.io"}),
            "UnsupportedUpstreamRegistryException",
        ),
        (
            json!({"ecrRepositoryPrefix": "ok", "upstreamRegistryUrl": "quay.io", "registryId": "111111111111"}),
            "InvalidParameterException",
        ),
        (
            json!({"ecrRepositoryPrefix": "ok", "upstreamRegistryUrl": "quay.io",
                   "credentialArn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/none"}),
            "SecretNotFoundException",
        ),
        (json!({"ecrRepositoryPrefix": "ok"}), "InvalidParameterException"),
        // ROOT is for ECR to ECR rules: for a public registry it would refuse every push here.
        (json!({"ecrRepositoryPrefix": "ROOT", "upstreamRegistryUrl": "ghcr.io"}), "InvalidParameterException"),
        (
            json!({"ecrRepositoryPrefix": "ok", "upstreamRegistryUrl": "ghcr.io", "upstreamRegistry": "quay"}),
            "InvalidParameterException",
        ),
        // A role ARN or nothing (a NUL was stored and echoed; PostgreSQL's text cannot hold one).
        (
            json!({"ecrRepositoryPrefix": "ok", "upstreamRegistryUrl": "quay.io", "customRoleArn": "role\u{0}x"}),
            "InvalidParameterException",
        ),
    ] {
        let r = call(&srv, "CreatePullThroughCacheRule", body.clone()).await;
        assert_eq!((r.status(), error_type(&r)), (400, want.to_owned()), "{body}: {}", r.describe());
    }
    let r = call(&srv, "DescribePullThroughCacheRules", json!({})).await;
    assert_eq!(r.json()["pullThroughCacheRules"], json!([]), "nothing was stored: {}", r.describe());

    // ECR's quota: 50 rules per registry.
    let rule = |i: usize| json!({"ecrRepositoryPrefix": format!("cache{i:02}"), "upstreamRegistryUrl": "quay.io"});
    for i in 0..50 {
        call(&srv, "CreatePullThroughCacheRule", rule(i)).await.expect_status(200);
    }
    let r = call(&srv, "CreatePullThroughCacheRule", rule(50)).await;
    assert_eq!((r.status(), error_type(&r)), (400, "LimitExceededException".to_owned()), "{}", r.describe());
    call(&srv, "DeletePullThroughCacheRule", json!({"ecrRepositoryPrefix": "cache00"})).await.expect_status(200);
    call(&srv, "CreatePullThroughCacheRule", rule(50)).await.expect_status(200);
    // The upstream's name comes from its URL when the request leaves it out, as on ECR.
    let r = call(&srv, "DescribePullThroughCacheRules", json!({"ecrRepositoryPrefixes": ["cache50"]})).await;
    assert_eq!(r.json()["pullThroughCacheRules"][0]["upstreamRegistry"], "quay", "{}", r.describe());
}

/// A server caching `hub/…` from `upstream` (anonymous), tags re-checked after `recheck_secs`.
async fn caching_server(upstream: &Server, recheck_secs: u64) -> Server {
    let srv = Launch::new()
        .root_keys(ROOT_KEY, ROOT_SECRET)
        .args(&["--cache-tag-recheck-secs", &recheck_secs.to_string()])
        .start();
    let r = call(
        &srv,
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": upstream.base(), "upstreamRepositoryPrefix": "lib"}),
    )
    .await;
    r.expect_status(200);
    srv
}

/// The upstream's access-log lines for `GET <path>` (each request it answered).
fn upstream_gets(upstream: &Server, path: &str) -> usize {
    upstream
        .log()
        .lines()
        .filter(|l| l.contains("berth::access") && l.contains("method=GET") && l.contains(&format!("path=\"{path}\"")))
        .count()
}

async fn get_manifest(srv: &Server, repo: &str, reference: &str) -> Resp {
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
    send(srv.get(&format!("/v2/{repo}/manifests/{reference}")).header("accept", accept)).await
}

#[tokio::test]
async fn a_multi_arch_index_is_cached_with_every_platform_which_pulls_while_the_upstream_is_down() {
    let mut upstream = Server::start();
    let (amd, arm, index, index_digest) = push_two_platform_index(&upstream, "lib/multi", "v1").await;
    let index_path = format!("/v2/lib/multi/manifests/{index_digest}");
    let index_gets_before = upstream_gets(&upstream, &index_path); // the push checked its Location
    let srv = caching_server(&upstream, 3600).await;

    // The index by tag: the upstream's exact bytes under the upstream's digest.
    let r = get_manifest(&srv, "hub/multi", "v1").await;
    r.expect_status(200);
    assert_eq!(r.header("docker-content-digest"), Some(index_digest.as_str()), "{}", r.describe());
    assert!(r.body == index, "the index is served byte for byte");
    // One platform pulled at once, racing the background fetch of both: one fill each.
    expect_manifest(&srv, "hub/multi", &amd.digest, OCI_MANIFEST, &amd.manifest, &amd.digest).await;
    expect_blob(&srv, "hub/multi", &sha256_digest(&amd.config), &amd.config).await;
    expect_blob(&srv, "hub/multi", &sha256_digest(&amd.layers[0]), &amd.layers[0]).await;
    // Every platform is cached (as on ECR), the one never pulled too.
    let arm_layer = format!("/v2/lib/multi/blobs/{}", sha256_digest(&arm.layers[0]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while upstream_gets(&upstream, &arm_layer) == 0 || !srv.log().contains(&sha256_digest(&arm.layers[0])) {
        assert!(std::time::Instant::now() < deadline, "the other platform was never fetched:\n{}", srv.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = call(&srv, "DescribeImages", json!({"repositoryName": "hub/multi"})).await;
    let mut digests: Vec<String> = r.json()["imageDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["imageDigest"].as_str().unwrap().into())
        .collect();
    digests.sort();
    let mut want = vec![index_digest.clone(), amd.digest.clone(), arm.digest.clone()];
    want.sort();
    assert_eq!(digests, want, "the index and both platforms: {}", r.describe());
    // Each piece was fetched upstream once.
    assert_eq!(upstream_gets(&upstream, &format!("/v2/lib/multi/blobs/{}", sha256_digest(&amd.layers[0]))), 1);
    assert_eq!(upstream_gets(&upstream, &arm_layer), 1);
    assert_eq!(upstream_gets(&upstream, &index_path), index_gets_before + 1);

    // The upstream down: the platform no client pulled before pulls whole from the cache.
    upstream.stop();
    expect_manifest(&srv, "hub/multi", &arm.digest, OCI_MANIFEST, &arm.manifest, &arm.digest).await;
    expect_blob(&srv, "hub/multi", &sha256_digest(&arm.config), &arm.config).await;
    expect_blob(&srv, "hub/multi", &sha256_digest(&arm.layers[0]), &arm.layers[0]).await;
    // Both are children the index protects.
    let r = call(
        &srv,
        "BatchDeleteImage",
        json!({"repositoryName": "hub/multi", "imageIds": [{"imageDigest": arm.digest}]}),
    )
    .await;
    assert_eq!(r.json()["failures"].as_array().map(Vec::len), Some(1), "a child of the index: {}", r.describe());
}

/// ECR's BatchGetImage pulls through the cache as `/v2/` does: what is not cached comes from the
/// upstream (the repository created on the way); what the upstream cannot give is a failure
/// naming why (ECR's `Upstream…` failure codes), and nothing is created for it.
#[tokio::test]
async fn batch_get_image_fills_from_the_upstream_and_names_its_failures() {
    let mut upstream = Server::start();
    let image = push_image(&upstream, "lib/api", Some("v1")).await;
    let other = push_image(&upstream, "lib/api", Some("v2")).await;
    let srv = caching_server(&upstream, 3600).await;
    let batch = |repo: &str, ids: Value| json!({"repositoryName": repo, "imageIds": ids});

    let r = call(&srv, "BatchGetImage", batch("hub/api", json!([{"imageTag": "v1"}, {"imageTag": "absent"}]))).await;
    r.expect_status(200);
    let out = r.json();
    assert_eq!(out["images"][0]["imageId"]["imageDigest"], image.digest.as_str(), "{out}");
    assert_eq!(out["images"][0]["imageManifest"].as_str().unwrap().as_bytes(), image.manifest.as_slice());
    assert_eq!(out["failures"][0]["failureCode"], "ImageNotFound", "{out}");
    // The repository and the image are there now, as after a docker pull.
    let described = call(&srv, "DescribeImages", json!({"repositoryName": "hub/api"})).await;
    assert_eq!(described.json()["imageDetails"][0]["imageTags"], json!(["v1"]), "{}", described.describe());
    // Its layers are not fetched yet, and a client pulling through the ECR API alone gets them
    // with GetDownloadUrlForLayer: the download fills the cache.
    let layer = sha256_digest(&image.layers[0]);
    let r = call(&srv, "GetDownloadUrlForLayer", json!({"repositoryName": "hub/api", "layerDigest": layer})).await;
    let url = r.expect_status(200).json()["downloadUrl"].as_str().unwrap().to_owned();
    assert!(url.ends_with("&fill=1"), "{url}");
    let download = send(http_client(None).get(&url)).await;
    assert_eq!(sha256_digest(&download.expect_status(200).body), layer);
    let r = call(&srv, "GetDownloadUrlForLayer", json!({"repositoryName": "hub/api", "layerDigest": layer})).await;
    assert!(!r.json()["downloadUrl"].as_str().unwrap().contains("fill"), "cached now: {}", r.describe());
    let r =
        call(&srv, "BatchCheckLayerAvailability", json!({"repositoryName": "hub/api", "layerDigests": [layer]})).await;
    assert_eq!(r.json()["layers"][0]["layerAvailability"], "AVAILABLE", "{}", r.describe());
    // Nothing upstream: the repository is not created.
    let r = call(&srv, "BatchGetImage", batch("hub/none", json!([{"imageTag": "v1"}]))).await;
    assert_eq!(error_type(&r), "RepositoryNotFoundException", "{}", r.describe());

    // The upstream down: what is cached is still answered, the rest fails as UpstreamUnavailable.
    let config = sha256_digest(&image.config);
    let r = call(&srv, "GetDownloadUrlForLayer", json!({"repositoryName": "hub/api", "layerDigest": config})).await;
    let unfetched = r.expect_status(200).json()["downloadUrl"].as_str().unwrap().to_owned();
    upstream.stop();
    // (A 503 by design: reqwest directly, as the helpers fail a test on any 5xx.)
    let r = reqwest::get(&unfetched).await.unwrap();
    assert_eq!(r.status(), 503, "a fill the upstream cannot serve now is worth retrying");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["__type"], "ServerException", "{body}");
    let ids = json!([{"imageDigest": image.digest}, {"imageDigest": other.digest}]);
    let r = call(&srv, "BatchGetImage", batch("hub/api", ids)).await;
    r.expect_status(200);
    let out = r.json();
    assert_eq!(out["images"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(out["failures"][0]["imageId"]["imageDigest"], other.digest.as_str(), "{out}");
    assert_eq!(out["failures"][0]["failureCode"], "UpstreamUnavailable", "{out}");
    // Nor is a repository the upstream could not fill unknown: its images fail the same way.
    let r = call(&srv, "BatchGetImage", batch("hub/new", json!([{"imageTag": "v1"}, {"imageTag": "v2"}]))).await;
    r.expect_status(200);
    let codes: Vec<_> = r.json()["failures"].as_array().unwrap().iter().map(|f| f["failureCode"].clone()).collect();
    assert_eq!(codes, [json!("UpstreamUnavailable"), json!("UpstreamUnavailable")], "{}", r.describe());
}

#[tokio::test]
async fn tags_follow_the_upstream_after_the_interval_and_the_cache_serves_while_it_is_down() {
    let mut upstream = Server::start();
    let first = push_image(&upstream, "lib/app", Some("v1")).await;
    let uncached = push_image(&upstream, "lib/app", Some("other")).await;
    let srv = caching_server(&upstream, 8).await;

    let r = get_manifest(&srv, "hub/app", "v1").await;
    assert_eq!(r.header("docker-content-digest"), Some(first.digest.as_str()), "{}", r.describe());
    expect_blob(&srv, "hub/app", &sha256_digest(&first.layers[0]), &first.layers[0]).await;
    // The tag moves upstream: within the interval (long enough for the requests between on a
    // busy machine) the cache answers what it has...
    let second = push_image(&upstream, "lib/app", Some("v1")).await;
    let r = get_manifest(&srv, "hub/app", "v1").await;
    assert_eq!(r.header("docker-content-digest"), Some(first.digest.as_str()), "{}", r.describe());
    // ...and after it, follows.
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    let r = get_manifest(&srv, "hub/app", "v1").await;
    assert_eq!(r.header("docker-content-digest"), Some(second.digest.as_str()), "{}", r.describe());
    expect_blob(&srv, "hub/app", &sha256_digest(&second.layers[0]), &second.layers[0]).await;

    // Upstream hanging (stopped, its socket still open): the tag's re-check gives up after a few
    // seconds and the cached manifest is served, not after the client's whole timeout.
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill").args([name, &upstream.pid().to_string()]).status().unwrap();
        assert!(sent.success(), "kill {name}");
    };
    signal("-STOP");
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    let asked = std::time::Instant::now();
    let r = get_manifest(&srv, "hub/app", "v1").await;
    assert_eq!(r.header("docker-content-digest"), Some(second.digest.as_str()), "{}", r.describe());
    assert!(asked.elapsed() < std::time::Duration::from_secs(15), "answered after {:?}", asked.elapsed());
    signal("-CONT");

    // Upstream gone: cached content is still served (the tag's check fails and is logged)...
    upstream.stop();
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    let r = get_manifest(&srv, "hub/app", "v1").await;
    assert_eq!(
        (r.status(), r.header("docker-content-digest")),
        (200, Some(second.digest.as_str())),
        "{}",
        r.describe()
    );
    expect_blob(&srv, "hub/app", &sha256_digest(&first.layers[0]), &first.layers[0]).await;
    let r = get_manifest(&srv, "hub/app", &first.digest).await;
    r.expect_status(200);
    // ...and what was never cached is unknown, saying why.
    let r = get_manifest(&srv, "hub/app", "other").await;
    r.expect_error(404, "MANIFEST_UNKNOWN");
    assert!(r.text().contains("not cached") && r.text().contains("cannot reach"), "{}", r.describe());
    let r = send(srv.get(&format!("/v2/hub/app/blobs/{}", sha256_digest(&uncached.layers[0])))).await;
    r.expect_error(404, "BLOB_UNKNOWN");
    assert!(srv.log().contains("pull-through cache upstream failed"), "the failure is logged");

    // The counters: hits, misses, bytes and the last upstream error, once flushed (at shutdown).
    let mut srv = srv;
    srv.stop();
    let status: Value = serde_json::from_str(&srv.cli(&["cache", "status"])).unwrap();
    let rule = &status["rules"][0];
    assert_eq!(rule["ecrRepositoryPrefix"], "hub", "{status}");
    assert!(rule["hits"].as_i64().unwrap() >= 4 && rule["misses"].as_i64().unwrap() >= 4, "{status}");
    let layer_bytes = (first.layers[0].len() + second.layers[0].len()) as i64;
    assert_eq!(rule["bytesFromUpstream"].as_i64(), Some(layer_bytes), "{status}");
    assert_eq!(rule["bytesFromCache"].as_i64(), Some(first.layers[0].len() as i64), "{status}");
    assert!(rule["lastUpstreamError"]["message"].as_str().unwrap().contains("cannot reach"), "{status}");
}

/// An upstream that answers `GET /v2/` and fails every other request with 503 after `delay`;
/// returns its URL and how many requests it failed.
async fn failing_upstream(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let failed = Arc::new(AtomicUsize::new(0));
    let counter = failed.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let answer: &[u8] = if head.starts_with(b"GET /v2/ ") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                } else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = socket.write_all(answer).await;
            });
        }
    });
    (url, failed)
}

/// Pulls that wait for a resolution the upstream fails share its failure: each asking the
/// upstream again in turn made the last of k concurrent pulls wait k upstream timeouts.
#[tokio::test]
async fn concurrent_pulls_share_the_upstreams_failure() {
    let (url, failed) = failing_upstream(Duration::from_millis(600)).await;
    let srv = Launch::new().root_keys(ROOT_KEY, ROOT_SECRET).start();
    let rule = json!({"ecrRepositoryPrefix": "down", "upstreamRegistryUrl": url, "upstreamRepositoryPrefix": "lib"});
    call(&srv, "CreatePullThroughCacheRule", rule).await.expect_status(200);
    let started = Instant::now();
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let request = srv.get("/v2/down/app/manifests/v1").header("accept", OCI_MANIFEST);
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    for pull in pulls {
        assert_eq!(pull.await.unwrap(), 404);
    }
    let (elapsed, asked) = (started.elapsed(), failed.load(Ordering::SeqCst));
    assert_eq!(asked, 1, "the upstream was asked {asked} times for 8 pulls");
    assert!(elapsed < Duration::from_millis(3000), "8 pulls took {elapsed:?}");
    // Each is a miss, counted once the counts are flushed (at shutdown).
    let mut srv = srv;
    srv.stop();
    let status: Value = serde_json::from_str(&srv.cli(&["cache", "status"])).unwrap();
    assert_eq!(status["rules"][0]["misses"], 8, "{status}");
}

#[tokio::test]
async fn concurrent_pulls_of_a_cold_layer_make_one_upstream_fetch_and_stream_before_it_is_stored() {
    let upstream = Server::start();
    let layer = random_bytes(64 << 20);
    let layer_digest = push_blob(&upstream, "lib/big", &layer).await;
    let config = config_json("amd64");
    push_blob(&upstream, "lib/big", &config).await;
    let manifest = oci_manifest(&descriptor(OCI_CONFIG, &config), &[descriptor(OCI_LAYER, &layer)]);
    push_manifest(&upstream, "lib/big", "latest", OCI_MANIFEST, &manifest).await;
    let srv = caching_server(&upstream, 3600).await;
    get_manifest(&srv, "hub/big", "latest").await.expect_status(200);

    // The first client reads its first bytes and stops: the fill cannot have stored the layer
    // yet (the client holds it up, 64 MiB do not fit the buffers in between).
    let path = format!("/v2/hub/big/blobs/{layer_digest}");
    let mut first = srv.get(&path).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.content_length(), Some(layer.len() as u64));
    let mut received = first.chunk().await.unwrap().expect("first bytes").to_vec();
    assert!(!received.is_empty() && received.len() < layer.len());
    assert!(!srv.log().contains("cached a blob"), "the first bytes arrived before the layer was stored");

    // 19 more clients meanwhile; then the first reads on. All get the layer, fetched once.
    let others: Vec<_> = (0..19)
        .map(|_| {
            let request = srv.get(&path);
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                assert_eq!(r.status(), 200);
                sha256_digest(&r.bytes().await.unwrap())
            })
        })
        .collect();
    while let Some(piece) = first.chunk().await.unwrap() {
        received.extend_from_slice(&piece);
    }
    assert_eq!(sha256_digest(&received), layer_digest);
    for other in others {
        assert_eq!(other.await.unwrap(), layer_digest);
    }
    assert_eq!(upstream_gets(&upstream, &format!("/v2/lib/big/blobs/{layer_digest}")), 1, "one upstream GET");
    assert!(srv.log().contains("cached a blob"));
}

/// A cache repository serves only what its upstream has under its name: a blob of a private
/// repository of the caching server is not served (nor linked) through a cache path naming its
/// digest; once the upstream has it there, it is.
#[tokio::test]
async fn a_cache_repository_serves_no_blob_its_upstream_lacks() {
    let upstream = Server::start();
    let srv = caching_server(&upstream, 3600).await;
    let private = b"db_password=hunter2".to_vec();
    let digest = push_blob(&srv, "team-b/payroll", &private).await;
    let path = format!("/v2/hub/app/blobs/{digest}");
    send(srv.get(&path)).await.expect_status(404);
    send(srv.head(&path)).await.expect_status(404);
    send(srv.get(&path)).await.expect_status(404);

    push_blob(&upstream, "lib/app", &private).await;
    let r = send(srv.get(&path)).await;
    r.expect_status(200);
    assert_eq!(r.body, private);
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_abort_the_fill() {
    let upstream = Server::start();
    let layer = random_bytes(16 << 20);
    let digest = push_blob(&upstream, "lib/gone", &layer).await;
    let srv = caching_server(&upstream, 3600).await;
    let path = format!("/v2/hub/gone/blobs/{digest}");
    let mut response = srv.get(&path).send().await.unwrap();
    response.chunk().await.unwrap().expect("first bytes");
    drop(response);
    // The fill completes on its own: the next pull is served from the cache.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !srv.log().contains("cached a blob") {
        assert!(std::time::Instant::now() < deadline, "the fill did not complete: {}", srv.log_tail());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    expect_blob(&srv, "hub/gone", &digest, &layer).await;
    assert_eq!(upstream_gets(&upstream, &format!("/v2/lib/gone/blobs/{digest}")), 1);
}

#[tokio::test]
async fn pushes_into_a_cache_namespace_are_refused_and_imports_need_their_permissions() {
    let upstream = Server::start();
    let image = push_image(&upstream, "lib/app", Some("v1")).await;
    let srv = caching_server(&upstream, 3600).await;

    // Pushing into the namespace: refused on both planes, naming the rule.
    let r = send(srv.post("/v2/hub/mine/blobs/uploads/")).await;
    r.expect_error(403, "DENIED");
    assert!(r.text().contains("'hub'"), "{}", r.describe());
    let r = put_manifest(&srv, "hub/app", "v2", OCI_MANIFEST, &image.manifest).await;
    r.expect_error(403, "DENIED");
    let r = call(&srv, "CreateRepository", json!({"repositoryName": "hub/app"})).await;
    r.expect_status(200);
    let manifest = String::from_utf8(image.manifest.clone()).unwrap();
    let r =
        call(&srv, "PutImage", json!({"repositoryName": "hub/app", "imageManifest": manifest, "imageTag": "v2"})).await;
    assert_eq!(error_type(&r), "InvalidParameterException", "{}", r.describe());
    assert!(r.text().contains("pull through cache rule"), "{}", r.describe());
    call(&srv, "DeleteRepository", json!({"repositoryName": "hub/app"})).await.expect_status(200);

    // A reader without ecr:BatchImportUpstreamImage / ecr:CreateRepository: denied, nothing fetched.
    let user: Value =
        serde_json::from_str(&srv.cli(&["user", "add", "reader", "--policy", "AmazonEC2ContainerRegistryReadOnly"]))
            .unwrap();
    // The server notices new users within a second.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let reader =
        http_client(Some(&basic(user["accessKeyId"].as_str().unwrap(), user["secretAccessKey"].as_str().unwrap())));
    let r = send(reader.get(srv.url("/v2/hub/app/manifests/v1")).header("accept", OCI_MANIFEST)).await;
    r.expect_error(403, "DENIED");
    assert_eq!(upstream_gets(&upstream, "/v2/lib/app/manifests/v1"), 0, "nothing was asked upstream");
    let r = call(&srv, "DescribeRepositories", json!({"repositoryNames": ["hub/app"]})).await;
    assert_eq!(error_type(&r), "RepositoryNotFoundException", "{}", r.describe());
    // Once someone allowed to import has, the reader pulls what is cached.
    get_manifest(&srv, "hub/app", "v1").await.expect_status(200);
    let r = send(reader.get(srv.url("/v2/hub/app/manifests/v1")).header("accept", OCI_MANIFEST)).await;
    r.expect_status(200);
    assert_eq!(r.header("docker-content-digest"), Some(image.digest.as_str()));
}

#[tokio::test]
async fn a_wrong_secret_is_reported_by_validation_and_caches_nothing() {
    let upstream = Launch::new().start();
    let user: Value = serde_json::from_str(&upstream.cli(&[
        "user",
        "add",
        "puller",
        "--policy",
        "AmazonEC2ContainerRegistryReadOnly",
    ]))
    .unwrap();
    let key = user["accessKeyId"].as_str().unwrap();
    let image = push_image(&upstream, "lib/app", Some("v1")).await;
    let srv = Launch::new().root_keys(ROOT_KEY, ROOT_SECRET).start();
    let wrong = secret_put(&srv, "wrong", key, "not-the-secret");
    let r = call(
        &srv,
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "up", "upstreamRegistryUrl": upstream.base(), "credentialArn": wrong,
               "upstreamRepositoryPrefix": "lib"}),
    )
    .await;
    r.expect_status(200);
    let r = call(&srv, "ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up"})).await;
    assert_eq!(r.json()["isValid"], false, "{}", r.describe());
    assert!(r.json()["failure"].as_str().unwrap().contains("authentication failed"), "{}", r.describe());
    let r = get_manifest(&srv, "up/app", "v1").await;
    r.expect_error(404, "MANIFEST_UNKNOWN");
    assert!(r.text().contains("authentication failed"), "{}", r.describe());
    let r = call(&srv, "DescribeRepositories", json!({"repositoryNames": ["up/app"]})).await;
    assert_eq!(error_type(&r), "RepositoryNotFoundException", "nothing cached: {}", r.describe());

    // The secret rotated in place (`berth secret put` of the same name, the rule untouched):
    // the next pull uses it (Basic auth at the upstream Berth) and the image is pulled through.
    let right = user["secretAccessKey"].as_str().unwrap();
    assert_eq!(secret_put(&srv, "wrong", key, right), wrong);
    expect_manifest(&srv, "up/app", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
    expect_blob(&srv, "up/app", &sha256_digest(&image.layers[0]), &image.layers[0]).await;

    // Another secret, named by the rule through UpdatePullThroughCacheRule.
    let later = push_image(&upstream, "lib/app", Some("v2")).await;
    let good = secret_put(&srv, "good", key, right);
    call(&srv, "UpdatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up", "credentialArn": good}))
        .await
        .expect_status(200);
    expect_manifest(&srv, "up/app", "v2", OCI_MANIFEST, &later.manifest, &later.digest).await;
}

#[tokio::test]
async fn an_upstream_behind_a_bearer_token_challenge_is_pulled_through() {
    let upstream = Server::start();
    let image = push_image(&upstream, "lib/app", Some("v1")).await;
    let gate = token_server::TokenServer::start(upstream.base(), token_server::Config::default()).await;
    let srv = Launch::new().root_keys(ROOT_KEY, ROOT_SECRET).start();
    let arn = secret_put(&srv, "hub-token", "alice", "alice-secret-pw");
    let r = call(
        &srv,
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "tok", "upstreamRegistryUrl": gate.url, "credentialArn": arn,
               "upstreamRepositoryPrefix": "lib"}),
    )
    .await;
    r.expect_status(200);
    expect_manifest(&srv, "tok/app", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
    expect_blob(&srv, "tok/app", &sha256_digest(&image.layers[0]), &image.layers[0]).await;
    expect_blob(&srv, "tok/app", &sha256_digest(&image.config), &image.config).await;
    let scopes = gate.gate.requested_scopes.lock().unwrap().clone();
    assert!(scopes.iter().flatten().any(|s| s == "repository:lib/app:pull"), "a pull token was asked for: {scopes:?}");
    assert_eq!(gate.gate.token_requests(), 1, "the token is reused for the manifest and both blobs");
}
