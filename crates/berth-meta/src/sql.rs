//! What the SQLite and PostgreSQL backends share: the statements both dialects run alike
//! ([`Statements`]), the rows they read and how those become records, and the rules both apply.
//! Schemas, transactions, locking and the statements that differ stay in each backend.

use std::marker::PhantomData;

use berth_spec::{Digest, Reference, RepositoryName, Tag};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use crate::{ManifestRecord, MetaError, Millis, PutManifest, Repository, Result, UploadSession, UserRecord};

/// Bumped whenever the schema changes; a database written by a newer version is refused.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Every sqlx failure (I/O, constraint, pool closed) is a backend error to the caller; the
/// expected conditions are checked explicitly and reported with their own variants.
impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        MetaError::Backend(e.to_string())
    }
}

/// Maps a foreign-key violation of a row naming `repo` to `RepositoryNotFound`: lets a
/// single-statement write skip the existence read (one statement, one round trip to the database).
pub(crate) fn repository_gone(repo: &str) -> impl FnOnce(sqlx::Error) -> MetaError + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => MetaError::RepositoryNotFound(repo.to_owned()),
        _ => e.into(),
    }
}

pub(crate) fn check_schema_version(version: i64) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(MetaError::Backend(format!(
            "the metadata database has schema version {version}, newer than this build's {SCHEMA_VERSION}; \
             upgrade berth"
        )));
    }
    Ok(())
}

pub(crate) fn parse_digest(text: &str) -> Result<Digest> {
    text.parse().map_err(|e| MetaError::Backend(format!("stored digest {text:?} is invalid: {e}")))
}

pub(crate) fn stored_size(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| MetaError::Backend(format!("stored size {value} is negative")))
}

/// Both databases store integers as signed 64-bit; no real blob comes near the limit.
pub(crate) fn size_param(size: u64) -> Result<i64> {
    i64::try_from(size).map_err(|_| MetaError::Backend(format!("size {size} does not fit in 63 bits")))
}

pub(crate) fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The size ECR reports: an image is as large as its config and layers together, an index as its
/// largest child (`child_sizes` is empty for an image).
pub(crate) fn image_size(blobs: &[(Digest, u64)], child_sizes: &[u64]) -> u64 {
    match child_sizes.iter().max() {
        Some(largest) => *largest,
        None => blobs.iter().fold(0, |sum, (_, size)| sum.saturating_add(*size)),
    }
}

/// Where `put.tag` points now (`current`, as stored), refusing to move an immutable tag elsewhere.
pub(crate) fn checked_tag_move(put: &PutManifest<'_>, current: Option<String>) -> Result<Option<Digest>> {
    let current = current.as_deref().map(parse_digest).transpose()?;
    if let (Some(tag), Some(current)) = (put.tag, &current)
        && put.tag_immutable
        && current != put.digest
    {
        return Err(MetaError::TagImmutable { tag: tag.to_string(), current: current.clone() });
    }
    Ok(current)
}

/// The columns [`ManifestRow`] reads, from `manifests` under the alias `m`.
macro_rules! manifest_columns {
    () => {
        "m.digest, m.media_type, m.content, m.artifact_type, m.subject, m.annotations, m.image_size, \
         m.pushed_at, m.last_pulled_at"
    };
}
pub(crate) use manifest_columns;

/// A query for [`ManifestRow`]s, `$rest` following `FROM manifests m`.
macro_rules! select_manifest {
    ($rest:literal) => {
        concat!("SELECT ", $crate::sql::manifest_columns!(), " FROM manifests m ", $rest)
    };
}
pub(crate) use select_manifest;

#[derive(sqlx::FromRow)]
pub(crate) struct RepositoryRow {
    name: String,
    created_at: i64,
    settings: String,
}

impl From<RepositoryRow> for Repository {
    fn from(r: RepositoryRow) -> Self {
        Repository { name: r.name, created_at: r.created_at, settings: r.settings }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ManifestRow {
    pub(crate) digest: String,
    media_type: String,
    content: Vec<u8>,
    artifact_type: Option<String>,
    subject: Option<String>,
    annotations: Option<String>,
    image_size: i64,
    pushed_at: i64,
    last_pulled_at: Option<i64>,
}

impl TryFrom<ManifestRow> for ManifestRecord {
    type Error = MetaError;

    fn try_from(r: ManifestRow) -> Result<Self> {
        Ok(ManifestRecord {
            digest: parse_digest(&r.digest)?,
            media_type: r.media_type,
            content: r.content,
            artifact_type: r.artifact_type,
            subject: r.subject.as_deref().map(parse_digest).transpose()?,
            annotations: r.annotations,
            image_size: stored_size(r.image_size)?,
            pushed_at: r.pushed_at,
            last_pulled_at: r.last_pulled_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UploadRow {
    id: String,
    repo: String,
    created_at: i64,
    updated_at: i64,
}

impl From<UploadRow> for UploadSession {
    fn from(r: UploadRow) -> Self {
        UploadSession { id: r.id, repo: r.repo, created_at: r.created_at, updated_at: r.updated_at }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    name: String,
    access_key_id: String,
    secret_ciphertext: Vec<u8>,
    created_at: i64,
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> Self {
        UserRecord {
            name: r.name,
            access_key_id: r.access_key_id,
            secret_ciphertext: r.secret_ciphertext,
            created_at: r.created_at,
        }
    }
}

/// The statements both dialects run alike, over either database's pools, connections and
/// transactions: `Statements::<Sqlite>::linked_blob(&self.readers, ..)`. Which connection runs
/// them, and what is locked first, is the backend's business.
pub(crate) struct Statements<DB>(PhantomData<DB>);

/// The bounds say what the statements bind and read; sqlx code generic over the database has to
/// spell them out, and both drivers meet them.
impl<DB: Database> Statements<DB>
where
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    RepositoryRow: for<'r> FromRow<'r, DB::Row>,
    ManifestRow: for<'r> FromRow<'r, DB::Row>,
    UploadRow: for<'r> FromRow<'r, DB::Row>,
    UserRow: for<'r> FromRow<'r, DB::Row>,
{
    // ---- repositories

    pub(crate) async fn create_repository<'c>(
        db: impl Executor<'c, Database = DB>,
        name: &RepositoryName,
        settings: &str,
        now: Millis,
    ) -> Result<Repository> {
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO repositories (name, created_at, settings) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING \
             RETURNING name",
        )
        .bind(name.as_str())
        .bind(now)
        .bind(settings)
        .fetch_optional(db)
        .await?;
        if inserted.is_none() {
            return Err(MetaError::RepositoryExists(name.to_string()));
        }
        Ok(Repository { name: name.to_string(), created_at: now, settings: settings.to_owned() })
    }

    /// In a transaction, or a repository deleted at the wrong moment is reported missing.
    pub(crate) async fn ensure_repository(
        conn: &mut DB::Connection,
        name: &RepositoryName,
        settings: &str,
        now: Millis,
    ) -> Result<Repository> {
        // Where another server inserts it at the same time, this waits for it and does nothing.
        sqlx::query(
            "INSERT INTO repositories (name, created_at, settings) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(now)
        .bind(settings)
        .execute(&mut *conn)
        .await?;
        Self::repository(&mut *conn, name.as_str())
            .await?
            .ok_or_else(|| MetaError::RepositoryNotFound(name.to_string()))
    }

    pub(crate) async fn repository<'c>(db: impl Executor<'c, Database = DB>, name: &str) -> Result<Option<Repository>> {
        let row: Option<RepositoryRow> =
            sqlx::query_as("SELECT name, created_at, settings FROM repositories WHERE name = $1")
                .bind(name)
                .fetch_optional(db)
                .await?;
        Ok(row.map(Into::into))
    }

    pub(crate) async fn set_repository_settings<'c>(
        db: impl Executor<'c, Database = DB>,
        name: &RepositoryName,
        settings: &str,
    ) -> Result<()> {
        let updated: Option<String> =
            sqlx::query_scalar("UPDATE repositories SET settings = $1 WHERE name = $2 RETURNING name")
                .bind(settings)
                .bind(name.as_str())
                .fetch_optional(db)
                .await?;
        updated.map(drop).ok_or_else(|| MetaError::RepositoryNotFound(name.to_string()))
    }

    pub(crate) async fn list_repositories<'c>(
        db: impl Executor<'c, Database = DB>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Repository>> {
        // Names are never empty, so "" sorts before all of them.
        let rows: Vec<RepositoryRow> = sqlx::query_as(
            "SELECT name, created_at, settings FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit_param(limit))
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    // ---- blob links

    /// A missing repository is `RepositoryNotFound` (by its foreign key) unless locked first.
    pub(crate) async fn link_blob<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            // Re-linking restarts the link's grace period: the push is about to reference it.
            "INSERT INTO blob_links (repo, digest, size, created_at, touched_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (repo, digest) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .bind(size_param(size)?)
        .bind(now)
        .execute(db)
        .await
        .map_err(repository_gone(repo.as_str()))?;
        Ok(())
    }

    pub(crate) async fn linked_blob<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar("SELECT size FROM blob_links WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(db)
            .await?;
        size.map(stored_size).transpose()
    }

    pub(crate) async fn unlink_blob<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool> {
        let deleted: Option<String> =
            sqlx::query_scalar("DELETE FROM blob_links WHERE repo = $1 AND digest = $2 RETURNING digest")
                .bind(repo.as_str())
                .bind(digest.as_str())
                .fetch_optional(db)
                .await?;
        Ok(deleted.is_some())
    }

    pub(crate) async fn repositories_with_blob<'c>(
        db: impl Executor<'c, Database = DB>,
        digest: &Digest,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT repo FROM blob_links WHERE digest = $1 ORDER BY repo")
            .bind(digest.as_str())
            .fetch_all(db)
            .await?)
    }

    // ---- manifests and tags

    /// The writing half of `put_manifest`, once the backend has checked blobs, children and tag
    /// (`previous_tag_target`) under its locks. Returns whether the manifest is new.
    pub(crate) async fn store_manifest(
        conn: &mut DB::Connection,
        put: &PutManifest<'_>,
        image_size: u64,
        previous_tag_target: Option<&Digest>,
    ) -> Result<bool> {
        let repo = put.repo.as_str();
        // A re-push keeps the first pushed_at, as ECR reports it.
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO manifests (repo, digest, media_type, content, artifact_type, subject, annotations, \
             image_size, pushed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (repo, digest) DO NOTHING RETURNING digest",
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
        .fetch_optional(&mut *conn)
        .await?;
        let created = inserted.is_some();
        if created {
            for child in put.children {
                sqlx::query(
                    "INSERT INTO manifest_children (repo, parent, child) VALUES ($1, $2, $3) \
                     ON CONFLICT (repo, parent, child) DO NOTHING",
                )
                .bind(repo)
                .bind(put.digest.as_str())
                .bind(child.as_str())
                .execute(&mut *conn)
                .await?;
            }
            Self::record_manifest_blobs(&mut *conn, put).await?;
        }
        if let Some(tag) = put.tag
            && previous_tag_target != Some(put.digest)
        {
            sqlx::query(
                "INSERT INTO tags (repo, tag, digest, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(tag.as_str())
            .bind(put.digest.as_str())
            .bind(put.now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(created)
    }

    pub(crate) async fn manifest<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let row: Option<ManifestRow> = match reference {
            Reference::Digest(digest) => {
                sqlx::query_as(select_manifest!("WHERE m.repo = $1 AND m.digest = $2"))
                    .bind(repo.as_str())
                    .bind(digest.as_str())
                    .fetch_optional(db)
                    .await?
            }
            Reference::Tag(tag) => {
                sqlx::query_as(select_manifest!(
                    "JOIN tags t ON t.repo = m.repo AND t.digest = m.digest WHERE t.repo = $1 AND t.tag = $2"
                ))
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(db)
                .await?
            }
        };
        row.map(TryInto::try_into).transpose()
    }

    /// In a transaction that keeps pushes from listing the manifest as a child meanwhile.
    pub(crate) async fn delete_manifest(
        conn: &mut DB::Connection,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<()> {
        let parent: Option<String> = sqlx::query_scalar(
            "SELECT parent FROM manifest_children WHERE repo = $1 AND child = $2 ORDER BY parent LIMIT 1",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(parent) = parent {
            return Err(MetaError::ManifestReferenced { index: parse_digest(&parent)? });
        }
        Self::release_manifest_blobs(&mut *conn, repo, digest).await?;
        // Cascades to its tags, its own child edges and its blob references.
        let deleted: Option<String> =
            sqlx::query_scalar("DELETE FROM manifests WHERE repo = $1 AND digest = $2 RETURNING digest")
                .bind(repo.as_str())
                .bind(digest.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        deleted.map(drop).ok_or_else(|| MetaError::ManifestUnknown(digest.clone()))
    }

    pub(crate) async fn delete_tag<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<Digest>> {
        let digest: Option<String> =
            sqlx::query_scalar("DELETE FROM tags WHERE repo = $1 AND tag = $2 RETURNING digest")
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(db)
                .await?;
        digest.as_deref().map(parse_digest).transpose()
    }

    /// Byte-wise: SQLite's default BINARY collation compares bytes, PostgreSQL's columns are
    /// `COLLATE "C"`.
    pub(crate) async fn list_tags<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        last: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT tag FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3")
            .bind(repo.as_str())
            .bind(last.unwrap_or(""))
            .bind(limit.map_or(i64::MAX, limit_param))
            .fetch_all(db)
            .await?)
    }

    pub(crate) async fn referrers<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>> {
        let rows: Vec<ManifestRow> =
            sqlx::query_as(select_manifest!("WHERE m.repo = $1 AND m.subject = $2 ORDER BY m.digest"))
                .bind(repo.as_str())
                .bind(subject.as_str())
                .fetch_all(db)
                .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub(crate) async fn parents<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        child: &Digest,
    ) -> Result<Vec<Digest>> {
        let parents: Vec<String> =
            sqlx::query_scalar("SELECT parent FROM manifest_children WHERE repo = $1 AND child = $2 ORDER BY parent")
                .bind(repo.as_str())
                .bind(child.as_str())
                .fetch_all(db)
                .await?;
        parents.iter().map(|p| parse_digest(p)).collect()
    }

    // ---- upload sessions

    /// A missing repository is `RepositoryNotFound` (by its foreign key) unless locked first.
    pub(crate) async fn create_upload<'c>(db: impl Executor<'c, Database = DB>, session: &UploadSession) -> Result<()> {
        sqlx::query("INSERT INTO uploads (id, repo, created_at, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(session.id.as_str())
            .bind(session.repo.as_str())
            .bind(session.created_at)
            .bind(session.updated_at)
            .execute(db)
            .await
            .map_err(repository_gone(&session.repo))?;
        Ok(())
    }

    pub(crate) async fn upload<'c>(db: impl Executor<'c, Database = DB>, id: &str) -> Result<Option<UploadSession>> {
        let row: Option<UploadRow> =
            sqlx::query_as("SELECT id, repo, created_at, updated_at FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(db)
                .await?;
        Ok(row.map(Into::into))
    }

    pub(crate) async fn touch_upload<'c>(db: impl Executor<'c, Database = DB>, id: &str, now: Millis) -> Result<()> {
        // A session that vanished meanwhile (cancelled, expired) has nothing left to keep alive.
        sqlx::query("UPDATE uploads SET updated_at = $1 WHERE id = $2").bind(now).bind(id).execute(db).await?;
        Ok(())
    }

    pub(crate) async fn delete_upload<'c>(db: impl Executor<'c, Database = DB>, id: &str) -> Result<bool> {
        let deleted: Option<String> =
            sqlx::query_scalar("DELETE FROM uploads WHERE id = $1 RETURNING id").bind(id).fetch_optional(db).await?;
        Ok(deleted.is_some())
    }

    pub(crate) async fn stale_uploads<'c>(
        db: impl Executor<'c, Database = DB>,
        before: Millis,
    ) -> Result<Vec<UploadSession>> {
        let rows: Vec<UploadRow> = sqlx::query_as(
            "SELECT id, repo, created_at, updated_at FROM uploads WHERE updated_at < $1 ORDER BY updated_at, id",
        )
        .bind(before)
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    // ---- credentials

    /// In a transaction that keeps other credential changes out, with
    /// [`Self::bump_credentials_generation`]: fails with `UserExists` if the name or the access
    /// key is taken.
    pub(crate) async fn create_user(conn: &mut DB::Connection, user: &UserRecord) -> Result<()> {
        let clash: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE name = $1 OR access_key_id = $2")
            .bind(user.name.as_str())
            .bind(user.access_key_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        if clash.is_some() {
            return Err(MetaError::UserExists(user.name.clone()));
        }
        sqlx::query("INSERT INTO users (name, access_key_id, secret_ciphertext, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user.name.as_str())
            .bind(user.access_key_id.as_str())
            .bind(user.secret_ciphertext.as_slice())
            .bind(user.created_at)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// In the same transaction as the user change, which a rollback takes back with it.
    pub(crate) async fn bump_credentials_generation<'c>(db: impl Executor<'c, Database = DB>) -> Result<()> {
        sqlx::query("UPDATE store_meta SET value = value + 1 WHERE key = 'credentials_generation'").execute(db).await?;
        Ok(())
    }

    pub(crate) async fn delete_user<'c>(db: impl Executor<'c, Database = DB>, name: &str) -> Result<bool> {
        let deleted: Option<String> = sqlx::query_scalar("DELETE FROM users WHERE name = $1 RETURNING name")
            .bind(name)
            .fetch_optional(db)
            .await?;
        Ok(deleted.is_some())
    }

    pub(crate) async fn list_users<'c>(db: impl Executor<'c, Database = DB>) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> =
            sqlx::query_as("SELECT name, access_key_id, secret_ciphertext, created_at FROM users ORDER BY name")
                .fetch_all(db)
                .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub(crate) async fn user_by_access_key<'c>(
        db: impl Executor<'c, Database = DB>,
        access_key_id: &str,
    ) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT name, access_key_id, secret_ciphertext, created_at FROM users WHERE access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(db)
        .await?;
        Ok(row.map(Into::into))
    }

    pub(crate) async fn user_by_name<'c>(
        db: impl Executor<'c, Database = DB>,
        name: &str,
    ) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT name, access_key_id, secret_ciphertext, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(db)
                .await?;
        Ok(row.map(Into::into))
    }

    pub(crate) async fn credentials_generation<'c>(db: impl Executor<'c, Database = DB>) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'credentials_generation'")
            .fetch_one(db)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_size_sums_blobs_or_takes_the_largest_child() {
        let blobs = [(Digest::sha256_of(b"config"), 10), (Digest::sha256_of(b"layer"), 32)];
        assert_eq!(image_size(&blobs, &[]), 42);
        assert_eq!(image_size(&[], &[]), 0);
        assert_eq!(image_size(&[], &[7, 90, 3]), 90);
        assert_eq!(image_size(&[(Digest::sha256_of(b"huge"), u64::MAX), blobs[0].clone()], &[]), u64::MAX);
    }
}
