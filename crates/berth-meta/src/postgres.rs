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
    ManifestRow, RepositoryRow, Statements, check_schema_version, checked_tag_move, image_size, limit_param,
    manifest_columns, stored_size,
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
    if version < 2 {
        sqlx::raw_sql(crate::gc::POSTGRES_V2).execute(&mut *tx).await?;
        Shared::backfill_manifest_blobs(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The statements PostgreSQL runs like SQLite.
type Shared = Statements<Postgres>;

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
        Shared::create_repository(&self.pool, name, settings, now).await
    }

    async fn ensure_repository(&self, name: &RepositoryName, settings: &str, now: Millis) -> Result<Repository> {
        let mut tx = self.pool.begin().await?;
        let repository = Shared::ensure_repository(&mut tx, name, settings, now).await?;
        tx.commit().await?;
        Ok(repository)
    }

    async fn get_repository(&self, name: &RepositoryName) -> Result<Option<Repository>> {
        Shared::repository(&self.pool, name.as_str()).await
    }

    async fn set_repository_settings(&self, name: &RepositoryName, settings: &str) -> Result<()> {
        Shared::set_repository_settings(&self.pool, name, settings).await
    }

    async fn list_repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<Repository>> {
        Shared::list_repositories(&self.pool, after, limit).await
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
        Shared::link_blob(&mut *tx, repo, digest, size, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn linked_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        Shared::linked_blob(&self.pool, repo, digest).await
    }

    async fn unlink_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        Shared::unlink_blob(&self.pool, repo, digest).await
    }

    async fn repositories_with_blob(&self, digest: &Digest) -> Result<Vec<String>> {
        Shared::repositories_with_blob(&self.pool, digest).await
    }

    async fn put_manifest(&self, put: PutManifest<'_>) -> Result<PutOutcome> {
        let repo = put.repo.as_str();
        let mut tx = self.pool.begin().await?;
        if !lock_repository(&mut tx, repo, RepositoryLock::ChangeContent).await? {
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

        let manifest_created = Shared::store_manifest(&mut tx, &put, image_size, previous_tag_target.as_ref()).await?;
        tx.commit().await?;
        Ok(PutOutcome { manifest_created, previous_tag_target })
    }

    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Option<ManifestRecord>> {
        Shared::manifest(&self.pool, repo, reference).await
    }

    async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !lock_repository(&mut tx, repo.as_str(), RepositoryLock::ChangeContent).await? {
            return Err(MetaError::ManifestUnknown(digest.clone()));
        }
        Shared::delete_manifest(&mut tx, repo, digest).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>> {
        Shared::delete_tag(&self.pool, repo, tag).await
    }

    async fn list_tags(&self, repo: &RepositoryName, last: Option<&str>, limit: Option<usize>) -> Result<Vec<String>> {
        Shared::list_tags(&self.pool, repo, last, limit).await
    }

    async fn referrers(&self, repo: &RepositoryName, subject: &Digest) -> Result<Vec<ManifestRecord>> {
        Shared::referrers(&self.pool, repo, subject).await
    }

    async fn parents(&self, repo: &RepositoryName, child: &Digest) -> Result<Vec<Digest>> {
        Shared::parents(&self.pool, repo, child).await
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
        Shared::create_upload(&mut *tx, session).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>> {
        Shared::upload(&self.pool, id).await
    }

    async fn touch_upload(&self, id: &str, now: Millis) -> Result<()> {
        Shared::touch_upload(&self.pool, id, now).await
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        Shared::delete_upload(&self.pool, id).await
    }

    async fn delete_uploads(&self, ids: &[String]) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = ANY($1)").bind(ids).execute(&self.pool).await?;
        Ok(())
    }

    async fn stale_uploads(&self, before: Millis) -> Result<Vec<UploadSession>> {
        Shared::stale_uploads(&self.pool, before).await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // First: every other server's change has committed or waits now, so the clash check
        // inside sees them all.
        Shared::bump_credentials_generation(&mut *tx).await?;
        Shared::create_user(&mut tx, user).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        Shared::list_users(&self.pool).await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        Shared::bump_credentials_generation(&mut *tx).await?;
        if !Shared::delete_user(&mut *tx, name).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn user_by_access_key(&self, access_key_id: &str) -> Result<Option<UserRecord>> {
        Shared::user_by_access_key(&self.pool, access_key_id).await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        Shared::user_by_name(&self.pool, name).await
    }

    async fn credentials_generation(&self) -> Result<i64> {
        Shared::credentials_generation(&self.pool).await
    }

    async fn release_unreferenced_links(&self, before: Millis, now: Millis, dry_run: bool) -> Result<u64> {
        if dry_run {
            return Shared::count_releasable_links(&self.pool, before).await;
        }
        let mut released = 0;
        for repo in Shared::repositories_with_releasable_links(&self.pool, before).await? {
            let mut tx = self.pool.begin().await?;
            // As a push would: put_manifest checks links under this lock, so a link cannot go
            // between its check and its commit.
            if lock_repository(&mut tx, &repo, RepositoryLock::ChangeContent).await? {
                released += Shared::release_links(&mut tx, &repo, before, now).await?;
            }
            tx.commit().await?;
        }
        Ok(released)
    }

    async fn note_unlinked_blobs(&self, digests: &[Digest], now: Millis, dry_run: bool) -> Result<Vec<Digest>> {
        let mut unlinked = Vec::new();
        for digest in digests {
            if !Shared::is_linked_anywhere(&self.pool, digest.as_str()).await? {
                unlinked.push(digest.clone());
            }
        }
        if !dry_run && !unlinked.is_empty() {
            // In digest order, so two servers noting overlapping batches cannot deadlock.
            let mut sorted: Vec<&Digest> = unlinked.iter().collect();
            sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            let mut tx = self.pool.begin().await?;
            for digest in sorted {
                Shared::note_candidate(&mut *tx, digest.as_str(), now).await?;
            }
            tx.commit().await?;
        }
        Ok(unlinked)
    }

    async fn due_blob_candidates(&self, before: Millis, stalled_before: Millis) -> Result<Vec<Digest>> {
        Shared::due_candidates(&self.pool, before, stalled_before).await
    }

    async fn begin_blob_deletion(
        &self,
        digest: &Digest,
        before: Millis,
        stalled_before: Millis,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // The row lock orders this against a push's cancel_blob_collection on any server.
        let due: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM blob_candidates WHERE digest = $1 \
             AND ((deleting_at IS NULL AND since < $2) OR deleting_at < $3) FOR UPDATE",
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
        Shared::finish_blob_deletion(&self.pool, digest, started).await
    }

    async fn cancel_blob_collection(&self, digest: &Digest) -> Result<bool> {
        // Almost every blob a push links is no candidate: a read settles it.
        // A candidate noted after this read is protected by its grace period.
        if Shared::candidate_state(&self.pool, digest).await?.is_none() {
            return Ok(true);
        }
        let mut tx = self.pool.begin().await?;
        let cancelled = Shared::cancel_candidate(&mut tx, digest).await?;
        tx.commit().await?;
        Ok(cancelled)
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
        let Some(scratch) = Scratch::new().await else {
            return;
        };
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
        let Some(scratch) = Scratch::new().await else {
            return;
        };
        let stores: Vec<PostgresStore> = join_all((0..6).map(|_| PostgresStore::connect(&scratch.url)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        stores[0].create_repository(&name("seen/everywhere"), "{}", 1).await.unwrap();
        for store in &stores {
            assert!(store.get_repository(&name("seen/everywhere")).await.unwrap().is_some());
            store.close().await;
        }
        scratch.drop_schema().await;
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let Some(scratch) = Scratch::new().await else {
            return;
        };
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

    /// Manifest bytes and their digest.
    type Manifest = (Vec<u8>, Digest);

    fn manifest(label: &str) -> Manifest {
        let content = format!("{{\"schemaVersion\":2,\"label\":\"{label}\"}}").into_bytes();
        let digest = Digest::sha256_of(&content);
        (content, digest)
    }

    fn put<'a>(repo: &'a RepositoryName, (content, digest): &'a Manifest, tag: Option<&'a Tag>) -> PutManifest<'a> {
        PutManifest {
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
            now: 1,
        }
    }

    /// Pushes every manifest under `tag` at once, alternating between the servers, and checks
    /// that the moves form one chain: each push saw where the previous one left the tag.
    async fn push_all_to_one_tag(
        servers: &[PostgresStore; 2],
        repo: &RepositoryName,
        tag: &Tag,
        manifests: &[Manifest],
    ) {
        let pushes = manifests.iter().enumerate().map(|(i, m)| servers[i % 2].put_manifest(put(repo, m, Some(tag))));
        let outcomes: Vec<PutOutcome> = join_all(pushes).await.into_iter().map(Result::unwrap).collect();
        assert!(outcomes.iter().all(|o| o.manifest_created));
        let previous: Vec<&Digest> = outcomes.iter().filter_map(|o| o.previous_tag_target.as_ref()).collect();
        assert_eq!(previous.len(), manifests.len() - 1, "exactly one push found {tag} absent");
        let current = servers[1].get_manifest(repo, &Reference::Tag(tag.clone())).await.unwrap().unwrap().digest;
        let mut chain: HashSet<&Digest> = previous.into_iter().collect();
        assert!(chain.insert(&current), "the final target was nobody's previous target");
        assert_eq!(chain.len(), manifests.len(), "the previous targets chain through every push");
    }

    /// Two servers (two stores, two pools) move tags of one repository all at once, while they
    /// also flush overlapping pull batches in opposite orders and delete a repository those
    /// batches touch: every operation succeeds (no deadlock or serialization error reaches the
    /// caller) and every tag's moves form one chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_servers_move_tags_of_one_repository() {
        const PUSHES: usize = 20;
        let Some(scratch) = Scratch::new().await else {
            return;
        };
        let servers = [scratch.store().await, scratch.store().await];
        let (repo, doomed) = (name("shared/app"), name("shared/doomed"));
        servers[0].create_repository(&repo, "{}", 1).await.unwrap();
        servers[1].create_repository(&doomed, "{}", 1).await.unwrap();

        let rounds: Vec<(Tag, Vec<Manifest>)> = (0..3)
            .map(|round| {
                let manifests = (0..PUSHES).map(|i| manifest(&format!("{round}-{i}"))).collect();
                (format!("hot{round}").parse().unwrap(), manifests)
            })
            .collect();
        for (tag, manifests) in &rounds[..2] {
            push_all_to_one_tag(&servers, &repo, tag, manifests).await;
        }

        // The last round races pull batches over both repositories and the doomed one's deletion.
        let (last_tag, last_manifests) = &rounds[2];
        for m in last_manifests {
            servers[0].put_manifest(put(&doomed, m, None)).await.unwrap();
        }
        let pulls: Vec<(RepositoryName, Digest, Millis)> = rounds
            .iter()
            .flat_map(|(_, manifests)| manifests)
            .flat_map(|(_, d)| [(repo.clone(), d.clone(), 50), (doomed.clone(), d.clone(), 60)])
            .collect();
        let reversed: Vec<_> = pulls.iter().rev().cloned().collect();
        let (_, pulled_a, pulled_b, deleted) = tokio::join!(
            push_all_to_one_tag(&servers, &repo, last_tag, last_manifests),
            servers[0].record_pulls(&pulls),
            servers[1].record_pulls(&reversed),
            servers[1].delete_repository(&doomed, true),
        );
        pulled_a.unwrap();
        pulled_b.unwrap();
        assert_eq!(deleted.unwrap().name, doomed.as_str());
        assert_eq!(servers[0].get_repository(&doomed).await.unwrap(), None);

        // The batches ran after the first rounds, perhaps before some of the last round's pushes.
        for (round, (_, manifests)) in rounds.iter().enumerate() {
            for (_, digest) in manifests {
                let pulled = servers[0].get_image(&repo, digest).await.unwrap().unwrap().manifest.last_pulled_at;
                assert!(pulled == Some(50) || (round == 2 && pulled.is_none()), "{pulled:?}");
            }
        }
        for server in &servers {
            server.close().await;
        }
        scratch.drop_schema().await;
    }

    /// GC on one server begins deleting blobs while pushes on another end their candidacy, all at
    /// once: for every blob exactly one side wins. A deletion that began makes the push wait
    /// (false); a push that came first leaves GC nothing to begin.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn gc_and_pushes_on_two_servers_never_both_win_a_blob() {
        const BLOBS: usize = 40;
        let Some(scratch) = Scratch::new().await else {
            return;
        };
        let (gc, pusher) = (scratch.store().await, scratch.store().await);
        let digests: Vec<Digest> = (0..BLOBS).map(|i| Digest::sha256_of(format!("gc-race-{i}").as_bytes())).collect();
        assert_eq!(gc.note_unlinked_blobs(&digests, 10, false).await.unwrap().len(), BLOBS);
        let deletions = join_all(digests.iter().map(|d| gc.begin_blob_deletion(d, 100, 0, 200)));
        let pushes = join_all(digests.iter().rev().map(|d| pusher.cancel_blob_collection(d)));
        let (deletions, mut pushes) = tokio::join!(deletions, pushes);
        pushes.reverse();
        for (deletion, push) in deletions.into_iter().zip(pushes) {
            let (deletion, push) = (deletion.unwrap(), push.unwrap());
            assert!(deletion != push, "deletion began: {deletion}, push went ahead: {push}");
        }
        for (i, d) in digests.iter().enumerate() {
            let being_deleted = gc.cancel_blob_collection(d).await.unwrap();
            assert_eq!(!being_deleted, gc.due_blob_candidates(100, 201).await.unwrap().contains(d), "blob {i}");
        }
        gc.close().await;
        pusher.close().await;
        scratch.drop_schema().await;
    }

    /// Users made through one server are seen by the other, and its generation counter moves.
    #[tokio::test]
    async fn credentials_generation_spans_servers() {
        let Some(scratch) = Scratch::new().await else {
            return;
        };
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
