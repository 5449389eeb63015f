//! Image events to webhooks (ARCHITECTURE.md, "Webhooks").
//!
//! Each webhook the server's configuration names is a consumer of its own on the event log
//! (`webhook/<name>`), as each replication destination is: a receiver that is down or slow
//! holds up only itself, never a push, and servers sharing PostgreSQL never send one event twice
//! at once. Every push, tag change and image deletion (by the API or by lifecycle expiry) becomes
//! one `POST` of an EventBridge `ECR Image Action` event, so receivers written for ECR's
//! EventBridge rules work unchanged. The body is signed with the webhook's secret
//! (`X-Berth-Signature-256: sha256=<hex HMAC-SHA256 of the body>`).
//!
//! Delivery is at least once: an event is acknowledged only after a 2xx answer; anything else
//! (another status, a timeout, a refused connection) releases it, with the later events of its
//! repository so they stay in order, to be sent again after an exponential backoff. A restart
//! resumes from what was not acknowledged. The event's `id` is the same on every attempt, so a
//! receiver can drop repeats.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::events::{
    Claim, ClaimedEvent, Event, EventKind, EventLog, FOLLOWER_WAIT, awaits_follower, tagged_by_same_push,
};
use crate::{Registry, Result, UrlSigningKey, now_millis};

/// Events claimed at once per webhook, and how long a claim may take before another server
/// presumes this one dead and sends them again (receivers see at least once, never less).
const CLAIM_BATCH: usize = 32;
const LEASE: Duration = Duration::from_secs(300);
/// How often an idle webhook looks for new events.
const POLL: Duration = Duration::from_millis(500);
/// Retry backoff: doubles from the first to the cap.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-berth-signature-256";
/// The header carrying the event's id (also in the body), stable across retries.
pub const EVENT_ID_HEADER: &str = "x-berth-event-id";

/// ECR's `action-type` of an image event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageAction {
    Push,
    Delete,
}

impl ImageAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageAction::Push => "PUSH",
            ImageAction::Delete => "DELETE",
        }
    }

    pub fn parse(name: &str) -> Option<ImageAction> {
        match name {
            "PUSH" => Some(ImageAction::Push),
            "DELETE" => Some(ImageAction::Delete),
            _ => None,
        }
    }
}

/// One configured receiver.
#[derive(Clone)]
pub struct Webhook {
    /// Names its consumer, its metrics and its log lines (the URL may hold a token).
    pub name: String,
    pub url: reqwest::Url,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: String,
    /// Repository name prefixes; none = every repository.
    pub repository_prefixes: Vec<String>,
    /// The actions sent; none = all.
    pub actions: Vec<ImageAction>,
    /// For one whole delivery: connect, send, answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for Webhook {
    /// Without the secret or the URL (which may hold a token).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("repository_prefixes", &self.repository_prefixes)
            .field("actions", &self.actions)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// The event-log consumer that feeds this webhook.
    pub fn consumer(&self) -> String {
        format!("webhook/{}", self.name)
    }

    fn wants(&self, action: ImageAction, repository: &str) -> bool {
        (self.actions.is_empty() || self.actions.contains(&action))
            && (self.repository_prefixes.is_empty()
                || self.repository_prefixes.iter().any(|p| repository.starts_with(p)))
    }
}

/// A receiver's URL: `https://`, or `http://` on a loopback host (as for replication
/// destinations: an event names the registry's images and who pushed them).
pub fn parse_url(text: &str) -> std::result::Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("{text:?} names no host")),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("plain http:// is only allowed to a loopback host; use https://".to_owned()),
        other => Err(format!("the scheme {other:?} is not http or https")),
    }
}

/// The image action an event is, if any, with the tag it names.
fn image_action(event: &Event) -> Option<(ImageAction, Option<String>)> {
    match event.kind {
        EventKind::ManifestPushed => Some((ImageAction::Push, None)),
        EventKind::TagSet => Some((ImageAction::Push, event.tag.clone())),
        EventKind::TagDeleted => Some((ImageAction::Delete, event.tag.clone())),
        EventKind::ManifestDeleted => {
            // ECR names one of the image's tags, if it had any.
            let tags = event.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok());
            let first = tags.as_ref().and_then(|d| d["tags"].get(0)).and_then(Value::as_str).map(str::to_owned);
            Some((ImageAction::Delete, first))
        }
        EventKind::RepositoryCreated
        | EventKind::RepositoryDeleted
        | EventKind::SettingsChanged
        | EventKind::BlobDeleted
        | EventKind::ImageArchived
        | EventKind::ImageRestored => None,
    }
}

/// Whether `event` (a manifest's deletion) follows in `earlier` its last tag's removal by the
/// same request: a delete by that tag, already reported as one DELETE naming it. The two are
/// separate commits, so other requests' events may come between.
fn deleted_after_its_tag(event: &Event, earlier: &[ClaimedEvent]) -> bool {
    event.kind == EventKind::ManifestDeleted
        && earlier.iter().map(|c| &c.event).any(|e| {
            e.request_id == event.request_id
                && e.kind == EventKind::TagDeleted
                && e.digest == event.digest
                && e.repository == event.repository
        })
}

/// RFC 3339 UTC to the second, as EventBridge's `time`.
fn event_time(millis: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The EventBridge `ECR Image Action` event for `event`, with the id [`event_id`] made.
pub fn image_event(
    account: &str,
    region: &str,
    id: &str,
    event: &Event,
    action: ImageAction,
    tag: Option<&str>,
) -> Value {
    let mut detail = Map::new();
    detail.insert("result".into(), json!("SUCCESS"));
    detail.insert("repository-name".into(), json!(event.repository));
    if let Some(digest) = &event.digest {
        detail.insert("image-digest".into(), json!(digest.as_str()));
    }
    detail.insert("action-type".into(), json!(action.as_str()));
    if let Some(tag) = tag {
        detail.insert("image-tag".into(), json!(tag));
    }
    if let Some(media_type) = &event.media_type {
        detail.insert("manifest-media-type".into(), json!(media_type));
    }
    if let Some(artifact_type) = &event.artifact_type {
        detail.insert("artifact-media-type".into(), json!(artifact_type));
    }
    json!({
        "version": "0",
        "id": id,
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": account,
        "time": event_time(event.occurred_at),
        "region": region,
        "resources": [],
        "detail": detail,
    })
}

/// A UUID derived from the registry and the event's number: the same on every attempt, for
/// every webhook and from every server of the deployment, different across registries — keyed
/// by the installation's key, since fresh registries share an account and region by default.
pub fn event_id(key: &UrlSigningKey, account: &str, region: &str, id: i64) -> String {
    let hash = key.keyed_hash(&format!("berth-event:{account}:{region}:{id}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends events to webhooks in the background (see the module's documentation).
pub struct WebhookSender {
    registry: Arc<Registry>,
    log: EventLog,
    http: reqwest::Client,
}

impl WebhookSender {
    pub fn new(registry: Arc<Registry>, http: reqwest::Client) -> WebhookSender {
        let log = EventLog::new(registry.meta.clone());
        WebhookSender { registry, log, http }
    }

    /// Registers each webhook's consumer (so nothing committed from now on is missed), then
    /// delivers to each on a task of its own until `stop` is cancelled: then each gives back
    /// what it had claimed and ends.
    pub async fn start(
        self,
        webhooks: Vec<Webhook>,
        stop: CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>> {
        for webhook in &webhooks {
            self.log.register(&webhook.consumer()).await?;
        }
        let this = Arc::new(self);
        Ok(webhooks
            .into_iter()
            .map(|webhook| {
                let (this, stop) = (this.clone(), stop.clone());
                tokio::spawn(async move { this.serve(webhook, stop).await })
            })
            .collect())
    }

    async fn serve(&self, webhook: Webhook, stop: CancellationToken) {
        let consumer = webhook.consumer();
        while !stop.is_cancelled() {
            let outcome = self.round(&consumer, &webhook, &stop).await;
            self.record_backlog(&consumer, &webhook).await;
            let pause = match outcome {
                Ok(true) => continue,
                Ok(false) => POLL,
                Err(e) => {
                    tracing::warn!(webhook = webhook.name, error = %e, "webhook round failed");
                    MAX_RETRY
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn record_backlog(&self, consumer: &str, webhook: &Webhook) {
        match self.registry.meta.pending_events(consumer).await {
            Ok(pending) => {
                metrics::gauge!("berth_webhook_backlog_events", "webhook" => webhook.name.clone()).set(pending as f64)
            }
            Err(e) => tracing::debug!(webhook = webhook.name, error = %e, "counting a webhook's backlog failed"),
        }
    }

    /// Claims and handles one batch; false when there was nothing to do.
    async fn round(&self, consumer: &str, webhook: &Webhook, stop: &CancellationToken) -> Result<bool> {
        let claim = self.log.claim(consumer, CLAIM_BATCH, LEASE).await?;
        if claim.events.is_empty() {
            return Ok(false);
        }
        let (delivered, retry, backoff) = self.deliver(&claim, webhook, stop).await;
        if !delivered.is_empty() {
            self.log.ack(&claim, &delivered).await?;
        }
        if !retry.is_empty() {
            self.log.release(&claim, &retry, backoff).await?;
        }
        Ok(true)
    }

    /// Sends the claim's events in order; returns the ids done with, those to retry and when.
    async fn deliver(
        &self,
        claim: &Claim,
        webhook: &Webhook,
        stop: &CancellationToken,
    ) -> (Vec<i64>, Vec<i64>, Duration) {
        let (account, region) = (&self.registry.config.account_id, &self.registry.config.region);
        let mut delivered = Vec::new();
        let mut retry = Vec::new();
        let mut stopped: HashSet<&str> = HashSet::new();
        let mut backoff = Duration::ZERO;
        for (i, claimed) in claim.events.iter().enumerate() {
            let event = &claimed.event;
            let wanted = image_action(event).filter(|(action, _)| webhook.wants(*action, &event.repository));
            let Some((action, tag)) = wanted else {
                delivered.push(event.id);
                continue;
            };
            // A request's second event may not have been committed when this batch was claimed:
            // one that may have a follower waits for it once, so the pair still makes one event.
            if claimed.attempt == 1 && awaits_follower(event, &claim.events[i + 1..], now_millis()) {
                stopped.insert(&event.repository);
                retry.push(event.id);
                backoff = backoff.max(FOLLOWER_WAIT);
                continue;
            }
            if tagged_by_same_push(event, &claim.events[i + 1..]) || deleted_after_its_tag(event, &claim.events[..i]) {
                delivered.push(event.id);
                continue;
            }
            // A repository's later events wait behind its failed one, in order.
            if stopped.contains(event.repository.as_str()) || stop.is_cancelled() {
                retry.push(event.id);
                continue;
            }
            let id = event_id(&self.registry.config.url_signing_key, account, region, event.id);
            let body = image_event(account, region, &id, event, action, tag.as_deref()).to_string();
            let outcome = tokio::select! {
                outcome = self.post(webhook, &body, &id) => Some(outcome),
                _ = stop.cancelled() => None,
            };
            match outcome {
                Some(Ok(())) => {
                    metrics::counter!("berth_webhook_deliveries_total", "webhook" => webhook.name.clone(), "outcome" => "success").increment(1);
                    delivered.push(event.id);
                }
                Some(Err(reason)) => {
                    metrics::counter!("berth_webhook_deliveries_total", "webhook" => webhook.name.clone(), "outcome" => "failure").increment(1);
                    tracing::info!(webhook = webhook.name, repository = %event.repository, event = event.id,
                        attempt = claimed.attempt, %reason, "webhook delivery failed; will retry");
                    stopped.insert(&event.repository);
                    retry.push(event.id);
                    backoff = backoff.max(retry_delay(claimed.attempt));
                }
                // Stopping: given back at once, for the next server or start.
                None => retry.push(event.id),
            }
        }
        (delivered, retry, backoff)
    }

    /// One `POST`; anything but a 2xx answer within the webhook's timeout is a failure.
    async fn post(&self, webhook: &Webhook, body: &str, id: &str) -> Result<(), String> {
        let answer = self
            .http
            .post(webhook.url.clone())
            .timeout(webhook.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&webhook.secret, body.as_bytes()))
            .header(EVENT_ID_HEADER, id)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        if answer.status().is_success() { Ok(()) } else { Err(format!("answered {}", answer.status())) }
    }
}

/// An error with its causes ("error sending request: … connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The wait before attempt `attempt + 1`: 1 s, 2 s, 4 s, ... up to a minute.
fn retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::Digest;

    /// `event` as claimed for its first attempt.
    fn claimed(event: Event) -> ClaimedEvent {
        ClaimedEvent { event, attempt: 1 }
    }

    fn event(kind: EventKind, tag: Option<&str>, request: &str) -> Event {
        Event {
            id: 7,
            occurred_at: 1_573_869_274_000,
            kind,
            repository: "team/app".into(),
            digest: Some(Digest::sha256_of(b"m")),
            tag: tag.map(str::to_owned),
            previous_digest: None,
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            artifact_type: None,
            detail: None,
            actor: "arn".into(),
            access_key_id: None,
            request_id: request.into(),
            by_replication: false,
        }
    }

    #[test]
    fn events_have_ecr_image_action_shape() {
        let pushed = event(EventKind::TagSet, Some("latest"), "r1");
        let key = UrlSigningKey::random();
        let id = |account: &str| event_id(&key, account, "us-west-2", pushed.id);
        let body =
            image_event("123456789012", "us-west-2", &id("123456789012"), &pushed, ImageAction::Push, Some("latest"));
        assert_eq!(body["detail-type"], "ECR Image Action");
        assert_eq!(body["source"], "aws.ecr");
        assert_eq!(body["time"], "2019-11-16T01:54:34Z");
        assert_eq!(body["resources"], json!([]));
        assert_eq!(
            body["detail"],
            json!({"result": "SUCCESS", "repository-name": "team/app", "image-digest": Digest::sha256_of(b"m").as_str(),
                "action-type": "PUSH", "image-tag": "latest",
                "manifest-media-type": "application/vnd.oci.image.manifest.v1+json"})
        );
        assert_eq!(body["id"], id("123456789012"), "the same on every attempt");
        assert_ne!(body["id"], id("111111111111"));
        let elsewhere = event_id(&UrlSigningKey::random(), "123456789012", "us-west-2", pushed.id);
        assert_ne!(body["id"], elsewhere, "another installation with the same account and region");
    }

    #[test]
    fn a_push_by_tag_is_one_event() {
        let manifest = event(EventKind::ManifestPushed, None, "r1");
        assert!(tagged_by_same_push(&manifest, &[claimed(event(EventKind::TagSet, Some("v1"), "r1"))]));
        assert!(!tagged_by_same_push(&manifest, &[claimed(event(EventKind::TagSet, Some("v1"), "r2"))]));
        assert!(!tagged_by_same_push(&manifest, &[]), "a push by digest");
        let elsewhere = Event { repository: "team/other".into(), ..event(EventKind::ManifestPushed, None, "r9") };
        let between = [claimed(elsewhere), claimed(event(EventKind::TagSet, Some("v1"), "r1"))];
        assert!(tagged_by_same_push(&manifest, &between), "another repository's event in between");
        let same_repo = [claimed(event(EventKind::ManifestPushed, None, "r9")), between[1].clone()];
        assert!(!tagged_by_same_push(&manifest, &same_repo), "its repository's next event is another request's");
    }

    #[test]
    fn a_fresh_event_of_a_request_that_may_write_another_waits_for_it_once() {
        let pushed = event(EventKind::ManifestPushed, None, "r1");
        let now = pushed.occurred_at + 10;
        assert!(awaits_follower(&pushed, &[], now));
        assert!(!awaits_follower(&pushed, &[claimed(event(EventKind::TagSet, Some("v1"), "r1"))], now));
        assert!(!awaits_follower(&pushed, &[], pushed.occurred_at + 5_000), "an old event goes as it is");
        assert!(awaits_follower(&event(EventKind::TagDeleted, Some("v1"), "r1"), &[], now));
        assert!(!awaits_follower(&event(EventKind::TagSet, Some("v1"), "r1"), &[], now));
    }

    #[test]
    fn a_delete_by_the_last_tag_is_one_event() {
        let deleted = event(EventKind::ManifestDeleted, None, "r1");
        assert!(deleted_after_its_tag(&deleted, &[claimed(event(EventKind::TagDeleted, Some("v1"), "r1"))]));
        assert!(!deleted_after_its_tag(&deleted, &[claimed(event(EventKind::TagDeleted, Some("v1"), "r0"))]));
        assert!(!deleted_after_its_tag(&deleted, &[]), "a delete by digest");
        let between =
            [claimed(event(EventKind::TagDeleted, Some("v1"), "r1")), claimed(event(EventKind::TagSet, None, "r9"))];
        assert!(deleted_after_its_tag(&deleted, &between), "another request's event in between");
    }

    #[test]
    fn deletes_name_a_tag_the_image_had() {
        let mut deleted = event(EventKind::ManifestDeleted, None, "r");
        deleted.detail = Some(r#"{"tags":["v1","v2"]}"#.into());
        assert_eq!(image_action(&deleted), Some((ImageAction::Delete, Some("v1".into()))));
        assert_eq!(image_action(&event(EventKind::SettingsChanged, None, "r")), None);
    }

    #[test]
    fn urls_need_tls_off_loopback() {
        assert!(parse_url("https://hooks.example.com/berth?token=x").is_ok());
        assert!(parse_url("http://127.0.0.1:9000/").is_ok());
        assert!(parse_url("http://localhost/").is_ok());
        assert!(parse_url("http://hooks.example.com/").is_err());
        assert!(parse_url("ftp://127.0.0.1/").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
