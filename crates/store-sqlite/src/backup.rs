//! Online backup and restore of the database file (`chatterly backup`,
//! `chatterly restore`).
//!
//! A backup is `VACUUM INTO` a new file on a connection of its own: one read
//! transaction, so the copy is the database as of one instant (every commit
//! before it, none after), taken while the server keeps writing (in WAL mode a
//! reader never blocks the writer). The copy is compact, self-contained (no
//! `-wal` file) and checked before it is reported done.

use std::path::Path;

use chatterly_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::Db;
use crate::migrate;

/// What a backup or restore checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The schema version of the copy.
    pub schema_version: i64,
    pub bytes: u64,
}

/// Copies the database at `database` into the new file `to`, consistently,
/// while other connections (a running server) read and write it.
pub fn backup(database: &Path, to: &Path) -> StoreResult<BackupSummary> {
    if !database.is_file() {
        return Err(StoreError::Backend(format!(
            "there is no database at {}",
            database.display()
        )));
    }
    if to.exists() {
        return Err(StoreError::Backend(format!(
            "{} already exists; a backup never overwrites a file",
            to.display()
        )));
    }
    let target = to
        .to_str()
        .ok_or_else(|| StoreError::Backend(format!("{} is not a UTF-8 path", to.display())))?;
    let source = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .db()?;
    source
        .busy_timeout(std::time::Duration::from_secs(10))
        .db()?;
    source.execute("VACUUM INTO ?1", [target]).map_err(|e| {
        StoreError::Backend(format!("cannot write the backup {}: {e}", to.display()))
    })?;
    drop(source);
    check(to)
}

/// Checks that `file` is a sound Chatterly database this build can open:
/// SQLite's integrity check passes and its schema is not newer than this
/// build's.
pub fn check(file: &Path) -> StoreResult<BackupSummary> {
    let bytes = std::fs::metadata(file)
        .map_err(|e| StoreError::Backend(format!("cannot read {}: {e}", file.display())))?
        .len();
    let connection = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .db()?;
    let not_ours = |why: String| {
        StoreError::Backend(format!(
            "{} is not a Chatterly SQLite database: {why}",
            file.display()
        ))
    };
    let integrity: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| not_ours(e.to_string()))?;
    if integrity != "ok" {
        return Err(not_ours(format!("integrity check: {integrity}")));
    }
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .db()?;
    let has_users: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'users')",
            [],
            |row| row.get(0),
        )
        .db()?;
    if version < 1 || !has_users {
        return Err(not_ours("it has no Chatterly schema".into()));
    }
    if version > migrate::latest() {
        return Err(StoreError::Backend(format!(
            "{} has schema version {version}, newer than this build's {}",
            file.display(),
            migrate::latest()
        )));
    }
    Ok(BackupSummary {
        schema_version: version,
        bytes,
    })
}

/// Restores the backup `from` as the database `database`, which must not
/// exist: checks the backup, copies it beside the target and renames it into
/// place (so a failed copy leaves no half database). The caller migrates.
pub fn restore(from: &Path, database: &Path) -> StoreResult<BackupSummary> {
    if database.exists() {
        return Err(StoreError::Backend(format!(
            "{} already exists; restore only into an empty data directory",
            database.display()
        )));
    }
    let summary = check(from)?;
    let partial = database.with_extension("restoring");
    std::fs::copy(from, &partial)
        .map_err(|e| StoreError::Backend(format!("cannot copy into {}: {e}", partial.display())))?;
    std::fs::rename(&partial, database).map_err(|e| {
        StoreError::Backend(format!("cannot move {} into place: {e}", partial.display()))
    })?;
    Ok(summary)
}

/// The schema version of the database at `database` and this build's latest,
/// read without changing anything (`chatterly doctor`).
pub fn schema_version(database: &Path) -> StoreResult<(i64, i64)> {
    let connection = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .db()?;
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .db()?;
    Ok((version, migrate::latest()))
}
