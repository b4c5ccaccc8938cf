//! The schema migrations: `migrations/NNNN_name.sql`, embedded at build time
//! (see `build.rs`), applied in order, the database's `PRAGMA user_version`
//! recording the last one applied.
//!
//! Hand-written rather than `rusqlite_migration` (which keeps the same
//! `user_version` bookkeeping): the whole need is the twenty lines below, and
//! owning them lets the runner take the write lock up front (`BEGIN
//! IMMEDIATE`, so two processes migrating at once serialise instead of one
//! failing its lock upgrade), apply every pending migration in that one
//! transaction (a failed one leaves the database as it was), refuse a database
//! newer than the build, and adopt databases created by the earlier sqlx-based
//! store; it also spares a dependency whose rusqlite version would have to
//! move in lockstep with ours.

use chatterly_store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension};

use crate::error::Db;

/// One migration file.
pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The schema version this build brings a database to.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| i64::from(m.version))
}

/// Applies the pending migrations in one transaction. Idempotent. Runs on the
/// writer connection, outside any other transaction.
pub(crate) fn run(connection: &Connection) -> StoreResult<()> {
    connection.execute_batch("BEGIN IMMEDIATE").db()?;
    match apply(connection) {
        Ok(applied) => {
            connection.execute_batch("COMMIT").db()?;
            if applied > 0 {
                tracing::info!(applied, version = latest(), "sqlite schema migrated");
            }
            Ok(())
        }
        Err(e) => {
            if let Err(rollback) = connection.execute_batch("ROLLBACK") {
                tracing::error!(error = %rollback, "rolling back a failed migration failed");
            }
            Err(e)
        }
    }
}

/// Returns how many migrations it applied.
fn apply(connection: &Connection) -> StoreResult<usize> {
    let mut current: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .db()?;
    if current == 0 {
        current = sqlx_version(connection)?;
    }
    let latest = latest();
    if current > latest {
        return Err(StoreError::Backend(format!(
            "the database schema is at version {current}, newer than this build's {latest}"
        )));
    }
    let mut applied = 0;
    for migration in MIGRATIONS.iter().filter(|m| i64::from(m.version) > current) {
        connection.execute_batch(migration.sql).map_err(|e| {
            StoreError::Backend(format!(
                "migration {} ({}) failed: {e}",
                migration.version, migration.name
            ))
        })?;
        applied += 1;
    }
    if current != latest {
        connection
            .pragma_update(None, "user_version", latest)
            .db()?;
    }
    Ok(applied)
}

/// The version a database made by the sqlx-based store reached (its
/// `_sqlx_migrations` table; the migration files are the same), else 0.
fn sqlx_version(connection: &Connection) -> StoreResult<i64> {
    let has_table: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema \
             WHERE type = 'table' AND name = '_sqlx_migrations')",
            [],
            |row| row.get(0),
        )
        .db()?;
    if !has_table {
        return Ok(0);
    }
    let version: Option<i64> = connection
        .query_row(
            "SELECT max(version) FROM _sqlx_migrations WHERE success",
            [],
            |row| row.get(0),
        )
        .optional()
        .db()?
        .flatten();
    Ok(version.unwrap_or(0))
}
