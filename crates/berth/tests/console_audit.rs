//! The web console's changes in the audit trail (`--audit-log`): each confirmed action writes the
//! record the equivalent API call writes (same `eventName`, `eventSource` and
//! `requestParameters`), with the signed-in console user as the principal; a confirmation page
//! changes nothing and writes nothing; a forged form is recorded as refused.

mod common;

use common::*;
use serde_json::{Value, json};

const ROOT_KEY_ID: &str = "AKIACONSOLEAUDIT0001";
const ROOT_SECRET: &str = "console-audit-root-secret-0123456789abcdefg";

/// The audit record of request `request_id`, once the writer thread wrote it.
async fn record_of(path: &std::path::Path, request_id: &str) -> Value {
    let of_request = |r: &Value| r["requestID"] == request_id;
    audit_until(path, of_request).await.into_iter().find(of_request).unwrap()
}

/// A browser-like console client: keeps the session cookie, posts forms with the page's token.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

fn cookie_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let pair = v.split(';').next()?;
        pair.strip_prefix(&format!("{name}=")).filter(|value| !value.is_empty()).map(|_| pair.to_owned())
    })
}

fn csrf_of(page: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let at = page.find(marker).expect("the page has a form") + marker.len();
    page[at..].split('"').next().unwrap().to_owned()
}

impl Browser {
    async fn sign_in(srv: &Server, access_key_id: &str, secret: &str) -> Browser {
        let (http, signed_in) = Browser::attempt(srv, access_key_id, secret).await;
        assert_eq!(signed_in.status(), 303, "sign-in as {access_key_id}");
        let cookie = cookie_of(&signed_in, "berth_console").expect("a session cookie");
        Browser { http, base: srv.base().to_owned(), cookie }
    }

    /// Posts the sign-in form as a browser does (its nonce cookie and token); the answer.
    async fn attempt(srv: &Server, access_key_id: &str, secret: &str) -> (reqwest::Client, reqwest::Response) {
        let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let base = srv.base().to_owned();
        let page = http.get(format!("{base}/console/sign-in")).send().await.unwrap();
        let nonce = cookie_of(&page, "berth_console_sign_in").expect("the sign-in page sets its nonce cookie");
        let csrf = csrf_of(&page.text().await.unwrap());
        let form = [
            ("csrf", csrf.as_str()),
            ("next", "/console/repositories"),
            ("access_key_id", access_key_id),
            ("secret_access_key", secret),
        ];
        let signed_in = http
            .post(format!("{base}/console/sign-in"))
            .header("cookie", nonce)
            .header("origin", &base)
            .form(&form)
            .send()
            .await
            .unwrap();
        (http, signed_in)
    }

    async fn csrf(&self) -> String {
        let page = self.http.get(format!("{}/console/admin", self.base)).header("cookie", &self.cookie).send().await;
        csrf_of(&page.unwrap().text().await.unwrap())
    }

    /// Posts `fields` (plus the CSRF token unless `forged`); returns the status and request id.
    async fn post(&self, path: &str, fields: &[(&str, &str)], forged: bool) -> (u16, String) {
        let mut form: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if !forged {
            form.push(("csrf".into(), self.csrf().await));
        }
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.base)
            .form(&form)
            .send()
            .await
            .unwrap();
        let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        (response.status().as_u16(), request_id)
    }
}

#[tokio::test]
async fn console_changes_are_audited_as_the_api_calls_they_equal() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--audit-log", audit.to_str().unwrap()]).start();
    let kept = push_image(&srv, "audited/app", Some("v1")).await;
    let doomed = push_image_arch(&srv, "audited/app", Some("v2"), "arm64").await;
    let browser = Browser::sign_in(&srv, ROOT_KEY_ID, ROOT_SECRET).await;

    // The same deletion through the ECR API, for comparison.
    let via_api = push_image_arch(&srv, "audited/app", None, "s390x").await;
    let body = json!({"repositoryName": "audited/app", "imageIds": [{"imageDigest": via_api.digest}]}).to_string();
    let api = ecr_call(&srv, ROOT_KEY_ID, ROOT_SECRET, "BatchDeleteImage", &body).await;
    api.expect_status(200);
    let api_record = record_of(&audit, api.must_header("x-amzn-requestid")).await;

    // Asking for confirmation changes nothing and is not recorded.
    let delete = "/console/repositories/audited/app/-/delete-image";
    let (status, asked) = browser.post(delete, &[("digest", &doomed.digest)], false).await;
    assert_eq!(status, 200);
    let (status, deleted) = browser.post(delete, &[("digest", &doomed.digest), ("confirmed", "yes")], false).await;
    assert_eq!(status, 303);
    let record = record_of(&audit, &deleted).await;
    assert!(audit_records(&audit).iter().all(|r| r["requestID"] != asked), "a confirmation page is not audited");
    for field in ["eventName", "eventSource", "userIdentity", "awsRegion", "recipientAccountId", "eventType"] {
        assert_eq!(record[field], api_record[field], "{field}: console {record} vs API {api_record}");
    }
    assert_eq!(record["eventName"], "BatchDeleteImage");
    assert_eq!(record["userIdentity"]["userName"], "root");
    assert_eq!(record["userIdentity"]["accessKeyId"], ROOT_KEY_ID);
    assert_eq!(
        record["requestParameters"],
        json!({"repositoryName": "audited/app", "imageIds": [{"imageDigest": doomed.digest}]})
    );
    assert!(record.get("errorCode").is_none(), "{record}");

    // Tag changes and mutability, as PutImage / BatchDeleteImage / PutImageTagMutability.
    let actions = "/console/repositories/audited/app/-";
    let (_, added) = browser
        .post(
            &format!("{actions}/add-tag"),
            &[("digest", &kept.digest), ("tag", "stable"), ("confirmed", "yes")],
            false,
        )
        .await;
    let record = record_of(&audit, &added).await;
    assert_eq!(record["eventName"], "PutImage");
    assert_eq!(
        record["requestParameters"],
        json!({"repositoryName": "audited/app", "imageTag": "stable", "imageDigest": kept.digest})
    );
    let (_, removed) = browser
        .post(
            &format!("{actions}/remove-tag"),
            &[("digest", &kept.digest), ("tag", "stable"), ("confirmed", "yes")],
            false,
        )
        .await;
    let record = record_of(&audit, &removed).await;
    assert_eq!(record["eventName"], "BatchDeleteImage");
    assert_eq!(record["requestParameters"]["imageIds"], json!([{"imageTag": "stable"}]));
    let (_, immutable) = browser
        .post(&format!("{actions}/tag-mutability"), &[("mutability", "IMMUTABLE"), ("confirmed", "yes")], false)
        .await;
    let record = record_of(&audit, &immutable).await;
    assert_eq!(record["eventName"], "PutImageTagMutability");
    assert_eq!(record["requestParameters"]["imageTagMutability"], "IMMUTABLE");

    // A refused change is recorded with its error.
    let (status, refused) = browser
        .post(
            &format!("{actions}/add-tag"),
            &[("digest", &doomed.digest), ("tag", "gone"), ("confirmed", "yes")],
            false,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(record_of(&audit, &refused).await["errorCode"], "NotFoundException");
    // A forged form (no token) changes nothing and is recorded as refused.
    let (status, forged) = browser.post(delete, &[("digest", &kept.digest), ("confirmed", "yes")], true).await;
    assert_eq!(status, 403);
    let record = record_of(&audit, &forged).await;
    assert_eq!(
        (record["eventName"].as_str(), record["errorCode"].as_str()),
        (Some("BatchDeleteImage"), Some("ForgedRequest"))
    );
    send(srv.get(&format!("/v2/audited/app/manifests/{}", kept.digest))).await.expect_status(200);

    // Users, as IAM's calls; a user's own console changes name that user.
    let (_, created) = browser
        .post("/console/admin/users", &[("name", "alice"), ("policy", "AmazonEC2ContainerRegistryPowerUser")], false)
        .await;
    let record = record_of(&audit, &created).await;
    assert_eq!(
        (record["eventName"].as_str(), record["eventSource"].as_str()),
        (Some("CreateUser"), Some("iam.amazonaws.com"))
    );
    assert_eq!(record["requestParameters"], json!({"userName": "alice"}));
    let (_, gone) =
        browser.post("/console/admin/users/delete", &[("name", "alice"), ("confirmed", "yes")], false).await;
    assert_eq!(record_of(&audit, &gone).await["eventName"], "DeleteUser");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(ROOT_SECRET) && !text.contains("berth_console="), "no secret or session in the audit log");
}

/// A console sign-in is CloudTrail's `ConsoleLogin`: refused ones are audited, counted and spend
/// the address's failed sign-ins as a refused `docker login` does; so do refused scrapes of
/// `/metrics`.
#[tokio::test]
async fn console_and_metrics_sign_ins_are_audited_counted_and_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let args = ["--audit-log", audit.to_str().unwrap(), "--auth-failures-per-minute", "4"];
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&args).start();
    let wrong = "a-guessed-secret-0123456789abcdefghijklmn";
    Browser::sign_in(&srv, ROOT_KEY_ID, ROOT_SECRET).await;
    let (_, refused) = Browser::attempt(&srv, ROOT_KEY_ID, wrong).await;
    assert_eq!(refused.status(), 401);
    let refused_id = refused.headers()["x-request-id"].to_str().unwrap().to_owned();
    let guess = http_client(Some(&basic(ROOT_KEY_ID, wrong)));
    let scrape = send(guess.get(srv.url("/metrics"))).await;
    scrape.expect_status(401);
    let record = record_of(&audit, scrape.must_header("x-request-id")).await;
    assert_eq!(
        (record["eventName"].as_str(), record["errorCode"].as_str()),
        (Some("GetMetrics"), Some("UNAUTHORIZED"))
    );
    assert_eq!(record["userIdentity"]["accessKeyId"], ROOT_KEY_ID, "the key a refused caller tried");
    let record = record_of(&audit, &refused_id).await;
    assert_eq!(record["eventSource"], "signin.amazonaws.com");
    assert_eq!(
        (record["eventName"].as_str(), record["errorCode"].as_str()),
        (Some("ConsoleLogin"), Some("InvalidCredentials"))
    );
    assert_eq!(record["userIdentity"]["accessKeyId"], ROOT_KEY_ID, "the key typed into the form");
    assert!(!std::fs::read_to_string(&audit).unwrap().contains(wrong), "no secret in the audit log");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the audit log is for the operator only");
    // The successful sign-in is recorded too, as the root user.
    let signed_in =
        audit_records(&audit).into_iter().find(|r| r["eventName"] == "ConsoleLogin" && r["errorCode"].is_null());
    assert_eq!(signed_in.expect("the sign-in is audited")["userIdentity"]["type"], "Root");
    // Two more failures spend the budget of four: then even the right secret waits.
    Browser::attempt(&srv, ROOT_KEY_ID, wrong).await;
    send(guess.get(srv.url("/metrics"))).await.expect_status(401);
    let (_, throttled) = Browser::attempt(&srv, ROOT_KEY_ID, ROOT_SECRET).await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    let good = http_client(Some(&basic(ROOT_KEY_ID, ROOT_SECRET)));
    send(good.get(srv.url("/v2/"))).await.expect_status(429);
}

/// Signing in to the console with an access key needs what `docker login` with it needs:
/// ecr:GetAuthorizationToken. A user allowed everything on repositories but not that is refused.
#[tokio::test]
async fn a_console_sign_in_with_a_key_needs_get_authorization_token() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--audit-log", audit.to_str().unwrap()]).start();
    let repositories_only = srv.data_dir().join("repositories-only.json");
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/*"}]});
    std::fs::write(&repositories_only, document.to_string()).unwrap();
    for (name, policy, expected) in
        [("repos", repositories_only.to_str().unwrap(), 403), ("reader", "AmazonEC2ContainerRegistryReadOnly", 303)]
    {
        let output = srv.cli_output(&["user", "add", name, "--policy", policy]);
        assert!(output.status.success(), "user add: {}", String::from_utf8_lossy(&output.stderr));
        let created: Value = serde_json::from_slice(&output.stdout).unwrap();
        let (key, secret) = (created["accessKeyId"].as_str().unwrap(), created["secretAccessKey"].as_str().unwrap());
        // 401 until the server knows the new key.
        let mut answer = Browser::attempt(&srv, key, secret).await.1;
        for _ in 0..100 {
            if answer.status() != 401 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            answer = Browser::attempt(&srv, key, secret).await.1;
        }
        assert_eq!(answer.status().as_u16(), expected, "{name}");
        // Audited as the user's ConsoleLogin, refused or not.
        let record = record_of(&audit, answer.headers()["x-request-id"].to_str().unwrap()).await;
        assert_eq!(record["eventName"], "ConsoleLogin");
        assert_eq!(record["userIdentity"]["userName"], name, "{record}");
        let refused = (expected == 403).then_some("AccessDenied");
        assert_eq!(record["errorCode"].as_str(), refused, "{record}");
    }
}
