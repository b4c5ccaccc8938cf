//! The single writer, with group commit.
//!
//! SQLite has one write lock per database. Rather than connections queueing on
//! it, one dedicated thread owns the only read-write connection and every
//! write is a command sent to it over a channel, answered on a oneshot.
//!
//! **Group commit.** Committing (writing the WAL frames, updating the WAL
//! index) costs more than a typical command, so the thread takes every command
//! waiting in the channel (up to [`MAX_BATCH`]) and runs them all in one
//! transaction:
//!
//! ```text
//! BEGIN IMMEDIATE
//!   SAVEPOINT command; <command 1>; RELEASE command        -- kept
//!   SAVEPOINT command; <command 2>; ROLLBACK TO command; RELEASE command  -- failed
//!   ...
//! COMMIT
//! ```
//!
//! Each command runs inside its own savepoint, so one that fails (a unique
//! conflict, a missing row) is undone alone and the others are unaffected; a
//! command may also ask for its writes to be undone while succeeding
//! ([`Unit::discard`], e.g. an idempotent retry). Replies are sent only after
//! `COMMIT` returned: an acknowledged write is in the WAL file and survives the
//! process being killed. If the transaction as a whole fails (`BEGIN`,
//! `COMMIT`, or an error after which SQLite rolled the transaction back, such
//! as a full disk), it is rolled back and every command of the batch gets the
//! error: none of them was acknowledged, none of them is stored.
//!
//! Batches form by themselves: while the thread commits one batch, the next
//! commands queue up, so the busier the store, the bigger the batches and the
//! fewer commits per write. An idle store commits each command at once (no
//! timer, no added latency).
//!
//! **Cancellation.** A command is a closure that runs whole on this thread, in
//! its savepoint, whatever happens to the caller: a caller whose future is
//! dropped after sending leaves a command that is either run whole (and
//! committed with its batch; the reply is dropped) or, if it had not started
//! when the batch formed, skipped. Nothing is ever half done, and no state is
//! left behind for the next caller.
//!
//! A command that panics (a bug) is caught, its savepoint rolled back and its
//! caller answered with an error; the thread goes on.

use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chatterly_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::{again, backend};

/// The most commands committed in one transaction. Bounds the latency a batch
/// adds to its first command, and the work lost if the transaction fails.
pub(crate) const MAX_BATCH: usize = 256;
/// Commands waiting for the writer beyond which callers wait (asynchronously)
/// to send: backpressure instead of an unbounded queue.
const QUEUE: usize = 4 * MAX_BATCH;

/// A command's view of the write transaction: the connection (by `Deref`)
/// and the savepoint it runs in.
pub(crate) struct Unit<'c> {
    connection: &'c Connection,
    discard: bool,
}

impl Unit<'_> {
    /// Undoes the command's writes when it returns, even though it succeeds
    /// (e.g. an idempotent retry that found the original after bumping a
    /// counter).
    pub(crate) fn discard(&mut self) {
        self.discard = true;
    }
}

impl Deref for Unit<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.connection
    }
}

/// Whether a command's writes are kept.
enum Ran {
    Keep,
    Undo,
}

/// A command, type-erased: its closure, its result once run, its reply.
trait Job: Send {
    /// Whether the caller is gone (its reply receiver dropped).
    fn cancelled(&self) -> bool;
    /// Runs the command (at most once).
    fn run(&mut self, connection: &Connection) -> Ran;
    /// Sends the command's result.
    fn reply(self: Box<Self>);
    /// Sends `error` instead of the command's result.
    fn fail(self: Box<Self>, error: StoreError);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut Unit<'_>) -> StoreResult<T> + Send,
{
    fn cancelled(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(&mut self, connection: &Connection) -> Ran {
        let Some(work) = self.work.take() else {
            return Ran::Undo;
        };
        let mut unit = Unit {
            connection,
            discard: false,
        };
        let result = catch_unwind(AssertUnwindSafe(|| work(&mut unit))).unwrap_or_else(|_| {
            tracing::error!("a sqlite write command panicked; it was rolled back");
            Err(StoreError::Backend("the write command panicked".into()))
        });
        let keep = result.is_ok() && !unit.discard;
        self.result = Some(result);
        if keep {
            Ran::Keep
        } else {
            Ran::Undo
        }
    }

    fn reply(self: Box<Self>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(StoreError::Backend("the write command did not run".into())));
        // The caller may be gone; its command ran whole all the same.
        let _ = self.reply.send(result);
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

enum Command {
    /// Runs in a group-commit batch, in its own savepoint.
    Batched(Box<dyn Job>),
    /// Runs alone, outside any transaction (it manages its own), between
    /// batches: migrations.
    Alone(Box<dyn Job>),
}

/// Counters, for tests and logs.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Transactions committed (or attempted) for batches.
    pub(crate) batches: AtomicU64,
    /// Commands run in them.
    pub(crate) commands: AtomicU64,
}

/// The handle callers send commands through; cheap to clone. The thread ends
/// (closing the connection) when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Writer {
    commands: mpsc::Sender<Command>,
    pub(crate) stats: Arc<Stats>,
}

fn stopped() -> StoreError {
    StoreError::Backend("the sqlite writer thread has stopped".into())
}

impl Writer {
    /// Starts the writer thread on `connection`.
    pub(crate) fn start(connection: Connection) -> StoreResult<Writer> {
        let (commands, receiver) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(connection, receiver, &thread_stats))
            .map_err(|e| StoreError::Backend(format!("cannot start the sqlite writer: {e}")))?;
        Ok(Writer { commands, stats })
    }

    /// Runs `work` in the next batch and returns its result once the batch
    /// committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Unit<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.send(work, Command::Batched).await
    }

    /// Runs `work` alone, outside any transaction (it must leave none open).
    pub(crate) async fn alone<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Unit<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.send(work, Command::Alone).await
    }

    async fn send<T, F>(&self, work: F, kind: fn(Box<dyn Job>) -> Command) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Unit<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.commands.send(kind(job)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether the thread is still there to take commands.
    pub(crate) fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Commands sent and not yet taken by the thread.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.commands.max_capacity() - self.commands.capacity()
    }
}

/// The writer thread: forms batches from whatever is queued and runs them.
fn run(connection: Connection, mut receiver: mpsc::Receiver<Command>, stats: &Stats) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut next: Option<Command> = None;
    loop {
        let first = match next.take() {
            Some(command) => command,
            None => match receiver.blocking_recv() {
                Some(command) => command,
                None => break,
            },
        };
        match first {
            Command::Alone(job) => {
                run_alone(&connection, job);
                continue;
            }
            Command::Batched(job) => batch.push(job),
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(Command::Batched(job)) => batch.push(job),
                Ok(alone @ Command::Alone(_)) => {
                    // After this batch, in order.
                    next = Some(alone);
                    break;
                }
                Err(_) => break,
            }
        }
        run_batch(&connection, &mut batch, stats);
    }
    if let Err((_, e)) = connection.close() {
        tracing::warn!(error = %e, "closing the sqlite writer connection failed");
    }
    tracing::debug!(
        batches = stats.batches.load(Ordering::Relaxed),
        commands = stats.commands.load(Ordering::Relaxed),
        "sqlite writer stopped"
    );
}

fn execute(connection: &Connection, sql: &str) -> StoreResult<()> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(backend)
}

/// Ends whatever transaction is open (a failed batch, a job that left one).
fn roll_back(connection: &Connection) {
    if !connection.is_autocommit() {
        if let Err(e) = execute(connection, "ROLLBACK") {
            tracing::error!(error = %e, "sqlite writer: rollback failed");
        }
    }
}

/// Runs `batch` (emptying it) in one transaction, as described in the module
/// documentation.
fn run_batch(connection: &Connection, batch: &mut Vec<Box<dyn Job>>, stats: &Stats) {
    // A command whose caller left before it started is skipped: it was never
    // acknowledged, and not running it at all is one of the two outcomes a
    // cancelled caller may see.
    batch.retain(|job| !job.cancelled());
    if batch.is_empty() {
        return;
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .commands
        .fetch_add(batch.len() as u64, Ordering::Relaxed);

    let outcome = transaction(connection, batch);
    match outcome {
        Ok(()) => {
            for job in batch.drain(..) {
                job.reply();
            }
        }
        Err(e) => {
            roll_back(connection);
            tracing::warn!(error = %e, commands = batch.len(), "sqlite write batch failed");
            for job in batch.drain(..) {
                job.fail(again(&e));
            }
        }
    }
}

/// `BEGIN IMMEDIATE`, every command in its savepoint, `COMMIT`. An error here
/// is one of the transaction, not of a command.
fn transaction(connection: &Connection, batch: &mut [Box<dyn Job>]) -> StoreResult<()> {
    // Never join a transaction something left open (nothing should).
    roll_back(connection);
    execute(connection, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        execute(connection, "SAVEPOINT command")?;
        match job.run(connection) {
            Ran::Keep => execute(connection, "RELEASE command")?,
            Ran::Undo => {
                execute(connection, "ROLLBACK TO command")?;
                execute(connection, "RELEASE command")?;
            }
        }
        // Some errors (SQLITE_FULL, SQLITE_IOERR, ...) make SQLite roll back
        // the whole transaction; the RELEASE above then fails for want of a
        // savepoint, and this catches whatever else could end it.
        if connection.is_autocommit() {
            return Err(StoreError::Backend(
                "the write transaction was rolled back by SQLite".into(),
            ));
        }
    }
    execute(connection, "COMMIT")
}

/// Runs a command outside any batch.
fn run_alone(connection: &Connection, mut job: Box<dyn Job>) {
    if job.cancelled() {
        return;
    }
    roll_back(connection);
    let _ = job.run(connection);
    // It must leave no transaction open; if it did, its work is not kept.
    roll_back(connection);
    job.reply();
}
