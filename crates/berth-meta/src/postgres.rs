//! The scale-out backend: several `berth serve` processes share one PostgreSQL database.
//!
//! Transactions run at READ COMMITTED, and writers that can meet take row locks in one fixed
//! order, so they queue behind each other instead of failing with deadlock or serialization
//! errors, whichever server they run in:
//! 1. the repository row: `FOR NO KEY UPDATE` by whatever changes its manifests or tags (one such
//!    writer per repository at a time), `FOR KEY SHARE` by what only adds rows under it (blob
//!    links, upload sessions: they must not race its deletion), `FOR UPDATE` by its deletion;
//! 2. manifest rows, in (repository, digest) order: pull times, repository deletion;
//! 3. the row of the tag a push moves.
//!
//! Credential changes start by bumping the credentials generation, whose row lock serialises
//! them across servers.
//!
//! Text keys are `COLLATE "C"`, so comparisons and `ORDER BY` are byte-wise, the order the
//! distribution spec asks for, whatever the database's locale.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use berth_spec::{Digest, Reference, RepositoryName, Tag};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::sql::{
    ManifestRow, RepositoryRow, UploadRow, UserRow, check_schema_version, checked_tag_move, image_size, limit_param,
    manifest_columns, parse_digest, select_manifest, size_param, stored_size,
};
use crate::{
    ImageRecord, ManifestRecord, MetaError, MetadataStore, Millis, PutManifest, PutOutcome, Repository, Result,
    UploadSession, UserRecord,
};

/// Connections per server; the servers share the database's `max_connections` (100 by default).
const POOL_SIZE: u32 = 16;

/// How long an operation waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The advisory lock held while creating the schema ("berth" in ASCII; any constant would do).
const SCHEMA_LOCK: i64 = 0x62_65_72_74_68;

/// Idempotent, so it runs at every start. The same tables as the SQLite backend, with the same
/// cascades: deleting a manifest drops its tags and its own child edges, deleting a repository
/// drops all it holds, and nothing can orphan an index's child.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS store_meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);
-- Every database starts at version 1; later migrations run after this script and bump it.
INSERT INTO store_meta (key, value) VALUES ('schema_version', 1), ('credentials_generation', 0)
    ON CONFLICT (key) DO NOTHING;

CREATE TABLE IF NOT EXISTS repositories (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL,
    settings   TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS blob_links (
    repo       TEXT COLLATE "C" NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest     TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS blob_links_by_digest ON blob_links (digest);

CREATE TABLE IF NOT EXISTS manifests (
    repo           TEXT COLLATE "C" NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest         TEXT COLLATE "C" NOT NULL,
    media_type     TEXT NOT NULL,
    content        BYTEA NOT NULL,
    artifact_type  TEXT,
    subject        TEXT COLLATE "C",
    annotations    TEXT,
    image_size     BIGINT NOT NULL,
    pushed_at      BIGINT NOT NULL,
    last_pulled_at BIGINT,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS manifests_by_subject ON manifests (repo, subject);

CREATE TABLE IF NOT EXISTS tags (
    repo       TEXT COLLATE "C" NOT NULL,
    tag        TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo, tag),
    FOREIGN KEY (repo, digest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_by_digest ON tags (repo, digest);

CREATE TABLE IF NOT EXISTS manifest_children (
    repo   TEXT COLLATE "C" NOT NULL,
    parent TEXT COLLATE "C" NOT NULL,
    child  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, parent, child),
    FOREIGN KEY (repo, parent) REFERENCES manifests (repo, digest) ON DELETE CASCADE,
    -- Checked at commit: deleting a repository cascades to manifests and to these edges in
    -- no set order, and an edge only goes once its parent manifest does.
    FOREIGN KEY (repo, child) REFERENCES manifests (repo, digest) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX IF NOT EXISTS manifest_children_by_child ON manifest_children (repo, child);

CREATE TABLE IF NOT EXISTS uploads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    repo       TEXT COLLATE "C" NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_updated_at ON uploads (updated_at);

CREATE TABLE IF NOT EXISTS users (
    name              TEXT COLLATE "C" PRIMARY KEY,
    access_key_id     TEXT COLLATE "C" NOT NULL UNIQUE,
    secret_ciphertext BYTEA NOT NULL,
    created_at        BIGINT NOT NULL
);
"#;

/// Images with their tags in one statement, so both come from one snapshot: `$filter` selects
/// manifests `m`, `$tail` orders and limits the groups.
macro_rules! select_images {
    ($filter:literal, $tail:literal) => {
        concat!(
            "SELECT ",
            manifest_columns!(),
            ", COALESCE(array_agg(t.tag ORDER BY t.tag) FILTER (WHERE t.tag IS NOT NULL), '{}') AS tags ",
            "FROM manifests m LEFT JOIN tags t ON t.repo = m.repo AND t.digest = m.digest ",
            $filter,
            " GROUP BY m.repo, m.digest ",
            $tail
        )
    };
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) and creates
    /// the schema if it is missing.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| MetaError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        migrate(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

async fn migrate(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    // `CREATE TABLE IF NOT EXISTS` is not safe against a concurrent creator: servers starting
    // together would fail on each other's half-made tables.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(SCHEMA_LOCK).execute(&mut *tx).await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    let version: i64 =
        sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'schema_version'").fetch_one(&mut *tx).await?;
    check_schema_version(version)?;
    tx.commit().await?;
    Ok(())
}

/// How strongly a transaction holds its repository (see the module doc).
#[derive(Clone, Copy)]
enum RepositoryLock {
    /// Adding rows under it: only its deletion has to wait.
    AddRows,
    /// Changing its manifests or tags: one such writer at a time.
    ChangeContent,
}

/// Locks the repository row; false if there is no such repository.
async fn lock_repository(tx: &mut Transaction<'_, Postgres>, name: &str, lock: RepositoryLock) -> Result<bool> {
    let statement = match lock {
        RepositoryLock::AddRows => "SELECT TRUE FROM repositories WHERE name = $1 FOR KEY SHARE",
        RepositoryLock::ChangeContent => "SELECT TRUE FROM repositories WHERE name = $1 FOR NO KEY UPDATE",
    };
    let found: Option<bool> = sqlx::query_scalar(statement).bind(name).fetch_optional(&mut **tx).await?;
    Ok(found.is_some())
}

/// Comes first in every credential change: its row lock makes other servers' changes wait, and
/// a refused change rolls the bump back with the rest.
async fn bump_credentials_generation(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    sqlx::query("UPDATE store_meta SET value = value + 1 WHERE key = 'credentials_generation'")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ImageRow {
    #[sqlx(flatten)]
    manifest: ManifestRow,
    tags: Vec<String>,
}

impl TryFrom<ImageRow> for ImageRecord {
    type Error = MetaError;

    fn try_from(row: ImageRow) -> Result<Self> {
        Ok(ImageRecord { manifest: row.manifest.try_into()?, tags: row.tags })
    }
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn create_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository> {
        let created: Option<RepositoryRow> = sqlx::query_as(
            "INSERT INTO repositories (name, created_at, settings) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING \
             RETURNING name, created_at, settings",
        )
        .bind(name.as_str())
        .bind(now)
        .bind(settings)
        .fetch_optional(&self.pool)
        .await?;
        created.map(Into::into).ok_or_else(|| MetaError::RepositoryExists(name.to_string()))
    }

    async fn ensure_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository> {
        // Most pushes go to existing repositories: a plain read, no write, no lock.
        if let Some(existing) = self.get_repository(name).await? {
            return Ok(existing);
        }
        match self.create_repository(name, settings, now).await {
            // Another server created it since our read.
            Err(MetaError::RepositoryExists(_)) => {
                self.get_repository(name).await?.ok_or_else(|| MetaError::RepositoryNotFound(name.to_string()))
            }
            created => created,
        }
    }

    async fn get_repository(&self, name: &RepositoryName) -> Result<Option<Repository>> {
        let row: Option<RepositoryRow> =
            sqlx::query_as("SELECT name, created_at, settings FROM repositories WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn set_repository_settings(&self, name: &RepositoryName, settings: &str) -> Result<()> {
        let updated = sqlx::query("UPDATE repositories SET settings = $1 WHERE name = $2")
            .bind(settings)
            .bind(name.as_str())
            .execute(&self.pool)
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
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_repository(&self, name: &RepositoryName, force: bool) -> Result<Repository> {
        let mut tx = self.pool.begin().await?;
        let row: Option<RepositoryRow> =
            sqlx::query_as("SELECT name, created_at, settings FROM repositories WHERE name = $1 FOR UPDATE")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Err(MetaError::RepositoryNotFound(name.to_string()));
        };
        // Locked in digest order before the cascade deletes them in no particular order, which
        // could deadlock with a batch of pull times locking them in digest order.
        let manifests: Vec<bool> =
            sqlx::query_scalar("SELECT TRUE FROM manifests WHERE repo = $1 ORDER BY digest FOR UPDATE")
                .bind(name.as_str())
                .fetch_all(&mut *tx)
                .await?;
        if !force && !manifests.is_empty() {
            return Err(MetaError::RepositoryNotEmpty(name.to_string()));
        }
        // Cascades to blob links, manifests (and so tags and child edges) and uploads.
        sqlx::query("DELETE FROM repositories WHERE name = $1").bind(name.as_str()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(row.into())
    }

    async fn link_blob(&self, repo: &RepositoryName, digest: &Digest, size: u64, now: Millis) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !lock_repository(&mut tx, repo.as_str(), RepositoryLock::AddRows).await? {
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
            .fetch_optional(&self.pool)
            .await?;
        size.map(stored_size).transpose()
    }

    async fn unlink_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM blob_links WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn repositories_with_blob(&self, digest: &Digest) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT repo FROM blob_links WHERE digest = $1 ORDER BY repo")
            .bind(digest.as_str())
            .fetch_all(&self.pool)
            .await?)
    }

    async fn put_manifest(&self, put: PutManifest<'_>) -> Result<PutOutcome> {
        let repo = put.repo.as_str();
        let mut tx = self.pool.begin().await?;
        if !lock_repository(&mut tx, repo, RepositoryLock::AddRows).await? {
            return Err(MetaError::RepositoryNotFound(repo.to_owned()));
        }

        // One round trip each for the blobs and the children, however many there are.
        let blobs: Vec<&str> = put.blobs.iter().map(|(digest, _)| digest.as_str()).collect();
        let linked: HashSet<String> =
            sqlx::query_scalar("SELECT digest FROM blob_links WHERE repo = $1 AND digest = ANY($2)")
                .bind(repo)
                .bind(&blobs)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        if let Some((missing, _)) = put.blobs.iter().find(|(digest, _)| !linked.contains(digest.as_str())) {
            return Err(MetaError::BlobUnknown(missing.clone()));
        }
        let children: Vec<&str> = put.children.iter().map(Digest::as_str).collect();
        let found_children: HashMap<String, i64> =
            sqlx::query_as("SELECT digest, image_size FROM manifests WHERE repo = $1 AND digest = ANY($2)")
                .bind(repo)
                .bind(&children)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let child_sizes = put
            .children
            .iter()
            .map(|child| match found_children.get(child.as_str()) {
                Some(size) => stored_size(*size),
                None => Err(MetaError::ManifestUnknown(child.clone())),
            })
            .collect::<Result<Vec<u64>>>()?;
        let image_size = image_size(put.blobs, &child_sizes);

        let previous_tag_target = match put.tag {
            None => None,
            Some(tag) => {
                // The row lock makes a concurrent delete_tag wait for this push.
                let current: Option<String> =
                    sqlx::query_scalar("SELECT digest FROM tags WHERE repo = $1 AND tag = $2 FOR UPDATE")
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
        if manifest_created && !children.is_empty() {
            sqlx::query(
                "INSERT INTO manifest_children (repo, parent, child) SELECT $1, $2, child FROM unnest($3::text[]) \
                 AS child ON CONFLICT (repo, parent, child) DO NOTHING",
            )
            .bind(repo)
            .bind(put.digest.as_str())
            .bind(&children)
            .execute(&mut *tx)
            .await?;
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
                    .fetch_optional(&self.pool)
                    .await?
            }
            Reference::Tag(tag) => {
                sqlx::query_as(select_manifest!(
                    "JOIN tags t ON t.repo = m.repo AND t.digest = m.digest WHERE t.repo = $1 AND t.tag = $2"
                ))
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.map(TryInto::try_into).transpose()
    }

    async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Serialised with pushes, which could otherwise list it as a child meanwhile.
        if !lock_repository(&mut tx, repo.as_str(), RepositoryLock::ChangeContent).await? {
            return Err(MetaError::ManifestUnknown(digest.clone()));
        }
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
                .fetch_optional(&self.pool)
                .await?;
        digest.as_deref().map(parse_digest).transpose()
    }

    async fn list_tags(&self, repo: &RepositoryName, last: Option<&str>, limit: Option<usize>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT tag FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3")
            .bind(repo.as_str())
            .bind(last.unwrap_or(""))
            .bind(limit.map_or(i64::MAX, limit_param))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn referrers(&self, repo: &RepositoryName, subject: &Digest) -> Result<Vec<ManifestRecord>> {
        let rows: Vec<ManifestRow> =
            sqlx::query_as(select_manifest!("WHERE m.repo = $1 AND m.subject = $2 ORDER BY m.digest"))
                .bind(repo.as_str())
                .bind(subject.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn parents(&self, repo: &RepositoryName, child: &Digest) -> Result<Vec<Digest>> {
        let parents: Vec<String> =
            sqlx::query_scalar("SELECT parent FROM manifest_children WHERE repo = $1 AND child = $2 ORDER BY parent")
                .bind(repo.as_str())
                .bind(child.as_str())
                .fetch_all(&self.pool)
                .await?;
        parents.iter().map(|p| parse_digest(p)).collect()
    }

    async fn list_images(
        &self,
        repo: &RepositoryName,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>> {
        let rows: Vec<ImageRow> =
            sqlx::query_as(select_images!("WHERE m.repo = $1 AND m.digest > $2", "ORDER BY m.digest LIMIT $3"))
                .bind(repo.as_str())
                .bind(after.map_or("", Digest::as_str))
                .bind(limit_param(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn get_image(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<ImageRecord>> {
        let row: Option<ImageRow> = sqlx::query_as(select_images!("WHERE m.repo = $1 AND m.digest = $2", ""))
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn record_pulls(&self, pulls: &[(RepositoryName, Digest, Millis)]) -> Result<()> {
        // The latest time per manifest, in (repository, digest) order.
        let mut latest: BTreeMap<(&str, &str), Millis> = BTreeMap::new();
        for (repo, digest, at) in pulls {
            let time = latest.entry((repo.as_str(), digest.as_str())).or_insert(*at);
            *time = (*time).max(*at);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let ((repos, digests), times): ((Vec<&str>, Vec<&str>), Vec<Millis>) = latest.into_iter().unzip();
        let mut tx = self.pool.begin().await?;
        // Locked in order first: an UPDATE locks rows in whatever order its plan visits them, and
        // two servers flushing overlapping batches would deadlock.
        sqlx::query(
            "SELECT TRUE FROM manifests m JOIN unnest($1::text[], $2::text[]) AS p (repo, digest) \
             ON m.repo = p.repo AND m.digest = p.digest ORDER BY m.repo, m.digest FOR NO KEY UPDATE OF m",
        )
        .bind(&repos)
        .bind(&digests)
        .execute(&mut *tx)
        .await?;
        // Manifests deleted since the pull are simply not updated.
        sqlx::query(
            "UPDATE manifests m SET last_pulled_at = p.at \
             FROM unnest($1::text[], $2::text[], $3::bigint[]) AS p (repo, digest, at) \
             WHERE m.repo = p.repo AND m.digest = p.digest AND (m.last_pulled_at IS NULL OR m.last_pulled_at < p.at)",
        )
        .bind(&repos)
        .bind(&digests)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !lock_repository(&mut tx, &session.repo, RepositoryLock::AddRows).await? {
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
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn touch_upload(&self, id: &str, now: Millis) -> Result<()> {
        // A session that vanished meanwhile (cancelled, expired) has nothing left to keep alive.
        sqlx::query("UPDATE uploads SET updated_at = $1 WHERE id = $2").bind(now).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn stale_uploads(&self, before: Millis) -> Result<Vec<UploadSession>> {
        let rows: Vec<UploadRow> = sqlx::query_as(
            "SELECT id, repo, created_at, updated_at FROM uploads WHERE updated_at < $1 ORDER BY updated_at, id",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        bump_credentials_generation(&mut tx).await?;
        // Every other server's change committed or waits now, so this check sees them all.
        let clash: Option<bool> = sqlx::query_scalar("SELECT TRUE FROM users WHERE name = $1 OR access_key_id = $2")
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
        tx.commit().await?;
        Ok(())
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> =
            sqlx::query_as("SELECT name, access_key_id, secret_ciphertext, created_at FROM users ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        bump_credentials_generation(&mut tx).await?;
        let deleted = sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn user_by_access_key(&self, access_key_id: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT name, access_key_id, secret_ciphertext, created_at FROM users WHERE access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT name, access_key_id, secret_ciphertext, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn credentials_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'credentials_generation'")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use futures::future::join_all;

    use super::*;
    use crate::sql::SCHEMA_VERSION;

    const URL_VAR: &str = "BERTH_TEST_POSTGRES_URL";

    /// A schema of its own on the test server, so each test starts from an empty database and
    /// creates the tables itself; stores reach it through `url`.
    struct Scratch {
        admin: PgPool,
        schema: String,
        url: String,
    }

    impl Scratch {
        /// None, after saying so where the test output shows it, if no server is configured.
        async fn new() -> Option<Scratch> {
            let Ok(base) = std::env::var(URL_VAR) else {
                // Straight to stderr: the test harness captures print macros of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: {URL_VAR} not set; scripts/postgres.sh starts a server and prints it ***\n"
                );
                return None;
            };
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let schema = format!("berth_test_{}_{nanos}", std::process::id());
            let admin = PgPool::connect(&base).await.expect("the test PostgreSQL server is unreachable");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.unwrap();
            let separator = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{separator}options[search_path]={schema}");
            Some(Scratch { admin, schema, url })
        }

        async fn store(&self) -> PostgresStore {
            PostgresStore::connect(&self.url).await.unwrap()
        }

        async fn drop_schema(self) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", self.schema)))
                .execute(&self.admin)
                .await
                .unwrap();
            self.admin.close().await;
        }
    }

    fn name(s: &str) -> RepositoryName {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn conformance() {
        let Some(scratch) = Scratch::new().await else { return };
        let store = scratch.store().await;
        crate::testsuite::run_all(&store).await;
        store.close().await;
        // Again through a second server's store, on a schema that exists and holds data.
        let store = scratch.store().await;
        crate::testsuite::run_all(&store).await;
        store.close().await;
        scratch.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn servers_starting_together_create_the_schema_once() {
        let Some(scratch) = Scratch::new().await else { return };
        let stores: Vec<PostgresStore> =
            join_all((0..6).map(|_| PostgresStore::connect(&scratch.url))).await.into_iter().map(Result::unwrap).collect();
        stores[0].create_repository(&name("seen/everywhere"), "{}", 1).await.unwrap();
        for store in &stores {
            assert!(store.get_repository(&name("seen/everywhere")).await.unwrap().is_some());
            store.close().await;
        }
        scratch.drop_schema().await;
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let Some(scratch) = Scratch::new().await else { return };
        scratch.store().await.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "UPDATE {}.store_meta SET value = {} WHERE key = 'schema_version'",
            scratch.schema,
            SCHEMA_VERSION + 1
        )))
        .execute(&scratch.admin)
        .await
        .unwrap();
        let err = PostgresStore::connect(&scratch.url).await.err().expect("newer schema must be refused");
        assert!(matches!(&err, MetaError::Backend(m) if m.contains("schema version")), "{err:?}");
        scratch.drop_schema().await;
    }

    /// Two servers (two stores, two pools) push one tag, flush overlapping pull batches in
    /// opposite orders and delete a repository those batches touch, all at once: every operation
    /// succeeds (no deadlock or serialization error reaches the caller) and the tag moves form one
    /// chain through every push.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_servers_move_one_tag() {
        const PUSHES: usize = 40;
        let Some(scratch) = Scratch::new().await else { return };
        let servers = [scratch.store().await, scratch.store().await];
        let [a, b] = &servers;
        let repo = name("shared/app");
        let doomed = name("shared/doomed");
        a.create_repository(&repo, "{}", 1).await.unwrap();
        b.create_repository(&doomed, "{}", 1).await.unwrap();
        let layer = Digest::sha256_of(b"layer");
        b.link_blob(&repo, &layer, 5, 1).await.unwrap();
        let blobs = [(layer, 5)];

        let manifests: Vec<(Vec<u8>, Digest)> = (0..PUSHES)
            .map(|i| {
                let content = format!("{{\"schemaVersion\":2,\"n\":{i}}}").into_bytes();
                let digest = Digest::sha256_of(&content);
                (content, digest)
            })
            .collect();
        let put = |repo, (content, digest): &'static (Vec<u8>, Digest), tag, now| PutManifest {
            repo,
            digest,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            content,
            artifact_type: None,
            annotations: None,
            subject: None,
            blobs: &[],
            children: &[],
            tag,
            tag_immutable: false,
            now,
        };
        let manifests: &'static [(Vec<u8>, Digest)] = manifests.leak();
        // The doomed repository's manifests, pulled by both servers while it is deleted.
        for (i, manifest) in manifests.iter().enumerate() {
            a.put_manifest(put(&doomed, manifest, None, i as i64)).await.unwrap();
        }
        let pulls: Vec<(RepositoryName, Digest, Millis)> = manifests
            .iter()
            .flat_map(|(_, d)| [(repo.clone(), d.clone(), 50), (doomed.clone(), d.clone(), 60)])
            .collect();
        let reversed: Vec<_> = pulls.iter().rev().cloned().collect();

        let hot: Tag = "hot".parse().unwrap();
        let pushes = manifests.iter().enumerate().map(|(i, manifest)| {
            let server = &servers[i % 2];
            let put = PutManifest { blobs: &blobs, ..put(&repo, manifest, Some(&hot), i as i64) };
            async move { server.put_manifest(put).await.unwrap() }
        });
        let (outcomes, pulled_a, pulled_b, deleted) = tokio::join!(
            join_all(pushes),
            a.record_pulls(&pulls),
            b.record_pulls(&reversed),
            b.delete_repository(&doomed, true),
        );
        pulled_a.unwrap();
        pulled_b.unwrap();
        deleted.unwrap();

        assert!(outcomes.iter().all(|o| o.manifest_created));
        let previous: Vec<&Digest> = outcomes.iter().filter_map(|o| o.previous_tag_target.as_ref()).collect();
        assert_eq!(previous.len(), PUSHES - 1, "exactly one push found the tag absent");
        let current = b.get_manifest(&repo, &Reference::Tag(hot.clone())).await.unwrap().unwrap().digest;
        let mut chain: HashSet<&Digest> = previous.into_iter().collect();
        assert!(chain.insert(&current), "the final target was nobody's previous target");
        assert_eq!(chain.len(), PUSHES, "the previous targets chain through every push");

        // Pull times of manifests that existed when the batches ran were recorded; the pushes
        // may have come after them, so a manifest has either the pull time or none yet.
        for (_, digest) in manifests {
            let pulled = a.get_image(&repo, digest).await.unwrap().unwrap().manifest.last_pulled_at;
            assert!(matches!(pulled, None | Some(50)), "{pulled:?}");
        }
        assert_eq!(a.get_repository(&doomed).await.unwrap(), None);
        for server in &servers {
            server.close().await;
        }
        scratch.drop_schema().await;
    }

    /// Users made through one server are seen by the other, and its generation counter moves.
    #[tokio::test]
    async fn credentials_generation_spans_servers() {
        let Some(scratch) = Scratch::new().await else { return };
        let (a, b) = (scratch.store().await, scratch.store().await);
        let before = b.credentials_generation().await.unwrap();
        let user = UserRecord {
            name: "ops".into(),
            access_key_id: "AKOPS".into(),
            secret_ciphertext: vec![1, 2, 3],
            created_at: 9,
        };
        a.create_user(&user).await.unwrap();
        let after_create = b.credentials_generation().await.unwrap();
        assert_ne!(after_create, before);
        assert_eq!(b.user_by_access_key("AKOPS").await.unwrap(), Some(user.clone()));
        let err = b.create_user(&user).await.unwrap_err();
        assert!(matches!(&err, MetaError::UserExists(n) if n == "ops"), "{err:?}");
        assert!(b.delete_user("ops").await.unwrap());
        assert_ne!(a.credentials_generation().await.unwrap(), after_create);
        assert_eq!(a.user_by_name("ops").await.unwrap(), None);
        a.close().await;
        b.close().await;
        scratch.drop_schema().await;
    }
}
