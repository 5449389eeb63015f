//! The rows the store reads, how they become records, and the rules that need no database.

use berth_spec::Digest;

use crate::{
    AccessKeyStatus, ImageRecord, ManifestRecord, MetaError, PutManifest, Repository, Result, StorageClass,
    UploadSession, UserRecord,
};

/// SQLite's `SQLITE_FULL` and PostgreSQL's `disk_full`.
const STORAGE_FULL_CODES: [&str; 2] = ["13", "53100"];

/// Every sqlx failure (I/O, constraint, pool closed) is a backend error to the caller, except a
/// full disk, which the caller answers differently; the expected conditions are checked
/// explicitly and reported with their own variants.
impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.code().is_some_and(|code| STORAGE_FULL_CODES.contains(&&*code)) => {
                tracing::error!("metadata database: {e}");
                MetaError::StorageFull
            }
            _ => MetaError::Backend(e.to_string()),
        }
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

/// A listing's "after this one" bound as bound to SQL. No stored name or tag holds a NUL
/// (PostgreSQL's text cannot), so what follows one changes nothing about which come after:
/// cut there rather than hand the database a NUL it refuses.
pub(crate) fn list_cursor(after: Option<&str>) -> &str {
    after.map_or("", |after| after.split('\0').next().unwrap_or_default())
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

/// Where each of `put.tags` points now, given `current` (tag → digest as stored), refusing to
/// move an immutable tag elsewhere.
pub(crate) fn checked_tag_moves(put: &PutManifest<'_>, current: &[(String, String)]) -> Result<Vec<Option<Digest>>> {
    put.tags
        .iter()
        .map(|wanted| {
            let Some((_, digest)) = current.iter().find(|(tag, _)| tag == wanted.tag.as_str()) else {
                return Ok(None);
            };
            let digest = parse_digest(digest)?;
            if wanted.immutable && &digest != put.digest {
                return Err(MetaError::TagImmutable {
                    repository: put.repo.to_string(),
                    tag: wanted.tag.to_string(),
                    current: digest,
                });
            }
            Ok(Some(digest))
        })
        .collect()
}

/// The columns [`ManifestRow`] reads, from `manifests` under the alias `m`.
macro_rules! manifest_columns {
    () => {
        "m.digest, m.media_type, m.content, m.artifact_type, m.subject, m.annotations, m.image_size, \
         m.pushed_at, m.last_pulled_at, m.storage_class, m.last_archived_at, m.last_activated_at"
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

/// A query for [`RepositoryRow`]s, `$rest` following `FROM repositories`.
macro_rules! select_repository {
    ($rest:literal) => {
        concat!("SELECT name, created_at, settings, settings_version FROM repositories ", $rest)
    };
}
pub(crate) use select_repository;

/// A query for [`UserRow`]s, `$rest` following `FROM users`.
macro_rules! select_user {
    ($rest:literal) => {
        concat!("SELECT name, access_key_id, secret_ciphertext, created_at, key_status FROM users ", $rest)
    };
}
pub(crate) use select_user;

/// Images with their tags in one statement, so both come from one snapshot: `$rest` follows
/// `FROM manifests m`. The tags are a correlated subquery, not a join with GROUP BY, so a
/// `LIMIT` walks the manifests' (repo, digest) key and stops: grouped, PostgreSQL aggregated
/// every remaining image of the repository per page and a full scan grew as n². Tags never
/// contain a space.
macro_rules! select_images {
    ($rest:literal) => {
        concat!(
            "SELECT ",
            $crate::sql::manifest_columns!(),
            ", (SELECT string_agg(t.tag, ' ' ORDER BY t.tag) FROM tags t \
             WHERE t.repo = m.repo AND t.digest = m.digest) AS tags FROM manifests m ",
            $rest
        )
    };
}
pub(crate) use select_images;

#[derive(sqlx::FromRow)]
pub(crate) struct RepositoryRow {
    name: String,
    created_at: i64,
    settings: String,
    settings_version: i64,
}

impl From<RepositoryRow> for Repository {
    fn from(r: RepositoryRow) -> Self {
        Repository {
            name: r.name,
            created_at: r.created_at,
            settings: r.settings,
            settings_version: r.settings_version,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ManifestRow {
    digest: String,
    media_type: String,
    content: Vec<u8>,
    artifact_type: Option<String>,
    subject: Option<String>,
    annotations: Option<String>,
    image_size: i64,
    pushed_at: i64,
    last_pulled_at: Option<i64>,
    storage_class: String,
    last_archived_at: Option<i64>,
    last_activated_at: Option<i64>,
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
            storage_class: StorageClass::parse(&r.storage_class)?,
            last_archived_at: r.last_archived_at,
            last_activated_at: r.last_activated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ImageRow {
    #[sqlx(flatten)]
    manifest: ManifestRow,
    /// Space-separated, sorted; `None` for an untagged image.
    tags: Option<String>,
}

impl TryFrom<ImageRow> for ImageRecord {
    type Error = MetaError;

    fn try_from(row: ImageRow) -> Result<Self> {
        let tags = row.tags.map(|tags| tags.split(' ').map(str::to_owned).collect()).unwrap_or_default();
        Ok(ImageRecord { manifest: row.manifest.try_into()?, tags })
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
    key_status: String,
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> Self {
        UserRecord {
            name: r.name,
            access_key_id: r.access_key_id,
            secret_ciphertext: r.secret_ciphertext,
            created_at: r.created_at,
            // The column's CHECK allows only the two names; anything else fails safe.
            key_status: AccessKeyStatus::parse(&r.key_status).unwrap_or(AccessKeyStatus::Inactive),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cursors_end_at_a_nul() {
        assert_eq!(list_cursor(None), "");
        assert_eq!(list_cursor(Some("app/web")), "app/web");
        assert_eq!(list_cursor(Some("a\0b")), "a");
        assert_eq!(list_cursor(Some("\0")), "");
    }

    #[test]
    fn image_size_sums_blobs_or_takes_the_largest_child() {
        let blobs = [(Digest::sha256_of(b"config"), 10), (Digest::sha256_of(b"layer"), 32)];
        assert_eq!(image_size(&blobs, &[]), 42);
        assert_eq!(image_size(&[], &[]), 0);
        assert_eq!(image_size(&[], &[7, 90, 3]), 90);
        assert_eq!(image_size(&[(Digest::sha256_of(b"huge"), u64::MAX), blobs[0].clone()], &[]), u64::MAX);
    }
}
