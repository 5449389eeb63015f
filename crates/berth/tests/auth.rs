//! Authentication and TLS against the real `berth serve`: who gets in (registry tokens from
//! `berth token` and from ECR's GetAuthorizationToken, access keys), who does not (no, wrong,
//! garbled or revoked credentials: always a 401 with the Basic challenge, never a 500; an expired
//! token a 403, as ECR answers it,
//! and nothing changes), anonymous pulls, the startup refusals that keep the defaults safe, and
//! HTTPS checked with curl trusting only the server's certificate.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use reqwest::{Method, Url};
use serde_json::Value;

const CHALLENGE: &str = "Basic realm=\"Berth\"";
/// How soon `berth user add|remove` on a running server's data dir must take effect.
const IDENTITY_CHANGE_DEADLINE: Duration = Duration::from_secs(5);
const ROOT_KEY_ID: &str = "AKIAAUTHTESTROOT0001";
const ROOT_SECRET: &str = "auth-test-root-secret-0123456789abcdefghij";

fn anonymous() -> reqwest::Client {
    http_client(None)
}

fn client_with(authorization: &str) -> reqwest::Client {
    http_client(Some(authorization))
}

/// Asserts a 401 with the Basic challenge and, unless it answers a HEAD, an `UNAUTHORIZED` body.
#[track_caller]
fn expect_unauthorized(r: &Resp) {
    r.expect_status(401);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE), "{}", r.describe());
    if r.method != Method::HEAD {
        r.expect_error_code_in(&["UNAUTHORIZED"]);
    }
}

/// Polls `GET /v2/` with `client` until it answers `want`; returns how long that took, or fails
/// the test once [`IDENTITY_CHANGE_DEADLINE`] has passed.
async fn wait_for_ping_status(srv: &Server, client: &reqwest::Client, want: u16, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let r = send(client.get(srv.url("/v2/"))).await;
        if r.status() == want {
            if want == 401 {
                expect_unauthorized(&r);
            }
            return started.elapsed();
        }
        assert!(
            started.elapsed() < IDENTITY_CHANGE_DEADLINE,
            "{what}: still {} after {IDENTITY_CHANGE_DEADLINE:?}:\n{}",
            r.status(),
            r.describe()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The repository state a rejected request must not have changed.
#[derive(Debug, PartialEq)]
struct Snapshot {
    catalog: Value,
    tags: Value,
    manifest: Vec<u8>,
    blobs: Vec<u16>,
    upload_range: Option<String>,
}

async fn snapshot(srv: &Server, repo: &str, image: &Image, upload: &Url, extra_blob: &str) -> Snapshot {
    let catalog = send(srv.get("/v2/_catalog")).await;
    catalog.expect_status(200);
    let tags = send(srv.get(&format!("/v2/{repo}/tags/list"))).await;
    tags.expect_status(200);
    let manifest = send(srv.get(&format!("/v2/{repo}/manifests/v1")).header("accept", OCI_MANIFEST)).await;
    manifest.expect_status(200);
    let mut blobs = Vec::new();
    for digest in [sha256_digest(&image.config), sha256_digest(&image.layers[0]), extra_blob.to_string()] {
        blobs.push(send(srv.head(&format!("/v2/{repo}/blobs/{digest}"))).await.status());
    }
    let session = send(srv.client.get(upload.clone())).await;
    session.expect_status(204);
    Snapshot {
        catalog: catalog.json(),
        tags: tags.json(),
        manifest: manifest.body,
        blobs,
        upload_range: session.header("range").map(String::from),
    }
}

/// Every kind of /v2/ request, sent with `client`'s (missing or bad) credentials, must get a 401
/// and change nothing, whether the repository, manifest or blob exists or not.
async fn every_request_is_refused(srv: &Server, client: &reqwest::Client, label: &str) {
    let repo = format!("auth/{}", random_token());
    let image = push_image(srv, &repo, Some("v1")).await;
    let layer = sha256_digest(&image.layers[0]);
    let upload = start_upload(srv, &repo).await;
    let r = send(srv.client.patch(upload.clone()).header("content-type", OCTET_STREAM).body(b"first".to_vec())).await;
    r.expect_status(202);
    let upload = r.location(srv);
    let new_blob = random_bytes(64);
    let new_digest = sha256_digest(&new_blob);
    let other_manifest = oci_manifest(&descriptor(OCI_CONFIG, &image.config), &[descriptor(OCI_LAYER, &new_blob)]);
    let before = snapshot(srv, &repo, &image, &upload, &new_digest).await;

    let path = |p: &str| srv.url(&format!("/v2/{repo}{p}"));
    let requests = vec![
        client.get(srv.url("/v2/")),
        client.head(srv.url("/v2/")),
        client.get(srv.url("/v2")),
        client.get(srv.url("/v2/_catalog")),
        client.get(path("/tags/list")),
        client.get(path("/manifests/v1")).header("accept", OCI_MANIFEST),
        client.head(path("/manifests/v1")).header("accept", OCI_MANIFEST),
        client.get(path(&format!("/manifests/{}", image.digest))),
        client.get(srv.url("/v2/no/such-repo/manifests/latest")),
        client.get(path("/manifests/no-such-tag")),
        client.put(path("/manifests/v1")).header("content-type", OCI_MANIFEST).body(other_manifest.clone()),
        client.put(path("/manifests/v2")).header("content-type", OCI_MANIFEST).body(image.manifest.clone()),
        client.delete(path(&format!("/manifests/{}", image.digest))),
        client.delete(path("/manifests/v1")),
        client.get(path(&format!("/blobs/{layer}"))),
        client.head(path(&format!("/blobs/{layer}"))),
        client.get(path(&format!("/blobs/{layer}"))).header("range", "bytes=0-9"),
        client.delete(path(&format!("/blobs/{layer}"))),
        client.get(path(&format!("/referrers/{}", image.digest))),
        client.post(path("/blobs/uploads/")),
        client.post(path(&format!("/blobs/uploads/?digest={new_digest}"))).body(new_blob.clone()),
        client.post(srv.url(&format!("/v2/{repo}-mounted/blobs/uploads/?mount={layer}&from={repo}"))),
        client.get(upload.clone()),
        client.patch(upload.clone()).header("content-type", OCTET_STREAM).body(b"second".to_vec()),
        client.put(with_query(&upload, "digest", &new_digest)).body(new_blob.clone()),
        client.delete(upload.clone()),
    ];
    for request in requests {
        expect_unauthorized(&send(request).await);
    }

    let after = snapshot(srv, &repo, &image, &upload, &new_digest).await;
    assert_eq!(after, before, "{label}: a refused request changed the repository");
    assert_eq!(after.blobs[2], 404, "{label}: the refused upload's blob must not exist");
    send(srv.get(&format!("/v2/{repo}/manifests/v2"))).await.expect_status(404);
    send(srv.get(&format!("/v2/{repo}-mounted/blobs/{layer}"))).await.expect_status(404);
    // The session the refused requests targeted still works for its owner.
    let r = send(srv.client.patch(upload.clone()).header("content-type", OCTET_STREAM).body(b"-second".to_vec())).await;
    r.expect_status(202);
    let r = send(srv.client.put(with_query(&r.location(srv), "digest", &sha256_digest(b"first-second")))).await;
    r.expect_status(201);
}

#[tokio::test]
async fn requests_without_credentials_get_401_with_challenge_and_change_nothing() {
    let srv = Launch::new().start();
    let r = send(anonymous().get(srv.url("/v2/"))).await;
    expect_unauthorized(&r);
    assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED");
    every_request_is_refused(&srv, &anonymous(), "no credentials").await;
    // Empty Basic credentials are what some clients send when they have none: still anonymous.
    every_request_is_refused(&srv, &client_with(&basic("", "")), "empty Basic credentials").await;
}

#[tokio::test]
async fn wrong_credentials_get_401_and_change_nothing() {
    // Far more failures than an address may make in a minute: throttling (tested on its own
    // below) would answer most of them before their credentials were looked at.
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--auth-failures-per-minute", "0"]).start();
    let token = srv.cli(&["token"]).trim().to_string();
    let (payload, signature) = token.split_once('.').expect("a token is payload.signature");
    // Changing the first character changes the first signature byte (the last one holds padding bits).
    let mut forged_signature = signature.to_string();
    let first = if forged_signature.starts_with('A') { "B" } else { "A" };
    forged_signature.replace_range(..1, first);
    // Claims a far expiry for root under the genuine signature of other claims.
    let claims = br#"{"sub":"root","uct":0,"iat":0,"exp":99999999999999,"jti":"forged"}"#;
    let forged_payload = base64(claims).replace('+', "-").replace('/', "_").replace('=', "");

    // A token minted with another data dir's master key: well formed, wrong signing key.
    let stranger = Launch::new().start();
    let foreign_token = stranger.cli(&["token"]).trim().to_string();
    drop(stranger);

    let wrong = [
        ("wrong token password", basic("AWS", "not-a-token")),
        ("token with a forged signature", basic("AWS", &format!("{payload}.{forged_signature}"))),
        ("token with a forged payload", basic("AWS", &format!("{forged_payload}.{signature}"))),
        ("token of another registry", basic("AWS", &foreign_token)),
        ("token as Bearer with a forged signature", format!("Bearer {payload}.{forged_signature}")),
        ("wrong secret for a real access key", basic(ROOT_KEY_ID, "wrong-secret-0123456789abcdefghijklmnop")),
        ("secret with a character appended", basic(ROOT_KEY_ID, &format!("{ROOT_SECRET}x"))),
        ("unknown access key id", basic("AKIAUNKNOWNKEY000000", ROOT_SECRET)),
        ("token under a user name other than AWS", basic("root", &token)),
        // `docker login -u <secret> -p <key id>`: the secret arrives where the key id belongs.
        ("key id and secret swapped", basic(ROOT_SECRET, ROOT_KEY_ID)),
        ("token in the user field", basic(&token, "x")),
    ];
    for (label, authorization) in &wrong {
        let r = send(client_with(authorization).get(srv.url("/v2/"))).await;
        expect_unauthorized(&r);
        let message = r.json()["errors"][0]["message"].as_str().unwrap_or_default().to_string();
        assert!(!message.contains(ROOT_SECRET) && !message.contains(signature), "{label}: the 401 echoes a secret");
    }
    for (label, authorization) in &wrong[..3] {
        every_request_is_refused(&srv, &client_with(authorization), label).await;
    }
    // Failed logins are logged, without the secrets or tokens that were tried.
    let log = srv.log();
    assert!(log.contains("login failed"), "failed logins are not logged:\n{}", srv.log_tail());
    for secret in
        [ROOT_SECRET, "wrong-secret-0123456789abcdefghijklmnop", signature, forged_signature.as_str(), payload]
    {
        assert!(!log.contains(secret), "the log contains a secret or token ({secret})");
    }
    // The right credentials still work after all those failures.
    send(client_with(&basic(ROOT_KEY_ID, ROOT_SECRET)).get(srv.url("/v2/"))).await.expect_status(200);
    send(client_with(&format!("Bearer {token}")).get(srv.url("/v2/"))).await.expect_status(200);
}

#[tokio::test]
async fn garbled_authorization_headers_get_401_never_500() {
    let srv = Launch::new().start();
    let image = push_image(&srv, "auth/garbage", Some("v1")).await;
    // Long, yet within the 16 KiB header limit (above it hyper answers 431: connections.rs).
    let long = "A".repeat(4 * 1024);
    let headers: Vec<Vec<u8>> = [
        "Basic !!!not-base64!!!".to_string(),
        "Basic".to_string(),
        "Basic ".to_string(),
        "Basic ====".to_string(),
        format!("Basic {}", base64(b"no-colon-in-here")),
        format!("Basic {}", base64(&[0xff, 0xfe, b':', b'x'])),
        format!("Basic {}", base64(format!("AWS:{long}").as_bytes())),
        format!("Basic {}", base64(format!("{long}:{long}").as_bytes())),
        format!("Basic {}", base64(b"AWS:")),
        format!("Basic {}", base64(b"AWS:.")),
        format!("Basic {}", base64(b"AWS:a.b.c")),
        format!("Basic {}", base64(b":password-without-user")),
        "Bearer junk".to_string(),
        "Bearer".to_string(),
        "Bearer    ".to_string(),
        "Bearer a.b".to_string(),
        format!("Bearer {long}"),
        format!("Bearer {long}.{long}"),
        "Digest username=\"root\", realm=\"Berth\"".to_string(),
        "AWS4-HMAC-SHA256 Credential=AKIA/20250101/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00"
            .to_string(),
        "Negotiate YIIC".to_string(),
        "token".to_string(),
        "   ".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([b"Basic \xe9t\xe9".to_vec(), b"Bearer \xff\xfe".to_vec()])
    .collect();
    let paths = ["/v2/".to_string(), format!("/v2/auth/garbage/manifests/{}", image.digest)];
    for header in &headers {
        let value = reqwest::header::HeaderValue::from_bytes(header)
            .unwrap_or_else(|e| panic!("{:?} is not a sendable header value: {e}", String::from_utf8_lossy(header)));
        for path in &paths {
            let r = send(anonymous().get(srv.url(path)).header("authorization", value.clone())).await;
            assert_eq!(r.status(), 401, "Authorization {:?}:\n{}", String::from_utf8_lossy(header), r.describe());
            expect_unauthorized(&r);
        }
    }
    // Garbage in one request does not disturb the next, well-formed one.
    expect_manifest(&srv, "auth/garbage", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
}

#[tokio::test]
async fn access_key_basic_auth_pushes_and_pulls() {
    let mut srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).start();
    srv.client = client_with(&basic(ROOT_KEY_ID, ROOT_SECRET));
    let image = push_image(&srv, "auth/keys", Some("v1")).await;
    expect_manifest(&srv, "auth/keys", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
    expect_blob(&srv, "auth/keys", &sha256_digest(&image.layers[0]), &image.layers[0]).await;
    let r = send(srv.get("/v2/_catalog")).await;
    r.expect_status(200);
    assert_eq!(r.json()["repositories"], serde_json::json!(["auth/keys"]));

    // A user made by `berth user add` pushes with its own keys and reads root's image.
    let alice: Value =
        serde_json::from_str(&srv.cli(&["user", "add", "alice", "--policy", "AmazonEC2ContainerRegistryFullAccess"]))
            .expect("user add prints JSON");
    assert_eq!(alice["userName"], "alice");
    let (id, secret) = (alice["accessKeyId"].as_str().unwrap(), alice["secretAccessKey"].as_str().unwrap());
    srv.client = client_with(&basic(id, secret));
    wait_for_ping_status(&srv, &srv.client, 200, "alice's new access key").await;
    expect_manifest(&srv, "auth/keys", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
    let pushed = push_image(&srv, "auth/alice", None).await;
    expect_blob(&srv, "auth/alice", &sha256_digest(&pushed.config), &pushed.config).await;
    let attributed = srv
        .log()
        .lines()
        .any(|l| l.contains("berth::access") && l.contains("/v2/auth/alice/") && l.contains("alice\""));
    assert!(attributed, "alice's requests are not attributed to her in the access log:\n{}", srv.log_tail());
    // One user's secret does not open another's key.
    let r = send(anonymous().get(srv.url("/v2/")).header("authorization", basic(id, ROOT_SECRET))).await;
    expect_unauthorized(&r);
}

#[tokio::test]
async fn removed_user_is_locked_out_and_new_user_let_in_within_5_seconds() {
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).start();
    let image = push_image(&srv, "auth/users", Some("v1")).await;
    let manifest_path = "/v2/auth/users/manifests/v1";

    // Added while the server runs, by a separate process on the same data dir.
    let bob: Value =
        serde_json::from_str(&srv.cli(&["user", "add", "bob", "--policy", "AmazonEC2ContainerRegistryFullAccess"]))
            .expect("user add prints JSON");
    let (id, secret) =
        (bob["accessKeyId"].as_str().unwrap().to_string(), bob["secretAccessKey"].as_str().unwrap().to_string());
    let with_key = client_with(&basic(&id, &secret));
    let took = wait_for_ping_status(&srv, &with_key, 200, "a newly added user's access key").await;
    eprintln!("new user accepted after {took:?}");
    let token = srv.cli(&["token", "--user", "bob"]).trim().to_string();
    let with_token = client_with(&basic("AWS", &token));
    send(with_token.get(srv.url(manifest_path)).header("accept", OCI_MANIFEST)).await.expect_status(200);
    let ecr_token = get_authorization_token(&srv, &id, &secret).await;
    let with_ecr_token = client_with(&format!("Basic {}", ecr_token.authorization_token));
    send(with_ecr_token.get(srv.url(manifest_path)).header("accept", OCI_MANIFEST)).await.expect_status(200);
    let listed: Value = serde_json::from_str(&srv.cli(&["user", "list"])).expect("user list prints JSON");
    let names: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|u| u["userName"].as_str()).collect();
    assert_eq!(names, ["bob", "root"]);
    assert!(!listed.to_string().contains(&secret), "user list must not show secrets");

    srv.cli(&["user", "remove", "bob"]);
    let took = wait_for_ping_status(&srv, &with_token, 401, "a removed user's token").await;
    eprintln!("removed user's token refused after {took:?}");
    for client in [&with_token, &with_key, &with_ecr_token] {
        expect_unauthorized(&send(client.get(srv.url(manifest_path)).header("accept", OCI_MANIFEST)).await);
        let r = send(
            client
                .put(srv.url("/v2/auth/users/manifests/v2"))
                .header("content-type", OCI_MANIFEST)
                .body(image.manifest.clone()),
        )
        .await;
        expect_unauthorized(&r);
    }
    send(srv.get("/v2/auth/users/manifests/v2")).await.expect_status(404);
    let r = ecr_call(&srv, &id, &secret, "GetAuthorizationToken", "{}").await;
    assert_eq!(r.status(), 400, "{}", r.describe());
    assert!(r.text().contains("UnrecognizedClientException"), "{}", r.describe());
    let listed: Value = serde_json::from_str(&srv.cli(&["user", "list"])).unwrap();
    assert!(!listed.to_string().contains("bob"), "{listed}");
    let again = srv.cli_output(&["user", "remove", "bob"]);
    assert!(!again.status.success(), "removing a missing user must fail");
    assert!(String::from_utf8_lossy(&again.stderr).contains("bob"), "{again:?}");
    // The root user is kept, and policies do not apply to it.
    for refused in
        [&["user", "remove", "root"][..], &["user", "policy", "attach", "root", "AmazonEC2ContainerRegistryReadOnly"]]
    {
        let out = srv.cli_output(refused);
        assert!(!out.status.success(), "{refused:?} must fail");
        assert!(String::from_utf8_lossy(&out.stderr).contains("the root user"), "{out:?}");
    }

    // The same name added again is a new identity: the old token and key stay dead.
    let bob2: Value =
        serde_json::from_str(&srv.cli(&["user", "add", "bob", "--policy", "AmazonEC2ContainerRegistryFullAccess"]))
            .unwrap();
    let fresh = client_with(&basic(bob2["accessKeyId"].as_str().unwrap(), bob2["secretAccessKey"].as_str().unwrap()));
    wait_for_ping_status(&srv, &fresh, 200, "the re-added user's new key").await;
    expect_unauthorized(&send(with_token.get(srv.url("/v2/"))).await);
    expect_unauthorized(&send(with_key.get(srv.url("/v2/"))).await);
    // Root was never affected.
    expect_manifest(&srv, "auth/users", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
}

#[tokio::test]
async fn deactivated_access_key_is_refused_on_both_planes_until_activated() {
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).start();
    let image = push_image(&srv, "auth/keys", Some("v1")).await;
    let manifest_path = "/v2/auth/keys/manifests/v1";
    let (id, secret) = add_user(&srv, "carol").await;
    let with_key = client_with(&basic(&id, &secret));
    let ecr_token = get_authorization_token(&srv, &id, &secret).await;
    let with_ecr_token = client_with(&format!("Basic {}", ecr_token.authorization_token));
    let with_cli_token = client_with(&basic("AWS", srv.cli(&["token", "--user", "carol"]).trim()));
    let pull =
        async |client: &reqwest::Client| send(client.get(srv.url(manifest_path)).header("accept", OCI_MANIFEST)).await;
    for client in [&with_key, &with_ecr_token, &with_cli_token] {
        pull(client).await.expect_status(200);
    }

    // Deactivated by a separate process on the same data dir, as an operator would.
    let changed: Value = serde_json::from_str(&srv.cli(&["user", "key", "deactivate", "carol"])).unwrap();
    assert_eq!(changed["status"], "Inactive", "{changed}");
    assert_eq!(changed["previousStatus"], "Active", "{changed}");
    assert_eq!(changed["accessKeyId"], id.as_str(), "{changed}");
    let took = wait_for_ping_status(&srv, &with_key, 401, "a deactivated access key").await;
    eprintln!("deactivated key refused after {took:?}");
    for client in [&with_key, &with_ecr_token, &with_cli_token] {
        expect_unauthorized(&pull(client).await);
        let r = send(
            client
                .put(srv.url("/v2/auth/keys/manifests/v2"))
                .header("content-type", OCI_MANIFEST)
                .body(image.manifest.clone()),
        )
        .await;
        expect_unauthorized(&r);
    }
    send(srv.get("/v2/auth/keys/manifests/v2")).await.expect_status(404);
    // SigV4 with the inactive key: refused as AWS refuses it, and no token is minted for it.
    let r = ecr_call(&srv, &id, &secret, "GetAuthorizationToken", "{}").await;
    ecr_json(&r, 400, Some("UnrecognizedClientException"));
    let r = ecr_call(&srv, &id, &secret, "DescribeRepositories", "{}").await;
    ecr_json(&r, 400, Some("UnrecognizedClientException"));
    let token = srv.cli_output(&["token", "--user", "carol"]);
    assert!(!token.status.success(), "berth token must refuse an inactive key's user");
    assert!(String::from_utf8_lossy(&token.stderr).contains("inactive"), "{token:?}");
    let listed: Value = serde_json::from_str(&srv.cli(&["user", "list"])).unwrap();
    let carol = listed.as_array().unwrap().iter().find(|u| u["userName"] == "carol").expect("carol is still listed");
    assert_eq!(carol["status"], "Inactive", "{listed}");
    // Deactivating twice says so and changes nothing; an unknown user is an error.
    let again: Value = serde_json::from_str(&srv.cli(&["user", "key", "deactivate", "carol"])).unwrap();
    assert_eq!(again["previousStatus"], "Inactive", "{again}");
    let nobody = srv.cli_output(&["user", "key", "deactivate", "nobody"]);
    assert!(!nobody.status.success() && String::from_utf8_lossy(&nobody.stderr).contains("nobody"), "{nobody:?}");

    // Activated again: the key, its earlier tokens and SigV4 work once more; policies were kept.
    let changed: Value = serde_json::from_str(&srv.cli(&["user", "key", "activate", "carol"])).unwrap();
    assert_eq!(changed["status"], "Active", "{changed}");
    wait_for_ping_status(&srv, &with_key, 200, "a reactivated access key").await;
    for client in [&with_key, &with_ecr_token, &with_cli_token] {
        pull(client).await.expect_status(200);
    }
    let r = ecr_call(&srv, &id, &secret, "DescribeRepositories", "{}").await;
    ecr_json(&r, 200, None);
    let listed: Value = serde_json::from_str(&srv.cli(&["user", "list"])).unwrap();
    let carol = listed.as_array().unwrap().iter().find(|u| u["userName"] == "carol").unwrap();
    assert_eq!(carol["status"], "Active", "{listed}");
    assert_eq!(carol["policies"], serde_json::json!(["AmazonEC2ContainerRegistryFullAccess"]), "{listed}");
}

#[tokio::test]
async fn expired_token_gets_ecrs_403() {
    const LIFETIME_SECS: u64 = 3; // covers issuing it and the first GET on a busy machine
    let srv = Launch::new()
        .root_keys(ROOT_KEY_ID, ROOT_SECRET)
        .args(&["--token-lifetime-secs", &LIFETIME_SECS.to_string()])
        .start();
    let image = push_image(&srv, "auth/expiry", Some("v1")).await;
    let issued = get_authorization_token(&srv, ROOT_KEY_ID, ROOT_SECRET).await;
    let now = unix_seconds(SystemTime::now());
    assert!(
        issued.expires_at > now - 1.0 && issued.expires_at <= now + LIFETIME_SECS as f64 + 1.0,
        "expiresAt {} is not about {LIFETIME_SECS} s from now ({now})",
        issued.expires_at
    );
    let client = client_with(&format!("Basic {}", issued.authorization_token));
    send(client.get(srv.url("/v2/auth/expiry/manifests/v1")).header("accept", OCI_MANIFEST)).await.expect_status(200);

    let wait = issued.expires_at - unix_seconds(SystemTime::now()) + 0.2;
    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
    for path in [
        "/v2/".to_string(),
        "/v2/auth/expiry/manifests/v1".to_string(),
        format!("/v2/auth/expiry/blobs/{}", sha256_digest(&image.config)),
    ] {
        let r = send(client.get(srv.url(&path))).await;
        r.expect_error(403, "DENIED");
        let message = r.json()["errors"][0]["message"].as_str().unwrap().to_string();
        assert_eq!(message, "Your authorization token has expired. Reauthenticate and try again.");
    }
    let r = send(
        client
            .put(srv.url("/v2/auth/expiry/manifests/v2"))
            .header("content-type", OCI_MANIFEST)
            .body(image.manifest.clone()),
    )
    .await;
    r.expect_error(403, "DENIED");
    send(srv.get("/v2/auth/expiry/manifests/v2")).await.expect_status(404);
    // A fresh token from the same server works again.
    let fresh = get_authorization_token(&srv, ROOT_KEY_ID, ROOT_SECRET).await;
    send(client_with(&format!("Basic {}", fresh.authorization_token)).get(srv.url("/v2/"))).await.expect_status(200);
}

#[tokio::test]
async fn anonymous_pull_opens_pulls_only() {
    let srv = Launch::new().args(&["--anonymous-pull"]).start();
    let image = push_image(&srv, "auth/public", Some("v1")).await;
    let layer = sha256_digest(&image.layers[0]);
    let anon = anonymous();

    for request in [
        anon.get(srv.url("/v2/auth/public/manifests/v1")).header("accept", OCI_MANIFEST),
        anon.head(srv.url("/v2/auth/public/manifests/v1")).header("accept", OCI_MANIFEST),
        anon.get(srv.url(&format!("/v2/auth/public/manifests/{}", image.digest))),
        anon.get(srv.url(&format!("/v2/auth/public/blobs/{layer}"))),
        anon.head(srv.url(&format!("/v2/auth/public/blobs/{layer}"))),
        anon.get(srv.url("/v2/auth/public/tags/list")),
        // Empty Basic credentials (skopeo without a login) are anonymous too.
        client_with(&basic("", "")).get(srv.url(&format!("/v2/auth/public/blobs/{layer}"))),
    ] {
        send(request).await.expect_status(200);
    }
    let r = send(anon.get(srv.url(&format!("/v2/auth/public/blobs/{layer}")))).await;
    assert!(r.body == image.layers[0], "anonymous blob pull returned other bytes");
    let r = send(anon.get(srv.url("/v2/auth/public/manifests/v1")).header("accept", OCI_MANIFEST)).await;
    assert!(r.body == image.manifest, "anonymous manifest pull returned other bytes");
    send(anon.get(srv.url("/v2/auth/public/manifests/nope"))).await.expect_status(404);

    // Everything but pulls still needs credentials, and so does the /v2/ ping docker login uses.
    let upload = start_upload(&srv, "auth/public").await;
    let new_blob = random_bytes(32);
    for request in [
        anon.get(srv.url("/v2/")),
        anon.get(srv.url("/v2/_catalog")),
        anon.post(srv.url("/v2/auth/public/blobs/uploads/")),
        anon.post(srv.url(&format!("/v2/auth/public/blobs/uploads/?digest={}", sha256_digest(&new_blob))))
            .body(new_blob.clone()),
        anon.post(srv.url(&format!("/v2/auth/other/blobs/uploads/?mount={layer}&from=auth/public"))),
        anon.put(srv.url("/v2/auth/public/manifests/v2"))
            .header("content-type", OCI_MANIFEST)
            .body(image.manifest.clone()),
        anon.delete(srv.url(&format!("/v2/auth/public/manifests/{}", image.digest))),
        anon.delete(srv.url(&format!("/v2/auth/public/blobs/{layer}"))),
        anon.patch(upload.clone()).header("content-type", OCTET_STREAM).body(b"data".to_vec()),
        anon.put(with_query(&upload, "digest", &sha256_digest(&new_blob))).body(new_blob.clone()),
        anon.delete(upload.clone()),
        anon.get(upload.clone()),
    ] {
        expect_unauthorized(&send(request).await);
    }
    // Presented-but-wrong credentials never fall back to anonymous, even for a pull.
    let r = send(client_with(&basic("AWS", "bogus")).get(srv.url(&format!("/v2/auth/public/blobs/{layer}")))).await;
    expect_unauthorized(&r);

    // Nothing changed.
    expect_manifest(&srv, "auth/public", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
    expect_blob(&srv, "auth/public", &layer, &image.layers[0]).await;
    send(srv.get("/v2/auth/public/manifests/v2")).await.expect_status(404);
    send(srv.head(&format!("/v2/auth/public/blobs/{}", sha256_digest(&new_blob)))).await.expect_status(404);
    send(srv.head(&format!("/v2/auth/other/blobs/{layer}"))).await.expect_status(404);
    send(srv.client.get(upload)).await.expect_status(204);
    let r = send(srv.get("/v2/_catalog")).await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["auth/public"]));
}

#[tokio::test]
async fn anonymous_pull_is_off_by_default() {
    let srv = Launch::new().start();
    let image = push_image(&srv, "auth/private", Some("v1")).await;
    let anon = anonymous();
    for request in [
        anon.get(srv.url("/v2/auth/private/manifests/v1")).header("accept", OCI_MANIFEST),
        anon.get(srv.url(&format!("/v2/auth/private/blobs/{}", sha256_digest(&image.layers[0])))),
        anon.get(srv.url("/v2/auth/private/tags/list")),
    ] {
        expect_unauthorized(&send(request).await);
    }
}

#[tokio::test]
async fn other_routes_do_not_open_repository_data_either() {
    let srv = Launch::new().start();
    let image = push_image(&srv, "auth/side", Some("v1")).await;
    let layer = sha256_digest(&image.layers[0]);
    let anon = anonymous();
    // The ECR API wants a SigV4 signature; a registry token in Basic is not one.
    let token = srv.cli(&["token"]);
    for authorization in [None, Some(basic("AWS", token.trim()))] {
        let mut request = anon
            .post(srv.url("/"))
            .header("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.BatchGetImage")
            .header("content-type", "application/x-amz-json-1.1")
            .body(r#"{"repositoryName":"auth/side","imageIds":[{"imageTag":"v1"}]}"#);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let r = send(request).await;
        r.expect_status(400);
        assert!(!r.text().contains(&image.digest), "an unsigned ECR call leaked the image:\n{}", r.describe());
    }
    // A signature by an unknown key or with a wrong secret gets nothing either.
    let r = ecr_call(&srv, "AKIAUNKNOWNKEY000000", "x", "DescribeRepositories", "{}").await;
    assert!(r.status() == 400 && r.text().contains("UnrecognizedClientException"), "{}", r.describe());
    // Layer download URLs carry their own signature; made-up ones are refused.
    let far_future = unix_seconds(SystemTime::now()) as i64 + 3600;
    for query in
        [String::new(), format!("?expires={far_future}"), format!("?expires={far_future}&signature={}", "0".repeat(64))]
    {
        let r = send(anon.get(srv.url(&format!("/_berth/layer/auth/side/{layer}{query}")))).await;
        assert_eq!(r.status(), 403, "{}", r.describe());
        assert!(r.body != image.layers[0]);
    }
}

#[test]
fn no_auth_is_refused_unless_listening_on_loopback() {
    let data = tempfile::tempdir().unwrap();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = Launch::new().listen(listen).args(&["--no-auth"]).start_refused(data.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--no-auth on {listen} must not start");
        assert!(stderr.contains("--no-auth") && stderr.contains("loopback"), "unclear refusal for {listen}:\n{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "{out:?}");
    }
}

#[tokio::test]
async fn no_auth_on_loopback_serves_without_credentials() {
    let srv = Launch::new().args(&["--no-auth"]).start();
    let anon = anonymous();
    send(anon.get(srv.url("/v2/"))).await.expect_status(200);
    let r = send(anon.post(srv.url("/v2/auth/open/blobs/uploads/"))).await;
    r.expect_status(202);
}

#[tokio::test]
async fn plain_http_off_loopback_needs_insecure_http() {
    let data = tempfile::tempdir().unwrap();
    let out = Launch::new().listen("0.0.0.0:0").start_refused(data.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--insecure-http") && stderr.contains("TLS"), "unclear refusal:\n{stderr}");

    // With the flag it serves, auth still on, and warns.
    let srv = Launch::new().listen("0.0.0.0:0").args(&["--insecure-http"]).start();
    assert!(
        srv.stdout_lines().iter().any(|l| l.starts_with("berth listening on http://0.0.0.0:")),
        "{:?}",
        srv.stdout_lines()
    );
    expect_unauthorized(&send(anonymous().get(srv.url("/v2/"))).await);
    send(srv.get("/v2/")).await.expect_status(200);
    assert!(srv.log_tail().contains("insecure-http"), "no warning in the log:\n{}", srv.log_tail());

    // With TLS instead, the same port refuses plain HTTP and serves HTTPS.
    let tls = Launch::new().listen("0.0.0.0:0").args(&["--tls-self-signed"]).start();
    assert!(!tls.stdout_lines().iter().any(|l| l.contains("listening on http://")), "{:?}", tls.stdout_lines());
    let port = tls.port();
    let r = send(anonymous().get(format!("http://127.0.0.1:{port}/v2/"))).await;
    r.expect_error(400, "UNSUPPORTED");
    assert!(r.text().contains("HTTPS"), "{}", r.describe());
    let cert = tls.data_dir().join("tls/cert.pem");
    let token = tls.cli(&["token"]);
    let r = curl(&cert, &format!("{}/v2/", tls.https_base()), &["-u", &format!("AWS:{}", token.trim())]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
}

#[tokio::test]
async fn root_credentials_are_generated_once_and_kept_private() {
    let mut srv = Launch::new().start();
    let printed: Vec<String> =
        srv.stdout_lines().into_iter().filter(|l| l.contains("generated root credentials")).collect();
    assert_eq!(printed.len(), 1, "{:?}", srv.stdout_lines());
    let json = &printed[0][printed[0].find('{').expect("JSON on the line")..];
    let credentials: Value = serde_json::from_str(json).expect("the printed credentials are JSON");
    assert_eq!(credentials["userName"], "root");
    let id = credentials["accessKeyId"].as_str().unwrap().to_string();
    let secret = credentials["secretAccessKey"].as_str().unwrap().to_string();
    assert!(id.len() >= 16 && secret.len() >= 30, "weak generated keys: {credentials}");

    let file = srv.data_dir().join("root-credentials.json");
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored, credentials);
    let master_key = srv.data_dir().join("keys/master.key");
    assert_eq!(mode(&master_key), 0o600, "{}", master_key.display());
    assert_eq!(mode(master_key.parent().unwrap()) & 0o077, 0, "the key directory is open to others");
    for entry in std::fs::read_dir(srv.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("metadata.db") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(!contains(&bytes, secret.as_bytes()), "the root secret is in plain text in {}", path.display());
        }
    }

    srv.client = client_with(&basic(&id, &secret));
    let image = push_image(&srv, "auth/root", Some("v1")).await;

    // A restart keeps the keys and prints nothing secret again.
    srv.restart();
    assert!(!srv.stdout_lines().iter().any(|l| l.contains(&secret)), "{:?}", srv.stdout_lines());
    expect_manifest(&srv, "auth/root", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
}

#[tokio::test]
async fn root_keys_from_the_environment_replace_generated_ones() {
    let mut srv = Launch::new().start();
    let file = srv.data_dir().join("root-credentials.json");
    let generated: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let old =
        client_with(&basic(generated["accessKeyId"].as_str().unwrap(), generated["secretAccessKey"].as_str().unwrap()));
    send(old.get(srv.url("/v2/"))).await.expect_status(200);

    srv.restart_with(Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET));
    assert!(!srv.stdout_lines().iter().any(|l| l.contains("generated root credentials")), "{:?}", srv.stdout_lines());
    assert!(!file.exists(), "the stale generated credentials file was left behind");
    expect_unauthorized(&send(old.get(srv.url("/v2/"))).await);
    send(client_with(&basic(ROOT_KEY_ID, ROOT_SECRET)).get(srv.url("/v2/"))).await.expect_status(200);
}

#[tokio::test]
async fn tls_self_signed_certificate_is_the_only_trusted_root_curl_needs() {
    let mut srv = Launch::new().args(&["--tls-self-signed"]).start();
    let cert = srv.data_dir().join("tls/cert.pem");
    assert!(
        srv.stdout_lines().iter().any(|l| l.contains("self-signed") && l.contains(&cert.display().to_string())),
        "the certificate's path is not printed: {:?}",
        srv.stdout_lines()
    );
    assert_eq!(mode(&srv.data_dir().join("tls/key.pem")), 0o600);
    let https = srv.https_base().to_string();
    assert_eq!(https, format!("https://127.0.0.1:{}", srv.port()));
    let token = srv.cli(&["token"]).trim().to_string();
    let creds = format!("AWS:{token}");

    // Without credentials: the same 401 and challenge as over plain HTTP.
    let r = curl(&cert, &format!("{https}/v2/"), &[]);
    assert_eq!((r.exit, r.status), (0, 401), "{r:?}");
    assert!(
        r.headers.to_ascii_lowercase().contains(&format!("www-authenticate: {}", CHALLENGE.to_ascii_lowercase())),
        "{r:?}"
    );
    let r = curl(&cert, &format!("{https}/v2/"), &["-u", &creds]);
    assert_eq!((r.exit, r.status, r.body.as_str()), (0, 200, "{}"), "{r:?}");
    // The certificate names localhost too.
    let r = curl(&cert, &format!("https://localhost:{}/v2/", srv.port()), &["-u", &creds]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");

    // Pushed over plain HTTP (loopback), pulled over HTTPS: same port, same bytes.
    let image = push_image(&srv, "auth/tls", Some("v1")).await;
    let r = curl(
        &cert,
        &format!("{https}/v2/auth/tls/manifests/v1"),
        &["-u", &creds, "-H", &format!("Accept: {OCI_MANIFEST}")],
    );
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    assert_eq!(r.body.as_bytes(), image.manifest.as_slice());

    // Trusting another certificate instead fails the handshake: the certificate really is checked.
    let other = tempfile::tempdir().unwrap();
    let (unrelated, _) = openssl_self_signed(other.path(), "ec");
    let r = curl(&unrelated, &format!("{https}/v2/"), &["-u", &creds]);
    assert_eq!(r.exit, 60, "curl must reject an untrusted certificate: {r:?}");
    assert!(r.stderr.contains("certificate"), "{r:?}");

    // A restart reuses the certificate clients already trust.
    let before = std::fs::read(&cert).unwrap();
    srv.restart();
    assert_eq!(std::fs::read(&cert).unwrap(), before, "the self-signed certificate changed on restart");
    let r = curl(&cert, &format!("{}/v2/", srv.https_base()), &["-u", &creds]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
}

#[tokio::test]
async fn tls_with_certificate_files_from_openssl() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in ["ec", "rsa"] {
        let (cert, key) = openssl_self_signed(dir.path(), algorithm);
        let srv =
            Launch::new().args(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]).start();
        let token = srv.cli(&["token"]).trim().to_string();
        let r = curl(&cert, &format!("{}/v2/", srv.https_base()), &["-u", &format!("AWS:{token}")]);
        assert_eq!((r.exit, r.status), (0, 200), "{algorithm}: {r:?}");
        let r = curl(&cert, &format!("{}/v2/", srv.https_base()), &[]);
        assert_eq!((r.exit, r.status), (0, 401), "{algorithm}: {r:?}");
    }
}

#[test]
fn tls_startup_refuses_bad_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _key_a) = openssl_self_signed(&dir.path().join("a"), "ec");
    let (_cert_b, key_b) = openssl_self_signed(&dir.path().join("b"), "ec");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let data = dir.path().join("data");
    for (label, cert, key, expected) in [
        ("a key that does not match the certificate", &cert_a, &key_b, "do not form a valid pair"),
        ("a missing certificate file", &missing, &key_b, "missing.pem"),
        ("a missing key file", &cert_a, &missing, "missing.pem"),
        ("a key file without a key", &cert_a, &garbage, "garbage.pem"),
    ] {
        let out = Launch::new()
            .args(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
            .start_refused(&data);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{label}: berth started");
        assert!(stderr.contains(expected), "{label}: unclear error:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers: file modes, curl, openssl and a minimal SigV4 signer for the ECR API.

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[derive(Debug)]
struct Curl {
    exit: i32,
    status: u16,
    headers: String,
    body: String,
    stderr: String,
}

/// `curl --cacert CA URL ARGS...`: `ca` is the only trusted root (curl then ignores the system
/// store). Runs on a blocking thread's worth of time; the server is a separate process.
fn curl(ca: &Path, url: &str, args: &[&str]) -> Curl {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("-D")
        .arg(headers.path())
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl (is it installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        exit: output.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(headers.path()).unwrap_or_default(),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost made by `openssl req -x509`, with an
/// `ec` (P-256) or `rsa` key; returns (cert.pem, key.pem) under `dir`.
fn openssl_self_signed(dir: &Path, algorithm: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join(format!("{algorithm}-cert.pem")), dir.join(format!("{algorithm}-key.pem")));
    let newkey: &[&str] = match algorithm {
        "ec" => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        "rsa" => &["-newkey", "rsa:2048"],
        other => panic!("unknown key algorithm {other}"),
    };
    let output: Output = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(newkey)
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (is it installed?)");
    assert!(output.status.success(), "openssl req failed:\n{}", String::from_utf8_lossy(&output.stderr));
    (cert, key)
}

struct EcrToken {
    /// base64 of `AWS:<token>`: exactly the value of a Basic `Authorization` header.
    authorization_token: String,
    expires_at: f64,
}

/// ECR's GetAuthorizationToken, signed with the given keys; the token the server mints (with
/// its own `--token-lifetime-secs`), unlike `berth token`, which always mints 12-hour tokens.
async fn get_authorization_token(srv: &Server, access_key_id: &str, secret: &str) -> EcrToken {
    let r = ecr_call(srv, access_key_id, secret, "GetAuthorizationToken", "{}").await;
    r.expect_status(200);
    let data = &r.json()["authorizationData"][0];
    EcrToken {
        authorization_token: data["authorizationToken"].as_str().expect("authorizationToken").to_string(),
        expires_at: data["expiresAt"].as_f64().expect("expiresAt"),
    }
}

#[test]
fn test_helpers_match_known_vectors() {
    // RFC 4231 test case 2 and RFC 4648 examples keep the hand-written helpers honest.
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex::encode(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    assert_eq!(
        [base64(b""), base64(b"f"), base64(b"fo"), base64(b"foo"), base64(b"foob")],
        ["", "Zg==", "Zm8=", "Zm9v", "Zm9vYg=="]
    );
    assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "20231114T221320Z");
    assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000Z");
}

// Repository policies: explicit denies enforced on both planes.

const ACCOUNT: &str = "123456789012";

/// A user made by `berth user add`, once the server accepts its key: (access key id, secret).
async fn add_user(srv: &Server, name: &str) -> (String, String) {
    let user: Value =
        serde_json::from_str(&srv.cli(&["user", "add", name, "--policy", "AmazonEC2ContainerRegistryFullAccess"]))
            .expect("user add prints JSON");
    let keys =
        (user["accessKeyId"].as_str().unwrap().to_string(), user["secretAccessKey"].as_str().unwrap().to_string());
    wait_for_ping_status(srv, &client_with(&basic(&keys.0, &keys.1)), 200, name).await;
    keys
}

fn ecr_json(r: &Resp, status: u16, error_type: Option<&str>) -> Value {
    assert_eq!(r.status(), status, "{}", r.describe());
    let body = r.json();
    if let Some(error_type) = error_type {
        assert_eq!(body["__type"], error_type, "{}", r.describe());
    }
    body
}

fn put_image_body(repo: &str, tag: &str, manifest: &[u8]) -> String {
    serde_json::json!({
        "repositoryName": repo,
        "imageTag": tag,
        "imageManifest": String::from_utf8(manifest.to_vec()).unwrap(),
    })
    .to_string()
}

async fn set_policy(srv: &Server, repo: &str, policy: &Value) {
    let body = serde_json::json!({ "repositoryName": repo, "policyText": policy.to_string() }).to_string();
    ecr_json(&ecr_call(srv, ROOT_KEY_ID, ROOT_SECRET, "SetRepositoryPolicy", &body).await, 200, None);
}

#[tokio::test]
async fn repository_policy_deny_stops_one_users_pushes_on_both_planes() {
    let mut srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--registry-id", ACCOUNT]).start();
    let image = push_image(&srv, "policy/app", Some("v1")).await;
    let (ci_id, ci_secret) = add_user(&srv, "ci").await;
    let (alice_id, alice_secret) = add_user(&srv, "alice").await;
    set_policy(
        &srv,
        "policy/app",
        &serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "NoPushForCi", "Effect": "Deny",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/ci")},
            "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"],
        }]}),
    )
    .await;

    // ci: every step of a /v2/ push is refused with DENIED, and nothing lands.
    srv.client = client_with(&basic(&ci_id, &ci_secret));
    let blob = b"ci may not push this";
    let digest = sha256_digest(blob);
    send(srv.post("/v2/policy/app/blobs/uploads/")).await.expect_error(403, "DENIED");
    let r = send(srv.post(&format!("/v2/policy/app/blobs/uploads/?digest={digest}")).body(blob.to_vec())).await;
    r.expect_error(403, "DENIED");
    assert!(r.text().contains("ecr:InitiateLayerUpload"), "{}", r.describe());
    put_manifest(&srv, "policy/app", "v2", OCI_MANIFEST, &image.manifest).await.expect_error(403, "DENIED");
    send(srv.head("/v2/policy/app/manifests/v2")).await.expect_status(404);
    // Pulls are not denied, nor are pushes to other repositories.
    expect_manifest(&srv, "policy/app", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
    expect_blob(&srv, "policy/app", &sha256_digest(&image.layers[0]), &image.layers[0]).await;
    push_image(&srv, "policy/ci-own", Some("v1")).await;

    // The ECR API refuses ci the same way, as AWS words it.
    let r = ecr_call(&srv, &ci_id, &ci_secret, "PutImage", &put_image_body("policy/app", "v2", &image.manifest)).await;
    let body = ecr_json(&r, 400, Some("AccessDeniedException"));
    assert_eq!(
        body["message"],
        format!(
            "User: arn:aws:iam::{ACCOUNT}:user/ci is not authorized to perform: ecr:PutImage on resource: \
             arn:aws:ecr:us-east-1:{ACCOUNT}:repository/policy/app with an explicit deny in a resource-based policy"
        )
    );
    let initiate = r#"{"repositoryName":"policy/app"}"#;
    ecr_json(
        &ecr_call(&srv, &ci_id, &ci_secret, "InitiateLayerUpload", initiate).await,
        400,
        Some("AccessDeniedException"),
    );
    let get = r#"{"repositoryName":"policy/app","imageIds":[{"imageTag":"v1"}]}"#;
    let body = ecr_json(&ecr_call(&srv, &ci_id, &ci_secret, "BatchGetImage", get).await, 200, None);
    assert_eq!(body["images"][0]["imageId"]["imageDigest"], image.digest.as_str());

    // Another user is unaffected on both planes.
    srv.client = client_with(&basic(&alice_id, &alice_secret));
    push_image(&srv, "policy/app", Some("alice")).await;
    let r = ecr_call(&srv, &alice_id, &alice_secret, "PutImage", &put_image_body("policy/app", "v2", &image.manifest))
        .await;
    ecr_json(&r, 200, None);

    // Deleting the policy gives ci its pushes back.
    let delete = r#"{"repositoryName":"policy/app"}"#;
    ecr_json(&ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "DeleteRepositoryPolicy", delete).await, 200, None);
    srv.client = client_with(&basic(&ci_id, &ci_secret));
    push_image(&srv, "policy/app", Some("ci")).await;
    let r = ecr_call(&srv, &ci_id, &ci_secret, "PutImage", &put_image_body("policy/app", "v3", &image.manifest)).await;
    ecr_json(&r, 200, None);
}

#[tokio::test]
async fn repository_policy_guards_mount_sources_and_never_locks_out_the_root() {
    let mut srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--registry-id", ACCOUNT]).start();
    let image = push_image(&srv, "policy/secret", Some("v1")).await;
    let layer = sha256_digest(&image.layers[0]);
    let (ci_id, ci_secret) = add_user(&srv, "ci").await;
    // Deny the whole account (ci included) reading layers of policy/secret, with a wildcard.
    set_policy(
        &srv,
        "policy/secret",
        &serde_json::json!({"Statement": {"Effect": "Deny", "Principal": {"AWS": ACCOUNT}, "Action": "ecr:GetDownload*"}}),
    )
    .await;
    srv.client = client_with(&basic(&ci_id, &ci_secret));
    send(srv.get(&format!("/v2/policy/secret/blobs/{layer}"))).await.expect_error(403, "DENIED");
    // A mount from it, named or found by digest, becomes an ordinary upload instead.
    for query in [format!("mount={layer}&from=policy/secret"), format!("mount={layer}")] {
        let r = send(srv.post(&format!("/v2/ci/own/blobs/uploads/?{query}"))).await;
        r.expect_status(202);
    }
    send(srv.head(&format!("/v2/ci/own/blobs/{layer}"))).await.expect_4xx();

    // Deny everything to everyone: users are locked out, and so is the root (a resource policy's
    // Deny binds an account's root in IAM) — except from reading, replacing and deleting the
    // policy, which it may always do.
    let lockout = serde_json::json!({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "ecr:*"}]});
    set_policy(&srv, "policy/secret", &lockout).await;
    send(srv.get("/v2/policy/secret/manifests/v1")).await.expect_error(403, "DENIED");
    let repo = r#"{"repositoryName":"policy/secret"}"#;
    let describe = r#"{"repositoryNames":["policy/secret"]}"#;
    ecr_json(
        &ecr_call(&srv, &ci_id, &ci_secret, "DescribeRepositories", describe).await,
        400,
        Some("AccessDeniedException"),
    );
    ecr_json(
        &ecr_call(&srv, &ci_id, &ci_secret, "DeleteRepositoryPolicy", repo).await,
        400,
        Some("AccessDeniedException"),
    );
    let root_denied = ecr_json(
        &ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "DescribeRepositories", describe).await,
        400,
        Some("AccessDeniedException"),
    );
    let message = root_denied["message"].as_str().unwrap();
    assert!(message.starts_with("User: arn:aws:iam::") && message.contains(":root is not authorized"), "{message}");
    assert!(message.ends_with("with an explicit deny in a resource-based policy"), "{message}");
    let as_root = client_with(&basic(ROOT_KEY_ID, ROOT_SECRET));
    send(as_root.get(srv.url("/v2/policy/secret/manifests/v1"))).await.expect_error(403, "DENIED");
    ecr_json(&ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "GetRepositoryPolicy", repo).await, 200, None);
    set_policy(&srv, "policy/secret", &lockout).await;
    ecr_json(&ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "DeleteRepositoryPolicy", repo).await, 200, None);
    expect_manifest(&srv, "policy/secret", "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;

    // A Deny with a Condition is evaluated against the request: from 127.0.0.0/8 (this test),
    // ci's pushes are refused; the same policy for another range leaves them be.
    let deny_from = |cidr: &str| {
        serde_json::json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:PutImage",
            "Condition": {"IpAddress": {"aws:SourceIp": cidr}}}})
    };
    set_policy(&srv, "policy/secret", &deny_from("127.0.0.0/8")).await;
    put_manifest(&srv, "policy/secret", "v2", OCI_MANIFEST, &image.manifest).await.expect_error(403, "DENIED");
    set_policy(&srv, "policy/secret", &deny_from("10.0.0.0/8")).await;
    put_manifest(&srv, "policy/secret", "v2", OCI_MANIFEST, &image.manifest).await.expect_status(201);
    // A policy Berth could only guess at is refused, saying where.
    let unknown = serde_json::json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:PutImage",
        "Condition": {"IpAddressish": {"aws:SourceIp": "10.0.0.0/8"}}}});
    let body = serde_json::json!({ "repositoryName": "policy/secret", "policyText": unknown.to_string() }).to_string();
    let r = ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "SetRepositoryPolicy", &body).await;
    let body = ecr_json(&r, 400, Some("InvalidParameterException"));
    assert!(body["message"].as_str().unwrap().contains("Condition"), "{body}");
}

#[tokio::test]
async fn anonymous_pulls_are_denied_only_by_policies_naming_everyone() {
    let srv =
        Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--anonymous-pull", "--registry-id", ACCOUNT]).start();
    let image = push_image(&srv, "policy/public", Some("v1")).await;
    let layer = srv.url(&format!("/v2/policy/public/blobs/{}", sha256_digest(&image.layers[0])));
    let manifest = srv.url("/v2/policy/public/manifests/v1");
    let (ci_id, ci_secret) = add_user(&srv, "ci").await;
    let (anon, ci) = (anonymous(), client_with(&basic(&ci_id, &ci_secret)));
    // Anonymous callers are not of the account: a deny for the whole account leaves them be.
    let account = serde_json::json!({"Statement": {"Effect": "Deny", "Principal": {"AWS": ACCOUNT}, "Action": "ecr:BatchGetImage"}});
    set_policy(&srv, "policy/public", &account).await;
    send(anon.get(&manifest).header("accept", OCI_MANIFEST)).await.expect_status(200);
    send(ci.get(&manifest).header("accept", OCI_MANIFEST)).await.expect_error(403, "DENIED");
    // "*" names them too; only the denied action is refused.
    let everyone =
        serde_json::json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:BatchGetImage"}});
    set_policy(&srv, "policy/public", &everyone).await;
    send(anon.get(&manifest).header("accept", OCI_MANIFEST)).await.expect_error(403, "DENIED");
    send(anon.get(&layer)).await.expect_status(200);
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_address_on_both_planes() {
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--auth-failures-per-minute", "6"]).start();
    let good = client_with(&basic(ROOT_KEY_ID, ROOT_SECRET));
    let guess = client_with(&basic(ROOT_KEY_ID, "a-guessed-secret-0123456789abcdefghijkl"));
    for _ in 0..6 {
        expect_unauthorized(&send(guess.get(srv.url("/v2/"))).await);
    }
    // Refused before the credentials are looked at: the right ones too, from this address.
    for client in [&guess, &good] {
        let r = send(client.get(srv.url("/v2/"))).await;
        r.expect_status(429);
        r.expect_error_code_in(&["TOOMANYREQUESTS"]);
        let retry_after: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
        assert!((1..=10).contains(&retry_after), "one failure is regained every 10 s, not {retry_after}");
        assert_eq!(r.header("docker-distribution-api-version"), Some("registry/2.0"), "{}", r.describe());
    }
    let r = ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "DescribeRepositories", "{}").await;
    r.expect_status(400);
    assert_eq!(r.json()["__type"], "ThrottlingException", "{}", r.describe());
    assert!(r.header("x-amzn-requestid").is_some_and(|id| Some(id) == r.header("x-request-id")), "{}", r.describe());
    // A request without credentials cannot guess, so it is answered as usual; nor can the empty
    // Basic pair containers/image sends for an anonymous pull.
    expect_unauthorized(&send(anonymous().get(srv.url("/v2/"))).await);
    expect_unauthorized(&send(client_with("Basic Og==").get(srv.url("/v2/"))).await);
    // One failure comes back after 60/6 s: the right key works again and the refusals were counted.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let scrape = send(good.get(srv.url("/metrics"))).await;
    scrape.expect_status(200);
    let throttled = scrape
        .text()
        .lines()
        .find(|l| l.starts_with("berth_auth_failures_total") && l.contains("reason=\"throttled\"") && l.contains("oci"))
        .map(|l| l.rsplit(' ').next().unwrap().to_string());
    assert_eq!(throttled.as_deref(), Some("2"), "the two throttled /v2/ requests are counted");
    // A new guess spends the regained failure again.
    expect_unauthorized(&send(guess.get(srv.url("/v2/"))).await);
    send(good.get(srv.url("/v2/"))).await.expect_status(429);
}

#[tokio::test]
async fn the_token_command_refuses_users_who_may_not_get_a_token() {
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).start();
    // No policy at all, and one allowing GetAuthorizationToken only from elsewhere.
    srv.cli(&["user", "add", "nopolicy"]);
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.json");
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}]});
    std::fs::write(&elsewhere, policy.to_string()).unwrap();
    srv.cli(&["user", "add", "gated", "--policy", elsewhere.to_str().unwrap()]);
    for user in ["nopolicy", "gated"] {
        let refused = srv.cli_output(&["token", "--user", user]);
        assert!(!refused.status.success(), "{user}: {refused:?}");
        assert!(refused.stdout.is_empty(), "{user}: no token is printed");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("may not get a token") && stderr.contains("ecr:GetAuthorizationToken"), "{stderr}");
    }
    // A user who may, and root, get one that works.
    srv.cli(&["user", "add", "reader", "--policy", "AmazonEC2ContainerRegistryReadOnly"]);
    for token in [srv.cli(&["token", "--user", "reader"]), srv.cli(&["token"])] {
        let client = client_with(&basic("AWS", token.trim()));
        send(client.get(srv.url("/v2/"))).await.expect_status(200);
    }
}
