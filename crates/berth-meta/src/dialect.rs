//! What differs between the two SQL databases the store runs on, and nothing else: how writes
//! begin, how rows are locked, how a list is bound, the migration scripts, and the one statement
//! that has no common form. Everything else is [`crate::SqlStore`]'s, written once.

use std::future::Future;

use sqlx::{Database, Encode, IntoArguments, Pool, Type};

use crate::migrations::Migration;
use crate::{Millis, Result};

/// How strongly a transaction holds a row it reads (PostgreSQL row locks; SQLite's single writer
/// already serialises every write transaction, so there they lock nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLock {
    /// The repository row, by whatever changes its manifests, tags or links: one such writer
    /// per repository at a time (`FOR NO KEY UPDATE`). Rows that are only added under it (links,
    /// upload sessions) need no explicit lock: their foreign key's check takes `FOR KEY SHARE`,
    /// which holds off the repository's deletion but not these writers.
    ChangeContent,
    /// A row about to be deleted or rewritten: everything else waits (`FOR UPDATE`).
    Exclusive,
    /// Queue rows one claimer takes while others pass over them (`FOR UPDATE SKIP LOCKED`).
    ExclusiveSkipLocked,
}

/// A SQL database as the store uses it; implemented for `sqlx::Sqlite` and `sqlx::Postgres`.
pub trait Dialect: Database<Arguments: IntoArguments<Self>> {
    /// A list of strings bound as one parameter (see [`Dialect::list`]).
    type TextList: for<'q> Encode<'q, Self> + Type<Self> + Send + 'static;
    /// A list of integers bound as one parameter.
    type IdList: for<'q> Encode<'q, Self> + Type<Self> + Send + 'static;

    /// Starts every write transaction. SQLite's `BEGIN IMMEDIATE` takes the file's write lock
    /// at once, so a second process waits in `busy_timeout` instead of failing on an upgrade.
    const BEGIN_WRITE: &'static str;
    /// Creates the schema-version table if missing (the same table migration 1 describes).
    const STORE_META: &'static str;
    /// Held while migrating, so servers starting together migrate once.
    const MIGRATION_LOCK: Option<&'static str>;
    /// Held while a consumer registers: event writers in flight commit first, later ones wait,
    /// so the new consumer gets exactly the events committed after it.
    const EVENT_LOG_LOCK: Option<&'static str>;

    fn text_list(items: &[&str]) -> Self::TextList;
    fn id_list(ids: &[i64]) -> Self::IdList;
    /// A table expression named `list` over list parameter `$param`, with one column, `value`.
    fn list(param: u8) -> String;
    /// The clause that ends a `SELECT` taking `lock` on its rows.
    fn row_lock(lock: RowLock) -> &'static str;
    fn migration_sql(migration: &Migration) -> &'static str;

    /// Sets each manifest's last pull time to the given one unless it has a later one already;
    /// `latest` holds one entry per manifest, sorted by (repository, digest).
    fn record_pulls<'a>(
        writer: &'a Pool<Self>,
        latest: &'a [(&'a str, &'a str, Millis)],
    ) -> impl Future<Output = Result<()>> + Send + 'a;
}
