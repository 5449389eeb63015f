//! Manifests, tags, index edges, referrers and images.

use std::collections::HashMap;

use async_trait::async_trait;
use berth_spec::{Digest, Reference, RepositoryName, Tag};
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, Type};

use crate::dialect::{Dialect, RowLock};
use crate::events::NewEvent;
use crate::sql::{
    ImageRow, ManifestRow, checked_tag_moves, image_size, limit_param, list_cursor, parse_digest, select_images,
    select_manifest, size_param, stored_size,
};
use crate::{
    EventKind, INLINE_ANNOTATIONS, ImageRecord, ManifestRecord, ManifestStore, MetaError, Millis, Origin, PutManifest,
    PutOutcome, ReferrerRecord, Result, SqlStore, StorageClass, StorageClassChange,
};

/// Restores `$2` and every manifest it lists from the archive, as of `$3`.
const RESTORE_IMAGE: &str = "UPDATE manifests SET storage_class = 'STANDARD', last_activated_at = $3 \
     WHERE repo = $1 AND storage_class = 'ARCHIVE' \
     AND (digest = $2 OR digest IN (SELECT child FROM manifest_children WHERE repo = $1 AND parent = $2)) \
     RETURNING digest, media_type";

/// Archives `$2`, as of `$3`, with the untagged manifests it lists that no other STANDARD index
/// lists (a tagged child is an image of its own, as lifecycle policies judge it).
const ARCHIVE_IMAGE: &str = "UPDATE manifests SET storage_class = 'ARCHIVE', last_archived_at = $3 \
     WHERE repo = $1 AND storage_class = 'STANDARD' AND (digest = $2 OR digest IN ( \
       SELECT c.child FROM manifest_children c WHERE c.repo = $1 AND c.parent = $2 \
       AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = $1 AND t.digest = c.child) AND NOT EXISTS ( \
         SELECT 1 FROM manifest_children o JOIN manifests p ON p.repo = o.repo AND p.digest = o.parent \
         WHERE o.repo = $1 AND o.child = c.child AND o.parent <> $2 AND p.storage_class = 'STANDARD'))) \
     RETURNING digest, media_type";

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
    /// Resolves a tag or digest in `repo`.
    async fn manifest<'c>(
        db: impl Executor<'c, Database = DB>,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let (key, sql) = match reference {
            Reference::Digest(digest) => (digest.as_str(), select_manifest!("WHERE m.repo = $1 AND m.digest = $2")),
            Reference::Tag(tag) => (
                tag.as_str(),
                select_manifest!(
                    "JOIN tags t ON t.repo = m.repo AND t.digest = m.digest WHERE t.repo = $1 AND t.tag = $2"
                ),
            ),
        };
        let row: Option<ManifestRow> = sqlx::query_as(sql).bind(repo.as_str()).bind(key).fetch_optional(db).await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Checks that every blob `put` needs is linked with the size its descriptor states, and
    /// every child is in the repository; returns the children's image sizes, in order. One
    /// statement each, however many there are.
    async fn checked_references(conn: &mut DB::Connection, put: &PutManifest<'_>) -> Result<Vec<u64>> {
        let repo = put.repo.as_str();
        let blobs: Vec<&str> = put.blobs.iter().map(|(digest, _)| digest.as_str()).collect();
        let children: Vec<&str> = put.children.iter().map(|(digest, _)| digest.as_str()).collect();
        let sql = format!(
            "SELECT digest, size FROM blob_links WHERE repo = $1 AND digest IN (SELECT value FROM {})",
            DB::list(2)
        );
        let linked: HashMap<String, i64> = if blobs.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(repo)
                .bind(DB::text_list(&blobs))
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect()
        };
        // A sparse manifest's absent blobs: their declared sizes stand until they are pushed.
        let absent: Vec<Digest> = put
            .blobs
            .iter()
            .filter(|(digest, _)| !linked.contains_key(digest.as_str()))
            .map(|(d, _)| d.clone())
            .collect();
        if !absent.is_empty() && !put.sparse {
            return Err(MetaError::BlobsUnknown(absent));
        }
        for (digest, declared) in put.blobs {
            let Some(stored) = linked.get(digest.as_str()) else { continue };
            let stored = stored_size(*stored)?;
            if stored != *declared {
                return Err(MetaError::BlobSizeMismatch { digest: digest.clone(), declared: *declared, stored });
            }
        }
        if children.is_empty() {
            return Ok(Vec::new());
        }
        // length() of a BLOB (SQLite) or BYTEA (PostgreSQL) is its size in bytes.
        let sql = format!(
            "SELECT digest, image_size, CAST(length(content) AS BIGINT) FROM manifests WHERE repo = $1 AND digest IN (SELECT value FROM {})",
            DB::list(2)
        );
        let found: HashMap<String, (i64, i64)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(repo)
            .bind(DB::text_list(&children))
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(digest, image_size, length): (String, i64, i64)| (digest, (image_size, length)))
            .collect();
        put.children
            .iter()
            .map(|(child, declared)| match found.get(child.as_str()) {
                Some((image_size, length)) => {
                    let stored = stored_size(*length)?;
                    if stored != *declared {
                        return Err(MetaError::ChildSizeMismatch {
                            digest: child.clone(),
                            declared: *declared,
                            stored,
                        });
                    }
                    stored_size(*image_size)
                }
                None if put.sparse => Ok(0),
                None => Err(MetaError::ManifestUnknown(child.clone())),
            })
            .collect()
    }

    /// Where each tag of `put` points now, refusing to move an immutable one elsewhere.
    async fn current_tag_targets(conn: &mut DB::Connection, put: &PutManifest<'_>) -> Result<Vec<Option<Digest>>> {
        if put.tags.is_empty() {
            return Ok(Vec::new());
        }
        let tags: Vec<&str> = put.tags.iter().map(|t| t.tag.as_str()).collect();
        // Driven by the list (`CROSS JOIN` fixes SQLite's join order): `tag IN (list)` let SQLite,
        // without statistics, walk the repository's every tag on its covering digest index.
        let sql = format!(
            "SELECT t.tag, t.digest FROM {} CROSS JOIN tags t WHERE t.repo = $1 AND t.tag = list.value",
            DB::list(2)
        );
        let current: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(put.repo.as_str())
            .bind(DB::text_list(&tags))
            .fetch_all(&mut *conn)
            .await?;
        checked_tag_moves(put, &current)
    }

    /// The writing half of `put_manifest`, once the references and tags are checked. Returns
    /// whether the manifest is new and whether the push restored archived manifests.
    async fn store_manifest(
        conn: &mut DB::Connection,
        origin: &Origin,
        put: &PutManifest<'_>,
        image_size: u64,
        previous: &[Option<Digest>],
    ) -> Result<(bool, bool)> {
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
        let pushed = NewEvent {
            digest: Some(put.digest.as_str()),
            media_type: Some(put.media_type),
            artifact_type: put.artifact_type,
            ..NewEvent::new(EventKind::ManifestPushed, repo)
        };
        let created = inserted.is_some();
        if created {
            for (child, _) in put.children {
                // A sparse index's absent child waits in manifest_absent_children; every other
                // child exists (checked_references) and is protected at once.
                sqlx::query(
                    "INSERT INTO manifest_children (repo, parent, child) \
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM manifests WHERE repo = $1 AND digest = $3) \
                     ON CONFLICT (repo, parent, child) DO NOTHING",
                )
                .bind(repo)
                .bind(put.digest.as_str())
                .bind(child.as_str())
                .execute(&mut *conn)
                .await?;
                if put.sparse {
                    sqlx::query(
                        "INSERT INTO manifest_absent_children (repo, parent, child) \
                         SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM manifests WHERE repo = $1 AND digest = $3) \
                         ON CONFLICT (repo, parent, child) DO NOTHING",
                    )
                    .bind(repo)
                    .bind(put.digest.as_str())
                    .bind(child.as_str())
                    .execute(&mut *conn)
                    .await?;
                }
            }
            // This manifest may be the absent child of sparse indexes pushed earlier: from now on
            // it is their child like any other (it cannot be deleted while they list it). Usually
            // there are none, and the DELETE that finds out is the only statement.
            let waiting: Vec<String> = sqlx::query_scalar(
                "DELETE FROM manifest_absent_children WHERE repo = $1 AND child = $2 RETURNING parent",
            )
            .bind(repo)
            .bind(put.digest.as_str())
            .fetch_all(&mut *conn)
            .await?;
            if !waiting.is_empty() {
                let parents: Vec<&str> = waiting.iter().map(String::as_str).collect();
                // `WHERE true`: SQLite would read `ON CONFLICT` as a join constraint without it.
                let sql = format!(
                    "INSERT INTO manifest_children (repo, parent, child) SELECT $1, value, $2 FROM {} WHERE true \
                     ON CONFLICT (repo, parent, child) DO NOTHING",
                    DB::list(3)
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(repo)
                    .bind(put.digest.as_str())
                    .bind(DB::text_list(&parents))
                    .execute(&mut *conn)
                    .await?;
                // An index is as large as its largest child (`image_size`): now it knows this one.
                let sql = format!(
                    "UPDATE manifests SET image_size = $2 WHERE repo = $1 AND image_size < $2 \
                     AND digest IN (SELECT value FROM {})",
                    DB::list(3)
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(repo)
                    .bind(size_param(image_size)?)
                    .bind(DB::text_list(&parents))
                    .execute(&mut *conn)
                    .await?;
            }
            Self::record_manifest_blobs(&mut *conn, put).await?;
        }
        // Recorded together at the end, in order: push, restores, tag moves.
        let mut events = Vec::new();
        if created {
            events.push(pushed);
        }
        // Pushing an archived image (or an index listing archived ones) restores it, as on ECR;
        // a manifest inserted just now without children has nothing archived to restore.
        let restored = if created && put.children.is_empty() {
            false
        } else {
            Self::record_events(&mut *conn, origin, &std::mem::take(&mut events)).await?;
            !Self::change_storage_class(&mut *conn, origin, repo, put.digest, StorageClass::Standard, put.now)
                .await?
                .is_empty()
        };
        let mut set = Vec::new();
        for (wanted, previous) in put.tags.iter().zip(previous) {
            if previous.as_ref() == Some(put.digest) || set.contains(&wanted.tag) {
                continue;
            }
            set.push(wanted.tag);
            sqlx::query(
                "INSERT INTO tags (repo, tag, digest, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(wanted.tag.as_str())
            .bind(put.digest.as_str())
            .bind(put.now)
            .execute(&mut *conn)
            .await?;
            events.push(NewEvent {
                kind: EventKind::TagSet,
                tag: Some(wanted.tag.as_str()),
                previous_digest: previous.as_ref().map(Digest::as_str),
                ..pushed
            });
        }
        Self::record_events(&mut *conn, origin, &events).await?;
        Ok((created, restored))
    }

    /// The writing half of `update_storage_class`: the statement and one event per changed image.
    async fn change_storage_class(
        conn: &mut DB::Connection,
        origin: &Origin,
        repo: &str,
        digest: &Digest,
        class: StorageClass,
        now: Millis,
    ) -> Result<Vec<StorageClassChange>> {
        let (sql, kind) = match class {
            StorageClass::Standard => (RESTORE_IMAGE, EventKind::ImageRestored),
            StorageClass::Archive => (ARCHIVE_IMAGE, EventKind::ImageArchived),
        };
        let mut changed: Vec<(String, String)> =
            sqlx::query_as(sql).bind(repo).bind(digest.as_str()).bind(now).fetch_all(&mut *conn).await?;
        changed.sort();
        let events: Vec<NewEvent> = changed
            .iter()
            .map(|(digest, media_type)| NewEvent {
                digest: Some(digest),
                media_type: Some(media_type),
                ..NewEvent::new(kind, repo)
            })
            .collect();
        Self::record_events(&mut *conn, origin, &events).await?;
        changed
            .into_iter()
            .map(|(digest, media_type)| Ok(StorageClassChange { digest: parse_digest(&digest)?, media_type }))
            .collect()
    }
}

#[async_trait]
impl<DB> ManifestStore for SqlStore<DB>
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
    async fn put_manifest(&self, origin: &Origin, put: PutManifest<'_>) -> Result<PutOutcome> {
        let mut tx = self.begin_write().await?;
        let version = Self::lock_repository_settings(&mut tx, put.repo.as_str(), RowLock::ChangeContent).await?;
        let Some(version) = version else {
            return Err(MetaError::RepositoryNotFound(put.repo.to_string()));
        };
        // The tags' immutability was judged by older settings: the caller judges again.
        if put.settings_version.is_some_and(|judged_by| judged_by != version) {
            return Err(MetaError::SettingsConflict(put.repo.to_string()));
        }
        let child_sizes = Self::checked_references(&mut tx, &put).await?;
        let previous_tag_targets = Self::current_tag_targets(&mut tx, &put).await?;
        let image_size = image_size(put.blobs, &child_sizes);
        let (manifest_created, restored) =
            Self::store_manifest(&mut tx, origin, &put, image_size, &previous_tag_targets).await?;
        self.commit(tx).await?;
        Ok(PutOutcome { manifest_created, previous_tag_targets, restored })
    }

    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Option<ManifestRecord>> {
        Self::manifest(&self.readers, repo, reference).await
    }

    async fn delete_manifest(&self, origin: &Origin, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let mut tx = self.begin_write().await?;
        // Keeps pushes from listing the manifest as a child meanwhile.
        if !Self::lock_repository(&mut tx, repo.as_str(), RowLock::ChangeContent).await? {
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
        let tags: Vec<String> = sqlx::query_scalar("SELECT tag FROM tags WHERE repo = $1 AND digest = $2 ORDER BY tag")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_all(&mut *tx)
            .await?;
        Self::release_manifest_blobs(&mut tx, repo, digest).await?;
        // Cascades to its tags, its own child edges and its blob references.
        let deleted: Option<(String, Option<String>)> =
            sqlx::query_as("DELETE FROM manifests WHERE repo = $1 AND digest = $2 RETURNING media_type, artifact_type")
                .bind(repo.as_str())
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let (media_type, artifact_type) = deleted.ok_or_else(|| MetaError::ManifestUnknown(digest.clone()))?;
        let detail = serde_json::json!({ "tags": tags }).to_string();
        let event = NewEvent {
            digest: Some(digest.as_str()),
            media_type: Some(&media_type),
            artifact_type: artifact_type.as_deref(),
            detail: Some(&detail),
            ..NewEvent::new(EventKind::ManifestDeleted, repo.as_str())
        };
        Self::record_event(&mut tx, origin, event).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn delete_tag(&self, origin: &Origin, repo: &RepositoryName, tag: &Tag) -> Result<Option<Digest>> {
        let mut tx = self.begin_write().await?;
        if !Self::lock_repository(&mut tx, repo.as_str(), RowLock::ChangeContent).await? {
            return Ok(None);
        }
        let digest: Option<String> =
            sqlx::query_scalar("DELETE FROM tags WHERE repo = $1 AND tag = $2 RETURNING digest")
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(digest) = digest else { return Ok(None) };
        let event = NewEvent {
            digest: Some(&digest),
            tag: Some(tag.as_str()),
            ..NewEvent::new(EventKind::TagDeleted, repo.as_str())
        };
        Self::record_event(&mut tx, origin, event).await?;
        self.commit(tx).await?;
        parse_digest(&digest).map(Some)
    }

    /// Byte-wise: SQLite's default BINARY collation compares bytes, PostgreSQL's columns are
    /// `COLLATE "C"`.
    async fn list_tags(&self, repo: &RepositoryName, last: Option<&str>, limit: Option<usize>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT tag FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3")
            .bind(repo.as_str())
            .bind(list_cursor(last))
            .bind(limit.map_or(i64::MAX, limit_param))
            .fetch_all(&self.readers)
            .await?)
    }

    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ReferrerRecord>> {
        let rows: Vec<(String, String, Option<String>, i64, Option<String>, i64)> = sqlx::query_as(
            // OCTET_LENGTH: annotations are text, whose LENGTH counts characters (up to four
            // bytes each), and pages are bounded in bytes.
            "SELECT digest, media_type, artifact_type, CAST(LENGTH(content) AS BIGINT), \
             CASE WHEN OCTET_LENGTH(annotations) <= $5 THEN annotations END, \
             CAST(COALESCE(OCTET_LENGTH(annotations), 0) AS BIGINT) FROM manifests \
             WHERE repo = $1 AND subject = $2 AND digest > $3 ORDER BY digest LIMIT $4",
        )
        .bind(repo.as_str())
        .bind(subject.as_str())
        .bind(after.map_or("", Digest::as_str))
        .bind(limit_param(limit))
        .bind(INLINE_ANNOTATIONS as i64)
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter()
            .map(|(digest, media_type, artifact_type, size, annotations, annotations_len)| {
                Ok(ReferrerRecord {
                    digest: parse_digest(&digest)?,
                    media_type,
                    artifact_type,
                    size: stored_size(size)?,
                    annotations,
                    annotations_len: stored_size(annotations_len)?,
                })
            })
            .collect()
    }

    async fn annotations(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<String>> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT annotations FROM manifests WHERE repo = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(digest.as_str())
                .fetch_optional(&self.readers)
                .await?;
        Ok(found.flatten())
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
        // Ordered as indexed, (repo, digest), so the LIMIT stops the walk along the key.
        let rows: Vec<ImageRow> =
            sqlx::query_as(select_images!("WHERE m.repo = $1 AND m.digest > $2 ORDER BY m.repo, m.digest LIMIT $3"))
                .bind(repo.as_str())
                .bind(after.map_or("", Digest::as_str))
                .bind(limit_param(limit))
                .fetch_all(&self.readers)
                .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn get_image(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<ImageRecord>> {
        let row: Option<ImageRow> = sqlx::query_as(select_images!("WHERE m.repo = $1 AND m.digest = $2"))
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&self.readers)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn record_pulls(&self, pulls: &[(RepositoryName, Digest, Millis)]) -> Result<()> {
        // The latest time per manifest, in (repository, digest) order.
        let mut latest: std::collections::BTreeMap<(&str, &str), Millis> = std::collections::BTreeMap::new();
        for (repo, digest, at) in pulls {
            let time = latest.entry((repo.as_str(), digest.as_str())).or_insert(*at);
            *time = (*time).max(*at);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let latest: Vec<(&str, &str, Millis)> = latest.into_iter().map(|((r, d), at)| (r, d, at)).collect();
        DB::record_pulls(&self.writer, &latest).await?;
        self.durable().await
    }

    async fn update_storage_class(
        &self,
        origin: &Origin,
        repo: &RepositoryName,
        digest: &Digest,
        class: StorageClass,
        now: Millis,
    ) -> Result<Vec<StorageClassChange>> {
        let mut tx = self.begin_write().await?;
        // Keeps pushes and deletes of the image and its indexes out until the change committed.
        if !Self::lock_repository(&mut tx, repo.as_str(), RowLock::ChangeContent).await? {
            return Err(MetaError::RepositoryNotFound(repo.to_string()));
        }
        let exists: Option<String> = sqlx::query_scalar("SELECT digest FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(MetaError::ManifestUnknown(digest.clone()));
        }
        if class == StorageClass::Archive {
            let index: Option<String> = sqlx::query_scalar(
                "SELECT c.parent FROM manifest_children c JOIN manifests p ON p.repo = c.repo AND p.digest = c.parent \
                 WHERE c.repo = $1 AND c.child = $2 AND p.storage_class = 'STANDARD' ORDER BY c.parent LIMIT 1",
            )
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(index) = index {
                return Err(MetaError::ManifestReferenced { index: parse_digest(&index)? });
            }
        }
        let changes = Self::change_storage_class(&mut tx, origin, repo.as_str(), digest, class, now).await?;
        self.commit(tx).await?;
        Ok(changes)
    }
}
