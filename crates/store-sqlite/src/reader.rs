//! The read-only connections, and where reads run.
//!
//! # Inline, on the calling thread
//!
//! A point read (a membership check, a user by id) costs about 1 µs of CPU
//! and a page of 50 messages about 25 µs, all of it SQLite and row
//! conversion. Any handoff to another thread costs more than the point read
//! itself: measured with `examples/sqlite_bench.rs` (64 tasks, 2 cores), CPU per
//! operation was
//!
//! | read                 | inline | dedicated reader threads + channel | `spawn_blocking` + pool |
//! |----------------------|--------|------------------------------------|-------------------------|
//! | membership (point)   | 1.0 µs | 6–7.5 µs                           | 35–56 µs                |
//! | history (50 messages)| 26 µs  | 41–44 µs                           | 67–125 µs               |
//!
//! and, the machine having two cores either way, the handoffs bought no
//! parallelism, only wake-ups and context switches. So reads whose cost is
//! bounded (a point read, a page of at most [`INLINE_ROWS`] rows) run inline:
//! the calling task takes an idle connection from the pool, runs the
//! statement and puts the connection back, all synchronously (the pool's
//! `std::sync::Mutex` is held only to pop or push, never across an `.await`,
//! and never while SQLite works). In WAL mode a reader never waits for the
//! writer, so such a read does not block.
//!
//! # Off the async threads, for reads of unbounded size
//!
//! A read whose size the caller does not bound (a search that scans every
//! user, the members of a large channel, every revocation) could hold an
//! async worker for milliseconds, stalling every task behind it. Those run on
//! `spawn_blocking`, at most [`BLOCKING_READS`] at a time (the rest wait
//! asynchronously for a permit), on connections from the same pool; there the
//! ~40 µs handoff is small against the read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chatterly_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::connection::open_reader;

/// The most rows a read may return and still run inline (~0.5 µs a row: about
/// 100 µs, the usual bound on the time an async task runs between awaits).
pub(crate) const INLINE_ROWS: usize = 200;
/// Reads of unbounded size running at once on blocking threads.
pub(crate) const BLOCKING_READS: usize = 2;

/// A pool of read-only connections.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Connections kept when given back; beyond it (a burst of concurrent
    /// reads on more threads than usual) they are closed.
    keep: usize,
    blocking: Semaphore,
}

impl Readers {
    /// Opens `count` connections up front.
    pub(crate) fn open(path: &Path, count: usize) -> StoreResult<Readers> {
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            idle.push(open_reader(path)?);
        }
        Ok(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(idle),
            keep: count,
            blocking: Semaphore::new(BLOCKING_READS),
        })
    }

    /// Runs `read` on an idle connection, on this thread. A connection is
    /// opened if none is idle (more threads reading at once than the pool
    /// holds; the pool then keeps up to its size).
    pub(crate) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let connection = self.take()?;
        let result = read(&connection);
        self.give_back(connection);
        result
    }

    fn take(&self) -> StoreResult<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match idle {
            Some(connection) => Ok(connection),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, connection: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < self.keep {
            idle.push(connection);
        }
    }

    /// Runs `check` on every idle connection.
    #[cfg(test)]
    pub(crate) fn each_idle(&self, mut check: impl FnMut(&Connection)) {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        assert!(!idle.is_empty());
        for connection in idle.iter() {
            check(connection);
        }
    }

    /// Connections idle in the pool.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// A read of bounded cost: inline (see the module documentation).
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.with(read)
    }

    /// A read of unbounded cost: on a blocking thread when on a Tokio
    /// runtime (inline otherwise).
    pub(crate) async fn read_long<T, F>(self: &Arc<Self>, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.with(read);
        };
        let _permit = self
            .blocking
            .acquire()
            .await
            .map_err(|_| StoreError::Backend("the read pool is closed".into()))?;
        let readers = self.clone();
        runtime
            .spawn_blocking(move || readers.with(read))
            .await
            .map_err(|e| StoreError::Backend(format!("a read failed: {e}")))?
    }
}
