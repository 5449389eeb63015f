//! The event log: a durable outbox written in the transaction of each change, and its consumers.
//!
//! Every store method that changes a repository, its settings, images, tags or blob links
//! inserts its `events` rows before it commits, so an acknowledged change always has its events
//! and a failed or rolled-back one has none. A trigger fans each event out to one
//! `event_deliveries` row per registered consumer in the same transaction.
//!
//! Why deliveries rather than a cursor per consumer: PostgreSQL hands out identity values when
//! rows are inserted but transactions commit in any order, so "every id above my cursor" can skip
//! an event that commits late. A delivery row exists until its consumer acknowledges it.
//!
//! Claims: a consumer's deliveries are claimed repository by repository, from the oldest
//! undelivered one of each (its head) on; the head is locked `FOR UPDATE SKIP LOCKED` (concurrent
//! claimers pass over it and so over its whole repository) and leased until a time. A repository
//! whose head is leased or waiting for a retry is skipped, so a consumer never has two claimers on
//! one repository and sees each repository's events in commit order (its writers hold the
//! repository's row lock, so they commit in id order). A lease that runs out (its claimer crashed)
//! makes the head claimable again; the acknowledgement of a stale claimer then finds its token
//! gone and counts nothing.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, Type};

use crate::dialect::{Dialect, RowLock};
use crate::sql::{limit_param, parse_digest};
use crate::{EventStore, MetaError, Millis, Origin, Result, SqlStore};

/// What happened; stored as the names [`EventKind::as_str`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Created explicitly or by a push (create-on-push).
    RepositoryCreated,
    RepositoryDeleted,
    /// The settings document changed; `detail` is `{"changed":[<the documents>]}`.
    SettingsChanged,
    /// A manifest that was not in the repository was stored (`digest`, `media_type`,
    /// `artifact_type`).
    ManifestPushed,
    /// A manifest went (API delete, lifecycle expiry); `detail` is `{"tags":[<its tags>]}`.
    ManifestDeleted,
    /// A tag was created or moved (`previous_digest`: where it pointed before).
    TagSet,
    /// A tag was removed by itself; `digest` is where it pointed.
    TagDeleted,
    /// A blob's link was removed from the repository.
    BlobDeleted,
    /// An image moved to the archive storage class (`digest`, `media_type`): it no longer pulls.
    ImageArchived,
    /// An archived image was restored (by `UpdateImageStorageClass` or a push of it): it pulls again.
    ImageRestored,
}

const KINDS: [(EventKind, &str); 10] = [
    (EventKind::RepositoryCreated, "repository.created"),
    (EventKind::RepositoryDeleted, "repository.deleted"),
    (EventKind::SettingsChanged, "repository.settings_changed"),
    (EventKind::ManifestPushed, "manifest.pushed"),
    (EventKind::ManifestDeleted, "manifest.deleted"),
    (EventKind::TagSet, "tag.set"),
    (EventKind::TagDeleted, "tag.deleted"),
    (EventKind::BlobDeleted, "blob.deleted"),
    (EventKind::ImageArchived, "image.archived"),
    (EventKind::ImageRestored, "image.restored"),
];

impl EventKind {
    pub fn as_str(self) -> &'static str {
        KINDS.iter().find(|(kind, _)| *kind == self).map(|(_, name)| *name).expect("every kind has a name")
    }

    fn parse(name: &str) -> Result<EventKind> {
        KINDS
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(kind, _)| *kind)
            .ok_or_else(|| MetaError::Backend(format!("stored event kind {name:?} is unknown")))
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    /// The database's clock when the change was made.
    pub occurred_at: Millis,
    pub kind: EventKind,
    pub repository: String,
    pub digest: Option<berth_spec::Digest>,
    pub tag: Option<String>,
    pub previous_digest: Option<berth_spec::Digest>,
    pub media_type: Option<String>,
    pub artifact_type: Option<String>,
    /// A JSON object whose contents [`EventKind`] describes.
    pub detail: Option<String>,
    pub actor: String,
    pub access_key_id: Option<String>,
    pub request_id: String,
    /// See [`crate::Origin::by_replication`].
    pub by_replication: bool,
}

/// A registered consumer of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub name: String,
    pub registered_at: Millis,
    /// The last claim any server made for it, recorded at most every [`CLAIM_RECORD_INTERVAL`].
    pub last_claimed_at: Option<Millis>,
    /// Events it has not acknowledged yet; they (and older ones) are kept for it.
    pub pending: u64,
}

/// What `remove_idle_consumer` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerRemoval {
    Removed,
    /// No such consumer.
    Unknown,
    /// Registered or claimed for at `last_active`, after the caller's `active_since`: kept.
    Active {
        last_active: Millis,
    },
}

/// How stale a consumer's `last_claimed_at` may get while servers claim for it: claims record
/// the time only when it is older than this, so idle polling costs a write per this interval.
pub const CLAIM_RECORD_INTERVAL: Millis = 5_000;

/// An event leased to a claimer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    pub event: Event,
    /// 1 on the first claim, then one more for each claim after a release or an expired lease.
    pub attempt: u32,
}

/// Rows per `INSERT INTO events`: 12 parameters each stays far below SQLite's limit.
const EVENTS_PER_STATEMENT: usize = 500;

/// An event as a store method records it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEvent<'a> {
    pub kind: EventKind,
    pub repo: &'a str,
    pub digest: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub previous_digest: Option<&'a str>,
    pub media_type: Option<&'a str>,
    pub artifact_type: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    pub(crate) fn new(kind: EventKind, repo: &'a str) -> Self {
        NewEvent {
            kind,
            repo,
            digest: None,
            tag: None,
            previous_digest: None,
            media_type: None,
            artifact_type: None,
            detail: None,
        }
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    occurred_at: i64,
    kind: String,
    repo: String,
    digest: Option<String>,
    tag: Option<String>,
    previous_digest: Option<String>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    detail: Option<String>,
    actor: String,
    access_key_id: Option<String>,
    request_id: String,
    by_replication: i64,
    attempts: i64,
}

impl TryFrom<EventRow> for ClaimedEvent {
    type Error = MetaError;

    fn try_from(r: EventRow) -> Result<Self> {
        let event = Event {
            id: r.id,
            occurred_at: r.occurred_at,
            kind: EventKind::parse(&r.kind)?,
            repository: r.repo,
            digest: r.digest.as_deref().map(parse_digest).transpose()?,
            tag: r.tag,
            previous_digest: r.previous_digest.as_deref().map(parse_digest).transpose()?,
            media_type: r.media_type,
            artifact_type: r.artifact_type,
            detail: r.detail,
            actor: r.actor,
            access_key_id: r.access_key_id,
            request_id: r.request_id,
            by_replication: r.by_replication != 0,
        };
        Ok(ClaimedEvent { event, attempt: u32::try_from(r.attempts).unwrap_or(u32::MAX) })
    }
}

/// A delivery the claim looked at: event, repository, when it is due.
type DeliveryRow = (i64, String, i64);

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    /// Appends an event, in the transaction of the change it records.
    pub(crate) async fn record_event(conn: &mut DB::Connection, origin: &Origin, event: NewEvent<'_>) -> Result<()> {
        Self::record_events(conn, origin, &[event]).await
    }

    /// Appends events in their order, a few hundred per statement (each statement is a round
    /// trip; SQLite allows 32,766 parameters in one).
    pub(crate) async fn record_events(
        conn: &mut DB::Connection,
        origin: &Origin,
        events: &[NewEvent<'_>],
    ) -> Result<()> {
        for batch in events.chunks(EVENTS_PER_STATEMENT) {
            Self::insert_events(&mut *conn, origin, batch).await?;
        }
        Ok(())
    }

    async fn insert_events(conn: &mut DB::Connection, origin: &Origin, events: &[NewEvent<'_>]) -> Result<()> {
        const COLUMNS: usize = 12;
        let rows: Vec<String> = (0..events.len())
            .map(|row| {
                let params: Vec<String> = (1..=COLUMNS).map(|column| format!("${}", row * COLUMNS + column)).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (kind, repo, digest, tag, previous_digest, media_type, artifact_type, detail, \
             actor, access_key_id, request_id, by_replication) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for event in events {
            query = query
                .bind(event.kind.as_str())
                .bind(event.repo)
                .bind(event.digest)
                .bind(event.tag)
                .bind(event.previous_digest)
                .bind(event.media_type)
                .bind(event.artifact_type)
                .bind(event.detail)
                .bind(origin.actor.as_str())
                .bind(origin.access_key_id.as_deref())
                .bind(origin.request_id.as_str())
                .bind(i64::from(origin.by_replication));
        }
        query.execute(conn).await?;
        Ok(())
    }
}

#[async_trait]
impl<DB> EventStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    async fn register_consumer(&self, name: &str, now: Millis) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if let Some(lock) = DB::EVENT_LOG_LOCK {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO event_consumers (name, registered_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING \
             RETURNING name",
        )
        .bind(name)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        self.commit(tx).await?;
        Ok(inserted.is_some())
    }

    async fn unregister_consumer(&self, name: &str) -> Result<bool> {
        // Cascades to its deliveries.
        let deleted: Option<String> = sqlx::query_scalar("DELETE FROM event_consumers WHERE name = $1 RETURNING name")
            .bind(name)
            .fetch_optional(&self.writer)
            .await?;
        self.durable().await?;
        Ok(deleted.is_some())
    }

    async fn claim_events(
        &self,
        consumer: &str,
        token: &str,
        limit: usize,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Vec<ClaimedEvent>> {
        let mut tx = self.begin_write().await?;
        // Servers still claiming for a consumer are what keeps it from removal.
        sqlx::query(
            "UPDATE event_consumers SET last_claimed_at = $2 WHERE name = $1 \
             AND (last_claimed_at IS NULL OR last_claimed_at <= $3)",
        )
        .bind(consumer)
        .bind(now)
        .bind(now.saturating_sub(CLAIM_RECORD_INTERVAL))
        .execute(&mut *tx)
        .await?;
        // Heads: each repository's oldest undelivered event, if it is due and not leased.
        let heads = format!(
            "SELECT d.repo FROM event_deliveries d WHERE d.consumer = $1 AND d.available_at <= $2 \
             AND (d.leased_until IS NULL OR d.leased_until <= $2) AND NOT EXISTS (SELECT 1 FROM event_deliveries p \
             WHERE p.consumer = d.consumer AND p.repo = d.repo AND p.event_id < d.event_id) \
             ORDER BY d.event_id LIMIT $3{}",
            DB::row_lock(RowLock::ExclusiveSkipLocked)
        );
        let repos: Vec<String> = sqlx::query_scalar(AssertSqlSafe(heads))
            .bind(consumer)
            .bind(now)
            .bind(limit_param(limit))
            .fetch_all(&mut *tx)
            .await?;
        if repos.is_empty() {
            self.commit(tx).await?;
            return Ok(Vec::new());
        }
        // Each claimed repository's run of due deliveries from its head on, oldest first.
        let repo_list: Vec<&str> = repos.iter().map(String::as_str).collect();
        let pending = format!(
            "SELECT event_id, repo, available_at FROM event_deliveries WHERE consumer = $1 \
             AND repo IN (SELECT value FROM {}) ORDER BY event_id LIMIT $3",
            DB::list(2)
        );
        let pending: Vec<DeliveryRow> = sqlx::query_as(AssertSqlSafe(pending))
            .bind(consumer)
            .bind(DB::text_list(&repo_list))
            .bind(limit_param(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut stopped: HashSet<&str> = HashSet::new();
        let mut ids = Vec::new();
        for (id, repo, available_at) in &pending {
            if available_at > &now {
                // A later event must not overtake one waiting for its retry.
                stopped.insert(repo);
            } else if !stopped.contains(repo.as_str()) {
                ids.push(*id);
            }
        }
        let lease = format!(
            "UPDATE event_deliveries SET lease_token = $2, leased_until = $3, attempts = attempts + 1 \
             WHERE consumer = $1 AND event_id IN (SELECT value FROM {})",
            DB::list(4)
        );
        sqlx::query(AssertSqlSafe(lease))
            .bind(consumer)
            .bind(token)
            .bind(lease_until)
            .bind(DB::id_list(&ids))
            .execute(&mut *tx)
            .await?;
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT e.id, e.occurred_at, e.kind, e.repo, e.digest, e.tag, e.previous_digest, e.media_type, \
             e.artifact_type, e.detail, e.actor, e.access_key_id, e.request_id, e.by_replication, d.attempts \
             FROM event_deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.consumer = $1 AND d.lease_token = $2 ORDER BY e.id",
        )
        .bind(consumer)
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        self.commit(tx).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn ack_events(&self, consumer: &str, token: &str, ids: &[i64]) -> Result<u64> {
        let sql = format!(
            "DELETE FROM event_deliveries WHERE consumer = $1 AND lease_token = $2 \
             AND event_id IN (SELECT value FROM {}) RETURNING event_id",
            DB::list(3)
        );
        let acked: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(consumer)
            .bind(token)
            .bind(DB::id_list(ids))
            .fetch_all(&self.writer)
            .await?;
        self.durable().await?;
        Ok(acked.len() as u64)
    }

    async fn release_events(&self, consumer: &str, token: &str, ids: &[i64], retry_at: Millis) -> Result<u64> {
        let sql = format!(
            "UPDATE event_deliveries SET lease_token = NULL, leased_until = NULL, available_at = $3 \
             WHERE consumer = $1 AND lease_token = $2 AND event_id IN (SELECT value FROM {}) RETURNING event_id",
            DB::list(4)
        );
        let released: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(consumer)
            .bind(token)
            .bind(retry_at)
            .bind(DB::id_list(ids))
            .fetch_all(&self.writer)
            .await?;
        self.durable().await?;
        Ok(released.len() as u64)
    }

    async fn prune_events(&self, before: Millis) -> Result<u64> {
        let pruned: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM events WHERE occurred_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_id = events.id) RETURNING id",
        )
        .bind(before)
        .fetch_all(&self.writer)
        .await?;
        self.durable().await?;
        Ok(pruned.len() as u64)
    }

    async fn list_consumers(&self) -> Result<Vec<ConsumerRecord>> {
        let rows: Vec<(String, i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT c.name, c.registered_at, c.last_claimed_at, \
             (SELECT COUNT(*) FROM event_deliveries d WHERE d.consumer = c.name) \
             FROM event_consumers c ORDER BY c.name",
        )
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, registered_at, last_claimed_at, pending)| ConsumerRecord {
                name,
                registered_at,
                last_claimed_at,
                pending: u64::try_from(pending).unwrap_or(0),
            })
            .collect())
    }

    async fn remove_idle_consumer(&self, name: &str, active_since: Millis) -> Result<ConsumerRemoval> {
        // Cascades to its deliveries, which lets maintenance prune the events they held back.
        let removed: Option<String> = sqlx::query_scalar(
            "DELETE FROM event_consumers WHERE name = $1 AND registered_at < $2 \
             AND (last_claimed_at IS NULL OR last_claimed_at < $2) RETURNING name",
        )
        .bind(name)
        .bind(active_since)
        .fetch_optional(&self.writer)
        .await?;
        self.durable().await?;
        if removed.is_some() {
            return Ok(ConsumerRemoval::Removed);
        }
        let kept: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT registered_at, last_claimed_at FROM event_consumers WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.readers)
                .await?;
        Ok(match kept {
            Some((registered_at, claimed)) => {
                ConsumerRemoval::Active { last_active: claimed.map_or(registered_at, |c| c.max(registered_at)) }
            }
            None => ConsumerRemoval::Unknown,
        })
    }

    async fn awaits_delivery(&self, consumer: &str, repo: &str, digest: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT d.event_id FROM event_deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.consumer = $1 AND d.repo = $2 AND e.digest = $3 AND e.by_replication = 0 \
             AND e.kind IN ('manifest.pushed', 'tag.set', 'image.restored') LIMIT 1",
        )
        .bind(consumer)
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.readers)
        .await?;
        Ok(found.is_some())
    }

    async fn pending_events(&self, consumer: &str) -> Result<u64> {
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_deliveries WHERE consumer = $1")
            .bind(consumer)
            .fetch_one(&self.readers)
            .await?;
        Ok(u64::try_from(pending).unwrap_or(0))
    }
}
