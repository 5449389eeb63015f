//! The embedded backend: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so transactions in this process queue in
//! the pool instead of fighting over SQLite's lock; each one starts with `BEGIN IMMEDIATE` so a
//! second process on the same file (the `berth user` CLI next to a server) waits in
//! `busy_timeout` instead of failing on a read→write lock upgrade. Reads use their own pool and,
//! thanks to WAL, never wait for the writer.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use berth_spec::{Digest, Reference, RepositoryName, Tag};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use crate::sql::{
    ManifestRow, RepositoryRow, UploadRow, UserRow, check_schema_version, checked_tag_move, image_size, limit_param,
    parse_digest, select_manifest, size_param, stored_size,
};
use crate::{
    ImageRecord, ManifestRecord, MetaError, MetadataStore, Millis, PutManifest, PutOutcome, Repository, Result,
    UploadSession, UserRecord,
};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const READERS: u32 = 4;

/// Idempotent, so it runs at every open. Tags and child edges hang off manifests, and everything
/// off repositories, with `ON DELETE CASCADE`: deleting a manifest drops its tags and its own
/// child edges, deleting a repository drops all it holds. The child side of an edge has no
/// cascade, so the database itself refuses to orphan an index's child.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS store_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- Every database starts at version 1; later migrations run after this script and bump it.
INSERT INTO store_meta (key, value) VALUES ('schema_version', 1), ('credentials_generation', 0)
    ON CONFLICT (key) DO NOTHING;

CREATE TABLE IF NOT EXISTS repositories (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    settings   TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS blob_links (
    repo       TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS blob_links_by_digest ON blob_links (digest);

CREATE TABLE IF NOT EXISTS manifests (
    repo           TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    content        BLOB NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    image_size     INTEGER NOT NULL,
    pushed_at      INTEGER NOT NULL,
    last_pulled_at INTEGER,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS manifests_by_subject ON manifests (repo, subject);

CREATE TABLE IF NOT EXISTS tags (
    repo       TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, tag),
    FOREIGN KEY (repo, digest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_by_digest ON tags (repo, digest);

CREATE TABLE IF NOT EXISTS manifest_children (
    repo   TEXT NOT NULL,
    parent TEXT NOT NULL,
    child  TEXT NOT NULL,
    PRIMARY KEY (repo, parent, child),
    FOREIGN KEY (repo, parent) REFERENCES manifests (repo, digest) ON DELETE CASCADE,
    FOREIGN KEY (repo, child) REFERENCES manifests (repo, digest)
);
CREATE INDEX IF NOT EXISTS manifest_children_by_child ON manifest_children (repo, child);

CREATE TABLE IF NOT EXISTS uploads (
    id         TEXT PRIMARY KEY,
    repo       TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_updated_at ON uploads (updated_at);

CREATE TABLE IF NOT EXISTS users (
    name              TEXT PRIMARY KEY,
    access_key_id     TEXT NOT NULL UNIQUE,
    secret_ciphertext BLOB NOT NULL,
    created_at        INTEGER NOT NULL
);
"#;

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            // Acknowledged writes must survive power loss, not just a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone().create_if_missing(true).journal_mode(SqliteJournalMode::Wal))
            .await?;
        migrate(&writer).await?;
        // Opened after the writer so the file exists and is already in WAL mode (a persistent
        // setting a read-only connection could not make).
        let readers = SqlitePoolOptions::new().max_connections(READERS).connect_with(base.read_only(true)).await?;
        Ok(SqliteStore { writer, readers })
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

async fn migrate(writer: &SqlitePool) -> Result<()> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    let version: i64 =
        sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'schema_version'").fetch_one(&mut *tx).await?;
    check_schema_version(version)?;
    tx.commit().await?;
    Ok(())
}

async fn repository_exists(tx: &mut Transaction<'_, Sqlite>, name: &str) -> Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM repositories WHERE name = $1").bind(name).fetch_optional(&mut **tx).await?;
    Ok(found.is_some())
}

async fn bump_credentials_generation(tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
    sqlx::query("UPDATE store_meta SET value = value + 1 WHERE key = 'credentials_generation'")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn create_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository> {
        let inserted = sqlx::query(
            "INSERT INTO repositories (name, created_at, settings) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(now)
        .bind(settings)
        .execute(&self.writer)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(MetaError::RepositoryExists(name.to_string()));
        }
        Ok(Repository { name: name.to_string(), created_at: now, settings: settings.to_owned() })
    }

    async fn ensure_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO repositories (name, created_at, settings) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(now)
        .bind(settings)
        .execute(&mut *tx)
        .await?;
        let row: RepositoryRow = sqlx::query_as("SELECT name, created_at, settings FROM repositories WHERE name = $1")
            .bind(name.as_str())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    async fn get_repository(&self, name: &RepositoryName) -> Result<Option<Repository>> {
        let row: Option<RepositoryRow> =
            sqlx::query_as("SELECT name, created_at, settings FROM repositories WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&self.readers)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn set_repository_settings(&self, name: &RepositoryName, settings: &str) -> Result<()> {
        let updated = sqlx::query("UPDATE repositories SET settings = $1 WHERE name = $2")
            .bind(settings)
            .bind(name.as_str())
            .execute(&self.writer)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(MetaError::RepositoryNotFound(name.to_string()));
        }
        Ok(())
    }

    async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<Repository>> {
        // Names are never empty, so "" sorts before all of them.
        let rows: Vec<RepositoryRow> = sqlx::query_as(
            "SELECT name, created_at, settings FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit_param(limit))
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_repository(&self, name: &RepositoryName, force: bool) -> Result<Repository> {
        let mut tx = self.write().await?;
        let row: Option<RepositoryRow> =
            sqlx::query_as("SELECT name, created_at, settings FROM repositories WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Err(MetaError::RepositoryNotFound(name.to_string()));
        };
        if !force {
            let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo = $1 LIMIT 1")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if any.is_some() {
                return Err(MetaError::RepositoryNotEmpty(name.to_string()));
            }
        }
        // Cascades to blob links, manifests (and so tags and child edges) and uploads.
        sqlx::query("DELETE FROM repositories WHERE name = $1").bind(name.as_str()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(row.into())
    }

    async fn link_blob(&self, repo: &RepositoryName, digest: &Digest, size: u64, now: Millis) -> Result<()> {
        let mut tx = self.write().await?;
        if !repository_exists(&mut tx, repo.as_str()).await? {
            return Err(MetaError::RepositoryNotFound(repo.to_string()));
        }
        sqlx::query(
            "INSERT INTO blob_links (repo, digest, size, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repo, digest) DO NOTHING",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .bind(size_param(size)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn linked_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar("SELECT size FROM blob_links WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&self.readers)
            .await?;
        size.map(stored_size).transpose()
    }

    async fn unlink_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM blob_links WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&self.writer)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn repositories_with_blob(&self, digest: &Digest) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT repo FROM blob_links WHERE digest = $1 ORDER BY repo")
            .bind(digest.as_str())
            .fetch_all(&self.readers)
            .await?)
    }

    async fn put_manifest(&self, put: PutManifest<'_>) -> Result<PutOutcome> {
        let repo = put.repo.as_str();
        let mut tx = self.write().await?;
        if !repository_exists(&mut tx, repo).await? {
            return Err(MetaError::RepositoryNotFound(repo.to_owned()));
        }

        for (digest, _) in put.blobs {
            let linked: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blob_links WHERE repo = $1 AND digest = $2")
                .bind(repo)
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if linked.is_none() {
                return Err(MetaError::BlobUnknown(digest.clone()));
            }
        }
        let mut child_sizes = Vec::with_capacity(put.children.len());
        for child in put.children {
            let child_size: Option<i64> =
                sqlx::query_scalar("SELECT image_size FROM manifests WHERE repo = $1 AND digest = $2")
                    .bind(repo)
                    .bind(child.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(child_size) = child_size else {
                return Err(MetaError::ManifestUnknown(child.clone()));
            };
            child_sizes.push(stored_size(child_size)?);
        }
        let image_size = image_size(put.blobs, &child_sizes);

        let previous_tag_target = match put.tag {
            None => None,
            Some(tag) => {
                let current: Option<String> =
                    sqlx::query_scalar("SELECT digest FROM tags WHERE repo = $1 AND tag = $2")
                        .bind(repo)
                        .bind(tag.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                checked_tag_move(&put, current)?
            }
        };

        // A re-push keeps the first pushed_at, as ECR reports it.
        let inserted = sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, content, artifact_type, subject, annotations, \
             image_size, pushed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (repo, digest) DO NOTHING",
        )
        .bind(repo)
        .bind(put.digest.as_str())
        .bind(put.media_type)
        .bind(put.content)
        .bind(put.artifact_type)
        .bind(put.subject.map(Digest::as_str))
        .bind(put.annotations)
        .bind(size_param(image_size)?)
        .bind(put.now)
        .execute(&mut *tx)
        .await?;
        let manifest_created = inserted.rows_affected() > 0;
        if manifest_created {
            for child in put.children {
                sqlx::query(
                    "INSERT INTO manifest_children (repo, parent, child) VALUES ($1, $2, $3) \
                     ON CONFLICT (repo, parent, child) DO NOTHING",
                )
                .bind(repo)
                .bind(put.digest.as_str())
                .bind(child.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }

        if let Some(tag) = put.tag
            && previous_tag_target.as_ref() != Some(put.digest)
        {
            sqlx::query(
                "INSERT INTO tags (repo, tag, digest, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(tag.as_str())
            .bind(put.digest.as_str())
            .bind(put.now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(PutOutcome { manifest_created, previous_tag_target })
    }

    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Option<ManifestRecord>> {
        let row: Option<ManifestRow> = match reference {
            Reference::Digest(digest) => {
                sqlx::query_as(select_manifest!("WHERE m.repo = $1 AND m.digest = $2"))
                    .bind(repo.as_str())
                    .bind(digest.as_str())
                    .fetch_optional(&self.readers)
                    .await?
            }
            Reference::Tag(tag) => {
                sqlx::query_as(select_manifest!(
                    "JOIN tags t ON t.repo = m.repo AND t.digest = m.digest WHERE t.repo = $1 AND t.tag = $2"
                ))
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(&self.readers)
                .await?
            }
        };
        row.map(TryInto::try_into).transpose()
    }

    async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let mut tx = self.write().await?;
        let parent: Option<String> = sqlx::query_scalar(
            "SELECT parent FROM manifest_children WHERE repo = $1 AND child = $2 ORDER BY parent LIMIT 1",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(parent) = parent {
            return Err(MetaError::ManifestReferenced { index: parse_digest(&parent)? });
        }
        // Cascades to its tags and its own child edges.
        let deleted = sqlx::query("DELETE FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(MetaError::ManifestUnknown(digest.clone()));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>> {
        let digest: Option<String> =
            sqlx::query_scalar("DELETE FROM tags WHERE repo = $1 AND tag = $2 RETURNING digest")
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(&self.writer)
                .await?;
        digest.as_deref().map(parse_digest).transpose()
    }

    async fn list_tags(&self, repo: &RepositoryName, last: Option<&str>, limit: Option<usize>) -> Result<Vec<String>> {
        // SQLite's default BINARY collation compares bytes, which is the order the distribution
        // spec asks for.
        Ok(sqlx::query_scalar("SELECT tag FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3")
            .bind(repo.as_str())
            .bind(last.unwrap_or(""))
            .bind(limit.map_or(i64::MAX, limit_param))
            .fetch_all(&self.readers)
            .await?)
    }

    async fn referrers(&self, repo: &RepositoryName, subject: &Digest) -> Result<Vec<ManifestRecord>> {
        let rows: Vec<ManifestRow> =
            sqlx::query_as(select_manifest!("WHERE m.repo = $1 AND m.subject = $2 ORDER BY m.digest"))
                .bind(repo.as_str())
                .bind(subject.as_str())
                .fetch_all(&self.readers)
                .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn parents(&self, repo: &RepositoryName, child: &Digest) -> Result<Vec<Digest>> {
        let parents: Vec<String> =
            sqlx::query_scalar("SELECT parent FROM manifest_children WHERE repo = $1 AND child = $2 ORDER BY parent")
                .bind(repo.as_str())
                .bind(child.as_str())
                .fetch_all(&self.readers)
                .await?;
        parents.iter().map(|p| parse_digest(p)).collect()
    }

    async fn list_images(
        &self,
        repo: &RepositoryName,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>> {
        // One read transaction, so the tags belong to the same snapshot as the page.
        let mut tx = self.readers.begin().await?;
        let rows: Vec<ManifestRow> =
            sqlx::query_as(select_manifest!("WHERE m.repo = $1 AND m.digest > $2 ORDER BY m.digest LIMIT $3"))
                .bind(repo.as_str())
                .bind(after.map_or("", Digest::as_str))
                .bind(limit_param(limit))
                .fetch_all(&mut *tx)
                .await?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Vec::new());
        };
        let tags: Vec<(String, String)> = sqlx::query_as(
            "SELECT digest, tag FROM tags WHERE repo = $1 AND digest >= $2 AND digest <= $3 ORDER BY tag",
        )
        .bind(repo.as_str())
        .bind(&first.digest)
        .bind(&last.digest)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut tags_by_digest: HashMap<String, Vec<String>> = HashMap::new();
        for (digest, tag) in tags {
            tags_by_digest.entry(digest).or_default().push(tag);
        }
        rows.into_iter()
            .map(|row| {
                let tags = tags_by_digest.remove(&row.digest).unwrap_or_default();
                Ok(ImageRecord { manifest: row.try_into()?, tags })
            })
            .collect()
    }

    async fn get_image(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<ImageRecord>> {
        let mut tx = self.readers.begin().await?;
        let row: Option<ManifestRow> = sqlx::query_as(select_manifest!("WHERE m.repo = $1 AND m.digest = $2"))
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let tags: Vec<String> = sqlx::query_scalar("SELECT tag FROM tags WHERE repo = $1 AND digest = $2 ORDER BY tag")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(ImageRecord { manifest: row.try_into()?, tags }))
    }

    async fn record_pulls(&self, pulls: &[(RepositoryName, Digest, Millis)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for (repo, digest, at) in pulls {
            // Manifests deleted since the pull are simply not updated.
            sqlx::query(
                "UPDATE manifests SET last_pulled_at = $1 WHERE repo = $2 AND digest = $3 \
                 AND (last_pulled_at IS NULL OR last_pulled_at < $1)",
            )
            .bind(at)
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        let mut tx = self.write().await?;
        if !repository_exists(&mut tx, &session.repo).await? {
            return Err(MetaError::RepositoryNotFound(session.repo.clone()));
        }
        sqlx::query("INSERT INTO uploads (id, repo, created_at, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(&session.id)
            .bind(&session.repo)
            .bind(session.created_at)
            .bind(session.updated_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>> {
        let row: Option<UploadRow> =
            sqlx::query_as("SELECT id, repo, created_at, updated_at FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.readers)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn touch_upload(&self, id: &str, now: Millis) -> Result<()> {
        // A session that vanished meanwhile (cancelled, expired) has nothing left to keep alive.
        sqlx::query("UPDATE uploads SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.writer).await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn stale_uploads(&self, before: Millis) -> Result<Vec<UploadSession>> {
        let rows: Vec<UploadRow> = sqlx::query_as(
            "SELECT id, repo, created_at, updated_at FROM uploads WHERE updated_at < $1 ORDER BY updated_at, id",
        )
        .bind(before)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let mut tx = self.write().await?;
        let clash: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = $1 OR access_key_id = $2")
            .bind(&user.name)
            .bind(&user.access_key_id)
            .fetch_optional(&mut *tx)
            .await?;
        if clash.is_some() {
            return Err(MetaError::UserExists(user.name.clone()));
        }
        sqlx::query("INSERT INTO users (name, access_key_id, secret_ciphertext, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&user.name)
            .bind(&user.access_key_id)
            .bind(&user.secret_ciphertext)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await?;
        bump_credentials_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> =
            sqlx::query_as("SELECT name, access_key_id, secret_ciphertext, created_at FROM users ORDER BY name")
                .fetch_all(&self.readers)
                .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        let deleted = sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&mut *tx).await?;
        let existed = deleted.rows_affected() > 0;
        if existed {
            bump_credentials_generation(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    async fn user_by_access_key(&self, access_key_id: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT name, access_key_id, secret_ciphertext, created_at FROM users WHERE access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT name, access_key_id, secret_ciphertext, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.readers)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn credentials_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'credentials_generation'")
            .fetch_one(&self.readers)
            .await?)
    }

    async fn close(&self) {
        self.readers.close().await;
        // Closing the last connection checkpoints the WAL into the main file.
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::SCHEMA_VERSION;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
        crate::testsuite::run_all(&store).await;
        store.close().await;
    }

    fn name(s: &str) -> RepositoryName {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_repository(&name("kept"), "{\"x\":1}", 7).await.unwrap();
        store.close().await;
        assert!(store.get_repository(&name("kept")).await.is_err(), "a closed store refuses work");

        let store = SqliteStore::open(&path).await.unwrap();
        let repo = store.get_repository(&name("kept")).await.unwrap().unwrap();
        assert_eq!((repo.created_at, repo.settings.as_str()), (7, "{\"x\":1}"));
        store.close().await;
    }

    #[tokio::test]
    async fn writer_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.writer).await.unwrap();
        assert_eq!(journal, "wal");
        let flag = |pragma: &'static str| sqlx::query_scalar::<_, i64>(pragma).fetch_one(&store.writer);
        assert_eq!(flag("PRAGMA synchronous").await.unwrap(), 2, "FULL");
        assert_eq!(flag("PRAGMA foreign_keys").await.unwrap(), 1);
        store.close().await;
    }

    const CRASH_DB: &str = "BERTH_META_CRASH_DB";

    /// The test binary runs this test again in a child that acknowledges writes and aborts (no
    /// destructors, no close: what kill -9 leaves behind); the parent then finds them all.
    #[tokio::test]
    async fn acknowledged_writes_survive_abort() {
        let repo = name("crash/test");
        let (content, digest) = (b"{}".as_slice(), Digest::sha256_of(b"{}"));
        let latest: Tag = "latest".parse().unwrap();
        if let Ok(path) = std::env::var(CRASH_DB) {
            let store = SqliteStore::open(Path::new(&path)).await.unwrap();
            store.create_repository(&repo, "{}", 1).await.unwrap();
            let put = PutManifest {
                repo: &repo,
                digest: &digest,
                media_type: "application/vnd.oci.image.manifest.v1+json",
                content,
                artifact_type: None,
                annotations: None,
                subject: None,
                blobs: &[],
                children: &[],
                tag: Some(&latest),
                tag_immutable: false,
                now: 2,
            };
            store.put_manifest(put).await.unwrap();
            std::process::abort();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sqlite::tests::acknowledged_writes_survive_abort", "--test-threads=1"])
            .env(CRASH_DB, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child must have aborted");
        let store = SqliteStore::open(&path).await.unwrap();
        let found =
            store.get_manifest(&repo, &Reference::Tag(latest)).await.unwrap().expect("acknowledged put is lost");
        assert_eq!((found.digest, found.content.as_slice()), (digest, content));
        store.close().await;
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteStore::open(&path).await.unwrap();
        sqlx::query("UPDATE store_meta SET value = $1 WHERE key = 'schema_version'")
            .bind(SCHEMA_VERSION + 1)
            .execute(&store.writer)
            .await
            .unwrap();
        store.close().await;
        let err = SqliteStore::open(&path).await.err().expect("newer schema must be refused");
        assert!(matches!(&err, MetaError::Backend(m) if m.contains("schema version")), "{err:?}");
    }

    /// Two stores on one file behave like the server and the `berth user` CLI in two processes:
    /// their writers contend for SQLite's lock and must wait for it rather than fail.
    #[tokio::test]
    async fn two_stores_on_one_file_wait_for_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let a = SqliteStore::open(&path).await.unwrap();
        let b = SqliteStore::open(&path).await.unwrap();
        let user = |store: &'static str, n: usize| UserRecord {
            name: format!("{store}-{n}"),
            access_key_id: format!("AK{store}{n}"),
            secret_ciphertext: vec![n as u8],
            created_at: n as i64,
        };
        let writes = (0..25).flat_map(|n| {
            [(&a, user("a", n)), (&b, user("b", n))].map(|(store, user)| async move {
                store.create_user(&user).await?;
                store.ensure_repository(&name(&format!("shared{}", n % 3)), "{}", 0).await.map(drop)
            })
        });
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        assert_eq!(a.list_users().await.unwrap().len(), 50);
        assert_eq!(b.credentials_generation().await.unwrap(), 50);
        a.close().await;
        b.close().await;
    }
}
