//! The one store: every operation written once over a [`Dialect`], for SQLite and PostgreSQL.
//!
//! Reads go to `readers`, writes to `writer` (on SQLite a pool of exactly one connection, so
//! write transactions in this process queue in the pool instead of fighting over the file's lock;
//! on PostgreSQL the same pool). Transactions run at READ COMMITTED on PostgreSQL, and writers
//! that can meet take row locks in one fixed order, so they queue behind each other instead of
//! failing with deadlock or serialization errors, whichever server they run in:
//! 1. the repository row ([`RowLock`]): `ChangeContent` by whatever changes its manifests, tags,
//!    links or settings (one such writer per repository at a time, which also makes a
//!    repository's events commit in id order), `Exclusive` by its deletion;
//! 2. manifest rows, in (repository, digest) order: pull times, repository deletion.
//!
//! Credential changes start by bumping the credentials generation, whose row lock serialises
//! them across servers.
//!
//! sqlx code generic over the database has to spell out what it binds and reads, and Rust does
//! not carry such bounds from a trait to its users (rust-lang/rust#20671): every generic impl
//! block of the store repeats the same list, and both drivers meet it.

use async_trait::async_trait;
use berth_spec::{Digest, RepositoryName};
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, Pool, Type};

use crate::dialect::{Dialect, RowLock};
use crate::durability::Durability;
use crate::events::NewEvent;
use crate::sql::{
    RepositoryRow, UploadRow, UserRow, limit_param, list_cursor, parse_digest, repository_gone, select_repository,
    select_user, size_param, stored_size,
};
use crate::{
    AccessKeyStatus, BlobLink, BlobLinkStore, CredentialStore, EventKind, Health, MetaError, Millis, Origin,
    PoolStatus, RegistrySettingStore, Repository, RepositoryStore, Result, SettingsUpdate, Shutdown, StorageClass,
    StoreTotals, UploadSession, UploadStore, UserPolicy, UserRecord,
};

/// The metadata store over one SQL database; see [`crate::SqliteStore`] and
/// [`crate::PostgresStore`] for how each is opened.
pub struct SqlStore<DB: sqlx::Database> {
    pub(crate) readers: Pool<DB>,
    /// Every write on it is followed by [`SqlStore::commit`] or [`SqlStore::durable`], except an
    /// upload session's ([`crate::UploadStore`]).
    pub(crate) writer: Pool<DB>,
    pub(crate) durability: Durability,
}

/// A pool's `before_acquire` check: sqlx counts a connection's open transactions itself, and when
/// a COMMIT fails and the ROLLBACK after it fails too (SQLite has rolled back on its own after
/// `SQLITE_FULL` or an I/O error), the count never returns to zero and every later `begin` on
/// that connection fails ("non-zero transaction depth") until a restart. Such a connection is
/// closed instead of used, and the pool opens a fresh one: writes work again once the fault is
/// gone. (sqlx pings a released connection first, which runs a pending rollback.)
pub(crate) fn usable<DB: sqlx::Database>(
    conn: &mut DB::Connection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, std::result::Result<bool, sqlx::Error>> {
    let in_transaction = sqlx::Connection::is_in_transaction(conn);
    if in_transaction {
        tracing::warn!("a metadata connection came back with a transaction open; replacing it");
    }
    Box::pin(std::future::ready(Ok(!in_transaction)))
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// Commits a write transaction and waits until it is durable.
    pub(crate) async fn commit(&self, tx: sqlx::Transaction<'static, DB>) -> Result<()> {
        tx.commit().await?;
        self.durable().await
    }

    /// Waits until the autocommit writes this caller made are durable (group commit; see
    /// `durability`).
    pub(crate) async fn durable(&self) -> Result<()> {
        self.durability.committed().await
    }
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
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, DB>> {
        Ok(self.writer.begin_with(DB::BEGIN_WRITE).await?)
    }

    /// Takes `lock` on the repository's row (see the module doc); false if there is no such
    /// repository.
    pub(crate) async fn lock_repository(conn: &mut DB::Connection, name: &str, lock: RowLock) -> Result<bool> {
        Ok(Self::lock_repository_settings(conn, name, lock).await?.is_some())
    }

    /// [`Self::lock_repository`], returning the repository's settings version: settings change
    /// under the same lock, so it stays the version until the transaction ends.
    pub(crate) async fn lock_repository_settings(
        conn: &mut DB::Connection,
        name: &str,
        lock: RowLock,
    ) -> Result<Option<i64>> {
        let sql = format!("SELECT settings_version FROM repositories WHERE name = $1{}", DB::row_lock(lock));
        Ok(sqlx::query_scalar(AssertSqlSafe(sql)).bind(name).fetch_optional(conn).await?)
    }

    pub(crate) async fn repository<'c>(db: impl Executor<'c, Database = DB>, name: &str) -> Result<Option<Repository>> {
        let row: Option<RepositoryRow> =
            sqlx::query_as(select_repository!("WHERE name = $1")).bind(name).fetch_optional(db).await?;
        Ok(row.map(Into::into))
    }

    /// Inserts a repository unless one has the name; returns it if this call created it.
    pub(crate) async fn insert_repository(
        conn: &mut DB::Connection,
        origin: &Origin,
        name: &RepositoryName,
        settings: &str,
        now: Millis,
    ) -> Result<Option<Repository>> {
        // Where another server inserts it at the same time, this waits for it and does nothing.
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO repositories (name, created_at, settings) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING \
             RETURNING name",
        )
        .bind(name.as_str())
        .bind(now)
        .bind(settings)
        .fetch_optional(&mut *conn)
        .await?;
        if inserted.is_none() {
            return Ok(None);
        }
        Self::record_event(conn, origin, NewEvent::new(EventKind::RepositoryCreated, name.as_str())).await?;
        Ok(Some(Repository {
            name: name.to_string(),
            created_at: now,
            settings: settings.to_owned(),
            settings_version: 0,
        }))
    }

    /// The smallest digest of a manifest of `repo` that needs the blob.
    async fn manifest_needing_blob<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<Digest>> {
        let manifest: Option<String> = sqlx::query_scalar(
            "SELECT manifest FROM manifest_blobs WHERE repo = $1 AND digest = $2 ORDER BY manifest LIMIT 1",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(db)
        .await?;
        manifest.as_deref().map(parse_digest).transpose()
    }

    /// `UserUnknown` unless the user exists (a credential change holds the generation's row lock,
    /// so the user cannot go before the change commits).
    async fn require_user(conn: &mut DB::Connection, user: &str) -> Result<()> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT name FROM users WHERE name = $1").bind(user).fetch_optional(conn).await?;
        found.map(drop).ok_or_else(|| MetaError::UserUnknown(user.to_owned()))
    }

    async fn upsert_user_policy(conn: &mut DB::Connection, user: &str, policy: &UserPolicy) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_policies (user_name, policy_name, document) VALUES ($1, $2, $3) \
             ON CONFLICT (user_name, policy_name) DO UPDATE SET document = excluded.document",
        )
        .bind(user)
        .bind(policy.name.as_str())
        .bind(policy.document.as_deref())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Bumps the credentials generation: first in every credential change, so its row lock
    /// orders the changes of all servers and a rollback takes the bump back.
    async fn bump_credentials_generation(conn: &mut DB::Connection) -> Result<()> {
        sqlx::query("UPDATE store_meta SET value = value + 1 WHERE key = 'credentials_generation'")
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// How long a signed-out console session's record outlives the session's expiry.
const SIGN_OUT_MARGIN_MILLIS: Millis = 3_600_000;

#[async_trait]
impl<DB> RepositoryStore for SqlStore<DB>
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
    async fn create_repository(
        &self,
        origin: &Origin,
        name: &RepositoryName,
        settings: &str,
        now: Millis,
    ) -> Result<Repository> {
        let mut tx = self.begin_write().await?;
        let created = Self::insert_repository(&mut tx, origin, name, settings, now).await?;
        let created = created.ok_or_else(|| MetaError::RepositoryExists(name.to_string()))?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn ensure_repository(
        &self,
        origin: &Origin,
        name: &RepositoryName,
        settings: &str,
        now: Millis,
    ) -> Result<Repository> {
        let mut tx = self.begin_write().await?;
        let repository = match Self::insert_repository(&mut tx, origin, name, settings, now).await? {
            Some(created) => created,
            // In the transaction, or a repository deleted at the wrong moment is reported missing.
            None => Self::repository(&mut *tx, name.as_str())
                .await?
                .ok_or_else(|| MetaError::RepositoryNotFound(name.to_string()))?,
        };
        self.commit(tx).await?;
        Ok(repository)
    }

    async fn get_repository(&self, name: &RepositoryName) -> Result<Option<Repository>> {
        Self::repository(&self.readers, name.as_str()).await
    }

    async fn set_repository_settings(
        &self,
        origin: &Origin,
        name: &RepositoryName,
        update: SettingsUpdate<'_>,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE repositories SET settings = $1, settings_version = settings_version + 1 \
             WHERE name = $2 AND settings_version = $3 RETURNING settings_version",
        )
        .bind(update.settings)
        .bind(name.as_str())
        .bind(update.expected_version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            return Err(match Self::repository(&mut *tx, name.as_str()).await? {
                Some(_) => MetaError::SettingsConflict(name.to_string()),
                None => MetaError::RepositoryNotFound(name.to_string()),
            });
        };
        let changed = serde_json::json!({ "changed": update.changed }).to_string();
        let event = NewEvent { detail: Some(&changed), ..NewEvent::new(EventKind::SettingsChanged, name.as_str()) };
        Self::record_event(&mut tx, origin, event).await?;
        self.commit(tx).await?;
        Ok(version)
    }

    async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<Repository>> {
        // Names are never empty, so "" sorts before all of them.
        let rows: Vec<RepositoryRow> = sqlx::query_as(select_repository!("WHERE name > $1 ORDER BY name LIMIT $2"))
            .bind(list_cursor(after))
            .bind(limit_param(limit))
            .fetch_all(&self.readers)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_repository(&self, origin: &Origin, name: &RepositoryName, force: bool) -> Result<Repository> {
        let mut tx = self.begin_write().await?;
        if !Self::lock_repository(&mut tx, name.as_str(), RowLock::Exclusive).await? {
            return Err(MetaError::RepositoryNotFound(name.to_string()));
        }
        let repository = Self::repository(&mut *tx, name.as_str())
            .await?
            .ok_or_else(|| MetaError::RepositoryNotFound(name.to_string()))?;
        // Locked in digest order before the cascade deletes them in no particular order, which
        // could deadlock with a batch of pull times locking them in digest order.
        let sql =
            format!("SELECT digest FROM manifests WHERE repo = $1 ORDER BY digest{}", DB::row_lock(RowLock::Exclusive));
        let manifests: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(name.as_str()).fetch_all(&mut *tx).await?;
        if !force && !manifests.is_empty() {
            return Err(MetaError::RepositoryNotEmpty(name.to_string()));
        }
        // Cascades to blob links, manifests (and so tags and child edges) and uploads.
        sqlx::query("DELETE FROM repositories WHERE name = $1").bind(name.as_str()).execute(&mut *tx).await?;
        Self::record_event(&mut tx, origin, NewEvent::new(EventKind::RepositoryDeleted, name.as_str())).await?;
        self.commit(tx).await?;
        Ok(repository)
    }
}

#[async_trait]
impl<DB> BlobLinkStore for SqlStore<DB>
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
    async fn link_blob(&self, repo: &RepositoryName, digest: &Digest, size: u64, now: Millis) -> Result<()> {
        // One autocommit statement: the foreign key says whether the repository exists, and its
        // check holds off the repository's deletion until this commits.
        sqlx::query(
            // Re-linking restarts the link's grace period: the push is about to reference it.
            "INSERT INTO blob_links (repo, digest, size, created_at, touched_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (repo, digest) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .bind(size_param(size)?)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(repository_gone(repo.as_str()))?;
        self.durable().await?;
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

    async fn unlink_blob(&self, origin: &Origin, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // As a push would: put_manifest checks links under this lock, so a link cannot go
        // between its check and its commit, and a manifest committed first is seen here.
        if !Self::lock_repository(&mut tx, repo.as_str(), RowLock::ChangeContent).await? {
            return Ok(false);
        }
        if let Some(manifest) = Self::manifest_needing_blob(&mut *tx, repo, digest).await? {
            return Err(MetaError::BlobInUse { digest: digest.clone(), manifest });
        }
        let deleted: Option<String> =
            sqlx::query_scalar("DELETE FROM blob_links WHERE repo = $1 AND digest = $2 RETURNING digest")
                .bind(repo.as_str())
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if deleted.is_none() {
            return Ok(false);
        }
        let event = NewEvent { digest: Some(digest.as_str()), ..NewEvent::new(EventKind::BlobDeleted, repo.as_str()) };
        Self::record_event(&mut tx, origin, event).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn repositories_with_blob(&self, digest: &Digest) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT repo FROM blob_links WHERE digest = $1 ORDER BY repo")
            .bind(digest.as_str())
            .fetch_all(&self.readers)
            .await?)
    }

    async fn manifest_needing(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<Digest>> {
        Self::manifest_needing_blob(&self.readers, repo, digest).await
    }

    async fn blob_link(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<BlobLink>> {
        // The first EXISTS stops at the first STANDARD manifest, so a base layer that thousands
        // of images share costs one index probe, not a scan of them all.
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT l.size, CASE \
               WHEN EXISTS (SELECT 1 FROM manifest_blobs mb JOIN manifests m \
                              ON m.repo = mb.repo AND m.digest = mb.manifest \
                            WHERE mb.repo = l.repo AND mb.digest = l.digest AND m.storage_class = 'STANDARD') \
                 THEN 'STANDARD' \
               WHEN EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.repo = l.repo AND mb.digest = l.digest) \
                 THEN 'ARCHIVE' END \
             FROM blob_links l WHERE l.repo = $1 AND l.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.readers)
        .await?;
        row.map(|(size, needed_by)| {
            Ok(BlobLink {
                size: stored_size(size)?,
                needed_by: needed_by.as_deref().map(StorageClass::parse).transpose()?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl<DB> UploadStore for SqlStore<DB>
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
    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        // One autocommit statement; the foreign key says whether the repository exists.
        sqlx::query("INSERT INTO uploads (id, repo, created_at, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(session.id.as_str())
            .bind(session.repo.as_str())
            .bind(session.created_at)
            .bind(session.updated_at)
            .execute(&self.writer)
            .await
            .map_err(repository_gone(&session.repo))?;
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
        let deleted: Option<String> = sqlx::query_scalar("DELETE FROM uploads WHERE id = $1 RETURNING id")
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        Ok(deleted.is_some())
    }

    async fn delete_uploads(&self, ids: &[String]) -> Result<()> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let sql = format!("DELETE FROM uploads WHERE id IN (SELECT value FROM {})", DB::list(1));
        sqlx::query(AssertSqlSafe(sql)).bind(DB::text_list(&ids)).execute(&self.writer).await?;
        Ok(())
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

    async fn repository_uploads(&self, repo: &str) -> Result<Vec<UploadSession>> {
        let rows: Vec<UploadRow> = sqlx::query_as(
            "SELECT id, repo, created_at, updated_at FROM uploads WHERE repo = $1 ORDER BY created_at, id",
        )
        .bind(repo)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[async_trait]
impl<DB> CredentialStore for SqlStore<DB>
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
    async fn create_user(&self, user: &UserRecord, policies: &[UserPolicy]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        // First: every other server's change has committed or waits now, so the clash check
        // below sees them all.
        Self::bump_credentials_generation(&mut tx).await?;
        // Names are not distinguished by case, as in IAM: a Deny naming `user/tok` must bind
        // whoever could call themselves `tok`. (IAM's names are ASCII, which `lower` folds.)
        let clash: Option<String> =
            sqlx::query_scalar("SELECT name FROM users WHERE lower(name) = lower($1) OR access_key_id = $2")
                .bind(user.name.as_str())
                .bind(user.access_key_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if clash.is_some() {
            return Err(MetaError::UserExists(user.name.clone()));
        }
        sqlx::query(
            "INSERT INTO users (name, access_key_id, secret_ciphertext, created_at, key_status) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.name.as_str())
        .bind(user.access_key_id.as_str())
        .bind(user.secret_ciphertext.as_slice())
        .bind(user.created_at)
        .bind(user.key_status.as_str())
        .execute(&mut *tx)
        .await?;
        for policy in policies {
            Self::upsert_user_policy(&mut tx, &user.name, policy).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    async fn attach_user_policy(&self, user: &str, policy: &UserPolicy) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::bump_credentials_generation(&mut tx).await?;
        Self::require_user(&mut tx, user).await?;
        Self::upsert_user_policy(&mut tx, user, policy).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn detach_user_policy(&self, user: &str, policy_name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        Self::bump_credentials_generation(&mut tx).await?;
        Self::require_user(&mut tx, user).await?;
        let detached: Option<String> = sqlx::query_scalar(
            "DELETE FROM user_policies WHERE user_name = $1 AND policy_name = $2 RETURNING policy_name",
        )
        .bind(user)
        .bind(policy_name)
        .fetch_optional(&mut *tx)
        .await?;
        if detached.is_none() {
            // Takes the bump back: detaching nothing changes nothing.
            tx.rollback().await?;
            return Ok(false);
        }
        self.commit(tx).await?;
        Ok(true)
    }

    async fn list_user_policies(&self) -> Result<Vec<(String, UserPolicy)>> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT user_name, policy_name, document FROM user_policies ORDER BY user_name, policy_name",
        )
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(|(user, name, document)| (user, UserPolicy { name, document })).collect())
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> = sqlx::query_as(select_user!("ORDER BY name")).fetch_all(&self.readers).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        Self::bump_credentials_generation(&mut tx).await?;
        let deleted: Option<String> = sqlx::query_scalar("DELETE FROM users WHERE name = $1 RETURNING name")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if deleted.is_none() {
            // Takes the bump back: deleting nobody changes nothing.
            tx.rollback().await?;
            return Ok(false);
        }
        self.commit(tx).await?;
        Ok(true)
    }

    async fn user_by_access_key(&self, access_key_id: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE access_key_id = $1"))
            .bind(access_key_id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> =
            sqlx::query_as(select_user!("WHERE name = $1")).bind(name).fetch_optional(&self.readers).await?;
        Ok(row.map(Into::into))
    }

    async fn set_access_key_status(&self, user: &str, status: AccessKeyStatus) -> Result<AccessKeyStatus> {
        let mut tx = self.begin_write().await?;
        Self::bump_credentials_generation(&mut tx).await?;
        let previous: Option<String> = sqlx::query_scalar("SELECT key_status FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
        let previous = previous.ok_or_else(|| MetaError::UserUnknown(user.to_owned()))?;
        let previous = AccessKeyStatus::parse(&previous).unwrap_or(AccessKeyStatus::Inactive);
        if previous == status {
            // Takes the bump back: setting the status a key has changes nothing.
            tx.rollback().await?;
            return Ok(previous);
        }
        sqlx::query("UPDATE users SET key_status = $1 WHERE name = $2")
            .bind(status.as_str())
            .bind(user)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(previous)
    }

    async fn credentials_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'credentials_generation'")
            .fetch_one(&self.readers)
            .await?)
    }

    async fn sign_out_console_session(&self, id: &str, expires_at: Millis, now: Millis) -> Result<()> {
        let mut tx = self.begin_write().await?;
        // An hour past expiry: a server whose clock is behind still refuses the session.
        sqlx::query("DELETE FROM console_sign_outs WHERE expires_at < $1")
            .bind(now - SIGN_OUT_MARGIN_MILLIS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sign_outs (session_id, expires_at) VALUES ($1, $2) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        self.commit(tx).await
    }

    async fn console_session_signed_out(&self, id: &str) -> Result<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT session_id FROM console_sign_outs WHERE session_id = $1")
                .bind(id)
                .fetch_optional(&self.readers)
                .await?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl<DB> Health for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Reads answer, and writes are not failing until a restart (see `durability`).
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        self.durability.failure().await.map_or(Ok(()), |failure| Err(MetaError::Backend(failure)))
    }

    async fn totals(&self) -> Result<StoreTotals> {
        let (blobs, blob_bytes): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) \
             FROM (SELECT digest, MAX(size) AS size FROM blob_links GROUP BY digest) AS linked",
        )
        .fetch_one(&self.readers)
        .await?;
        let uploads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads").fetch_one(&self.readers).await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(StoreTotals { blobs: count(blobs), blob_bytes: count(blob_bytes), uploads: count(uploads) })
    }

    fn pools(&self) -> Vec<PoolStatus> {
        let status = |name, pool: &Pool<DB>| PoolStatus {
            name,
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        };
        vec![status("readers", &self.readers), status("writer", &self.writer)]
    }
}

#[async_trait]
impl<DB> RegistrySettingStore for SqlStore<DB>
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
    async fn registry_settings(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT name, value FROM registry_settings ORDER BY name").fetch_all(&self.readers).await?)
    }

    async fn put_registry_setting(&self, name: &str, value: Option<&str>) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        // First, as for credentials: the row lock orders the changes of all servers.
        sqlx::query("UPDATE store_meta SET value = value + 1 WHERE key = 'registry_settings_generation'")
            .execute(&mut *tx)
            .await?;
        let previous: Option<String> = sqlx::query_scalar("SELECT value FROM registry_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        match value {
            Some(value) => {
                sqlx::query(
                    "INSERT INTO registry_settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
            None if previous.is_none() => {
                // Takes the bump back: removing nothing changes nothing.
                tx.rollback().await?;
                return Ok(None);
            }
            None => {
                sqlx::query("DELETE FROM registry_settings WHERE name = $1").bind(name).execute(&mut *tx).await?;
            }
        }
        self.commit(tx).await?;
        Ok(previous)
    }

    async fn registry_settings_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'registry_settings_generation'")
            .fetch_one(&self.readers)
            .await?)
    }
}

#[async_trait]
impl<DB: sqlx::Database> Shutdown for SqlStore<DB> {
    async fn close(&self) {
        self.readers.close().await;
        // Closing SQLite's last connection checkpoints the WAL into the main file.
        self.writer.close().await;
    }
}
