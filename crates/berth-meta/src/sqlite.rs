//! The embedded backend: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so transactions in this process queue in
//! the pool instead of fighting over SQLite's lock; each one starts with `BEGIN IMMEDIATE` so a
//! second process on the same file (the `berth user` CLI next to a server) waits in
//! `busy_timeout` instead of failing on a read→write lock upgrade. Reads use their own pool and,
//! thanks to WAL, never wait for the writer. With one writer there is nothing to lock rows
//! against: [`RowLock`]s take nothing.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use crate::dialect::{Dialect, RowLock};
use crate::durability::{Durability, WalSync};
use crate::migrations::Migration;
use crate::store::usable;
use crate::{Millis, Result, SqlStore};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const READERS: u32 = 4;

/// The metadata store in a SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if missing) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let writer = writer_pool(path).await?;
        Self::migrate(&writer).await?;
        let store =
            SqlStore { readers: reader_pool(path).await?, writer, durability: Durability::WalSync(WalSync::new(path)) };
        // The migrations' commits, like every later one, count once the WAL is synced.
        store.durable().await?;
        Ok(store)
    }
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        // A commit only writes the WAL; the store syncs it before reporting any write done
        // (`durability`: one sync for every commit that finished before it).
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
}

async fn writer_pool(path: &Path) -> Result<Pool<Sqlite>> {
    let options = options(path).create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
    Ok(SqlitePoolOptions::new().max_connections(1).before_acquire(usable::<Sqlite>).connect_with(options).await?)
}

/// Opened after the writer, so the file exists and is already in WAL mode (a persistent setting
/// a read-only connection could not make).
async fn reader_pool(path: &Path) -> Result<Pool<Sqlite>> {
    Ok(SqlitePoolOptions::new().max_connections(READERS).connect_with(options(path).read_only(true)).await?)
}

impl Dialect for Sqlite {
    type TextList = String;
    type IdList = String;

    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const STORE_META: &'static str =
        "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)";
    // BEGIN IMMEDIATE holds the file's write lock already.
    const MIGRATION_LOCK: Option<&'static str> = None;
    const EVENT_LOG_LOCK: Option<&'static str> = None;

    /// A JSON array for `json_each`; digests need no escaping, but serde makes that moot.
    fn text_list(items: &[&str]) -> String {
        serde_json::to_string(items).expect("strings serialize")
    }

    fn id_list(ids: &[i64]) -> String {
        serde_json::to_string(ids).expect("numbers serialize")
    }

    fn list(param: u8) -> String {
        format!("json_each(${param}) AS list")
    }

    fn row_lock(_: RowLock) -> &'static str {
        ""
    }

    fn migration_sql(migration: &Migration) -> &'static str {
        migration.sqlite
    }

    async fn record_pulls(writer: &Pool<Sqlite>, latest: &[(&str, &str, Millis)]) -> Result<()> {
        let mut tx = writer.begin_with(Self::BEGIN_WRITE).await?;
        for (repo, digest, at) in latest {
            // Manifests deleted since the pull are simply not updated.
            sqlx::query(
                "UPDATE manifests SET last_pulled_at = $1 WHERE repo = $2 AND digest = $3 \
                 AND (last_pulled_at IS NULL OR last_pulled_at < $1)",
            )
            .bind(at)
            .bind(repo)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use berth_spec::{Digest, Reference, RepositoryName, Tag};

    use super::*;
    use crate::migrations::fixtures;
    use crate::{
        AccessKeyStatus, CredentialStore, EventStore, ManifestStore, Origin, PutManifest, PutTag, RepositoryStore,
        Shutdown, UserRecord,
    };

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

    fn origin() -> Origin {
        Origin { actor: "test".into(), access_key_id: None, request_id: "test".into(), by_replication: false }
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_repository(&origin(), &name("kept"), "{\"x\":1}", 7).await.unwrap();
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
        // NORMAL: the store syncs the WAL itself after each write.
        assert_eq!(flag("PRAGMA synchronous").await.unwrap(), 1, "NORMAL");
        assert_eq!(flag("PRAGMA foreign_keys").await.unwrap(), 1);
        let Durability::WalSync(wal) = &store.durability else { panic!("SQLite syncs its WAL") };
        let before = wal.synced_through().await;
        store.ensure_repository(&origin(), &name("synced"), "{}", 1).await.unwrap();
        assert!(wal.synced_through().await > before, "the write waited for a sync of the WAL");
        store.close().await;
    }

    /// A database that cannot grow (here `max_page_count`; on a full disk SQLite says the same)
    /// refuses the write as `StorageFull` and keeps what it had.
    #[tokio::test]
    async fn a_full_database_is_storage_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&store.writer).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {}", pages + 2)))
            .execute(&store.writer)
            .await
            .unwrap();
        let settings = "x".repeat(3000);
        let mut created = 0;
        let refused = loop {
            match store.create_repository(&origin(), &name(&format!("r{created}")), &settings, 1).await {
                Ok(_) => created += 1,
                Err(e) => break e,
            }
            assert!(created < 100, "the database never filled up");
        };
        assert!(matches!(refused, crate::MetaError::StorageFull), "{refused:?}");
        assert_eq!(
            store.list_repositories(None, 1000).await.unwrap().len(),
            created,
            "nothing lost, nothing half-made"
        );
        store.close().await;
    }

    const CRASH_DB: &str = "BERTH_META_CRASH_DB";

    /// The test binary runs this test again in a child that acknowledges writes and aborts (no
    /// destructors, no close: what kill -9 leaves behind); the parent then finds them all, with
    /// their events.
    #[tokio::test]
    async fn acknowledged_writes_survive_abort() {
        let repo = name("crash/test");
        let (content, digest) = (b"{}".as_slice(), Digest::sha256_of(b"{}"));
        let latest: Tag = "latest".parse().unwrap();
        if let Ok(path) = std::env::var(CRASH_DB) {
            let store = SqliteStore::open(Path::new(&path)).await.unwrap();
            store.register_consumer("audit", 1).await.unwrap();
            store.create_repository(&origin(), &repo, "{}", 1).await.unwrap();
            let put = PutManifest {
                repo: &repo,
                digest: &digest,
                media_type: "application/vnd.oci.image.manifest.v1+json",
                content,
                artifact_type: None,
                annotations: None,
                subject: None,
                blobs: &[],
                foreign_blobs: &[],
                children: &[],
                sparse: false,
                tags: vec![PutTag { tag: &latest, immutable: false }],
                settings_version: None,
                now: 2,
            };
            store.put_manifest(&origin(), put).await.unwrap();
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
        let events = store.claim_events("audit", "t", 10, 3, 4).await.unwrap();
        assert_eq!(events.len(), 3, "created, pushed, tagged: {events:?}");
        store.close().await;
    }

    /// Databases written by the builds of schema 1 (before GC) and 2 open, keep their data, learn
    /// which blobs their manifests need, and gain what later schemas add.
    #[tokio::test]
    async fn older_schemas_upgrade_in_place() {
        for version in [1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("meta.db");
            SqliteStore::check_upgrade_from(version, writer_pool(&path).await.unwrap(), SqliteStore::open(&path)).await;
        }
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteStore::open(&path).await.unwrap();
        sqlx::raw_sql(fixtures::BUMP_SCHEMA_VERSION).execute(&store.writer).await.unwrap();
        store.close().await;
        fixtures::assert_newer_schema_refused(SqliteStore::open(&path).await);
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
            key_status: AccessKeyStatus::Active,
        };
        let writes = (0..25).flat_map(|n| {
            [(&a, user("a", n)), (&b, user("b", n))].map(|(store, user)| async move {
                store.create_user(&user, &[]).await?;
                store.ensure_repository(&origin(), &name(&format!("shared{}", n % 3)), "{}", 0).await.map(drop)
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
