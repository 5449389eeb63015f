//! Documents keyed by a repository prefix — pull-through cache rules and repository creation
//! templates — stored in tables of one shape, so their statements are written once here; each
//! store keeps its own table name and errors.

use sqlx::{ColumnIndex, Decode, Encode, Executor, Type};

use crate::dialect::Dialect;
use crate::{Millis, PrefixedDocument, Result, SqlStore};

type Row = (String, String, i64, i64);

fn document((prefix, document, created_at, updated_at): Row) -> PrefixedDocument {
    PrefixedDocument { prefix, document, created_at, updated_at }
}

const COLUMNS: &str = "prefix, document, created_at, updated_at";

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// `None` when `table` already holds `prefix`.
    pub(crate) async fn insert_prefixed(
        &self,
        table: &str,
        prefix: &str,
        text: &str,
        now: Millis,
    ) -> Result<Option<PrefixedDocument>> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({COLUMNS}) VALUES ($1, $2, $3, $3) ON CONFLICT (prefix) DO NOTHING RETURNING {COLUMNS}"
        )))
        .bind(prefix)
        .bind(text)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        self.durable().await?;
        Ok(row.map(document))
    }

    /// `None` when `table` holds no `prefix`.
    pub(crate) async fn update_prefixed(
        &self,
        table: &str,
        prefix: &str,
        text: &str,
        now: Millis,
    ) -> Result<Option<PrefixedDocument>> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET document = $2, updated_at = $3 WHERE prefix = $1 RETURNING {COLUMNS}"
        )))
        .bind(prefix)
        .bind(text)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        self.durable().await?;
        Ok(row.map(document))
    }

    /// `None` when `table` holds no `prefix`.
    pub(crate) async fn delete_prefixed(&self, table: &str, prefix: &str) -> Result<Option<PrefixedDocument>> {
        let row: Option<Row> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE prefix = $1 RETURNING {COLUMNS}")))
                .bind(prefix)
                .fetch_optional(&self.writer)
                .await?;
        self.durable().await?;
        Ok(row.map(document))
    }

    /// Every document of `table` by prefix, read through `executor` (a pool, or a transaction
    /// that must see them as of its own snapshot).
    pub(crate) async fn prefixed_documents<'e, E>(executor: E, table: &str) -> Result<Vec<PrefixedDocument>>
    where
        E: Executor<'e, Database = DB>,
    {
        let rows: Vec<Row> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM {table} ORDER BY prefix")))
                .fetch_all(executor)
                .await?;
        Ok(rows.into_iter().map(document).collect())
    }
}
