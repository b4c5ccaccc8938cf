//! Opening and configuring connections.
//!
//! The settings are the usual ones for a server: WAL journal with
//! `synchronous=NORMAL` (a committed transaction is in the WAL file before
//! `COMMIT` returns, so it survives the process being killed; only an OS crash
//! or power loss can lose the last few), foreign keys on, a busy timeout, a
//! larger page cache, memory-mapped reads and a prepared-statement cache big
//! enough for every statement of the store.

use std::path::Path;
use std::time::Duration;

use chatterly_store::StoreResult;
use rusqlite::{Connection, OpenFlags};

use crate::error::Db;

/// How long a connection waits on a lock held by another process (the only
/// way to contend, given the single writer) before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache per connection, in KiB (`PRAGMA cache_size` takes negative KiB).
const CACHE_SIZE_KIB: i64 = 16 * 1024;
/// Memory-mapped I/O window: reads served from the OS page cache without a
/// copy per read, shared by all connections.
const MMAP_SIZE_BYTES: i64 = 256 * 1024 * 1024;
/// After a checkpoint, the WAL file is truncated back to at most this size.
const JOURNAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;
/// Prepared statements kept per connection (the store has about 40; the
/// default of 16 would evict on every request mix).
const STATEMENT_CACHE: usize = 128;

/// The one read-write connection (see `writer`). Creates the file if missing
/// and switches it to WAL, a persistent property of the database, so the
/// readers opened after it find it so.
pub(crate) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).db()?;
    let journal: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .db()?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(chatterly_store::StoreError::Backend(format!(
            "cannot switch {} to WAL (journal_mode is {journal})",
            path.display()
        )));
    }
    connection
        .pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)
        .db()?;
    configure(&connection)?;
    Ok(connection)
}

/// A read-only connection: opened `SQLITE_OPEN_READ_ONLY` and `query_only`,
/// so a bug cannot make it write (and take the write lock from the writer).
pub(crate) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).db()?;
    configure(&connection)?;
    connection.pragma_update(None, "query_only", true).db()?;
    Ok(connection)
}

fn configure(connection: &Connection) -> StoreResult<()> {
    connection.busy_timeout(BUSY_TIMEOUT).db()?;
    connection
        .pragma_update(None, "synchronous", "NORMAL")
        .db()?;
    connection.pragma_update(None, "foreign_keys", true).db()?;
    connection
        .pragma_update(None, "cache_size", -CACHE_SIZE_KIB)
        .db()?;
    connection
        .pragma_update(None, "mmap_size", MMAP_SIZE_BYTES)
        .db()?;
    connection
        .pragma_update(None, "temp_store", "MEMORY")
        .db()?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}
