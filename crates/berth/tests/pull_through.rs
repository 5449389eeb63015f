//! Pull-through cache rules over the ECR API, SigV4-signed, with a second `berth serve` (auth on)
//! as the upstream: credentials stored by `berth secret put` open only with the server's master
//! key across restarts, rules survive them, and validation asks the upstream with them.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

const ROOT_KEY: &str = "AKIAPULLTHROUGHROOT1";
const ROOT_SECRET: &str = "pull-through-root-secret-0000000000000000";

/// `berth secret put NAME --username USER --password-stdin` on `srv`'s data directory.
fn secret_put(srv: &Server, name: &str, username: &str, password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["secret", "put", name, "--username", username, "--password-stdin", "--data-dir"])
        .arg(srv.data_dir())
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
    let user: Value = serde_json::from_str(&upstream.cli(&["user", "add", "puller"])).unwrap();
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
    let r = call(&srv, "DeletePullThroughCacheRule", json!({"ecrRepositoryPrefix": "up"})).await;
    assert_eq!(error_type(&r), "PullThroughCacheRuleNotFoundException", "{}", r.describe());
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
    ] {
        let r = call(&srv, "CreatePullThroughCacheRule", body.clone()).await;
        assert_eq!((r.status(), error_type(&r)), (400, want.to_owned()), "{body}: {}", r.describe());
    }
    let r = call(&srv, "DescribePullThroughCacheRules", json!({})).await;
    assert_eq!(r.json()["pullThroughCacheRules"], json!([]), "nothing was stored: {}", r.describe());
}
