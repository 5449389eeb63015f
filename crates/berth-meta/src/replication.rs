//! Replication's state: the registry's configuration document and each image's status per
//! destination. What to send comes from the event log (a consumer per destination); these rows
//! only record what `PutReplicationConfiguration` set and what `DescribeImageReplicationStatus`
//! reports.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Type};

use crate::dialect::Dialect;
use crate::{Millis, ReplicationStore, Result, SqlStore};

/// Where one image stands at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationStatusRecord {
    pub region: String,
    pub registry_id: String,
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED` (ECR's names).
    pub status: String,
    /// Why the last attempt failed, while `status` is `FAILED`.
    pub failure_code: Option<String>,
    pub updated_at: Millis,
}

#[async_trait]
impl<DB> ReplicationStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB>,
    for<'r> i64: Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn replication_configuration(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT document FROM replication_configuration WHERE id = 1")
            .fetch_optional(&self.readers)
            .await?)
    }

    async fn put_replication_configuration(&self, document: &str, now: Millis) -> Result<()> {
        sqlx::query(
            "INSERT INTO replication_configuration (id, document, updated_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
        )
        .bind(document)
        .bind(now)
        .execute(&self.writer)
        .await?;
        self.durable().await?;
        Ok(())
    }

    async fn set_replication_status(&self, repo: &str, digest: &str, status: &ReplicationStatusRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO replication_status (repo, digest, region, registry_id, status, failure_code, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (repo, digest, region, registry_id) DO UPDATE \
             SET status = excluded.status, failure_code = excluded.failure_code, updated_at = excluded.updated_at",
        )
        .bind(repo)
        .bind(digest)
        .bind(status.region.as_str())
        .bind(status.registry_id.as_str())
        .bind(status.status.as_str())
        .bind(status.failure_code.as_deref())
        .bind(status.updated_at)
        .execute(&self.writer)
        .await?;
        self.durable().await?;
        Ok(())
    }

    async fn replication_statuses(&self, repo: &str, digest: &str) -> Result<Vec<ReplicationStatusRecord>> {
        let rows: Vec<(String, String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT region, registry_id, status, failure_code, updated_at FROM replication_status \
             WHERE repo = $1 AND digest = $2 ORDER BY region, registry_id",
        )
        .bind(repo)
        .bind(digest)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(region, registry_id, status, failure_code, updated_at)| ReplicationStatusRecord {
                region,
                registry_id,
                status,
                failure_code,
                updated_at,
            })
            .collect())
    }
}
