//! [`PullThroughStore`]: cache rules and sealed upstream credentials, written once for both
//! dialects. Each change is a single statement, so it needs no explicit transaction.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Type};

use crate::dialect::Dialect;
use crate::{CacheRuleRecord, CacheStatsDelta, MetaError, Millis, PullThroughStore, Result, SqlStore};

const CACHE_RULES: &str = "pull_through_cache_rules";

#[async_trait]
impl<DB> PullThroughStore for SqlStore<DB>
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
    async fn put_upstream_secret(&self, name: &str, ciphertext: &[u8], now: Millis) -> Result<()> {
        sqlx::query(
            "INSERT INTO upstream_secrets (name, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(ciphertext)
        .bind(now)
        .execute(&self.writer)
        .await?;
        self.durable().await?;
        Ok(())
    }

    async fn upstream_secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT ciphertext FROM upstream_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?)
    }

    async fn create_cache_rule(&self, prefix: &str, document: &str, now: Millis) -> Result<CacheRuleRecord> {
        let created = self.insert_prefixed(CACHE_RULES, prefix, document, now).await?;
        created.ok_or_else(|| MetaError::CacheRuleExists(prefix.to_owned()))
    }

    async fn update_cache_rule(&self, prefix: &str, document: &str, now: Millis) -> Result<CacheRuleRecord> {
        let updated = self.update_prefixed(CACHE_RULES, prefix, document, now).await?;
        updated.ok_or_else(|| MetaError::CacheRuleNotFound(prefix.to_owned()))
    }

    async fn cache_rules(&self) -> Result<Vec<CacheRuleRecord>> {
        Self::prefixed_documents(&self.readers, CACHE_RULES).await
    }

    async fn add_cache_stats(&self, deltas: &[(String, CacheStatsDelta)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (prefix, delta) in deltas {
            sqlx::query(
                "INSERT INTO pull_through_cache_stats (prefix, hits, misses, bytes_from_cache, bytes_from_upstream) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (prefix) DO UPDATE SET \
                 hits = pull_through_cache_stats.hits + excluded.hits, \
                 misses = pull_through_cache_stats.misses + excluded.misses, \
                 bytes_from_cache = pull_through_cache_stats.bytes_from_cache + excluded.bytes_from_cache, \
                 bytes_from_upstream = pull_through_cache_stats.bytes_from_upstream + excluded.bytes_from_upstream",
            )
            .bind(prefix.as_str())
            .bind(delta.hits)
            .bind(delta.misses)
            .bind(delta.bytes_from_cache)
            .bind(delta.bytes_from_upstream)
            .execute(&mut *tx)
            .await?;
            if let Some((at, message)) = &delta.last_error {
                // Another server may have flushed a later failure already: keep the latest.
                sqlx::query(
                    "UPDATE pull_through_cache_stats SET last_error_at = $2, last_error = $3 \
                     WHERE prefix = $1 AND (last_error_at IS NULL OR last_error_at <= $2)",
                )
                .bind(prefix.as_str())
                .bind(*at)
                .bind(message.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        self.commit(tx).await?;
        Ok(())
    }

    async fn cache_stats(&self) -> Result<Vec<(String, CacheStatsDelta)>> {
        type StatsRow = (String, i64, i64, i64, i64, i64, String);
        let rows: Vec<StatsRow> = sqlx::query_as(
            "SELECT prefix, hits, misses, bytes_from_cache, bytes_from_upstream, \
             COALESCE(last_error_at, -1), COALESCE(last_error, '') FROM pull_through_cache_stats ORDER BY prefix",
        )
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(prefix, hits, misses, bytes_from_cache, bytes_from_upstream, error_at, error)| {
                let last_error = (error_at >= 0).then_some((error_at, error));
                (prefix, CacheStatsDelta { hits, misses, bytes_from_cache, bytes_from_upstream, last_error })
            })
            .collect())
    }

    async fn delete_cache_rule(&self, prefix: &str) -> Result<CacheRuleRecord> {
        let deleted = self.delete_prefixed(CACHE_RULES, prefix).await?;
        deleted.ok_or_else(|| MetaError::CacheRuleNotFound(prefix.to_owned()))
    }
}
