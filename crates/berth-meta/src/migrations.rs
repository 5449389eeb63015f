//! The schema's history: one ordered list of migrations, each with its SQLite and PostgreSQL
//! script (`migrations/<dialect>/<version>-<name>.sql`, or `migrations/shared/` when both run the
//! same one) and an optional backfill, run in one loop in one transaction at every open. A database is at the version of the last migration it ran
//! (`store_meta.schema_version`); one written by a newer build is refused.

use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, Type};

use crate::dialect::Dialect;
use crate::{MetaError, Result, SqlStore};

/// Work a migration does beyond its script, in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backfill {
    /// Which blobs each stored manifest needs (`manifest_blobs`), from its bytes.
    ManifestBlobs,
    /// The non-distributable layers each stored manifest lists, added to `manifest_blobs`.
    ForeignLayers,
}

/// One step of the schema's history.
#[derive(Debug)]
pub struct Migration {
    pub(crate) version: i64,
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
    pub(crate) backfill: Option<Backfill>,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: include_str!("../migrations/sqlite/1-schema.sql"),
        postgres: include_str!("../migrations/postgres/1-schema.sql"),
        backfill: None,
    },
    Migration {
        version: 2,
        sqlite: include_str!("../migrations/sqlite/2-gc.sql"),
        postgres: include_str!("../migrations/postgres/2-gc.sql"),
        backfill: Some(Backfill::ManifestBlobs),
    },
    Migration {
        version: 3,
        sqlite: include_str!("../migrations/sqlite/3-events.sql"),
        postgres: include_str!("../migrations/postgres/3-events.sql"),
        backfill: None,
    },
    Migration {
        version: 4,
        sqlite: include_str!("../migrations/sqlite/4-user-policies.sql"),
        postgres: include_str!("../migrations/postgres/4-user-policies.sql"),
        backfill: None,
    },
    Migration {
        version: 5,
        sqlite: include_str!("../migrations/sqlite/5-pull-through.sql"),
        postgres: include_str!("../migrations/postgres/5-pull-through.sql"),
        backfill: None,
    },
    Migration {
        version: 6,
        sqlite: include_str!("../migrations/sqlite/6-replication.sql"),
        postgres: include_str!("../migrations/postgres/6-replication.sql"),
        backfill: None,
    },
    Migration {
        version: 7,
        sqlite: include_str!("../migrations/sqlite/7-sparse.sql"),
        postgres: include_str!("../migrations/postgres/7-sparse.sql"),
        backfill: None,
    },
    Migration {
        version: 8,
        sqlite: include_str!("../migrations/sqlite/8-templates.sql"),
        postgres: include_str!("../migrations/postgres/8-templates.sql"),
        backfill: None,
    },
    Migration {
        version: 9,
        sqlite: include_str!("../migrations/sqlite/9-cache-stats.sql"),
        postgres: include_str!("../migrations/postgres/9-cache-stats.sql"),
        backfill: None,
    },
    Migration {
        version: 10,
        sqlite: include_str!("../migrations/sqlite/10-access-key-status.sql"),
        postgres: include_str!("../migrations/postgres/10-access-key-status.sql"),
        backfill: None,
    },
    Migration {
        version: 11,
        sqlite: include_str!("../migrations/sqlite/11-archive.sql"),
        postgres: include_str!("../migrations/postgres/11-archive.sql"),
        backfill: None,
    },
    Migration {
        version: 12,
        sqlite: include_str!("../migrations/sqlite/12-consumer-claims.sql"),
        postgres: include_str!("../migrations/postgres/12-consumer-claims.sql"),
        backfill: None,
    },
    Migration {
        version: 13,
        sqlite: include_str!("../migrations/shared/13-ordered-lookup-indexes.sql"),
        postgres: include_str!("../migrations/shared/13-ordered-lookup-indexes.sql"),
        backfill: None,
    },
    Migration {
        version: 14,
        sqlite: include_str!("../migrations/shared/14-events-by-replication.sql"),
        postgres: include_str!("../migrations/shared/14-events-by-replication.sql"),
        backfill: None,
    },
    Migration {
        version: 15,
        sqlite: include_str!("../migrations/shared/15-console-sign-outs.sql"),
        postgres: include_str!("../migrations/shared/15-console-sign-outs.sql"),
        backfill: None,
    },
    Migration {
        version: 16,
        sqlite: include_str!("../migrations/shared/16-foreign-layers.sql"),
        postgres: include_str!("../migrations/shared/16-foreign-layers.sql"),
        backfill: Some(Backfill::ForeignLayers),
    },
];

/// The version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

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
    /// Brings the database up to [`SCHEMA_VERSION`]: every migration it has not run, in order,
    /// in one transaction (all or nothing), under the dialect's migration lock.
    pub(crate) async fn migrate(writer: &Pool<DB>) -> Result<()> {
        Self::migrate_to(writer, SCHEMA_VERSION).await
    }

    /// Runs the migrations up to `target` only: what an older build made, for upgrade tests.
    pub(crate) async fn migrate_to(writer: &Pool<DB>, target: i64) -> Result<()> {
        let mut tx = writer.begin_with(DB::BEGIN_WRITE).await?;
        if let Some(lock) = DB::MIGRATION_LOCK {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        sqlx::raw_sql(DB::STORE_META).execute(&mut *tx).await?;
        let version: Option<i64> = sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'schema_version'")
            .fetch_optional(&mut *tx)
            .await?;
        let version = version.unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(MetaError::Backend(format!(
                "the metadata database has schema version {version}, newer than this build's {SCHEMA_VERSION}; \
                 upgrade berth"
            )));
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > version && m.version <= target) {
            sqlx::raw_sql(DB::migration_sql(migration)).execute(&mut *tx).await?;
            match migration.backfill {
                Some(Backfill::ManifestBlobs) => Self::backfill_manifest_blobs(&mut tx).await?,
                Some(Backfill::ForeignLayers) => Self::backfill_foreign_layers(&mut tx).await?,
                None => {}
            }
            sqlx::query(
                "INSERT INTO store_meta (key, value) VALUES ('schema_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(migration.version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes a database as the build of schema `version` (1 to 3) left it, through `old`, then
    /// opens it with `open` (this build) and checks what [`fixtures::check_upgraded`] checks.
    #[cfg(test)]
    pub(crate) async fn check_upgrade_from(
        version: i64,
        old: Pool<DB>,
        open: impl std::future::Future<Output = Result<SqlStore<DB>>>,
    ) {
        Self::migrate_to(&old, version).await.unwrap();
        for (sql, bytes) in fixtures::old_data(version) {
            let statement = sqlx::query(sql);
            match &bytes {
                Some(bytes) => statement.bind(bytes.as_slice()),
                None => statement,
            }
            .execute(&old)
            .await
            .unwrap();
        }
        old.close().await;
        let store = open.await.unwrap();
        fixtures::check_upgraded(&store).await;
        crate::Shutdown::close(&store).await;
    }
}

/// What the backends' upgrade tests share: the data an older build wrote, and what must hold
/// once this build has opened it.
#[cfg(test)]
pub(crate) mod fixtures {
    use berth_spec::{Digest, Reference};
    use sqlx::AssertSqlSafe;

    use crate::{MetaError, MetadataStore, Origin, SettingsUpdate, UserPolicy};

    pub(crate) const BUMP_SCHEMA_VERSION: &str = "UPDATE store_meta SET value = value + 1 WHERE key = 'schema_version'";

    const SETTINGS: &str = r#"{"imageTagMutability":"IMMUTABLE"}"#;

    fn blobs() -> [Digest; 4] {
        [b"config".as_slice(), b"layer", b"spare", b"foreign"].map(Digest::sha256_of)
    }

    fn manifest() -> String {
        let [config, layer, _, foreign] = blobs();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":6}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}},{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{foreign}","size":7,"urls":["https://example.com/l"]}}]}}"#
        )
    }

    /// A repository `old` with a tagged image (with a pushed non-distributable layer, which
    /// builds before schema 16 did not record as needed), a link no manifest needs, and a user,
    /// as the build of schema `version` (1 to 3) wrote them: statements, each with the bytes it
    /// binds as `$1`.
    pub(crate) fn old_data(version: i64) -> Vec<(AssertSqlSafe<String>, Option<Vec<u8>>)> {
        let [config, layer, spare, foreign] = blobs();
        let manifest = manifest();
        let digest = Digest::sha256_of(manifest.as_bytes());
        let (touched, at) = if version >= 2 { (", touched_at", ", 1") } else { ("", "") };
        let mut statements = vec![
            (format!("INSERT INTO repositories (name, created_at, settings) VALUES ('old', 1, '{SETTINGS}')"), None),
            (
                format!(
                    "INSERT INTO blob_links (repo, digest, size, created_at{touched}) VALUES \
                     ('old', '{config}', 6, 1{at}), ('old', '{layer}', 5, 1{at}), ('old', '{spare}', 5, 1{at}), \
                     ('old', '{foreign}', 7, 1{at})"
                ),
                None,
            ),
            (
                format!(
                    "INSERT INTO manifests (repo, digest, media_type, content, image_size, pushed_at) VALUES \
                     ('old', '{digest}', 'application/vnd.oci.image.manifest.v1+json', $1, 11, 1)"
                ),
                Some(manifest.into_bytes()),
            ),
            (format!("INSERT INTO tags (repo, tag, digest, updated_at) VALUES ('old', 'v1', '{digest}', 1)"), None),
            (
                "INSERT INTO users (name, access_key_id, secret_ciphertext, created_at) VALUES ('ops', 'AKOPS', $1, 1)"
                    .to_owned(),
                Some(b"sealed".to_vec()),
            ),
        ];
        if version >= 2 {
            statements.push((
                format!(
                    "INSERT INTO manifest_blobs (repo, manifest, digest) VALUES \
                     ('old', '{digest}', '{config}'), ('old', '{digest}', '{layer}')"
                ),
                None,
            ));
        }
        statements.into_iter().map(|(sql, bytes)| (AssertSqlSafe(sql), bytes)).collect()
    }

    /// The old data reads as it was written, GC knows which blobs the image needs, and what the
    /// newer schema adds works on it.
    pub(crate) async fn check_upgraded(store: &dyn MetadataStore) {
        let repo = "old".parse().unwrap();
        let found = store.get_repository(&repo).await.unwrap().expect("the repository survives");
        assert_eq!((found.settings.as_str(), found.settings_version), (SETTINGS, 0));
        let image = store.get_manifest(&repo, &Reference::Tag("v1".parse().unwrap())).await.unwrap().unwrap();
        assert_eq!(image.content, manifest().as_bytes());
        assert_eq!(store.user_by_access_key("AKOPS").await.unwrap().unwrap().name, "ops");
        // Users from before identity policies keep every permission.
        let full_access = UserPolicy { name: "AmazonEC2ContainerRegistryFullAccess".into(), document: None };
        assert_eq!(store.list_user_policies().await.unwrap(), vec![("ops".to_owned(), full_access)]);

        let [config, layer, spare, foreign] = blobs();
        assert_eq!(store.release_unreferenced_links(i64::MAX, 10, false).await.unwrap(), 1);
        assert_eq!(store.linked_blob(&repo, &spare).await.unwrap(), None);
        for needed in [&config, &layer, &foreign] {
            assert!(store.linked_blob(&repo, needed).await.unwrap().is_some(), "{needed}");
        }

        let origin = Origin {
            actor: "upgrade".into(),
            access_key_id: None,
            request_id: "upgrade".into(),
            by_replication: false,
        };
        let update = SettingsUpdate { settings: "{}", expected_version: 0, changed: &["imageTagMutability"] };
        assert_eq!(store.set_repository_settings(&origin, &repo, update).await.unwrap(), 1);
        assert!(store.register_consumer("upgrade-check", 1).await.unwrap());
        store.delete_tag(&origin, &repo, &"v1".parse().unwrap()).await.unwrap();
        let claimed = store.claim_events("upgrade-check", "t", 10, 1, 2).await.unwrap();
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        assert_eq!(claimed[0].event.digest, Some(image.digest));
    }

    pub(crate) fn assert_newer_schema_refused<T>(opened: Result<T, MetaError>) {
        let err = opened.err().expect("newer schema must be refused");
        assert!(matches!(&err, MetaError::Backend(m) if m.contains("schema version")), "{err:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i64 + 1);
        }
    }
}
