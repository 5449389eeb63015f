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
    ManifestRow, Statements, check_schema_version, checked_tag_move, image_size, limit_param, parse_digest,
    select_manifest, stored_size,
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
    if version < 2 {
        sqlx::raw_sql(crate::gc::SQLITE_V2).execute(&mut *tx).await?;
        Shared::backfill_manifest_blobs(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `items` as a JSON array for `json_each`; digests need no escaping, but serde makes that moot.
fn json_list(items: &[&str]) -> String {
    serde_json::to_string(items).expect("a list of strings serializes")
}

/// The statements SQLite runs like PostgreSQL.
type Shared = Statements<Sqlite>;

async fn repository_exists(tx: &mut Transaction<'_, Sqlite>, name: &str) -> Result<bool> {
    Ok(Shared::repository(&mut **tx, name).await?.is_some())
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn create_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository> {
        Shared::create_repository(&self.writer, name, settings, now).await
    }

    async fn ensure_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository> {
        let mut tx = self.write().await?;
        let repository = Shared::ensure_repository(&mut tx, name, settings, now).await?;
        tx.commit().await?;
        Ok(repository)
    }

    async fn get_repository(&self, name: &RepositoryName) -> Result<Option<Repository>> {
        Shared::repository(&self.readers, name.as_str()).await
    }

    async fn set_repository_settings(&self, name: &RepositoryName, settings: &str) -> Result<()> {
        Shared::set_repository_settings(&self.writer, name, settings).await
    }

    async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<Repository>> {
        Shared::list_repositories(&self.readers, after, limit).await
    }

    async fn delete_repository(&self, name: &RepositoryName, force: bool) -> Result<Repository> {
        let mut tx = self.write().await?;
        let Some(repository) = Shared::repository(&mut *tx, name.as_str()).await? else {
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
        Ok(repository)
    }

    async fn link_blob(&self, repo: &RepositoryName, digest: &Digest, size: u64, now: Millis) -> Result<()> {
        // One autocommit statement; the foreign key says whether the repository exists.
        Shared::link_blob(&self.writer, repo, digest, size, now).await
    }

    async fn linked_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        Shared::linked_blob(&self.readers, repo, digest).await
    }

    async fn unlink_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        Shared::unlink_blob(&self.writer, repo, digest).await
    }

    async fn repositories_with_blob(&self, digest: &Digest) -> Result<Vec<String>> {
        Shared::repositories_with_blob(&self.readers, digest).await
    }

    async fn put_manifest(&self, put: PutManifest<'_>) -> Result<PutOutcome> {
        let repo = put.repo.as_str();
        // The write lock, taken at BEGIN, serialises pushes from every process on the file.
        let mut tx = self.write().await?;
        // Each check is one statement over the whole list (json_each), not one per digest.
        let blobs: Vec<&str> = put.blobs.iter().map(|(digest, _)| digest.as_str()).collect();
        let missing_blob: Option<String> = sqlx::query_scalar(
            "SELECT j.value FROM json_each($2) j WHERE NOT EXISTS \
             (SELECT 1 FROM blob_links b WHERE b.repo = $1 AND b.digest = j.value) ORDER BY j.key LIMIT 1",
        )
        .bind(repo)
        .bind(json_list(&blobs))
        .fetch_optional(&mut *tx)
        .await?;
        let children: Vec<&str> = put.children.iter().map(Digest::as_str).collect();
        let child_rows: Vec<(String, Option<i64>)> = if children.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT j.value, m.image_size FROM json_each($2) j \
                 LEFT JOIN manifests m ON m.repo = $1 AND m.digest = j.value ORDER BY j.key",
            )
            .bind(repo)
            .bind(json_list(&children))
            .fetch_all(&mut *tx)
            .await?
        };
        let missing_child = child_rows.iter().find(|(_, size)| size.is_none());
        // Linked blobs and present children prove the repository exists (their rows cascade from
        // it); only a failed check, or a manifest needing nothing, has to look the repository up.
        let proven = (missing_blob.is_none() && !blobs.is_empty()) || (missing_child.is_none() && !children.is_empty());
        if !proven && !repository_exists(&mut tx, repo).await? {
            return Err(MetaError::RepositoryNotFound(repo.to_owned()));
        }
        if let Some(digest) = missing_blob {
            return Err(MetaError::BlobUnknown(parse_digest(&digest)?));
        }
        if let Some((digest, _)) = missing_child {
            return Err(MetaError::ManifestUnknown(parse_digest(digest)?));
        }
        let child_sizes =
            child_rows.iter().map(|(_, size)| stored_size(size.unwrap_or(0))).collect::<Result<Vec<_>>>()?;

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

        let image_size = image_size(put.blobs, &child_sizes);
        let manifest_created = Shared::store_manifest(&mut tx, &put, image_size, previous_tag_target.as_ref()).await?;
        tx.commit().await?;
        Ok(PutOutcome { manifest_created, previous_tag_target })
    }

    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Option<ManifestRecord>> {
        Shared::manifest(&self.readers, repo, reference).await
    }

    async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let mut tx = self.write().await?;
        Shared::delete_manifest(&mut tx, repo, digest).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>> {
        Shared::delete_tag(&self.writer, repo, tag).await
    }

    async fn list_tags(&self, repo: &RepositoryName, last: Option<&str>, limit: Option<usize>) -> Result<Vec<String>> {
        Shared::list_tags(&self.readers, repo, last, limit).await
    }

    async fn referrers(&self, repo: &RepositoryName, subject: &Digest) -> Result<Vec<ManifestRecord>> {
        Shared::referrers(&self.readers, repo, subject).await
    }

    async fn parents(&self, repo: &RepositoryName, child: &Digest) -> Result<Vec<Digest>> {
        Shared::parents(&self.readers, repo, child).await
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
        let Some(manifest) = Shared::manifest(&mut *tx, repo, &Reference::Digest(digest.clone())).await? else {
            return Ok(None);
        };
        let tags: Vec<String> = sqlx::query_scalar("SELECT tag FROM tags WHERE repo = $1 AND digest = $2 ORDER BY tag")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(ImageRecord { manifest, tags }))
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
        // One autocommit statement; the foreign key says whether the repository exists.
        Shared::create_upload(&self.writer, session).await
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>> {
        Shared::upload(&self.readers, id).await
    }

    async fn touch_upload(&self, id: &str, now: Millis) -> Result<()> {
        Shared::touch_upload(&self.writer, id, now).await
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        Shared::delete_upload(&self.writer, id).await
    }

    async fn delete_uploads(&self, ids: &[String]) -> Result<()> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        sqlx::query("DELETE FROM uploads WHERE id IN (SELECT value FROM json_each($1))")
            .bind(json_list(&ids))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn stale_uploads(&self, before: Millis) -> Result<Vec<UploadSession>> {
        Shared::stale_uploads(&self.readers, before).await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let mut tx = self.write().await?;
        Shared::create_user(&mut tx, user).await?;
        Shared::bump_credentials_generation(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        Shared::list_users(&self.readers).await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        let existed = Shared::delete_user(&mut *tx, name).await?;
        if existed {
            Shared::bump_credentials_generation(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    async fn user_by_access_key(&self, access_key_id: &str) -> Result<Option<UserRecord>> {
        Shared::user_by_access_key(&self.readers, access_key_id).await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        Shared::user_by_name(&self.readers, name).await
    }

    async fn credentials_generation(&self) -> Result<i64> {
        Shared::credentials_generation(&self.readers).await
    }

    async fn release_unreferenced_links(&self, before: Millis, now: Millis, dry_run: bool) -> Result<u64> {
        if dry_run {
            return Shared::count_releasable_links(&self.readers, before).await;
        }
        let mut released = 0;
        // A transaction per repository keeps each hold on the writer short.
        for repo in Shared::repositories_with_releasable_links(&self.readers, before).await? {
            let mut tx = self.write().await?;
            released += Shared::release_links(&mut tx, &repo, before, now).await?;
            tx.commit().await?;
        }
        Ok(released)
    }

    async fn note_unlinked_blobs(&self, digests: &[Digest], now: Millis, dry_run: bool) -> Result<Vec<Digest>> {
        let mut unlinked = Vec::new();
        for digest in digests {
            if !Shared::is_linked_anywhere(&self.readers, digest.as_str()).await? {
                unlinked.push(digest.clone());
            }
        }
        if !dry_run && !unlinked.is_empty() {
            let mut tx = self.write().await?;
            for digest in &unlinked {
                Shared::note_candidate(&mut *tx, digest.as_str(), now).await?;
            }
            tx.commit().await?;
        }
        Ok(unlinked)
    }

    async fn due_blob_candidates(&self, before: Millis, stalled_before: Millis) -> Result<Vec<Digest>> {
        Shared::due_candidates(&self.readers, before, stalled_before).await
    }

    async fn begin_blob_deletion(
        &self,
        digest: &Digest,
        before: Millis,
        stalled_before: Millis,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM blob_candidates WHERE digest = $1 \
             AND ((deleting_at IS NULL AND since < $2) OR deleting_at < $3)",
        )
        .bind(digest.as_str())
        .bind(before)
        .bind(stalled_before)
        .fetch_optional(&mut *tx)
        .await?;
        if due.is_none() {
            return Ok(false);
        }
        let claimed = Shared::claim_candidate(&mut tx, digest, now).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_blob_deletion(&self, digest: &Digest, started: Millis) -> Result<()> {
        Shared::finish_blob_deletion(&self.writer, digest, started).await
    }

    async fn cancel_blob_collection(&self, digest: &Digest) -> Result<bool> {
        // Almost every blob a push links is no candidate: a read settles it without the writer.
        // A candidate noted after this read is protected by its grace period.
        if Shared::candidate_state(&self.readers, digest).await?.is_none() {
            return Ok(true);
        }
        let mut tx = self.write().await?;
        let cancelled = Shared::cancel_candidate(&mut tx, digest).await?;
        tx.commit().await?;
        Ok(cancelled)
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

    /// A database from before GC (schema 1) learns which blobs its manifests need, so its first
    /// GC pass releases only links no manifest needs.
    #[tokio::test]
    async fn schema_1_database_learns_manifest_references() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let [config, layer, spare] = [b"config".as_slice(), b"layer", b"spare"].map(Digest::sha256_of);
        let content = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":6}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}]}}"#
        );
        let old = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path).create_if_missing(true))
            .await
            .unwrap();
        sqlx::raw_sql(SCHEMA).execute(&old).await.unwrap();
        sqlx::query("INSERT INTO repositories VALUES ('old', 1, '{}')").execute(&old).await.unwrap();
        for d in [&config, &layer, &spare] {
            sqlx::query("INSERT INTO blob_links VALUES ('old', $1, 5, 1)")
                .bind(d.as_str())
                .execute(&old)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO manifests (repo, digest, media_type, content, image_size, pushed_at) VALUES ('old', $1, $2, $3, 11, 1)")
            .bind(Digest::sha256_of(content.as_bytes()).as_str())
            .bind("application/vnd.oci.image.manifest.v1+json")
            .bind(content.as_bytes())
            .execute(&old)
            .await
            .unwrap();
        old.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.release_unreferenced_links(i64::MAX, 10, false).await.unwrap(), 1);
        let repo = name("old");
        assert_eq!(store.linked_blob(&repo, &spare).await.unwrap(), None);
        assert!(store.linked_blob(&repo, &config).await.unwrap().is_some());
        assert!(store.linked_blob(&repo, &layer).await.unwrap().is_some());
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
