//! The bookkeeping online garbage collection needs, shared by both backends (the protocol is in
//! ARCHITECTURE.md, "Garbage collection").
//!
//! - `manifest_blobs` says which blobs each manifest needs, so a link no manifest of its
//!   repository references can be found. Written with the manifest, gone with it (cascade).
//! - `blob_links.touched_at` is when a push last relied on a link (link, re-link); a manifest
//!   delete sets it to NULL ("released, not yet seen by GC") and GC stamps those with its own
//!   clock, so links are released only a grace period after the last use.
//! - `blob_candidates` holds blobs found in storage with no link: `since` is when GC first saw
//!   them unlinked, `deleting_at` when a GC began deleting their data. A push about to link a
//!   blob removes its row first (or waits while it is being deleted), which is what keeps GC
//!   from deleting data a push is about to reference.

use berth_spec::{Digest, Manifest, RepositoryName};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use crate::sql::{Statements, parse_digest};
use crate::{Millis, PutManifest, Result};

/// Schema version 2: the GC tables. Fresh databases get version 1 from the schema script and
/// then run this, so there is one path. `touched_at` starts as the link's creation time.
pub(crate) const SQLITE_V2: &str = r#"
ALTER TABLE blob_links ADD COLUMN touched_at INTEGER;
UPDATE blob_links SET touched_at = created_at;
CREATE TABLE manifest_blobs (
    repo     TEXT NOT NULL,
    manifest TEXT NOT NULL,
    digest   TEXT NOT NULL,
    PRIMARY KEY (repo, manifest, digest),
    FOREIGN KEY (repo, manifest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_blobs_by_digest ON manifest_blobs (repo, digest);
CREATE TABLE blob_candidates (
    digest      TEXT PRIMARY KEY,
    since       INTEGER NOT NULL,
    deleting_at INTEGER
);
UPDATE store_meta SET value = 2 WHERE key = 'schema_version';
"#;

pub(crate) const POSTGRES_V2: &str = r#"
ALTER TABLE blob_links ADD COLUMN touched_at BIGINT;
UPDATE blob_links SET touched_at = created_at;
CREATE TABLE manifest_blobs (
    repo     TEXT COLLATE "C" NOT NULL,
    manifest TEXT COLLATE "C" NOT NULL,
    digest   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, manifest, digest),
    FOREIGN KEY (repo, manifest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_blobs_by_digest ON manifest_blobs (repo, digest);
CREATE TABLE blob_candidates (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    since       BIGINT NOT NULL,
    deleting_at BIGINT
);
UPDATE store_meta SET value = 2 WHERE key = 'schema_version';
"#;

/// Links that no manifest of their repository needs, from `blob_links` under the alias `l`.
macro_rules! unreferenced {
    () => {
        "NOT EXISTS (SELECT 1 FROM manifest_blobs r WHERE r.repo = l.repo AND r.digest = l.digest)"
    };
}

#[derive(sqlx::FromRow)]
pub(crate) struct StoredManifest {
    repo: String,
    digest: String,
    media_type: String,
    content: Vec<u8>,
}

/// Only the migration reads whole stored manifests.
impl<DB: Database> Statements<DB>
where
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    StoredManifest: for<'r> FromRow<'r, DB::Row>,
{
    /// Fills `manifest_blobs` for manifests stored before version 2, in the migration's
    /// transaction. Every stored manifest parsed when it was pushed; should one not parse now,
    /// every link of its repository counts as referenced by it, so nothing it needs is collected.
    pub(crate) async fn backfill_manifest_blobs(conn: &mut DB::Connection) -> Result<()> {
        let manifests: Vec<StoredManifest> =
            sqlx::query_as("SELECT repo, digest, media_type, content FROM manifests").fetch_all(&mut *conn).await?;
        for m in manifests {
            let blobs: Vec<String> = match Manifest::parse(&m.content, Some(&m.media_type)) {
                Ok(parsed) => parsed.required_blobs().map(|d| d.digest.to_string()).collect(),
                Err(e) => {
                    tracing::warn!(repo = m.repo, manifest = m.digest, error = %e,
                        "stored manifest does not parse; keeping every blob of its repository");
                    sqlx::query_scalar("SELECT digest FROM blob_links WHERE repo = $1")
                        .bind(m.repo.as_str())
                        .fetch_all(&mut *conn)
                        .await?
                }
            };
            for blob in blobs {
                Self::insert_manifest_blob(&mut *conn, &m.repo, &m.digest, &blob).await?;
            }
        }
        Ok(())
    }
}

/// A subset of the main `impl Statements` bounds in `sql.rs`, so its statements can call these.
impl<DB: Database> Statements<DB>
where
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    pub(crate) async fn insert_manifest_blob(
        conn: &mut DB::Connection,
        repo: &str,
        manifest: &str,
        blob: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO manifest_blobs (repo, manifest, digest) VALUES ($1, $2, $3) \
             ON CONFLICT (repo, manifest, digest) DO NOTHING",
        )
        .bind(repo)
        .bind(manifest)
        .bind(blob)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// With a new manifest, in its transaction.
    pub(crate) async fn record_manifest_blobs(conn: &mut DB::Connection, put: &PutManifest<'_>) -> Result<()> {
        for (blob, _) in put.blobs {
            Self::insert_manifest_blob(&mut *conn, put.repo.as_str(), put.digest.as_str(), blob.as_str()).await?;
        }
        Ok(())
    }

    /// Before a manifest is deleted, in its transaction: its blobs' links restart their grace
    /// period when GC next sees them, so deleting and re-pushing an image cannot lose its layers.
    pub(crate) async fn release_manifest_blobs(
        conn: &mut DB::Connection,
        repo: &RepositoryName,
        manifest: &Digest,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE blob_links SET touched_at = NULL WHERE repo = $1 AND digest IN \
             (SELECT digest FROM manifest_blobs WHERE repo = $1 AND manifest = $2)",
        )
        .bind(repo.as_str())
        .bind(manifest.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Repositories holding links a GC pass would stamp or release.
    pub(crate) async fn repositories_with_releasable_links<'c>(
        db: impl Executor<'c, Database = DB>,
        before: Millis,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(concat!(
            "SELECT DISTINCT l.repo FROM blob_links l WHERE (l.touched_at IS NULL OR l.touched_at < $1) AND ",
            unreferenced!(),
            " ORDER BY l.repo"
        ))
        .bind(before)
        .fetch_all(db)
        .await?)
    }

    pub(crate) async fn count_releasable_links<'c>(
        db: impl Executor<'c, Database = DB>,
        before: Millis,
    ) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM blob_links l WHERE l.touched_at < $1 AND ",
            unreferenced!()
        ))
        .bind(before)
        .fetch_one(db)
        .await?;
        Ok(n.unsigned_abs())
    }

    /// In a transaction that keeps the repository's manifests from changing: stamps links
    /// released by manifest deletes with `now`, then removes unreferenced links untouched since
    /// `before`. Returns how many it removed.
    pub(crate) async fn release_links(
        conn: &mut DB::Connection,
        repo: &str,
        before: Millis,
        now: Millis,
    ) -> Result<u64> {
        sqlx::query("UPDATE blob_links SET touched_at = $1 WHERE repo = $2 AND touched_at IS NULL")
            .bind(now)
            .bind(repo)
            .execute(&mut *conn)
            .await?;
        let released: Vec<String> = sqlx::query_scalar(concat!(
            "DELETE FROM blob_links AS l WHERE l.repo = $1 AND l.touched_at < $2 AND ",
            unreferenced!(),
            " RETURNING digest"
        ))
        .bind(repo)
        .bind(before)
        .fetch_all(&mut *conn)
        .await?;
        Ok(released.len() as u64)
    }

    pub(crate) async fn is_linked_anywhere<'c>(db: impl Executor<'c, Database = DB>, digest: &str) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM blob_links WHERE digest = $1 LIMIT 1")
                .bind(digest)
                .fetch_optional(db)
                .await?;
        Ok(found.is_some())
    }

    pub(crate) async fn note_candidate<'c>(
        db: impl Executor<'c, Database = DB>,
        digest: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query("INSERT INTO blob_candidates (digest, since) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING")
            .bind(digest)
            .bind(now)
            .execute(db)
            .await?;
        Ok(())
    }

    /// Candidates whose grace period is over, and deletions that stalled (their GC died).
    pub(crate) async fn due_candidates<'c>(
        db: impl Executor<'c, Database = DB>,
        before: Millis,
        stalled_before: Millis,
    ) -> Result<Vec<Digest>> {
        let digests: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM blob_candidates WHERE (deleting_at IS NULL AND since < $1) OR deleting_at < $2 \
             ORDER BY digest",
        )
        .bind(before)
        .bind(stalled_before)
        .fetch_all(db)
        .await?;
        digests.iter().map(|d| parse_digest(d)).collect()
    }

    /// The part of `begin_blob_deletion` after the backend locked the candidate row (`due` says
    /// whether it is due): marks it as being deleted, unless a link appeared, which ends its
    /// candidacy.
    pub(crate) async fn claim_candidate(conn: &mut DB::Connection, digest: &Digest, now: Millis) -> Result<bool> {
        if Self::is_linked_anywhere(&mut *conn, digest.as_str()).await? {
            sqlx::query("DELETE FROM blob_candidates WHERE digest = $1")
                .bind(digest.as_str())
                .execute(&mut *conn)
                .await?;
            return Ok(false);
        }
        sqlx::query("UPDATE blob_candidates SET deleting_at = $1 WHERE digest = $2")
            .bind(now)
            .bind(digest.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(true)
    }

    pub(crate) async fn finish_blob_deletion<'c>(
        db: impl Executor<'c, Database = DB>,
        digest: &Digest,
        started: Millis,
    ) -> Result<()> {
        sqlx::query("DELETE FROM blob_candidates WHERE digest = $1 AND deleting_at = $2")
            .bind(digest.as_str())
            .bind(started)
            .execute(db)
            .await?;
        Ok(())
    }

    /// 1 if GC is deleting the blob's data, 0 if it is a candidate, `None` if it is neither.
    pub(crate) async fn candidate_state<'c>(
        db: impl Executor<'c, Database = DB>,
        digest: &Digest,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(CASE WHEN deleting_at IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM blob_candidates \
             WHERE digest = $1",
        )
        .bind(digest.as_str())
        .fetch_optional(db)
        .await?)
    }

    /// The write half of `cancel_blob_collection`: drops the candidate unless it is being
    /// deleted (then a row lock makes this wait for the deleting transaction). True if the blob
    /// is no candidate afterwards.
    pub(crate) async fn cancel_candidate(conn: &mut DB::Connection, digest: &Digest) -> Result<bool> {
        sqlx::query("DELETE FROM blob_candidates WHERE digest = $1 AND deleting_at IS NULL")
            .bind(digest.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(Self::candidate_state(&mut *conn, digest).await?.is_none())
    }
}
