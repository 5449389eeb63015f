//! The bookkeeping online garbage collection needs (the protocol is in ARCHITECTURE.md,
//! "Garbage collection"; the tables are schema 2).
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

use std::collections::HashSet;

use async_trait::async_trait;
use berth_spec::{Digest, Manifest, RepositoryName};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, Type};

use crate::dialect::{Dialect, RowLock};
use crate::sql::parse_digest;
use crate::{GcStore, Millis, PutManifest, Result, SqlStore};

/// Links that no manifest of their repository needs, from `blob_links` under the alias `l`.
macro_rules! unreferenced {
    () => {
        "NOT EXISTS (SELECT 1 FROM manifest_blobs r WHERE r.repo = l.repo AND r.digest = l.digest)"
    };
}

#[derive(sqlx::FromRow)]
struct StoredManifest {
    repo: String,
    digest: String,
    media_type: String,
    content: Vec<u8>,
}

impl<DB> SqlStore<DB>
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
    /// Fills `manifest_blobs` for manifests stored before schema 2, in the migration's
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
            let blobs: Vec<&str> = blobs.iter().map(String::as_str).collect();
            Self::insert_manifest_blobs(&mut *conn, &m.repo, &m.digest, &blobs).await?;
        }
        Ok(())
    }

    /// One statement however many blobs: each statement is a round trip to the database.
    async fn insert_manifest_blobs(
        conn: &mut DB::Connection,
        repo: &str,
        manifest: &str,
        blobs: &[&str],
    ) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        // `WHERE true`: SQLite would read `ON CONFLICT` as a join constraint without it.
        let sql = format!(
            "INSERT INTO manifest_blobs (repo, manifest, digest) SELECT $1, $2, value FROM {} WHERE true \
             ON CONFLICT (repo, manifest, digest) DO NOTHING",
            DB::list(3)
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(repo)
            .bind(manifest)
            .bind(DB::text_list(blobs))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Adds the non-distributable layers of manifests stored before schema 16 to
    /// `manifest_blobs`, in the migration's transaction: the manifests are read one at a time
    /// (a large registry's do not fit in memory together), and only those listing such layers
    /// are written to, once the read is done.
    pub(crate) async fn backfill_foreign_layers(conn: &mut DB::Connection) -> Result<()> {
        let mut listing = Vec::new();
        {
            let mut manifests =
                sqlx::query_as::<_, StoredManifest>("SELECT repo, digest, media_type, content FROM manifests")
                    .fetch(&mut *conn);
            while let Some(m) = manifests.try_next().await? {
                // Every manifest parsed when it was pushed; one from before schema 2 that does
                // not now had every link of its repository recorded by that backfill.
                let Ok(parsed) = Manifest::parse(&m.content, Some(&m.media_type)) else { continue };
                let foreign: Vec<String> = parsed.foreign_layers().map(|d| d.digest.to_string()).collect();
                if !foreign.is_empty() {
                    listing.push((m.repo, m.digest, foreign));
                }
            }
        }
        for (repo, manifest, foreign) in &listing {
            let blobs: Vec<&str> = foreign.iter().map(String::as_str).collect();
            Self::insert_manifest_blobs(&mut *conn, repo, manifest, &blobs).await?;
        }
        Ok(())
    }

    /// With a new manifest, in its transaction.
    pub(crate) async fn record_manifest_blobs(conn: &mut DB::Connection, put: &PutManifest<'_>) -> Result<()> {
        let listed = put.blobs.iter().map(|(digest, _)| digest).chain(put.foreign_blobs);
        let blobs: Vec<&str> = listed.map(Digest::as_str).collect();
        Self::insert_manifest_blobs(conn, put.repo.as_str(), put.digest.as_str(), &blobs).await
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

    /// 1 if GC is deleting the blob's data, 0 if it is a candidate, `None` if it is neither.
    async fn candidate_state<'c>(db: impl Executor<'c, Database = DB>, digest: &Digest) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(CASE WHEN deleting_at IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM blob_candidates \
             WHERE digest = $1",
        )
        .bind(digest.as_str())
        .fetch_optional(db)
        .await?)
    }

    async fn is_linked_anywhere<'c>(db: impl Executor<'c, Database = DB>, digest: &str) -> Result<bool> {
        let found: Option<String> = sqlx::query_scalar("SELECT digest FROM blob_links WHERE digest = $1 LIMIT 1")
            .bind(digest)
            .fetch_optional(db)
            .await?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl<DB> GcStore for SqlStore<DB>
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
    async fn release_unreferenced_links(&self, before: Millis, now: Millis, dry_run: bool) -> Result<u64> {
        if dry_run {
            let n: i64 = sqlx::query_scalar(concat!(
                "SELECT COUNT(*) FROM blob_links l WHERE l.touched_at < $1 AND ",
                unreferenced!()
            ))
            .bind(before)
            .fetch_one(&self.readers)
            .await?;
            return Ok(n.unsigned_abs());
        }
        let repos: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT DISTINCT l.repo FROM blob_links l WHERE (l.touched_at IS NULL OR l.touched_at < $1) AND ",
            unreferenced!(),
            " ORDER BY l.repo"
        ))
        .bind(before)
        .fetch_all(&self.readers)
        .await?;
        let mut released = 0;
        // A transaction per repository keeps each hold on the writer short.
        for repo in repos {
            let mut tx = self.begin_write().await?;
            // As a push would: put_manifest checks links under this lock, so a link cannot go
            // between its check and its commit.
            if Self::lock_repository(&mut tx, &repo, RowLock::ChangeContent).await? {
                // Links released by manifest deletes start their grace period now.
                sqlx::query("UPDATE blob_links SET touched_at = $1 WHERE repo = $2 AND touched_at IS NULL")
                    .bind(now)
                    .bind(repo.as_str())
                    .execute(&mut *tx)
                    .await?;
                let gone: Vec<String> = sqlx::query_scalar(concat!(
                    "DELETE FROM blob_links AS l WHERE l.repo = $1 AND l.touched_at < $2 AND ",
                    unreferenced!(),
                    " RETURNING digest"
                ))
                .bind(repo.as_str())
                .bind(before)
                .fetch_all(&mut *tx)
                .await?;
                released += gone.len() as u64;
            }
            self.commit(tx).await?;
        }
        Ok(released)
    }

    async fn note_unlinked_blobs(&self, digests: &[Digest], now: Millis, dry_run: bool) -> Result<Vec<Digest>> {
        let all: Vec<&str> = digests.iter().map(Digest::as_str).collect();
        let sql = format!("SELECT DISTINCT digest FROM blob_links WHERE digest IN (SELECT value FROM {})", DB::list(1));
        let linked: HashSet<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(DB::text_list(&all))
            .fetch_all(&self.readers)
            .await?
            .into_iter()
            .collect();
        let unlinked: Vec<Digest> = digests.iter().filter(|d| !linked.contains(d.as_str())).cloned().collect();
        if !dry_run && !unlinked.is_empty() {
            // In digest order, so two servers noting overlapping batches cannot deadlock.
            let mut sorted: Vec<&str> = unlinked.iter().map(Digest::as_str).collect();
            sorted.sort_unstable();
            // `WHERE true`: SQLite would read `ON CONFLICT` as a join constraint without it.
            let sql = format!(
                "INSERT INTO blob_candidates (digest, since) SELECT value, $2 FROM {} WHERE true \
                 ON CONFLICT (digest) DO NOTHING",
                DB::list(1)
            );
            sqlx::query(AssertSqlSafe(sql)).bind(DB::text_list(&sorted)).bind(now).execute(&self.writer).await?;
            self.durable().await?;
        }
        Ok(unlinked)
    }

    async fn due_blob_candidates(&self, before: Millis, stalled_before: Millis) -> Result<Vec<Digest>> {
        let digests: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM blob_candidates WHERE (deleting_at IS NULL AND since < $1) OR deleting_at < $2 \
             ORDER BY digest",
        )
        .bind(before)
        .bind(stalled_before)
        .fetch_all(&self.readers)
        .await?;
        digests.iter().map(|d| parse_digest(d)).collect()
    }

    async fn begin_blob_deletion(
        &self,
        digest: &Digest,
        before: Millis,
        stalled_before: Millis,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // The row lock orders this against a push's cancel_blob_collection on any server.
        let due = format!(
            "SELECT digest FROM blob_candidates WHERE digest = $1 \
             AND ((deleting_at IS NULL AND since < $2) OR deleting_at < $3){}",
            DB::row_lock(RowLock::Exclusive)
        );
        let due: Option<String> = sqlx::query_scalar(AssertSqlSafe(due))
            .bind(digest.as_str())
            .bind(before)
            .bind(stalled_before)
            .fetch_optional(&mut *tx)
            .await?;
        if due.is_none() {
            return Ok(false);
        }
        // A link that appeared meanwhile ends the candidacy instead.
        let claimed = !Self::is_linked_anywhere(&mut *tx, digest.as_str()).await?;
        if claimed {
            sqlx::query("UPDATE blob_candidates SET deleting_at = $1 WHERE digest = $2")
                .bind(now)
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("DELETE FROM blob_candidates WHERE digest = $1")
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        Ok(claimed)
    }

    async fn finish_blob_deletion(&self, digest: &Digest, started: Millis) -> Result<()> {
        sqlx::query("DELETE FROM blob_candidates WHERE digest = $1 AND deleting_at = $2")
            .bind(digest.as_str())
            .bind(started)
            .execute(&self.writer)
            .await?;
        self.durable().await?;
        Ok(())
    }

    async fn cancel_blob_collection(&self, digest: &Digest) -> Result<bool> {
        // Almost every blob a push links is no candidate: a read settles it without the writer.
        // A candidate noted after this read is protected by its grace period.
        if Self::candidate_state(&self.readers, digest).await?.is_none() {
            return Ok(true);
        }
        let mut tx = self.begin_write().await?;
        // Drops the candidate unless it is being deleted (then the row lock makes this wait for
        // the deleting transaction).
        sqlx::query("DELETE FROM blob_candidates WHERE digest = $1 AND deleting_at IS NULL")
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        let cancelled = Self::candidate_state(&mut *tx, digest).await?.is_none();
        self.commit(tx).await?;
        Ok(cancelled)
    }
}
