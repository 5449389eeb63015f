//! The scale-out backend: several `berth serve` processes share one PostgreSQL database.
//!
//! One pool serves reads and writes; transactions run at READ COMMITTED and writers that can
//! meet take row locks in the fixed order `SqlStore` documents, so they queue behind each other
//! instead of failing with deadlock or serialization errors, whichever server they run in.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};

use crate::dialect::{Dialect, RowLock};
use crate::durability::Durability;
use crate::migrations::Migration;
use crate::store::usable;
use crate::{MetaError, Millis, Result, SqlStore};

/// Connections per server; the servers share the database's `max_connections` (100 by default).
const POOL_SIZE: u32 = 16;

/// How long an operation waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The metadata store in a PostgreSQL database.
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) and brings its
    /// schema up to date.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .before_acquire(usable::<Postgres>)
            .connect(url)
            .await
            .map_err(|e| MetaError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        Self::migrate(&pool).await?;
        Ok(SqlStore { readers: pool.clone(), writer: pool, durability: Durability::OnCommit })
    }
}

impl Dialect for Postgres {
    type TextList = Vec<String>;
    type IdList = Vec<i64>;

    const BEGIN_WRITE: &'static str = "BEGIN";
    const STORE_META: &'static str =
        r#"CREATE TABLE IF NOT EXISTS store_meta (key TEXT COLLATE "C" PRIMARY KEY, value BIGINT NOT NULL)"#;
    /// `CREATE TABLE` is not safe against a concurrent creator: servers starting together would
    /// fail on each other's half-made tables. The key is "berth" in ASCII (0x6265727468).
    const MIGRATION_LOCK: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(422608794728)");
    /// Conflicts with the `ROW EXCLUSIVE` lock every insert into `events` takes.
    const EVENT_LOG_LOCK: Option<&'static str> = Some("LOCK TABLE events IN SHARE MODE");

    fn text_list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn id_list(ids: &[i64]) -> Vec<i64> {
        ids.to_vec()
    }

    fn list(param: u8) -> String {
        format!("unnest(${param}) AS list (value)")
    }

    fn row_lock(lock: RowLock) -> &'static str {
        match lock {
            RowLock::ChangeContent => " FOR NO KEY UPDATE",
            RowLock::Exclusive => " FOR UPDATE",
            RowLock::ExclusiveSkipLocked => " FOR UPDATE SKIP LOCKED",
        }
    }

    fn migration_sql(migration: &Migration) -> &'static str {
        migration.postgres
    }

    /// Two statements for the whole batch, the rows locked in order first: an `UPDATE` locks
    /// rows in whatever order its plan visits them, and two servers flushing overlapping batches
    /// would deadlock.
    async fn record_pulls(writer: &Pool<Postgres>, latest: &[(&str, &str, Millis)]) -> Result<()> {
        let repos: Vec<&str> = latest.iter().map(|(repo, _, _)| *repo).collect();
        let digests: Vec<&str> = latest.iter().map(|(_, digest, _)| *digest).collect();
        let times: Vec<Millis> = latest.iter().map(|(_, _, at)| *at).collect();
        let mut tx = writer.begin().await?;
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
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::io::Write;
    use std::sync::Mutex;
    use std::time::Duration;

    use berth_spec::{Digest, Reference, RepositoryName, Tag};
    use futures::future::join_all;
    use sqlx::PgPool;

    use super::*;
    use crate::migrations::fixtures;
    use crate::{
        AccessKeyStatus, BlobLinkStore, CredentialStore, EventStore, GcStore, ManifestStore, MetaError, Origin,
        PutManifest, PutOutcome, PutTag, RepositoryStore, SettingsUpdate, Shutdown, UserRecord,
    };

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

    /// Another handle on the same server's pool, for a task of its own.
    fn same_server(store: &PostgresStore) -> PostgresStore {
        SqlStore { readers: store.readers.clone(), writer: store.writer.clone(), durability: Durability::OnCommit }
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
        stores[0].create_repository(&ORIGIN, &name("seen/everywhere"), "{}", 1).await.unwrap();
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
        let store = scratch.store().await;
        sqlx::raw_sql(fixtures::BUMP_SCHEMA_VERSION).execute(&store.writer).await.unwrap();
        store.close().await;
        fixtures::assert_newer_schema_refused(PostgresStore::connect(&scratch.url).await);
        scratch.drop_schema().await;
    }

    /// Databases written by the builds of schema 1 (before GC) and 2 open, keep their data, learn
    /// which blobs their manifests need, and gain what later schemas add.
    #[tokio::test]
    async fn older_schemas_upgrade_in_place() {
        for version in [1, 2, 3] {
            let Some(scratch) = Scratch::new().await else {
                return;
            };
            let old = PgPool::connect(&scratch.url).await.unwrap();
            PostgresStore::check_upgrade_from(version, old, PostgresStore::connect(&scratch.url)).await;
            scratch.drop_schema().await;
        }
    }

    /// Manifest bytes and their digest.
    type Manifest = (Vec<u8>, Digest);

    fn manifest(label: &str) -> Manifest {
        let content = format!("{{\"schemaVersion\":2,\"label\":\"{label}\"}}").into_bytes();
        let digest = Digest::sha256_of(&content);
        (content, digest)
    }

    static ORIGIN: std::sync::LazyLock<Origin> = std::sync::LazyLock::new(|| Origin {
        actor: "test".into(),
        access_key_id: None,
        request_id: "test".into(),
        by_replication: false,
    });

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
            foreign_blobs: &[],
            children: &[],
            sparse: false,
            tags: tag.map(|tag| PutTag { tag, immutable: false }).into_iter().collect(),
            settings_version: None,
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
        let pushes =
            manifests.iter().enumerate().map(|(i, m)| servers[i % 2].put_manifest(&ORIGIN, put(repo, m, Some(tag))));
        let outcomes: Vec<PutOutcome> = join_all(pushes).await.into_iter().map(Result::unwrap).collect();
        assert!(outcomes.iter().all(|o| o.manifest_created));
        let previous: Vec<&Digest> = outcomes.iter().filter_map(|o| o.previous_tag_targets[0].as_ref()).collect();
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
        servers[0].create_repository(&ORIGIN, &repo, "{}", 1).await.unwrap();
        servers[1].create_repository(&ORIGIN, &doomed, "{}", 1).await.unwrap();

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
            servers[0].put_manifest(&ORIGIN, put(&doomed, m, None)).await.unwrap();
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
            servers[1].delete_repository(&ORIGIN, &doomed, true),
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

    /// Two servers claim one consumer's events at once, many small batches each: every event is
    /// delivered exactly once, and each repository's events are handled in the order they were
    /// recorded (a repository is never leased to both at a time).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_servers_claiming_at_once_share_no_event_and_keep_each_repository_in_order() {
        const REPOS: usize = 8;
        const CHANGES: i64 = 6;
        let Some(scratch) = Scratch::new().await else {
            return;
        };
        let servers = [scratch.store().await, scratch.store().await];
        servers[0].register_consumer("replication", 1).await.unwrap();
        let repos: Vec<RepositoryName> = (0..REPOS).map(|i| name(&format!("claims/r{i}"))).collect();
        for repo in &repos {
            servers[1].create_repository(&ORIGIN, repo, "{}", 1).await.unwrap();
        }
        // Interleaved across repositories, from both servers.
        for n in 0..CHANGES {
            join_all(repos.iter().enumerate().map(|(i, repo)| {
                let update = SettingsUpdate { settings: "{}", expected_version: n, changed: &["n"] };
                servers[i % 2].set_repository_settings(&ORIGIN, repo, update)
            }))
            .await
            .into_iter()
            .for_each(|r| {
                r.unwrap();
            });
        }
        let handled: Mutex<Vec<(String, i64)>> = Mutex::default();
        let claimer = |server: &'static str, store: &PostgresStore| {
            let handled = &handled;
            let store = same_server(store);
            async move {
                let mut round = 0;
                loop {
                    round += 1;
                    let token = format!("{server}-{round}");
                    let claimed = store.claim_events("replication", &token, 3, 10, i64::MAX).await.unwrap();
                    if claimed.is_empty() {
                        return;
                    }
                    handled.lock().unwrap().extend(claimed.iter().map(|c| (c.event.repository.clone(), c.event.id)));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let ids: Vec<i64> = claimed.iter().map(|c| c.event.id).collect();
                    assert_eq!(store.ack_events("replication", &token, &ids).await.unwrap(), ids.len() as u64);
                }
            }
        };
        tokio::join!(claimer("a", &servers[0]), claimer("b", &servers[1]));
        let handled = handled.into_inner().unwrap();
        let unique: HashSet<i64> = handled.iter().map(|(_, id)| *id).collect();
        assert_eq!(unique.len(), handled.len(), "an event was delivered twice");
        assert_eq!(handled.len(), REPOS * (1 + CHANGES as usize), "every event once");
        let mut by_repo: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (repo, id) in &handled {
            by_repo.entry(repo).or_default().push(*id);
        }
        for (repo, ids) in by_repo {
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{repo} out of order: {ids:?}");
        }
        for server in &servers {
            server.close().await;
        }
        scratch.drop_schema().await;
    }

    /// A claimer on one server dies holding a lease: once it runs out, the other server's claim
    /// gets the events, and the dead claimer's late acknowledgement counts nothing.
    #[tokio::test]
    async fn an_expired_lease_passes_to_the_other_server() {
        let Some(scratch) = Scratch::new().await else {
            return;
        };
        let (a, b) = (scratch.store().await, scratch.store().await);
        a.register_consumer("webhooks", 1).await.unwrap();
        b.create_repository(&ORIGIN, &name("leased/app"), "{}", 1).await.unwrap();
        let held = a.claim_events("webhooks", "a", 10, 100, 200).await.unwrap();
        assert_eq!(held.len(), 1);
        assert!(b.claim_events("webhooks", "b", 10, 199, 300).await.unwrap().is_empty(), "still leased");
        let taken = b.claim_events("webhooks", "b", 10, 200, 300).await.unwrap();
        assert_eq!((taken[0].event.id, taken[0].attempt), (held[0].event.id, 2));
        assert_eq!(a.ack_events("webhooks", "a", &[held[0].event.id]).await.unwrap(), 0);
        assert_eq!(b.ack_events("webhooks", "b", &[held[0].event.id]).await.unwrap(), 1);
        a.close().await;
        b.close().await;
        scratch.drop_schema().await;
    }

    /// A blob delete arriving while a push that needs the blob is between its link check and its
    /// commit waits for the push (both hold the repository row), then finds the manifest and
    /// refuses: the image never loses its layer.
    #[tokio::test]
    async fn a_blob_delete_waits_for_a_push_in_flight() {
        let Some(scratch) = Scratch::new().await else {
            return;
        };
        let store = scratch.store().await;
        let repo = name("racing/app");
        store.create_repository(&ORIGIN, &repo, "{}", 1).await.unwrap();
        let layer = Digest::sha256_of(b"racing layer");
        store.link_blob(&repo, &layer, 12, 1).await.unwrap();
        let (content, digest) = manifest("racing");

        // The push, stopped after its checks: it holds the repository row as put_manifest does
        // and has written its manifest and blob references, uncommitted.
        let push = PgPool::connect(&scratch.url).await.unwrap();
        let mut in_flight = push.begin().await.unwrap();
        sqlx::query("SELECT name FROM repositories WHERE name = $1 FOR NO KEY UPDATE")
            .bind(repo.as_str())
            .execute(&mut *in_flight)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, content, image_size, pushed_at)              VALUES ($1, $2, 'application/vnd.oci.image.manifest.v1+json', $3, 12, 1)",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .bind(content.as_slice())
        .execute(&mut *in_flight)
        .await
        .unwrap();
        sqlx::query("INSERT INTO manifest_blobs (repo, manifest, digest) VALUES ($1, $2, $3)")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .bind(layer.as_str())
            .execute(&mut *in_flight)
            .await
            .unwrap();

        let delete = tokio::spawn({
            let (store, repo, layer) = (same_server(&store), repo.clone(), layer.clone());
            async move { store.unlink_blob(&ORIGIN, &repo, &layer).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!delete.is_finished(), "the delete must wait for the push's commit");
        in_flight.commit().await.unwrap();
        let err = delete.await.unwrap().unwrap_err();
        assert!(matches!(&err, MetaError::BlobInUse { manifest, .. } if *manifest == digest), "{err:?}");
        assert_eq!(store.linked_blob(&repo, &layer).await.unwrap(), Some(12));
        push.close().await;
        store.close().await;
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
            key_status: AccessKeyStatus::Active,
        };
        a.create_user(&user, &[]).await.unwrap();
        let after_create = b.credentials_generation().await.unwrap();
        assert_ne!(after_create, before);
        assert_eq!(b.user_by_access_key("AKOPS").await.unwrap(), Some(user.clone()));
        let err = b.create_user(&user, &[]).await.unwrap_err();
        assert!(matches!(&err, MetaError::UserExists(n) if n == "ops"), "{err:?}");
        assert!(b.delete_user("ops").await.unwrap());
        assert_ne!(a.credentials_generation().await.unwrap(), after_create);
        assert_eq!(a.user_by_name("ops").await.unwrap(), None);
        a.close().await;
        b.close().await;
        scratch.drop_schema().await;
    }
}
