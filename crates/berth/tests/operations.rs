//! What an operator points at a running server: the health probes, `/metrics` (who may scrape
//! it, that the counters move with requests, the anonymous `--metrics-listen`), and the audit
//! trail (one CloudTrail-shaped record per mutating request and per refused caller, no secrets).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ROOT_KEY_ID: &str = "AKIAOPSTESTROOT00001";
const ROOT_SECRET: &str = "ops-test-root-secret-0123456789abcdefghijk";

/// The value of the series `name{labels…}` whose label set contains every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn probes_metrics_and_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let srv = Launch::new()
        .root_keys(ROOT_KEY_ID, ROOT_SECRET)
        .args(&["--audit-log", audit.to_str().unwrap(), "--metrics-listen", &metrics_addr])
        .start();
    let anonymous = http_client(None);

    // Probes: anonymous, JSON, and not in the access log at info.
    let healthz = send(anonymous.get(srv.url("/healthz"))).await;
    healthz.expect_status(200);
    assert_eq!(healthz.json()["status"], "ok");
    let readyz = send(anonymous.get(srv.url("/readyz"))).await;
    readyz.expect_status(200);
    assert_eq!(readyz.json()["status"], "ready");

    // /metrics on the registry port: credentials first, then berth:GetMetrics (root has it).
    send(anonymous.get(srv.url("/metrics"))).await.expect_status(401);
    send(http_client(Some(&basic(ROOT_KEY_ID, "wrong-secret"))).get(srv.url("/metrics"))).await.expect_status(401);
    let before = send(srv.client.get(srv.url("/metrics"))).await;
    before.expect_status(200);
    assert!(before.header("content-type").unwrap().starts_with("text/plain"), "{}", before.describe());
    let before = before.text();
    assert!(before.lines().any(|l| l == "berth_audit_records_dropped_total 0"), "reported from the start:\n{before}");

    let image = push_image(&srv, "ops/app", Some("v1")).await;
    let pulled = send(srv.client.get(srv.url(&format!("/v2/ops/app/blobs/{}", sha256_digest(&image.layers[0]))))).await;
    pulled.expect_status(200);
    send(srv.client.delete(srv.url(&format!("/v2/ops/app/manifests/{}", image.digest)))).await.expect_status(202);
    let wrong = http_client(Some(&basic(ROOT_KEY_ID, "wrong-secret")));
    send(wrong.get(srv.url("/v2/ops/app/tags/list"))).await.expect_status(401);

    // The anonymous listener serves the same registry without credentials.
    let after = send(anonymous.get(format!("http://{metrics_addr}/metrics"))).await;
    after.expect_status(200);
    let after = after.text();
    let put = ["plane=\"oci\"", "operation=\"PutManifest\"", "method=\"PUT\"", "status=\"2xx\""];
    assert_eq!(
        sample(&after, "berth_http_requests_total", &put) - sample(&before, "berth_http_requests_total", &put),
        1.0
    );
    let get_blob = ["operation=\"GetBlob\"", "status=\"2xx\""];
    assert_eq!(sample(&after, "berth_http_requests_total", &get_blob), 1.0);
    let histogram = ["operation=\"PutManifest\""];
    assert_eq!(sample(&after, "berth_http_request_duration_seconds_count", &histogram), 1.0);
    assert!(
        sample(&after, "berth_http_request_duration_seconds_bucket", &["operation=\"PutManifest\"", "le=\"+Inf\""])
            >= 1.0
    );
    let received = sample(&after, "berth_http_received_bytes_total", &["plane=\"oci\""]);
    assert!(received >= (image.layers[0].len() + image.manifest.len()) as f64, "{received}");
    assert!(sample(&after, "berth_http_sent_bytes_total", &["plane=\"oci\""]) >= image.layers[0].len() as f64);
    // The wrong secret on /v2/ and the one on /metrics, each on its plane.
    for plane in ["plane=\"oci\"", "plane=\"metrics\""] {
        assert_eq!(sample(&after, "berth_auth_failures_total", &[plane, "reason=\"invalid_credentials\""]), 1.0);
    }
    assert!(sample(&after, "process_resident_memory_bytes", &[]) > 0.0, "process metrics are exported");
    for pool in ["readers", "writer"] {
        let label = format!("pool=\"{pool}\"");
        assert!(sample(&after, "berth_metadata_pool_max_connections", &[&label]) >= 1.0, "{pool}: {after}");
        assert!(after.contains(&format!("berth_metadata_pool_connections{{{label},state=\"idle\"}}")), "{after}");
    }
    assert!(
        !after.contains("/healthz")
            && !after.contains("operation=\"none\",method=\"GET\",status=\"2xx\",plane=\"other\"")
    );

    // A user without berth:GetMetrics is refused on the registry port (and audited, as every
    // refusal is).
    let user: Value = serde_json::from_str(&srv.cli(&["user", "add", "ci"])).unwrap();
    let (ci_key, ci_secret) = (user["accessKeyId"].as_str().unwrap(), user["secretAccessKey"].as_str().unwrap());
    let ci = http_client(Some(&basic(ci_key, ci_secret)));
    // A user added on a running server is known within a second or so.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = send(ci.get(srv.url("/metrics"))).await;
    while refused.status() == 401 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        refused = send(ci.get(srv.url("/metrics"))).await;
    }
    refused.expect_status(403);

    // The audit trail: the wrong secret, the user's refusal, every mutating request of the push
    // and the delete; no probe, pull or scrape.
    // The refusal is the last request; its record is written after the answer went out.
    let records = audit_until(&audit, |r| r["eventName"] == "GetMetrics" && r["errorCode"] == "DENIED").await;
    let names: Vec<&str> = records.iter().map(|r| r["eventName"].as_str().unwrap()).collect();
    let pushes = names.iter().filter(|n| **n == "PutImage").count();
    assert_eq!(pushes, 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "BatchDeleteImage").count(), 1, "{names:?}");
    assert!(names.iter().filter(|n| **n == "InitiateLayerUpload").count() >= 2, "{names:?}");
    assert!(!names.contains(&"GetDownloadUrlForLayer") && !names.contains(&"Ping"), "{names:?}");
    let put = records.iter().find(|r| r["eventName"] == "PutImage").unwrap();
    assert_eq!(put["eventSource"], "ecr.amazonaws.com");
    assert_eq!(put["userIdentity"]["userName"], "root");
    assert_eq!(put["userIdentity"]["accessKeyId"], ROOT_KEY_ID);
    assert_eq!(put["requestParameters"]["repositoryName"], "ops/app");
    assert_eq!(put["requestParameters"]["imageTag"], "v1");
    assert_eq!(put["sourceIPAddress"], "127.0.0.1");
    assert!(put.get("errorCode").is_none());
    // Scrapes refused for a wrong secret (the one above, and the new user's while it was not
    // known yet) and for a missing permission.
    let scrapes: Vec<&str> = records
        .iter()
        .filter(|r| r["eventName"] == "GetMetrics")
        .map(|r| r["errorCode"].as_str().unwrap_or("none"))
        .collect();
    assert!(scrapes.contains(&"UNAUTHORIZED") && scrapes.ends_with(&["DENIED"]), "{scrapes:?}");
    let refused: Vec<&Value> =
        records.iter().filter(|r| r.get("errorCode").is_some() && r["eventName"] != "GetMetrics").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["errorCode"], "UNAUTHORIZED");
    assert_eq!(refused[0]["eventName"], "ListImages");
    // Who is unknown, the key tried is not: CloudTrail's record of a key that did not check out.
    assert_eq!(refused[0]["userIdentity"], serde_json::json!({"type": "Unknown", "accessKeyId": ROOT_KEY_ID}));
    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in [ROOT_SECRET, ci_secret, "wrong-secret", "Basic ", "Bearer "] {
        assert!(!text.contains(secret), "the audit log holds {secret:?}");
    }
    let token = srv.cli(&["token"]);
    assert!(!text.contains(token.trim()), "the audit log holds the registry token");

    // Probes stay out of the info-level access log.
    assert!(!srv.log().contains("path=\"/healthz\""), "probes are logged at debug only");
}

/// A push without credentials is asked to log in (not counted as a failed login, as docker's
/// first ping is not), and its audit record still says why nothing happened.
#[tokio::test]
async fn an_anonymous_push_is_audited_with_its_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let srv = Launch::new().root_keys(ROOT_KEY_ID, ROOT_SECRET).args(&["--audit-log", audit.to_str().unwrap()]).start();
    let refused = send(http_client(None).post(srv.url("/v2/ops/anonymous/blobs/uploads/"))).await;
    refused.expect_status(401);
    let records = audit_until(&audit, |r| r["eventName"] == "InitiateLayerUpload").await;
    assert_eq!(records[0]["errorCode"], "UNAUTHORIZED", "{records:?}");
    assert_eq!(records[0]["userIdentity"]["type"], "Anonymous");
    let metrics = send(srv.client.get(srv.url("/metrics"))).await.text();
    assert_eq!(sample(&metrics, "berth_auth_failures_total", &[]), 0.0, "{metrics}");
}

/// `/readyz` says no while the blob directory is gone (a data dir moved or unmounted under a
/// running server, where every push fails), `berth_store_errors_total` counts the failed
/// commits, and both recover once it is back.
#[tokio::test]
async fn readiness_follows_the_blob_directory() {
    let srv = Server::start();
    let anonymous = http_client(None);
    send(anonymous.get(srv.url("/readyz"))).await.expect_status(200);
    let (blobs, away) = (srv.data_dir().join("blobs"), srv.data_dir().join("blobs.away"));
    std::fs::rename(&blobs, &away).unwrap();
    // `send` fails a test on any 5xx: this one is the answer wanted.
    let refused = anonymous.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let reasons = refused.json::<Value>().await.unwrap()["reasons"].to_string();
    assert!(reasons.contains("blob store") && reasons.contains("blobs"), "{reasons}");
    // A push meanwhile fails as the store's fault (not "upload unknown"), and is counted.
    let body = b"readiness".to_vec();
    let url = srv.url(&format!("/v2/ops/ready/blobs/uploads/?digest={}", sha256_digest(&body)));
    let failed = anonymous.post(url).header("content-type", OCTET_STREAM).body(body).send().await.unwrap();
    assert_eq!(failed.status(), 500);
    let metrics = send(anonymous.get(srv.url("/metrics"))).await.text();
    assert!(sample(&metrics, "berth_store_errors_total", &[r#"store="blobs""#]) >= 1.0, "{metrics}");
    std::fs::rename(&away, &blobs).unwrap();
    send(anonymous.get(srv.url("/readyz"))).await.expect_status(200);
    push_image(&srv, "ops/ready", Some("v1")).await;
}

/// SIGHUP reopens the audit log at its path, so logrotate's move-then-signal loses no line, and
/// does not end the server (its default action would).
#[tokio::test]
async fn sighup_reopens_the_audit_log_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let srv = Launch::new().no_auth().args(&["--audit-log", audit.to_str().unwrap()]).start();
    push_image(&srv, "ops/before", Some("v1")).await;
    audit_until(&audit, |r| r["eventName"] == "PutImage").await;
    let moved = dir.path().join("audit.log.1");
    std::fs::rename(&audit, &moved).unwrap();

    let hup = std::process::Command::new("kill").args(["-HUP", &srv.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    // The reopen is queued behind the signal: push until a record lands in the new file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while audit_records(&audit).is_empty() {
        assert!(Instant::now() < deadline, "no record reached the reopened {}", audit.display());
        n += 1;
        push_image(&srv, "ops/after", Some(&format!("v{n}"))).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(srv.get("/v2/")).await.expect_status(200);
    let old: Vec<Value> = audit_records(&moved);
    assert!(old.iter().any(|r| r["requestParameters"]["repositoryName"] == "ops/before"), "{old:?}");
    let new = audit_until(&audit, |r| r["eventName"] == "PutImage").await;
    assert!(new.iter().all(|r| r["requestParameters"]["repositoryName"] != "ops/before"), "{new:?}");
}

/// A setting that cannot be applied stops `berth serve` before it says it is listening (a
/// supervisor waiting for that line must not see it), naming what failed.
#[tokio::test]
async fn a_failing_setting_stops_serve_before_the_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir/audit.log");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    for (args, reason) in [
        (vec!["--audit-log", missing.to_str().unwrap()], missing.to_str().unwrap().to_owned()),
        (vec!["--metrics-listen", &taken_addr], taken_addr.clone()),
    ] {
        let out = Launch::new().no_auth().args(&args).start_refused(dir.path());
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && stderr.contains(&reason), "{args:?}: {stderr}");
        assert!(!stdout.contains("listening on"), "{args:?} announced itself first: {stdout}");
    }
}

/// Commands that read or change an existing registry refuse a data dir without one (a mistyped
/// path), creating nothing; `user add` still sets up a new one, as before a first `berth serve`.
#[test]
fn commands_on_a_missing_data_dir_refuse_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let berth = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .arg("--data-dir")
            .arg(&missing)
            .env_remove("BERTH_DATABASE_URL")
            .output()
            .unwrap()
    };
    for args in
        [&["user", "list"][..], &["gc", "--dry-run"], &["cache", "status"], &["outbox", "consumers"], &["token"]]
    {
        let out = berth(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("no Berth data in"), "{args:?}: {stderr}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    let out = berth(&["user", "add", "ci", "--policy", "AmazonEC2ContainerRegistryReadOnly"]);
    assert!(out.status.success(), "{out:?}");
    assert!(missing.join("metadata.db").is_file());
}

/// `berth policy simulate` takes the actions the server checks and refuses what no request
/// could name.
#[test]
fn policy_simulate_checks_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let berth = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("BERTH_DATABASE_URL")
            .output()
            .unwrap()
    };
    assert!(berth(&["user", "add", "ci", "--policy", "AmazonEC2ContainerRegistryReadOnly"]).status.success());
    let simulate = |extra: &[&str]| berth(&[&["policy", "simulate", "--user", "ci"][..], extra].concat());
    let allowed = simulate(&["--action", "ECR:BatchGetImage", "--repository", "team/app"]);
    assert!(String::from_utf8_lossy(&allowed.stdout).contains("allowed"), "{allowed:?}");
    let metrics = simulate(&["--action", "berth:GetMetrics"]);
    assert!(String::from_utf8_lossy(&metrics.stdout).contains("implicit deny"), "{metrics:?}");
    for bad in [
        &["--action", "ecr:NoSuchAction"][..],
        &["--action", "s3:GetObject"],
        &["--action", "ecr:PutImage", "--repository", "Not A Repo"],
        &["--action", "ecr:PutImage", "--registry-id", "12"],
    ] {
        let out = simulate(bad);
        assert!(!out.status.success() && !out.stderr.is_empty(), "{bad:?}: {out:?}");
    }
}

/// A second `berth serve` on a data directory whose SQLite metadata a running server holds is
/// refused at start, saying why; the CLI beside the server still works, and once the first
/// server is gone the directory serves again.
#[tokio::test]
async fn a_second_server_on_a_sqlite_data_dir_is_refused() {
    let mut srv = Launch::new().start();
    let second = Launch::new().start_refused(srv.data_dir());
    assert!(!second.status.success(), "the second server started");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another berth serve is using the data directory"), "{stderr}");
    srv.cli(&["user", "add", "beside", "--policy", "AmazonEC2ContainerRegistryReadOnly"]);
    srv.restart();
    send(srv.get("/v2/")).await.expect_status(200);
}

/// `--audit-log -` makes stdout the audit trail: JSON records only. The ready line and the root
/// credentials a first start generates go to stderr instead.
#[test]
fn an_audit_trail_on_stdout_holds_only_its_records() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--audit-log", "-", "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("BERTH_ROOT_ACCESS_KEY_ID")
        .env_remove("BERTH_ROOT_SECRET_ACCESS_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut told = Vec::new();
    while !told.iter().any(|l: &String| l.starts_with("berth listening on http://")) {
        told.push(stderr.next().expect("berth exited before its ready line").unwrap());
    }
    assert!(told.iter().any(|l| l.contains("generated root credentials")), "{told:?}");
    // A refused push: one audit record.
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
        use std::io::{Read, Write};
        stream.write_all(
            b"POST /v2/ops/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    });
    assert!(refused.unwrap().starts_with("HTTP/1.1 401"));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill has no memory-safety preconditions; the child is ours and still running.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let records: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).expect(line)).collect();
    assert!(records.iter().any(|r| r["eventName"] == "InitiateLayerUpload"), "{stdout}");
}
