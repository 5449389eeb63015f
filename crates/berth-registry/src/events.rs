//! The event log as the rest of the server sees it (ARCHITECTURE.md, "Event log"): every change
//! made through [`Registry`](crate::Registry) records its events in its own transaction, with the
//! caller and the request; consumers (webhooks, replication, audit) register once by name and
//! then claim, acknowledge or release batches through an [`EventLog`].

use std::sync::Arc;
use std::time::Duration;

use berth_iam::{Identity, RequestContext};
use berth_meta::{EventStore, Millis, Origin};

pub use berth_meta::{ClaimedEvent, ConsumerRecord, ConsumerRemoval, Event, EventKind};

use crate::{Result, now_millis};

/// Whether `event` (a manifest's arrival) is followed in `later` by a tag set on it by the same
/// request: a push by tag, which ECR reports as one PUSH naming the tag.
pub(crate) fn tagged_by_same_push(event: &Event, later: &[ClaimedEvent]) -> bool {
    // Other repositories' events may come between (ids are not handed out in commit order).
    event.kind == EventKind::ManifestPushed
        && later
            .iter()
            .map(|c| &c.event)
            .filter(|e| e.repository == event.repository)
            .take_while(|e| e.request_id == event.request_id)
            .any(|e| e.kind == EventKind::TagSet && e.digest == event.digest)
}

/// How long an event that may have a follower waits for it (see [`awaits_follower`]).
pub(crate) const FOLLOWER_WAIT: Duration = Duration::from_millis(200);

/// Whether `event` is a fresh manifest push or tag removal with nothing of its request after it
/// in this batch: its pair may come in the next claim (a push by tag writes both events in one
/// commit, and a batch may end between them) or not be committed yet (a delete by the last tag
/// writes its second event in a second commit). Webhooks fold each pair into one event.
pub(crate) fn awaits_follower(event: &Event, later: &[ClaimedEvent], now: i64) -> bool {
    matches!(event.kind, EventKind::ManifestPushed | EventKind::TagDeleted)
        && now.saturating_sub(event.occurred_at) < 1_000
        && !later.iter().any(|c| c.event.request_id == event.request_id)
}

/// Delivered events are kept this long (for audit reads) before maintenance prunes them.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Who made a change, as its events record it: the caller's IAM ARN in `account`, `anonymous`,
/// or `berth:<task>` for work the server does on its own.
pub(crate) fn origin(ctx: &RequestContext, account: &str) -> Origin {
    let actor = match &ctx.identity {
        Identity::Server { task } => format!("berth:{task}"),
        identity => identity.arn(account),
    };
    Origin {
        actor,
        access_key_id: ctx.identity.access_key_id().map(str::to_owned),
        request_id: ctx.request_id.clone(),
        by_replication: crate::replication::is_replication(ctx),
    }
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A batch of events leased to one claimer.
#[derive(Debug)]
pub struct Claim {
    pub consumer: String,
    /// Identifies this claim; acknowledgements after its lease ran out (and someone else
    /// claimed the events) count nothing.
    pub token: String,
    /// In event order; within a repository, in the order the changes committed.
    pub events: Vec<ClaimedEvent>,
}

impl Claim {
    pub fn ids(&self) -> Vec<i64> {
        self.events.iter().map(|e| e.event.id).collect()
    }
}

/// Claims and acknowledges events for named consumers. Any number of servers may claim for one
/// consumer at once: they never get the same event, and never two events of one repository.
#[derive(Clone)]
pub struct EventLog {
    store: Arc<dyn EventStore>,
}

impl EventLog {
    pub fn new(store: Arc<dyn EventStore>) -> EventLog {
        EventLog { store }
    }

    /// Registers `consumer`; from then on it gets every event committed after this. False if it
    /// was registered already.
    pub async fn register(&self, consumer: &str) -> Result<bool> {
        Ok(self.store.register_consumer(consumer, now_millis()).await?)
    }

    /// Drops `consumer` and what it has not acknowledged.
    pub async fn unregister(&self, consumer: &str) -> Result<bool> {
        Ok(self.store.unregister_consumer(consumer).await?)
    }

    /// Leases up to `limit` due events of `consumer` for `lease`; a claimer that does not
    /// acknowledge or release them in time is presumed dead and they go to the next claim.
    pub async fn claim(&self, consumer: &str, limit: usize, lease: Duration) -> Result<Claim> {
        let token = uuid::Uuid::new_v4().to_string();
        let now = now_millis();
        let events = self.store.claim_events(consumer, &token, limit, now, now.saturating_add(millis(lease))).await?;
        Ok(Claim { consumer: consumer.to_owned(), token, events })
    }

    /// Marks `ids` of the claim delivered; returns how many still were leased to it.
    pub async fn ack(&self, claim: &Claim, ids: &[i64]) -> Result<u64> {
        Ok(self.store.ack_events(&claim.consumer, &claim.token, ids).await?)
    }

    /// Gives `ids` of the claim back, due again after `retry_after`. To keep a repository's
    /// events in order, release a failed event together with the later ones of its repository.
    pub async fn release(&self, claim: &Claim, ids: &[i64], retry_after: Duration) -> Result<u64> {
        let retry_at = now_millis().saturating_add(millis(retry_after));
        Ok(self.store.release_events(&claim.consumer, &claim.token, ids, retry_at).await?)
    }

    /// Every registered consumer with its backlog (`berth outbox consumers`).
    pub async fn consumers(&self) -> Result<Vec<ConsumerRecord>> {
        Ok(self.store.list_consumers().await?)
    }

    /// Removes `consumer` and its backlog unless a server registered or claimed for it within
    /// `idle` (`berth outbox remove-consumer`). Servers claim for every consumer they have
    /// configured twice a second while idle; a delivery in progress (a slow webhook, a large
    /// blob replicated) claims nothing until it ends, so `idle` must outlast the longest one.
    pub async fn remove_idle(&self, consumer: &str, idle: Duration) -> Result<ConsumerRemoval> {
        let active_since = now_millis().saturating_sub(millis(idle));
        Ok(self.store.remove_idle_consumer(consumer, active_since).await?)
    }

    /// Deletes events older than `retention` that every consumer has acknowledged.
    pub async fn prune(&self, retention: Duration) -> Result<u64> {
        Ok(self.store.prune_events(now_millis().saturating_sub(millis(retention))).await?)
    }
}
