//! [`TemplateStore`] and [`PullExclusionStore`], written once for both dialects. Template and
//! exclusion changes are single statements; a repository created from templates reads them in
//! its own write transaction.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Type};

use crate::dialect::Dialect;
use crate::{
    MetaError, Millis, Origin, PullExclusionStore, Repository, Result, SqlStore, TemplateChooser, TemplateRecord,
    TemplateStore,
};
use berth_spec::RepositoryName;

const TEMPLATES: &str = "repository_creation_templates";

#[async_trait]
impl<DB> TemplateStore for SqlStore<DB>
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
    async fn create_template(&self, prefix: &str, document: &str, now: Millis) -> Result<TemplateRecord> {
        let created = self.insert_prefixed(TEMPLATES, prefix, document, now).await?;
        created.ok_or_else(|| MetaError::TemplateExists(prefix.to_owned()))
    }

    async fn update_template(&self, prefix: &str, document: &str, now: Millis) -> Result<TemplateRecord> {
        let updated = self.update_prefixed(TEMPLATES, prefix, document, now).await?;
        updated.ok_or_else(|| MetaError::TemplateNotFound(prefix.to_owned()))
    }

    async fn templates(&self) -> Result<Vec<TemplateRecord>> {
        Self::prefixed_documents(&self.readers, TEMPLATES).await
    }

    async fn delete_template(&self, prefix: &str) -> Result<TemplateRecord> {
        let deleted = self.delete_prefixed(TEMPLATES, prefix).await?;
        deleted.ok_or_else(|| MetaError::TemplateNotFound(prefix.to_owned()))
    }

    async fn ensure_repository_from_templates(
        &self,
        origin: &Origin,
        name: &RepositoryName,
        choose: TemplateChooser<'_>,
        now: Millis,
    ) -> Result<(Repository, bool)> {
        let mut tx = self.begin_write().await?;
        if let Some(existing) = Self::repository(&mut *tx, name.as_str()).await? {
            return Ok((existing, false));
        }
        // Read in the creating transaction: on SQLite the writer's lock holds template writes
        // off; on PostgreSQL a template changed meanwhile is one that changed after the creation.
        let templates = Self::prefixed_documents(&mut *tx, TEMPLATES).await?;
        let settings = choose(&templates).map_err(MetaError::TemplateUnusable)?;
        let outcome = match Self::insert_repository(&mut tx, origin, name, &settings, now).await? {
            Some(created) => (created, true),
            // Another server created it between the read and the insert.
            None => (
                Self::repository(&mut *tx, name.as_str())
                    .await?
                    .ok_or_else(|| MetaError::RepositoryNotFound(name.to_string()))?,
                false,
            ),
        };
        self.commit(tx).await?;
        Ok(outcome)
    }
}

#[async_trait]
impl<DB> PullExclusionStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn register_pull_exclusion(&self, principal_arn: &str, now: Millis) -> Result<Millis> {
        let created: Option<i64> = sqlx::query_scalar(
            "INSERT INTO pull_time_update_exclusions (principal_arn, created_at) VALUES ($1, $2) \
             ON CONFLICT (principal_arn) DO NOTHING RETURNING created_at",
        )
        .bind(principal_arn)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        self.durable().await?;
        created.ok_or_else(|| MetaError::ExclusionExists(principal_arn.to_owned()))
    }

    async fn deregister_pull_exclusion(&self, principal_arn: &str) -> Result<()> {
        let removed: Option<String> = sqlx::query_scalar(
            "DELETE FROM pull_time_update_exclusions WHERE principal_arn = $1 RETURNING principal_arn",
        )
        .bind(principal_arn)
        .fetch_optional(&self.writer)
        .await?;
        self.durable().await?;
        removed.map(|_| ()).ok_or_else(|| MetaError::ExclusionNotFound(principal_arn.to_owned()))
    }

    async fn pull_exclusions(&self) -> Result<Vec<(String, Millis)>> {
        Ok(sqlx::query_as("SELECT principal_arn, created_at FROM pull_time_update_exclusions ORDER BY principal_arn")
            .fetch_all(&self.readers)
            .await?)
    }
}
