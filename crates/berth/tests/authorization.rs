//! The request edge against the real `berth serve`: every endpoint of both planes goes through
//! the one authorization point with the action it declares (a repository-policy `Deny` of that
//! action blocks it and changes nothing), listings show only what the caller may describe,
//! request ids reach responses and the access log, `X-Forwarded-For` counts only from trusted
//! proxies, a request signed without its target cannot be replayed as another operation,
//! unauthenticated bodies are never buffered, and server-side error text stays in the log.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const ROOT_KEY_ID: &str = "AKIAAUTHZTESTROOT001";
const ROOT_SECRET: &str = "authz-test-root-secret-0123456789abcdefgh";
const REPO: &str = "authz/app";

fn launch() -> Launch {
    Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--registry-id", ACCOUNT])
}

/// A user made by `berth user add`, once the server accepts its key: (access key id, secret).
async fn add_user(srv: &Server, name: &str) -> (String, String) {
    let user: Value =
        serde_json::from_str(&srv.cli(&["user", "add", name, "--policy", "AmazonEC2ContainerRegistryFullAccess"]))
            .expect("user add prints JSON");
    let keys = (user["accessKeyId"].as_str().unwrap().to_owned(), user["secretAccessKey"].as_str().unwrap().to_owned());
    let client = http_client(Some(&basic(&keys.0, &keys.1)));
    for _ in 0..100 {
        if send(client.get(srv.url("/v2/"))).await.status() == 200 {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("user {name} was not let in");
}

async fn root_call(srv: &Server, operation: &str, body: &Value) -> Resp {
    ecr_call(srv, ROOT_KEY_ID, ROOT_SECRET, operation, &body.to_string()).await
}

/// A policy denying user `ci` exactly `actions`.
async fn deny_ci(srv: &Server, repo: &str, actions: &[&str]) {
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyCi", "Effect": "Deny",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/ci")},
        "Action": actions,
    }]});
    let body = json!({"repositoryName": repo, "policyText": policy.to_string()});
    root_call(srv, "SetRepositoryPolicy", &body).await.expect_status(200);
}

/// Everything about the repository a request could change, read as the root.
async fn state(srv: &Server, layer: &str, upload: &str) -> Value {
    let get = |path: String| send(srv.get(&path).header("accept", ALL_MANIFEST_TYPES));
    let manifest = get(format!("/v2/{REPO}/manifests/v1")).await;
    let session = send(srv.client.get(srv.url(upload))).await;
    let repository = json!({"repositoryName": REPO});
    let arn = format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{REPO}");
    json!({
        "catalog": get("/v2/_catalog".into()).await.json(),
        "tags": get(format!("/v2/{REPO}/tags/list")).await.text(),
        "manifest": [manifest.status(), manifest.text()],
        "layer": send(srv.head(&format!("/v2/{REPO}/blobs/{layer}"))).await.status(),
        "upload": [session.status(), session.header("range")],
        "repository": root_call(srv, "DescribeRepositories", &json!({"repositoryNames": [REPO]})).await.json(),
        "images": root_call(srv, "DescribeImages", &repository).await.json()["imageDetails"].as_array().map(Vec::len),
        "resource_tags": root_call(srv, "ListTagsForResource", &json!({"resourceArn": arn})).await.json(),
        "lifecycle": root_call(srv, "GetLifecyclePolicy", &repository).await.json()["lifecyclePolicyText"],
        "policy": root_call(srv, "GetRepositoryPolicy", &repository).await.json()["policyText"],
    })
}

/// One `/v2/` request of the walk: method, path (relative to the repository), body, and the
/// actions its operation declares.
struct V2Case {
    method: Method,
    path: String,
    body: Vec<u8>,
    actions: &'static [&'static str],
}

#[tokio::test]
async fn every_endpoint_of_both_planes_is_blocked_by_a_deny_of_its_declared_action_and_changes_nothing() {
    let mut srv = launch().start();
    let image = push_image(&srv, REPO, Some("v1")).await;
    push_image(&srv, "authz/source", Some("v1")).await;
    let layer = sha256_digest(&image.layers[0]);
    let lifecycle = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged",
        "countType": "imageCountMoreThan", "countNumber": 100}, "action": {"type": "expire"}}]});
    let body = json!({"repositoryName": REPO, "lifecyclePolicyText": lifecycle.to_string()});
    root_call(&srv, "PutLifecyclePolicy", &body).await.expect_status(200);
    let upload = start_upload(&srv, REPO).await;
    let r = send(srv.client.patch(upload.clone()).header("content-type", OCTET_STREAM).body(b"first".to_vec())).await;
    r.expect_status(202);
    let upload = r.location_path(&srv);
    let (ci_id, ci_secret) = add_user(&srv, "ci").await;

    let blob = b"a blob ci may not push".to_vec();
    let blob_digest = sha256_digest(&blob);
    let other = oci_manifest(&descriptor(OCI_CONFIG, &image.config), &[descriptor(OCI_LAYER, &blob)]);
    let source_layer = {
        let source = send(srv.get("/v2/authz/source/manifests/v1").header("accept", OCI_MANIFEST)).await.json();
        source["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    let case = |method: Method, path: String, body: &[u8], actions: &'static [&'static str]| V2Case {
        method,
        path: format!("/v2/{REPO}{path}"),
        body: body.to_vec(),
        actions,
    };
    let v2 = vec![
        case(Method::GET, "/tags/list".into(), b"", &["ecr:ListImages"]),
        case(Method::HEAD, "/tags/list".into(), b"", &["ecr:ListImages"]),
        case(Method::GET, "/manifests/v1".into(), b"", &["ecr:BatchGetImage"]),
        case(Method::HEAD, format!("/manifests/{}", image.digest), b"", &["ecr:BatchGetImage"]),
        case(Method::PUT, "/manifests/v2".into(), &other, &["ecr:PutImage"]),
        case(Method::DELETE, format!("/manifests/{}", image.digest), b"", &["ecr:BatchDeleteImage"]),
        case(Method::HEAD, format!("/blobs/{layer}"), b"", &["ecr:BatchCheckLayerAvailability"]),
        case(Method::GET, format!("/blobs/{layer}"), b"", &["ecr:GetDownloadUrlForLayer"]),
        case(Method::DELETE, format!("/blobs/{layer}"), b"", &["ecr:BatchDeleteImage"]),
        case(Method::POST, "/blobs/uploads/".into(), b"", &["ecr:InitiateLayerUpload"]),
        case(
            Method::POST,
            format!("/blobs/uploads/?digest={blob_digest}"),
            &blob,
            &["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"],
        ),
        case(
            Method::POST,
            format!("/blobs/uploads/?mount={source_layer}&from=authz/source"),
            b"",
            &["ecr:InitiateLayerUpload", "ecr:CompleteLayerUpload"],
        ),
        case(Method::GET, upload.trim_start_matches(&format!("/v2/{REPO}")).into(), b"", &["ecr:UploadLayerPart"]),
        case(
            Method::PATCH,
            upload.trim_start_matches(&format!("/v2/{REPO}")).into(),
            b"more",
            &["ecr:UploadLayerPart"],
        ),
        case(
            Method::PUT,
            format!("{}?digest={}", upload.trim_start_matches(&format!("/v2/{REPO}")), sha256_digest(b"firstmore")),
            b"more",
            &["ecr:UploadLayerPart", "ecr:CompleteLayerUpload"],
        ),
        case(
            Method::PUT,
            format!("{}?digest={}", upload.trim_start_matches(&format!("/v2/{REPO}")), sha256_digest(b"first")),
            b"",
            &["ecr:CompleteLayerUpload"],
        ),
        case(Method::DELETE, upload.trim_start_matches(&format!("/v2/{REPO}")).into(), b"", &["ecr:UploadLayerPart"]),
        case(Method::GET, format!("/referrers/{}", image.digest), b"", &["ecr:BatchGetImage"]),
        case(Method::HEAD, format!("/referrers/{}", image.digest), b"", &["ecr:BatchGetImage"]),
    ];

    let before = state(&srv, &layer, &upload).await;
    let ci = http_client(Some(&basic(&ci_id, &ci_secret)));
    for case in &v2 {
        // Each of the declared actions alone blocks the request.
        for action in case.actions {
            deny_ci(&srv, REPO, &[action]).await;
            let mut request = ci.request(case.method.clone(), srv.url(&case.path)).header("accept", OCI_MANIFEST);
            if !case.body.is_empty() {
                request = request.header("content-type", OCI_MANIFEST).body(case.body.clone());
            }
            let r = send(request).await;
            let what = format!("{} {} with {action} denied", case.method, case.path);
            assert_eq!(r.status(), 403, "{what}:\n{}", r.describe());
            if case.method != Method::HEAD {
                r.expect_error(403, "DENIED");
                assert!(r.text().contains(action), "{what}: {}", r.text());
            }
            assert!(r.header("x-request-id").is_some(), "{what}");
            let mut expected = before.clone();
            expected["policy"] = state(&srv, &layer, &upload).await["policy"].clone();
            assert_eq!(state(&srv, &layer, &upload).await, expected, "{what} changed something");
        }
    }

    // The ECR API: every repository-scoped operation, denied its own action.
    let arn = format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{REPO}");
    let repository = json!({"repositoryName": REPO});
    let with = |extra: Value| {
        let mut body = repository.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let ecr = vec![
        ("CreateRepository", repository.clone()),
        ("DescribeRepositories", json!({"repositoryNames": [REPO]})),
        ("DeleteRepository", with(json!({"force": true}))),
        ("DescribeImages", repository.clone()),
        ("ListImages", repository.clone()),
        ("BatchGetImage", with(json!({"imageIds": [{"imageTag": "v1"}]}))),
        (
            "PutImage",
            with(json!({"imageTag": "v9", "imageManifest": String::from_utf8(image.manifest.clone()).unwrap()})),
        ),
        ("BatchDeleteImage", with(json!({"imageIds": [{"imageTag": "v1"}]}))),
        ("BatchCheckLayerAvailability", with(json!({"layerDigests": [layer]}))),
        ("InitiateLayerUpload", repository.clone()),
        (
            "UploadLayerPart",
            with(
                json!({"uploadId": "00000000-0000-4000-8000-000000000000", "partFirstByte": 0, "partLastByte": 4, "layerPartBlob": base64(b"hello")}),
            ),
        ),
        (
            "CompleteLayerUpload",
            with(json!({"uploadId": "00000000-0000-4000-8000-000000000000", "layerDigests": [layer]})),
        ),
        ("GetDownloadUrlForLayer", with(json!({"layerDigest": layer}))),
        ("TagResource", json!({"resourceArn": arn, "tags": [{"Key": "team", "Value": "ci"}]})),
        ("UntagResource", json!({"resourceArn": arn, "tagKeys": ["team"]})),
        ("ListTagsForResource", json!({"resourceArn": arn})),
        ("PutImageScanningConfiguration", with(json!({"imageScanningConfiguration": {"scanOnPush": true}}))),
        ("BatchGetRepositoryScanningConfiguration", json!({"repositoryNames": [REPO]})),
        ("ListImageReferrers", with(json!({"subjectId": {"imageDigest": image.digest}}))),
        ("PutImageTagMutability", with(json!({"imageTagMutability": "IMMUTABLE"}))),
        ("PutLifecyclePolicy", with(json!({"lifecyclePolicyText": lifecycle.to_string().replace("100", "1")}))),
        ("GetLifecyclePolicy", repository.clone()),
        ("DeleteLifecyclePolicy", repository.clone()),
        ("StartLifecyclePolicyPreview", repository.clone()),
        ("GetLifecyclePolicyPreview", repository.clone()),
        (
            "SetRepositoryPolicy",
            with(
                json!({"policyText": json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}]}).to_string()}),
            ),
        ),
        ("GetRepositoryPolicy", repository.clone()),
        ("DeleteRepositoryPolicy", repository.clone()),
        // Tags given at creation need ecr:TagResource too, as ECR checks.
        ("CreateRepository", with(json!({"tags": [{"Key": "team", "Value": "ci"}]}))),
    ];
    for (operation, body) in &ecr {
        // The permission each needs is its own, except where ECR documents another.
        let action = match *operation {
            "ListImageReferrers" => "ecr:BatchGetImage".to_owned(),
            "CreateRepository" if body.get("tags").is_some() => "ecr:TagResource".to_owned(),
            _ => format!("ecr:{operation}"),
        };
        deny_ci(&srv, REPO, &[&action]).await;
        let r = ecr_call(&srv, &ci_id, &ci_secret, operation, &body.to_string()).await;
        assert_eq!(r.status(), 400, "{operation}:\n{}", r.describe());
        let error = r.json();
        assert_eq!(error["__type"], "AccessDeniedException", "{operation}: {error}");
        assert_eq!(
            error["message"],
            format!(
                "User: arn:aws:iam::{ACCOUNT}:user/ci is not authorized to perform: {action} on resource: {arn} \
                 with an explicit deny in a resource-based policy"
            ),
            "{operation}"
        );
        let mut expected = before.clone();
        expected["policy"] = state(&srv, &layer, &upload).await["policy"].clone();
        assert_eq!(state(&srv, &layer, &upload).await, expected, "{operation} changed something");
    }

    // Registry-wide calls are not about one repository: its policy neither blocks them nor is
    // consulted for them (their resource is `*`, or `repository/*` for the listing).
    deny_ci(&srv, REPO, &["ecr:*"]).await;
    for operation in ["GetAuthorizationToken", "DescribeRegistry", "GetRegistryScanningConfiguration"] {
        ecr_call(&srv, &ci_id, &ci_secret, operation, "{}").await.expect_status(200);
    }
    // The root may always repair the policy it set.
    root_call(&srv, "DeleteRepositoryPolicy", &repository).await.expect_status(200);
    srv.client = ci;
    send(srv.get(&format!("/v2/{REPO}/manifests/v1")).header("accept", OCI_MANIFEST)).await.expect_status(200);
}

#[tokio::test]
async fn listings_show_only_repositories_the_caller_may_describe() {
    let srv = launch().start();
    for repo in ["list/a", "list/b", "list/c", "list/d"] {
        push_image(&srv, repo, Some("v1")).await;
    }
    let (ci_id, ci_secret) = add_user(&srv, "ci").await;
    deny_ci(&srv, "list/b", &["ecr:DescribeRepositories"]).await;
    deny_ci(&srv, "list/c", &["ecr:Describe*"]).await;
    let ci = http_client(Some(&basic(&ci_id, &ci_secret)));

    let catalog = send(ci.get(srv.url("/v2/_catalog"))).await;
    assert_eq!(catalog.json()["repositories"], json!(["list/a", "list/d"]));
    // Pages count visible repositories only, and the last page says there is no more.
    let first = send(ci.get(srv.url("/v2/_catalog?n=1"))).await;
    assert_eq!(first.json()["repositories"], json!(["list/a"]));
    assert_eq!(first.header("link"), Some("</v2/_catalog?n=1&last=list/a>; rel=\"next\""));
    let second = send(ci.get(srv.url("/v2/_catalog?n=1&last=list/a"))).await;
    assert_eq!(second.json()["repositories"], json!(["list/d"]));
    assert_eq!(second.header("link"), None, "{}", second.describe());
    // The root sees everything.
    let all = send(srv.get("/v2/_catalog")).await;
    assert_eq!(all.json()["repositories"], json!(["list/a", "list/b", "list/c", "list/d"]));

    let names = |r: &Resp| -> Vec<String> {
        r.json()["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["repositoryName"].as_str().unwrap().into())
            .collect()
    };
    let listed = ecr_call(&srv, &ci_id, &ci_secret, "DescribeRepositories", "{}").await;
    assert_eq!(names(&listed), ["list/a", "list/d"]);
    let page = ecr_call(&srv, &ci_id, &ci_secret, "DescribeRepositories", r#"{"maxResults":1}"#).await.json();
    assert_eq!(page["repositories"][0]["repositoryName"], "list/a");
    let token = page["nextToken"].as_str().expect("a next page").to_owned();
    let next = json!({"maxResults": 1, "nextToken": token}).to_string();
    let rest = ecr_call(&srv, &ci_id, &ci_secret, "DescribeRepositories", &next).await;
    assert_eq!(names(&rest), ["list/d"]);
    assert_eq!(rest.json()["nextToken"], Value::Null);
    // Named, a hidden repository is refused outright.
    let named = ecr_call(&srv, &ci_id, &ci_secret, "DescribeRepositories", r#"{"repositoryNames":["list/b"]}"#).await;
    assert_eq!(named.json()["__type"], "AccessDeniedException");
    let root = ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "DescribeRepositories", "{}").await;
    assert_eq!(names(&root), ["list/a", "list/b", "list/c", "list/d"]);
}

/// The access-log line of the request with this id.
fn access_line(srv: &Server, request_id: &str) -> String {
    let log = srv.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("berth::access") && l.contains(request_id)).collect();
    assert_eq!(lines.len(), 1, "one access line for {request_id} in:\n{log}");
    lines[0].to_owned()
}

#[tokio::test]
async fn request_ids_reach_responses_and_the_access_log_and_forwarded_addresses_need_a_trusted_proxy() {
    let srv = launch().start();
    let (ci_id, ci_secret) = add_user(&srv, "ci").await;
    let ci = http_client(Some(&basic(&ci_id, &ci_secret)));
    let r = send(ci.get(srv.url("/v2/")).header("x-forwarded-for", "203.0.113.5")).await;
    let id = r.must_header("x-request-id").to_owned();
    let line = access_line(&srv, &id);
    assert!(line.contains("user=\"ci\"") && line.contains(&format!("access_key_id=\"{ci_id}\"")), "{line}");
    assert!(line.contains("client=\"127.0.0.1\""), "an untrusted peer's X-Forwarded-For is ignored: {line}");
    // The ECR API's own request id header carries the same id.
    let r = ecr_call(&srv, &ci_id, &ci_secret, "DescribeRegistry", "{}").await;
    assert_eq!(r.header("x-amzn-requestid"), r.header("x-request-id"));
    assert!(access_line(&srv, r.must_header("x-request-id")).contains("user=\"ci\""));
    // Refused requests are logged with their id too.
    let r = send(http_client(None).get(srv.url("/v2/_catalog"))).await;
    assert!(access_line(&srv, r.must_header("x-request-id")).contains("status=401"));
    drop(srv);

    let srv = launch().args(&["--trusted-proxy", "127.0.0.0/8"]).start();
    let r = send(srv.get("/v2/").header("x-forwarded-for", "198.51.100.1, 203.0.113.5")).await;
    let line = access_line(&srv, r.must_header("x-request-id"));
    assert!(line.contains("client=\"203.0.113.5\""), "{line}");
    let r = send(srv.get("/v2/")).await;
    assert!(access_line(&srv, r.must_header("x-request-id")).contains("client=\"127.0.0.1\""));

    // The forwarded address is what policies see as aws:SourceIp.
    let image = push_image(&srv, REPO, Some("v1")).await;
    let (ci_id, ci_secret) = add_user(&srv, "ci").await;
    let policy = json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:BatchGetImage",
        "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}}});
    let body = json!({"repositoryName": REPO, "policyText": policy.to_string()});
    root_call(&srv, "SetRepositoryPolicy", &body).await.expect_status(200);
    let ci = http_client(Some(&basic(&ci_id, &ci_secret)));
    let manifest = srv.url(&format!("/v2/{REPO}/manifests/v1"));
    let from = |address: &str| ci.get(&manifest).header("accept", OCI_MANIFEST).header("x-forwarded-for", address);
    send(from("203.0.113.5")).await.expect_error(403, "DENIED");
    assert_eq!(send(from("198.51.100.1")).await.expect_status(200).body, image.manifest);
    // A trusted TLS-terminating proxy's `X-Forwarded-Proto: https` is aws:SecureTransport; one
    // a client appended to (`https, http`) is not.
    let policy = json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "ecr:BatchGetImage",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}});
    let secure_only = json!({"repositoryName": REPO, "policyText": policy.to_string()});
    root_call(&srv, "SetRepositoryPolicy", &secure_only).await.expect_status(200);
    let over = |proto: &str| ci.get(&manifest).header("accept", OCI_MANIFEST).header("x-forwarded-proto", proto);
    assert_eq!(send(over("https")).await.expect_status(200).body, image.manifest);
    send(over("https, http")).await.expect_error(403, "DENIED");
    send(ci.get(&manifest).header("accept", OCI_MANIFEST)).await.expect_error(403, "DENIED");
    drop(srv);
    // Without a trusted proxy the same header is the client's own claim, and ignored.
    let mut srv = launch().start();
    let image = push_image(&srv, REPO, Some("v1")).await;
    root_call(&srv, "SetRepositoryPolicy", &body).await.expect_status(200);
    let (ci_id, ci_secret) = add_user(&srv, "ci").await;
    srv.client = http_client(Some(&basic(&ci_id, &ci_secret)));
    let r = send(
        srv.get(&format!("/v2/{REPO}/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .header("x-forwarded-for", "203.0.113.5"),
    )
    .await;
    assert_eq!(r.expect_status(200).body, image.manifest);
    // Nor is its X-Forwarded-Proto.
    root_call(&srv, "SetRepositoryPolicy", &secure_only).await.expect_status(200);
    let claimed = srv
        .get(&format!("/v2/{REPO}/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .header("x-forwarded-proto", "https");
    send(claimed).await.expect_error(403, "DENIED");
}

#[tokio::test]
async fn a_request_signed_without_its_target_cannot_be_replayed_as_another_operation() {
    let srv = launch().start();
    let image = push_image(&srv, REPO, Some("v1")).await;
    let body = json!({"repositoryName": REPO, "imageIds": [{"imageTag": "v1"}]}).to_string();
    for operation in ["BatchGetImage", "BatchDeleteImage"] {
        let r = send(ecr_request(&srv, ROOT_KEY_ID, ROOT_SECRET, operation, &body, false)).await;
        assert_eq!(r.status(), 400, "{}", r.describe());
        assert_eq!(r.json()["__type"], "IncompleteSignatureException");
        assert!(r.json()["message"].as_str().unwrap().contains("x-amz-target"), "{}", r.text());
    }
    expect_manifest(&srv, REPO, "v1", OCI_MANIFEST, &image.manifest, &image.digest).await;
    // Signed, the same call works.
    let r = ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "BatchGetImage", &body).await;
    assert_eq!(r.json()["images"][0]["imageId"]["imageDigest"], image.digest.as_str());
    // Unauthenticated failures are not logged at INFO, and a large header (just under the
    // server's 16 KiB header limit; beyond it the answer is 431) is not echoed.
    let huge = format!("AWS4-HMAC-SHA256 Credential=AKIAX/20261127/us-east-1/ecr/aws4_request, {}", "x".repeat(14_000));
    let r = send(
        http_client(None)
            .post(srv.url("/"))
            .header("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.ListImages")
            .header("authorization", huge)
            .body("{}"),
    )
    .await;
    assert_eq!(r.json()["__type"], "IncompleteSignatureException");
    assert!(r.body.len() < 1024, "{} bytes of error", r.body.len());
    let log = srv.log();
    assert!(!log.contains(&"x".repeat(200)), "the header reached the log");
    assert!(!log.contains("IncompleteSignatureException"), "unauthenticated failures are logged at debug only");
}

#[tokio::test]
async fn unauthenticated_bodies_are_never_read() {
    let srv = launch().start();
    // Warm up: a signed call and a push, so the baseline includes what serving needs anyway.
    ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "DescribeRegistry", "{}").await.expect_status(200);
    push_image(&srv, REPO, Some("v1")).await;
    let before = srv.vm_hwm_kib();
    let body = vec![b'a'; 30 * 1024 * 1024];
    let requests = (0..12).map(|i| {
        let mut request = http_client(None)
            .post(srv.url("/"))
            .header("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.UploadLayerPart")
            .header("x-amz-date", amz_date(std::time::SystemTime::now()))
            .body(body.clone());
        if i % 2 == 0 {
            // A plausible signature by a key that does not exist.
            let scope = format!("{}/us-east-1/ecr/aws4_request", &amz_date(std::time::SystemTime::now())[..8]);
            let authorization = format!(
                "AWS4-HMAC-SHA256 Credential=AKIANOBODY{i:010}/{scope}, SignedHeaders=host;x-amz-date;x-amz-target, Signature={}",
                "0".repeat(64)
            );
            request = request.header("authorization", authorization);
        }
        async move { try_send(request).await }
    });
    // The server answers before the body is sent, so the client may see its connection end.
    for r in futures::future::join_all(requests).await.into_iter().flatten() {
        assert_eq!(r.status(), 400, "{}", r.describe());
    }
    let grown_mib = (srv.vm_hwm_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 16, "peak RSS grew by {grown_mib} MiB for 12 unauthenticated 30 MiB bodies");
    // The server still serves.
    ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "DescribeRegistry", "{}").await.expect_status(200);
}

#[tokio::test]
async fn server_side_error_text_stays_in_the_log() {
    let srv = launch().start();
    let image = push_image(&srv, REPO, Some("v1")).await;
    let layer = sha256_digest(&image.layers[0]);
    let hex = layer.trim_start_matches("sha256:");
    // Make the layer unreadable: its fan-out directory becomes a file (root-proof, unlike chmod).
    let fan_out = srv.data_dir().join("blobs/sha256").join(&hex[..2]);
    std::fs::rename(&fan_out, fan_out.with_extension("moved")).unwrap();
    std::fs::write(&fan_out, b"not a directory").unwrap();

    let raw = |rb: reqwest::RequestBuilder| async move {
        let response = rb.send().await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        (response.status().as_u16(), id, response.text().await.unwrap())
    };
    let (status, id, text) = raw(srv.client.get(srv.url(&format!("/v2/{REPO}/blobs/{layer}")))).await;
    assert_eq!(status, 500, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNKNOWN");
    assert_eq!(body["errors"][0]["message"], format!("internal server error; request id {id}"));

    let url = ecr_call(
        &srv,
        ROOT_KEY_ID,
        ROOT_SECRET,
        "GetDownloadUrlForLayer",
        &json!({"repositoryName": REPO, "layerDigest": layer}).to_string(),
    )
    .await
    .json()["downloadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, download_id, text) = raw(http_client(None).get(&url)).await;
    assert_eq!(status, 500, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"__type": "ServerException", "message": format!("Internal server error; request id {download_id}")})
    );
    // The detail is in the log, with the ids.
    let log = srv.log();
    for id in [&id, &download_id] {
        assert!(log.lines().any(|l| l.contains(id.as_str()) && l.contains("Not a directory")), "{id} in:\n{log}");
    }
    // Client errors of download URLs are JSON too.
    let (status, _, text) = raw(http_client(None).get(url.replace("signature=", "signature=0"))).await;
    assert_eq!(status, 403);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["__type"], "AccessDeniedException");
}
