//! Webhooks against a real HTTP receiver (axum on loopback): a multi-arch push to a `prod/`
//! repository arrives as ECR `ECR Image Action` events, signed with the shared secret, after the
//! receiver answered 500 for a while; `dev/` pushes are filtered out; a webhook whose receiver
//! is gone holds up nothing; a delete made while the receiver fails and the server restarts is
//! delivered after the restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "webhook-shared-secret";
const WAIT: Duration = Duration::from_secs(60);

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
struct Received {
    answered: u16,
    signature: String,
    event_id: String,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicBool>,
}

impl Receiver {
    /// Serves on a loopback port; returns its URL.
    async fn start(&self) -> String {
        async fn hook(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
            let status = if receiver.failing.load(Ordering::SeqCst) {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            receiver.got.lock().unwrap().push(Received {
                answered: status.as_u16(),
                signature: header("x-berth-signature-256"),
                event_id: header("x-berth-event-id"),
                body: body.to_vec(),
            });
            status
        }
        let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The events delivered (answered 200), in order.
    fn delivered(&self) -> Vec<Value> {
        self.got().iter().filter(|r| r.answered == 200).map(Received::json).collect()
    }

    async fn wait_for_deliveries(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let delivered = self.delivered();
            if delivered.len() >= count {
                return delivered;
            }
            assert!(Instant::now() < deadline, "only {} of {count} events arrived: {:?}", delivered.len(), self.got());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hmac_hex(body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(SECRET.as_bytes(), body)))
}

fn detail(event: &Value) -> Value {
    event["detail"].clone()
}

#[tokio::test]
async fn image_events_reach_a_signed_webhook_through_failures_and_a_restart() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[webhooks]]
name = "deploy"
url = "{url}"
secret = "{SECRET}"
repository_prefixes = ["prod/"]
timeout_secs = 5

[[webhooks]]
name = "gone"
url = "http://127.0.0.1:{dead_port}/nothing-listens"
secret = "other"
"#
        ),
    )
    .unwrap();
    let mut srv = Server::start_with(&["--config", config.to_str().unwrap()]);

    // The receiver refuses the first attempts; the push itself does not wait for it.
    receiver.failing.store(true, Ordering::SeqCst);
    let amd64 = push_image_arch(&srv, "prod/app", None, "amd64").await;
    let arm64 = push_image_arch(&srv, "prod/app", None, "arm64").await;
    let index = index_json(
        OCI_INDEX,
        &[
            platform_entry(OCI_MANIFEST, &amd64.manifest, "amd64"),
            platform_entry(OCI_MANIFEST, &arm64.manifest, "arm64"),
        ],
    );
    let index_digest = push_manifest(&srv, "prod/app", "v1", OCI_INDEX, &index).await;
    push_image(&srv, "dev/app", Some("v1")).await;
    let deadline = Instant::now() + WAIT;
    while receiver.got().len() < 2 {
        assert!(Instant::now() < deadline, "no attempt reached the receiver; log:\n{}", srv.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.failing.store(false, Ordering::SeqCst);

    // Each image once, in push order: the children by digest, the index with its tag.
    let delivered = receiver.wait_for_deliveries(3).await;
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    // An image's artifact media type is its config's (as ECR reports it); an index has none.
    let expected = [
        (&amd64.digest, None, OCI_MANIFEST, Some(OCI_CONFIG)),
        (&arm64.digest, None, OCI_MANIFEST, Some(OCI_CONFIG)),
        (&index_digest, Some("v1"), OCI_INDEX, None),
    ];
    for (event, (digest, tag, media_type, artifact_type)) in delivered.iter().zip(expected) {
        assert_eq!(event["detail-type"], "ECR Image Action");
        assert_eq!(event["source"], "aws.ecr");
        assert_eq!(event["version"], "0");
        assert_eq!(event["account"], "000000000000");
        assert_eq!(event["region"], "us-east-1");
        assert_eq!(event["resources"], json!([]));
        assert!(event["time"].as_str().unwrap().ends_with('Z'), "{event}");
        let mut want = json!({"result": "SUCCESS", "repository-name": "prod/app", "image-digest": digest,
            "action-type": "PUSH", "manifest-media-type": media_type});
        if let Some(tag) = tag {
            want["image-tag"] = json!(tag);
        }
        if let Some(artifact_type) = artifact_type {
            want["artifact-media-type"] = json!(artifact_type);
        }
        assert_eq!(detail(event), want);
    }
    // Signed, and a retried event keeps its id.
    let got = receiver.got();
    assert!(got.iter().any(|r| r.answered == 500), "the receiver failed some attempts: {got:?}");
    for r in &got {
        assert_eq!(r.signature, hmac_hex(&r.body), "signature of {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.event_id, r.json()["id"].as_str().unwrap());
    }
    let first = &got[0];
    assert_eq!(first.answered, 500);
    assert!(
        got.iter().any(|r| r.answered == 200 && r.event_id == first.event_id && r.body == first.body),
        "the refused event was sent again unchanged"
    );
    assert!(delivered.iter().all(|e| e["detail"]["repository-name"] == "prod/app"), "dev/ is filtered out");

    // Delivery metrics: this process's successes and failures.
    let metric = |text: &str, series: &str| {
        text.lines().find_map(|l| l.strip_prefix(series)).map(|v| v.trim().parse::<f64>().unwrap())
    };
    let deliveries =
        |outcome: &str| format!(r#"berth_webhook_deliveries_total{{webhook="deploy",outcome="{outcome}"}}"#);
    // The receiver records the third delivery before its 200 reaches berth, which counts it then.
    let deadline = Instant::now() + WAIT;
    let mut text = send(srv.get("/metrics")).await.text();
    while metric(&text, &deliveries("success")) < Some(3.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = send(srv.get("/metrics")).await.text();
    }
    assert_eq!(metric(&text, &deliveries("success")), Some(3.0), "{text}");
    assert!(metric(&text, &deliveries("failure")) >= Some(1.0), "{text}");

    // A delete while the receiver fails, then a restart: delivered afterwards.
    receiver.failing.store(true, Ordering::SeqCst);
    let attempts = receiver.got().len();
    send(srv.delete(&format!("/v2/prod/app/manifests/{index_digest}"))).await.expect_status(202);
    let deadline = Instant::now() + WAIT;
    while receiver.got().len() == attempts {
        assert!(Instant::now() < deadline, "the delete was never attempted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.restart();
    receiver.failing.store(false, Ordering::SeqCst);
    let delivered = receiver.wait_for_deliveries(4).await;
    assert_eq!(delivered.len(), 4, "{delivered:?}");
    assert_eq!(
        detail(&delivered[3]),
        json!({"result": "SUCCESS", "repository-name": "prod/app", "image-digest": index_digest,
            "action-type": "DELETE", "image-tag": "v1", "manifest-media-type": OCI_INDEX})
    );

    // The backlogs: drained for the receiver that answers, growing for the one that is gone.
    let deadline = Instant::now() + WAIT;
    loop {
        let text = send(srv.get("/metrics")).await.text();
        let backlog = |name: &str| metric(&text, &format!(r#"berth_webhook_backlog_events{{webhook="{name}"}}"#));
        if backlog("deploy") == Some(0.0) && backlog("gone").is_some_and(|b| b >= 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "backlogs never settled:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_bad_webhook_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    for (text, reason) in [
        ("name = \"x\"\nurl = \"http://hooks.example.com/\"\nsecret = \"s\"", "loopback"),
        ("name = \"x\"\nurl = \"https://hooks.example.com/\"\nsecret = \"s\"\nactions = [\"PULL\"]", "PUSH or DELETE"),
        ("name = \"a b\"\nurl = \"https://hooks.example.com/\"\nsecret = \"s\"", "name"),
        ("name = \"x\"\nurl = \"https://hooks.example.com/\"\nsecret = \"\"", "secret"),
    ] {
        std::fs::write(&config, format!("[[webhooks]]\n{text}\n")).unwrap();
        let out = Launch::new().no_auth().args(&["--config", config.to_str().unwrap()]).start_refused(dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(reason), "{text}: {stderr}");
    }
}
