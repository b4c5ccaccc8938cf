//! Chatterly's embedded store: [`chatterly_store::Store`] on one SQLite file,
//! through `rusqlite` (SQLite compiled in, version pinned).
//!
//! # Writes: one thread, group commit
//!
//! SQLite allows one writer at a time. Every write is a command sent to a
//! dedicated thread that owns the only read-write connection; the thread runs
//! all commands waiting at that moment in one transaction, each in its own
//! savepoint, and answers them after the commit. See `writer` for the details
//! (failure isolation, durability, cancellation).
//!
//! # Reads: read-only connections
//!
//! Reads go to a separate set of read-only connections. In WAL mode readers
//! never block the writer nor each other, and a read sees every transaction
//! committed before it started, so a read after an acknowledged write sees
//! it. See `reader` for where they run and why.
//!
//! Timestamps are stored as INTEGER Unix milliseconds; ids are
//! `INTEGER PRIMARY KEY AUTOINCREMENT` so they are never reused. The schema is
//! in `migrations/`.

pub mod backup;
mod connection;
mod error;
mod migrate;
mod reader;
mod rows;
mod search;
mod writer;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use chatterly_store::{
    AccountChange, Attachment, CallChange, CallParticipant, CallSession, CallTransition,
    Conversation, ConversationKind, HistoryPage, Id, InboxCursor, InboxEntry, Inserted, Job,
    JobFor, JobStatus, MarkKind, Marked, Member, Mentions, Message, MessageKind, NewAttachment,
    NewCall, NewConversation, NewJob, NewMessage, NewUser, ProfileUpdate, Purged, Reaction,
    ReadState, Receipt, Role, SearchHit, SearchRequest, Store, StoreError, StoreResult, Timestamp,
    User, CONFLICT_ATTACHMENT, CONFLICT_CALL, CONFLICT_MEMBER, CONFLICT_QUOTA, CONFLICT_REACTION,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{
    backend, conflict_or_not_found, is_unique_violation, not_found_or_backend, user_conflict, Db,
};
use crate::reader::{Readers, BLOCKING_READS, INLINE_ROWS};
use crate::rows::{
    attachment_columns, call_columns, conversation_columns, from_millis, from_millis_opt,
    job_columns, json_ids, json_statuses, json_strings, mentions_text, message_columns,
    participant_columns, reaction_columns, role_from, to_millis, user_columns,
};
use crate::writer::{Unit, Writer};

/// Read-only connections opened up front and kept: one per thread that may
/// read at once (the async workers, which Tokio sizes to the cores, reading
/// inline, plus the blocking reads), at least 4.
fn read_connections() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores + BLOCKING_READS).max(4)
}

/// The embedded SQLite store. Cloning is cheap: the clones share the writer
/// thread and the read connections. The writer thread stops, and the
/// connections close, when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stats = &self.writer.stats;
        f.debug_struct("SqliteStore")
            .field("writer_running", &self.writer.is_running())
            .field("batches", &stats.batches.load(Ordering::Relaxed))
            .field("commands", &stats.commands.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing, with its directory) the database file at
    /// `path`; does not migrate.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // Opening touches the file system (and may recover a WAL): off the
        // async threads when on a Tokio runtime.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let path = path.to_path_buf();
                runtime
                    .spawn_blocking(move || SqliteStore::open_blocking(&path))
                    .await
                    .map_err(|e| StoreError::Backend(format!("opening the store failed: {e}")))?
            }
            Err(_) => SqliteStore::open_blocking(path),
        }
    }

    fn open_blocking(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        // The writer opens first: it creates the file and switches it to WAL.
        let writer = connection::open_writer(path)?;
        let read_connections = read_connections();
        let readers = Readers::open(path, read_connections)?;
        let writer = Writer::start(writer)?;
        tracing::debug!(path = %path.display(), readers = read_connections, "sqlite store opened");
        Ok(SqliteStore {
            writer,
            readers: Arc::new(readers),
        })
    }

    /// Applies the embedded migrations (`migrations/`). Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.writer.alone(|unit| migrate::run(unit)).await
    }

    /// A read returning up to `rows` rows: inline when that is few enough,
    /// else off the async threads (see `reader`).
    async fn read_sized<T, F>(&self, rows: usize, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    {
        if rows <= INLINE_ROWS {
            self.readers.read(read)
        } else {
            self.readers.read_long(read).await
        }
    }

    /// The rows `sql` selects for `ids` (its `?1`, a JSON array of them),
    /// sized by the number of ids: a row or a few per id.
    async fn read_by_ids<T>(
        &self,
        ids: &[Id],
        sql: &'static str,
        convert: fn(&rusqlite::Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>>
    where
        T: Send + 'static,
    {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let json = json_ids(ids);
        let capacity = ids.len().min(256);
        self.read_sized(ids.len(), move |c| {
            let mut statement = c.prepare_cached(sql).db()?;
            rows::all(&mut statement, [json], capacity, convert)
        })
        .await
    }
}

// ---- statements shared with the tests ------------------------------------------

/// The newest messages before an id: a backwards range scan of
/// `messages_conversation_id`, i.e. (conversation_id, rowid).
const HISTORY_BEFORE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages",
    " WHERE conversation_id = ?1 AND id < ?2 AND deleted_at IS NULL",
    " ORDER BY id DESC LIMIT ?3"
);

/// The oldest messages after a seq: a forward range scan of
/// `messages_conversation_seq`.
const HISTORY_AFTER_SEQ: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages",
    " WHERE conversation_id = ?1 AND seq > ?2 AND deleted_at IS NULL",
    " ORDER BY seq LIMIT ?3"
);

/// A LIMIT as bound, and the capacity to reserve for its rows (bounded: the
/// limit is the caller's).
fn limit(limit: u32) -> (i64, usize) {
    (i64::from(limit), limit.min(256) as usize)
}

/// The conversation's call that is not over: a point read of the partial
/// unique index `call_sessions_one_open`.
const CURRENT_CALL: &str = concat!(
    "SELECT ",
    call_columns!(),
    " FROM call_sessions WHERE conversation_id = ?1 AND status IN (0, 1, 2)"
);

/// Claims the due jobs (?1 now, ?2 the lease's end, ?3 the limit): the
/// earliest pending ones and the lapsed running ones, each a walk of
/// `jobs_status_run_at` in (run_at, id) order that stops at the limit, merged
/// by (run_at, id). RETURNING comes in no particular order.
const CLAIM_JOBS: &str = concat!(
    "UPDATE jobs SET status = 1, attempts = attempts + 1, locked_until = ?2, updated_at = ?1",
    " WHERE id IN (SELECT id FROM (",
    "SELECT id, run_at FROM (SELECT id, run_at FROM jobs",
    " WHERE status = 0 AND run_at <= ?1 ORDER BY run_at, id LIMIT ?3)",
    " UNION ALL ",
    "SELECT id, run_at FROM (SELECT id, run_at FROM jobs",
    " WHERE status = 1 AND locked_until <= ?1 ORDER BY run_at, id LIMIT ?3)",
    ") ORDER BY run_at, id LIMIT ?3)",
    " RETURNING ",
    job_columns!()
);

pub use chatterly_store::CONFLICT_JOB;

/// The inbox: each of a member's conversations with their read state and its
/// newest live message, in one statement (one snapshot). Per row it costs a
/// few index seeks, never a scan of history:
/// - unread = `last_seq - last_read_seq` minus the deleted messages after the
///   position, counted in `messages_deleted_seq`, which holds deleted
///   messages only (sending moves the sender's own position, so no message
///   after it is their own);
/// - mentions after the position: a range of `mentions_user_conversation_seq`;
/// - both skipped when nothing lies after the position;
/// - the newest message: a point lookup of (conversation, `last_seq`) in
///   `messages_conversation_seq`; when that one is deleted, [`fill_latest`]
///   walks back (rare, and in the same read transaction);
/// - the members' ids: a range of the `conversation_members` primary key,
///   as a JSON array (the primary key's order: ascending).
macro_rules! inbox_select {
    () => {
        concat!(
            "SELECT c.id, c.kind, c.name, c.description, c.created_by_id, c.created_at,",
            " c.last_seq, c.last_activity_at,",
            " m.user_id, m.last_read_seq, m.read_at, m.last_delivered_seq,",
            " CASE WHEN c.last_seq > m.last_read_seq THEN (SELECT count(*) FROM messages d",
            "   WHERE d.conversation_id = c.id AND d.seq > m.last_read_seq",
            "   AND d.deleted_at IS NOT NULL) ELSE 0 END,",
            " CASE WHEN c.last_seq > m.last_read_seq THEN (SELECT count(*) FROM mentions x",
            "   WHERE x.user_id = m.user_id AND x.conversation_id = c.id",
            "   AND x.seq > m.last_read_seq) ELSE 0 END,",
            " l.id, l.conversation_id, l.user_id, l.seq, l.content, l.kind,",
            " l.parent_message_id, l.call_session_id, l.client_message_id, l.created_at,",
            " l.edited_at, l.deleted_at, l.mentions, l.broadcast,",
            " (SELECT json_group_array(o.user_id) FROM conversation_members o",
            "   WHERE o.conversation_id = c.id)",
            " FROM conversation_members m",
            " JOIN conversations c ON c.id = m.conversation_id",
            " LEFT JOIN messages l ON l.conversation_id = c.id AND l.seq = c.last_seq",
            "   AND l.deleted_at IS NULL"
        )
    };
}

/// Unordered: the rows are wide (they carry a message each), and sorting
/// them in Rust costs a fraction of SQLite's sorter copying them.
const INBOX: &str = concat!(inbox_select!(), " WHERE m.user_id = ?1");

/// A page of [`INBOX`]: the page's conversations are chosen first (`?2`,
/// `?3` the cursor's activity and id, NULL from the start; `?4` the limit),
/// so only they are counted.
const INBOX_PAGE: &str = concat!(
    inbox_select!(),
    " WHERE m.user_id = ?1 AND m.conversation_id IN (",
    "SELECT p.conversation_id FROM conversation_members p",
    " JOIN conversations pc ON pc.id = p.conversation_id",
    " WHERE p.user_id = ?1 AND (?2 IS NULL OR (pc.last_activity_at, pc.id) < (?2, ?3))",
    " ORDER BY pc.last_activity_at DESC, pc.id DESC LIMIT ?4)"
);

const INBOX_ENTRY: &str = concat!(
    inbox_select!(),
    " WHERE m.user_id = ?1 AND m.conversation_id = ?2"
);

/// A member's read state with its counts, inside a write command (after a
/// mark) or on a reader: the same counting as [`INBOX`].
const READ_STATE: &str = concat!(
    "SELECT c.last_seq, m.last_read_seq, m.read_at, m.last_delivered_seq, c.kind,",
    " CASE WHEN c.last_seq > m.last_read_seq THEN (SELECT count(*) FROM messages d",
    "   WHERE d.conversation_id = c.id AND d.seq > m.last_read_seq",
    "   AND d.deleted_at IS NOT NULL) ELSE 0 END,",
    " CASE WHEN c.last_seq > m.last_read_seq THEN (SELECT count(*) FROM mentions x",
    "   WHERE x.user_id = m.user_id AND x.conversation_id = c.id",
    "   AND x.seq > m.last_read_seq) ELSE 0 END",
    " FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id",
    " WHERE m.conversation_id = ?1 AND m.user_id = ?2"
);

/// The newest live message of a conversation: a backwards walk of
/// `messages_conversation_seq` to the first that is not deleted.
const NEWEST_LIVE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE conversation_id = ?1 AND deleted_at IS NULL",
    " ORDER BY seq DESC LIMIT 1"
);

/// Most recent activity first, ties by id descending (the list's order).
fn sort_by_activity(entries: &mut [InboxEntry]) {
    entries.sort_unstable_by(|a, b| {
        (b.conversation.last_activity_at, b.conversation.id)
            .cmp(&(a.conversation.last_activity_at, a.conversation.id))
    });
}

/// Runs `read` in one read transaction (one snapshot for its statements).
fn snapshot<T>(c: &Connection, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    c.execute_batch("BEGIN").db()?;
    let result = read(c);
    if let Err(error) = c.execute_batch("COMMIT") {
        let _ = c.execute_batch("ROLLBACK");
        result?;
        return Err(backend(error));
    }
    result
}

/// Fills in the newest live message where the message at `last_seq` is
/// deleted (what [`INBOX`] leaves empty though the conversation has messages).
fn fill_latest(c: &Connection, entries: &mut [InboxEntry]) -> StoreResult<()> {
    for entry in entries
        .iter_mut()
        .filter(|e| e.latest.is_none() && e.conversation.last_seq > 0)
    {
        let mut statement = c.prepare_cached(NEWEST_LIVE).db()?;
        entry.latest = rows::optional(&mut statement, [entry.conversation.id], rows::message)?;
    }
    Ok(())
}

/// A row of [`INBOX`] / [`INBOX_ENTRY`].
fn inbox_row(row: &rusqlite::Row<'_>) -> StoreResult<InboxEntry> {
    let conversation = rows::conversation(row)?;
    let last_read_seq: i64 = row.get(9).db()?;
    let deleted_after: i64 = row.get(12).db()?;
    let read = ReadState {
        conversation_id: conversation.id,
        user_id: row.get(8).db()?,
        last_read_seq,
        read_at: from_millis_opt(row.get(10).db()?)?,
        last_delivered_seq: row.get(11).db()?,
        last_seq: conversation.last_seq,
        unread_count: (conversation.last_seq - last_read_seq - deleted_after).max(0),
        mention_count: row.get(13).db()?,
    };
    Ok(InboxEntry {
        latest: rows::message_at(row, 14)?,
        member_ids: rows::id_array(row, 28, "member ids")?,
        conversation,
        read,
    })
}

/// The read state of one membership (see [`READ_STATE`]), with the
/// conversation's kind; `None` if not a member.
fn read_state_in(
    c: &Connection,
    conversation_id: Id,
    user_id: Id,
) -> StoreResult<Option<(ReadState, ConversationKind)>> {
    let mut statement = c.prepare_cached(READ_STATE).db()?;
    rows::optional(&mut statement, [conversation_id, user_id], |row| {
        let last_seq: i64 = row.get(0).db()?;
        let last_read_seq: i64 = row.get(1).db()?;
        let kind: i16 = row.get(4).db()?;
        let deleted_after: i64 = row.get(5).db()?;
        let state = ReadState {
            conversation_id,
            user_id,
            last_read_seq,
            read_at: from_millis_opt(row.get(2).db()?)?,
            last_delivered_seq: row.get(3).db()?,
            last_seq,
            unread_count: (last_seq - last_read_seq - deleted_after).max(0),
            mention_count: row.get(6).db()?,
        };
        let kind = ConversationKind::from_i16(kind).ok_or_else(|| {
            StoreError::Backend(format!("unknown conversation kind value stored: {kind}"))
        })?;
        Ok((state, kind))
    })
}

// ---- write steps shared by several commands ------------------------------------

/// A send, inside the caller's write command: assigns the conversation's next
/// `seq` and inserts the message (see `Store::insert_message`). Also writes
/// the call log of `transition_call`, so that a call-log message is sent
/// exactly as any other.
fn send(c: &mut Unit<'_>, new: NewMessage) -> StoreResult<Inserted> {
    // Taken on the writer, so created_at follows id and seq order.
    let now = chatterly_store::now();
    // The single writer serialises senders, so seq is gap-free; the unique
    // (conversation_id, seq) index would refuse a duplicate anyway.
    let seq: Option<i64> = c
        .prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = ?2 \
             WHERE id = ?1 RETURNING last_seq",
        )
        .db()?
        .query_row(params![new.conversation_id, to_millis(now)], |row| {
            row.get(0)
        })
        .optional()
        .db()?;
    let Some(seq) = seq else {
        return Err(StoreError::NotFound);
    };

    // A retry (same sender, same client message id) inserts nothing and
    // returns no id: one statement serves both the check and the insert of
    // the common case.
    let id: Option<Id> = c
        .prepare_cached(
            "INSERT INTO messages (conversation_id, user_id, seq, content, kind, \
                 parent_message_id, call_session_id, client_message_id, \
                 created_at, updated_at, mentions, broadcast) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11) \
             ON CONFLICT (user_id, client_message_id) \
                 WHERE client_message_id IS NOT NULL DO NOTHING \
             RETURNING id",
        )
        .db()?
        .query_row(
            params![
                new.conversation_id,
                new.user_id,
                seq,
                new.content,
                new.kind.as_i16(),
                new.parent_message_id,
                new.call_session_id,
                new.client_message_id,
                to_millis(now),
                mentions_text(&new.mentions.user_ids),
                new.mentions.broadcast.map(|b| b.as_i16())
            ],
            |row| row.get(0),
        )
        .optional()
        .map_err(not_found_or_backend)?;

    let Some(id) = id else {
        // The retry: undo the seq bump, return the original.
        c.discard();
        let mut statement = c
            .prepare_cached(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE user_id = ?1 AND client_message_id = ?2"
            ))
            .db()?;
        let existing = rows::optional(
            &mut statement,
            params![new.user_id, new.client_message_id],
            rows::message,
        )?
        .ok_or_else(|| {
            StoreError::Backend("client message id conflicted but the message was not found".into())
        })?;
        return Ok(Inserted::Existing(existing));
    };

    // One's own message is read: the sender's positions move up to it (no
    // own message ever lies after a member's read position, which is what
    // lets the unread count skip scanning). A sender who is no longer a
    // member (a call log's initiator) has no row to move.
    c.prepare_cached(
        "UPDATE conversation_members \
         SET last_read_seq = max(last_read_seq, ?3), \
             last_delivered_seq = max(last_delivered_seq, ?3), read_at = ?4 \
         WHERE conversation_id = ?1 AND user_id = ?2 AND last_read_seq < ?3",
    )
    .db()?
    .execute(params![
        new.conversation_id,
        new.user_id,
        seq,
        to_millis(now)
    ])
    .db()?;
    write_mentions(c, id, new.conversation_id, seq, &new.mentions.notified)?;
    attach(c, id, &new)?;

    Ok(Inserted::Created(Message {
        id,
        conversation_id: new.conversation_id,
        user_id: new.user_id,
        seq,
        content: new.content,
        kind: new.kind,
        parent_message_id: new.parent_message_id,
        call_session_id: new.call_session_id,
        client_message_id: new.client_message_id,
        created_at: now,
        edited_at: None,
        deleted_at: None,
        mentions: new.mentions.user_ids,
        broadcast: new.mentions.broadcast,
    }))
}

/// The mention rows of a message, inside the caller's write command: one per
/// notified user (unknown users are skipped rather than failing the write).
fn write_mentions(
    c: &Connection,
    message_id: Id,
    conversation_id: Id,
    seq: i64,
    notified: &[Id],
) -> StoreResult<()> {
    if notified.is_empty() {
        return Ok(());
    }
    c.prepare_cached(
        "INSERT INTO mentions (user_id, message_id, conversation_id, seq) \
         SELECT u.id, ?1, ?2, ?3 FROM users u \
         WHERE u.id IN (SELECT value FROM json_each(?4)) \
         ON CONFLICT (user_id, message_id) DO NOTHING",
    )
    .db()?
    .execute(params![
        message_id,
        conversation_id,
        seq,
        json_ids(notified)
    ])
    .db()?;
    Ok(())
}

/// Attaches the send's uploads to its message, inside the caller's write
/// command: one conditional update, so an upload that is someone else's,
/// already attached or hidden is not taken, and then the count is short and
/// the command fails (its savepoint rolled back: nothing of the send stays).
fn attach(c: &Connection, message_id: Id, new: &NewMessage) -> StoreResult<()> {
    if new.attachment_ids.is_empty() {
        return Ok(());
    }
    let attached = c
        .prepare_cached(
            "UPDATE attachments SET message_id = ?1, conversation_id = ?2 \
             WHERE id IN (SELECT value FROM json_each(?3)) \
               AND user_id = ?4 AND message_id IS NULL AND deleted_at IS NULL",
        )
        .db()?
        .execute(params![
            message_id,
            new.conversation_id,
            json_ids(&new.attachment_ids),
            new.user_id
        ])
        .db()?;
    if attached != new.attachment_ids.len() {
        return Err(StoreError::Conflict(CONFLICT_ATTACHMENT));
    }
    Ok(())
}

/// Hides attachments (sets `deleted_at`) inside the caller's write command:
/// those matching `filter`, an SQL condition on `?1`; `?2` is now.
fn hide_attachments(c: &Connection, filter: &str, key: Id, now: Timestamp) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "UPDATE attachments SET deleted_at = ?2 WHERE {filter} AND deleted_at IS NULL"
    ))
    .db()?
    .execute(params![key, to_millis(now)])
    .db()?;
    Ok(())
}

/// Enqueues `job` inside the caller's write command: the new job's id, or
/// `None` when a pending or running job holds its `unique_key` (the partial
/// unique index `jobs_unique_key`; nothing is written).
fn enqueue(c: &Connection, job: &NewJob, now: Timestamp) -> StoreResult<Option<Id>> {
    c.prepare_cached(
        "INSERT INTO jobs (kind, payload, status, run_at, attempts, max_attempts, unique_key, \
             created_at, updated_at) \
         VALUES (?1, ?2, 0, ?3, 0, ?4, ?5, ?6, ?6) \
         ON CONFLICT (unique_key) WHERE status IN (0, 1) DO NOTHING \
         RETURNING id",
    )
    .db()?
    .query_row(
        params![
            job.kind,
            job.payload,
            to_millis(job.run_at),
            job.max_attempts,
            job.unique_key,
            to_millis(now)
        ],
        |row| row.get(0),
    )
    .optional()
    .db()
}

/// A call by id, on a reader or inside a write command (where it sees the
/// command's own writes).
fn call_in(c: &Connection, id: Id) -> StoreResult<Option<CallSession>> {
    let mut statement = c
        .prepare_cached(concat!(
            "SELECT ",
            call_columns!(),
            " FROM call_sessions WHERE id = ?1"
        ))
        .db()?;
    rows::optional(&mut statement, [id], rows::call)
}

// ---- the store ----------------------------------------------------------------

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        if !self.writer.is_running() {
            return Err(StoreError::Backend(
                "the sqlite writer thread has stopped".into(),
            ));
        }
        self.readers.read(|c| {
            c.prepare_cached("SELECT 1")
                .db()?
                .query_row([], |row| row.get::<_, i64>(0))
                .db()
        })?;
        Ok(())
    }

    async fn maintain(&self, now: Timestamp) -> StoreResult<()> {
        let purged = self
            .writer
            .write(move |c| {
                let purged = c
                    .prepare_cached("DELETE FROM revoked_tokens WHERE expires_at <= ?1")
                    .db()?
                    .execute([to_millis(now)])
                    .db()?;
                // Refreshes the planner's statistics where they have gone
                // stale (cheap when nothing changed).
                c.execute_batch("PRAGMA optimize").db()?;
                Ok(purged)
            })
            .await?;
        tracing::debug!(purged, "sqlite store maintained");
        Ok(())
    }

    // ---- users ------------------------------------------------------------------

    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        self.writer
            .write(move |c| {
                let now = to_millis(chatterly_store::now());
                let mut statement = c
                    .prepare_cached(concat!(
                        "INSERT INTO users",
                        " (email, username, display_name, password_hash, created_at, updated_at)",
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING ",
                        user_columns!()
                    ))
                    .db()?;
                let mut rows = statement
                    .query(params![
                        user.email,
                        user.username,
                        user.display_name,
                        user.password_hash,
                        now
                    ])
                    .db()?;
                match rows.next().map_err(user_conflict)? {
                    Some(row) => rows::user(row, 0),
                    None => Err(StoreError::Backend("INSERT returned no row".into())),
                }
            })
            .await
    }

    async fn user_by_id(&self, id: Id) -> StoreResult<Option<User>> {
        self.readers.read(|c| {
            let mut statement = c
                .prepare_cached(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE id = ?1"
                ))
                .db()?;
            rows::optional(&mut statement, [id], |row| rows::user(row, 0))
        })
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.readers.read(|c| {
            let mut statement = c
                .prepare_cached(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE email = ?1"
                ))
                .db()?;
            rows::optional(&mut statement, [email], |row| rows::user(row, 0))
        })
    }

    async fn users_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<User>> {
        self.read_by_ids(
            ids,
            concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id"
            ),
            |row| rows::user(row, 0),
        )
        .await
    }

    async fn search_users(&self, query: Option<&str>, limit_: u32) -> StoreResult<Vec<User>> {
        let (limit, capacity) = limit(limit_);
        let query = query.map(str::to_lowercase);
        // With a query, every user is scanned (`LIKE '%…%'` cannot use an
        // index); without, the username index is walked for `limit` rows.
        let rows = match query {
            Some(_) => usize::MAX,
            None => limit_ as usize,
        };
        self.read_sized(rows, move |c| match query {
            // LIKE is case-insensitive for ASCII; `%` and `_` in the query
            // stay wildcards, as in the reference.
            Some(query) => {
                let mut statement = c
                    .prepare_cached(concat!(
                        "SELECT ",
                        user_columns!(),
                        " FROM users",
                        " WHERE username LIKE '%' || ?1 || '%'",
                        " OR display_name LIKE '%' || ?1 || '%'",
                        " ORDER BY username LIMIT ?2"
                    ))
                    .db()?;
                rows::all(&mut statement, params![query, limit], capacity, |row| {
                    rows::user(row, 0)
                })
            }
            None => {
                let mut statement = c
                    .prepare_cached(concat!(
                        "SELECT ",
                        user_columns!(),
                        " FROM users ORDER BY username LIMIT ?1"
                    ))
                    .db()?;
                rows::all(&mut statement, [limit], capacity, |row| rows::user(row, 0))
            }
        })
        .await
    }

    async fn update_profile(&self, id: Id, update: ProfileUpdate) -> StoreResult<User> {
        self.writer
            .write(move |c| {
                let now = to_millis(chatterly_store::now());
                let mut statement = c
                    .prepare_cached(concat!(
                        "UPDATE users SET",
                        " display_name = CASE WHEN ?2 THEN ?3 ELSE display_name END,",
                        " avatar_url = CASE WHEN ?4 THEN ?5 ELSE avatar_url END,",
                        " read_receipts = coalesce(?7, read_receipts),",
                        " updated_at = ?6",
                        " WHERE id = ?1 RETURNING ",
                        user_columns!()
                    ))
                    .db()?;
                let params = params![
                    id,
                    update.display_name.is_some(),
                    update.display_name.flatten(),
                    update.avatar_url.is_some(),
                    update.avatar_url.flatten(),
                    now,
                    update.read_receipts
                ];
                rows::optional(&mut statement, params, |row| rows::user(row, 0))?
                    .ok_or(StoreError::NotFound)
            })
            .await
    }

    async fn record_failed_login(
        &self,
        id: Id,
        lock_after: i32,
        now: Timestamp,
    ) -> StoreResult<User> {
        self.writer
            .write(move |c| {
                // The right-hand sides of an UPDATE see the old row, so
                // `failed_attempts + 1` is the new count.
                let mut statement = c
                    .prepare_cached(concat!(
                        "UPDATE users SET",
                        " failed_attempts = failed_attempts + 1,",
                        " locked_at = CASE WHEN locked_at IS NULL AND failed_attempts + 1 >= ?2",
                        " THEN ?3 ELSE locked_at END",
                        " WHERE id = ?1 RETURNING ",
                        user_columns!()
                    ))
                    .db()?;
                rows::optional(
                    &mut statement,
                    params![id, lock_after, to_millis(now)],
                    |row| rows::user(row, 0),
                )?
                .ok_or(StoreError::NotFound)
            })
            .await
    }

    async fn reset_failed_logins(&self, id: Id) -> StoreResult<()> {
        // The common case (a successful login with a clean record) writes
        // nothing, so it is checked on a reader first and skips the writer.
        let dirty = self.readers.read(|c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM users \
                 WHERE id = ?1 AND (failed_attempts <> 0 OR locked_at IS NOT NULL))",
            )
            .db()?
            .query_row([id], |row| row.get::<_, bool>(0))
            .db()
        })?;
        if !dirty {
            return Ok(());
        }
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE users SET failed_attempts = 0, locked_at = NULL \
                     WHERE id = ?1 AND (failed_attempts <> 0 OR locked_at IS NOT NULL)",
                )
                .db()?
                .execute([id])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        self.readers.read(|c| {
            let mut statement = c
                .prepare_cached(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE username = ?1"
                ))
                .db()?;
            rows::optional(&mut statement, [username], |row| rows::user(row, 0))
        })
    }

    async fn change_account(
        &self,
        id: Id,
        change: AccountChange,
        job: Option<NewJob>,
    ) -> StoreResult<User> {
        self.writer
            .write(move |c| {
                let now = chatterly_store::now();
                let (sql, value): (&str, rusqlite::types::Value) = match change {
                    AccountChange::Disabled(at) => (
                        concat!(
                            "UPDATE users SET disabled_at = ?2, updated_at = ?3",
                            " WHERE id = ?1 RETURNING ",
                            user_columns!()
                        ),
                        at.map(to_millis).into(),
                    ),
                    AccountChange::SiteAdmin(admin) => (
                        concat!(
                            "UPDATE users SET site_admin = ?2, updated_at = ?3",
                            " WHERE id = ?1 RETURNING ",
                            user_columns!()
                        ),
                        i64::from(admin).into(),
                    ),
                    AccountChange::PasswordHash(hash) => (
                        concat!(
                            "UPDATE users SET password_hash = ?2, failed_attempts = 0,",
                            " locked_at = NULL, sessions_revoked_at = ?3, updated_at = ?3",
                            " WHERE id = ?1 RETURNING ",
                            user_columns!()
                        ),
                        hash.into(),
                    ),
                };
                let mut statement = c.prepare_cached(sql).db()?;
                let user =
                    rows::optional(&mut statement, params![id, value, to_millis(now)], |row| {
                        rows::user(row, 0)
                    })?
                    .ok_or(StoreError::NotFound)?;
                if let Some(job) = &job {
                    enqueue(c, job, now)?;
                }
                Ok(user)
            })
            .await
    }

    async fn touch_last_seen(&self, id: Id, now: Timestamp) -> StoreResult<()> {
        self.writer
            .write(move |c| {
                c.prepare_cached("UPDATE users SET last_seen_at = ?2 WHERE id = ?1")
                    .db()?
                    .execute(params![id, to_millis(now)])
                    .db()?;
                Ok(())
            })
            .await
    }

    // ---- token revocation ----------------------------------------------------------

    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        let jti = jti.to_owned();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2) \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .db()?
                .execute(params![jti, to_millis(expires_at)])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        self.readers.read(|c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?1)")
                .db()?
                .query_row([jti], |row| row.get(0))
                .db()
        })
    }

    async fn active_revocations(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>> {
        self.readers
            .read_long(move |c| {
                let mut statement = c
                    .prepare_cached(
                        "SELECT jti, expires_at FROM revoked_tokens \
                         WHERE expires_at > ?1 ORDER BY jti",
                    )
                    .db()?;
                rows::all(&mut statement, [to_millis(now)], 16, |row| {
                    Ok((row.get(0).db()?, from_millis(row.get(1).db()?)?))
                })
            })
            .await
    }

    // ---- conversations and members ----------------------------------------------------

    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)> {
        let direct_key = match new.kind {
            ConversationKind::Direct => match new.member_ids.as_slice() {
                [other] => {
                    let (low, high) = if *other < new.created_by_id {
                        (*other, new.created_by_id)
                    } else {
                        (new.created_by_id, *other)
                    };
                    Some(format!("{low}:{high}"))
                }
                ids => {
                    return Err(StoreError::Backend(format!(
                        "a direct conversation needs exactly one other member, got {}",
                        ids.len()
                    )))
                }
            },
            ConversationKind::Channel | ConversationKind::Group => None,
        };
        let members = (!new.member_ids.is_empty()).then(|| json_ids(&new.member_ids));

        self.writer
            .write(move |c| {
                let now = to_millis(chatterly_store::now());
                // For a direct pair that already has a conversation, the
                // unique direct_key makes this insert nothing; the writer
                // being single, the select below then finds the one that won
                // (possibly earlier in this very batch).
                let created = {
                    let mut statement = c
                        .prepare_cached(concat!(
                            "INSERT INTO conversations (kind, name, description, created_by_id,",
                            " direct_key, last_seq, last_activity_at, created_at, updated_at)",
                            " VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6, ?6)",
                            " ON CONFLICT (direct_key) DO NOTHING",
                            " RETURNING ",
                            conversation_columns!()
                        ))
                        .db()?;
                    let mut rows = statement
                        .query(params![
                            new.kind.as_i16(),
                            new.name,
                            new.description,
                            new.created_by_id,
                            direct_key,
                            now
                        ])
                        .db()?;
                    match rows.next().map_err(not_found_or_backend)? {
                        Some(row) => Some(rows::conversation(row)?),
                        None => None,
                    }
                };
                let Some(conversation) = created else {
                    let mut statement = c
                        .prepare_cached(concat!(
                            "SELECT ",
                            conversation_columns!(),
                            " FROM conversations WHERE direct_key = ?1"
                        ))
                        .db()?;
                    let existing =
                        rows::optional(&mut statement, [&direct_key], rows::conversation)?
                            .ok_or_else(|| {
                                StoreError::Backend(
                                    "direct conversation conflicted but was not found".into(),
                                )
                            })?;
                    return Ok((existing, false));
                };

                c.prepare_cached(
                    "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .db()?
                .execute(params![
                    conversation.id,
                    new.created_by_id,
                    Role::Admin.as_i16(),
                    now
                ])
                .map_err(not_found_or_backend)?;
                if let Some(members) = &members {
                    // All other members in one statement. `WHERE true` keeps
                    // SQLite from reading ON CONFLICT as part of the SELECT; a
                    // duplicate (or the creator again) is skipped, keeping the
                    // first role.
                    c.prepare_cached(
                        "INSERT INTO conversation_members \
                         (conversation_id, user_id, role, joined_at) \
                         SELECT ?1, value, ?2, ?3 FROM json_each(?4) WHERE true \
                         ON CONFLICT (conversation_id, user_id) DO NOTHING",
                    )
                    .db()?
                    .execute(params![
                        conversation.id,
                        Role::Member.as_i16(),
                        now,
                        members
                    ])
                    .map_err(not_found_or_backend)?;
                }
                Ok((conversation, true))
            })
            .await
    }

    async fn conversation_by_id(&self, id: Id) -> StoreResult<Option<Conversation>> {
        self.readers.read(|c| {
            let mut statement = c
                .prepare_cached(concat!(
                    "SELECT ",
                    conversation_columns!(),
                    " FROM conversations WHERE id = ?1"
                ))
                .db()?;
            rows::optional(&mut statement, [id], rows::conversation)
        })
    }

    async fn conversations_for_user(&self, user_id: Id) -> StoreResult<Vec<Conversation>> {
        // As many rows as the user has conversations.
        self.readers
            .read_long(move |c| {
                let mut statement = c
                    .prepare_cached(
                        "SELECT c.id, c.kind, c.name, c.description, c.created_by_id, \
                                c.created_at, c.last_seq, c.last_activity_at \
                         FROM conversation_members m \
                         JOIN conversations c ON c.id = m.conversation_id \
                         WHERE m.user_id = ?1 \
                         ORDER BY c.last_activity_at DESC, c.id DESC",
                    )
                    .db()?;
                rows::all(&mut statement, [user_id], 16, rows::conversation)
            })
            .await
    }

    async fn delete_conversation(&self, id: Id) -> StoreResult<bool> {
        self.writer
            .write(move |c| {
                // The foreign keys cascade too; deleting explicitly, children
                // first, does not depend on them being enforced.
                hide_attachments(c, "conversation_id = ?1", id, chatterly_store::now())?;
                for sql in [
                    "DELETE FROM reactions \
                     WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = ?1)",
                    "DELETE FROM mentions \
                     WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = ?1)",
                    "DELETE FROM messages WHERE conversation_id = ?1",
                    "DELETE FROM conversation_members WHERE conversation_id = ?1",
                    "DELETE FROM call_participants WHERE call_session_id IN \
                     (SELECT id FROM call_sessions WHERE conversation_id = ?1)",
                    "DELETE FROM call_sessions WHERE conversation_id = ?1",
                ] {
                    c.prepare_cached(sql).db()?.execute([id]).db()?;
                }
                let deleted = c
                    .prepare_cached("DELETE FROM conversations WHERE id = ?1")
                    .db()?
                    .execute([id])
                    .db()?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn membership(&self, conversation_id: Id, user_id: Id) -> StoreResult<Option<Role>> {
        self.readers.read(|c| {
            let role: Option<i16> = c
                .prepare_cached(
                    "SELECT role FROM conversation_members \
                     WHERE conversation_id = ?1 AND user_id = ?2",
                )
                .db()?
                .query_row([conversation_id, user_id], |row| row.get(0))
                .optional()
                .db()?;
            role.map(role_from).transpose()
        })
    }

    async fn members_of(&self, conversation_ids: &[Id]) -> StoreResult<Vec<Member>> {
        if conversation_ids.is_empty() {
            return Ok(Vec::new());
        }
        let json = json_ids(conversation_ids);
        // As many rows as the conversations have members: unbounded.
        self.readers
            .read_long(move |c| {
                let mut statement = c
                    .prepare_cached(concat!(
                        "SELECT m.conversation_id, m.role, m.joined_at, ",
                        "u.id, u.email, u.username, u.display_name, u.avatar_url, ",
                        "u.password_hash, u.failed_attempts, u.locked_at, u.last_seen_at, ",
                        "u.created_at, u.read_receipts, u.disabled_at, u.site_admin, u.sessions_revoked_at ",
                        "FROM conversation_members m JOIN users u ON u.id = m.user_id ",
                        "WHERE m.conversation_id IN (SELECT value FROM json_each(?1)) ",
                        "ORDER BY m.conversation_id, m.user_id"
                    ))
                    .db()?;
                rows::all(&mut statement, [json], 16, rows::member)
            })
            .await
    }

    async fn member_ids_of(&self, conversation_ids: &[Id]) -> StoreResult<Vec<(Id, Id)>> {
        if conversation_ids.is_empty() {
            return Ok(Vec::new());
        }
        let json = json_ids(conversation_ids);
        // A range of the primary key per conversation; as many rows as
        // members.
        self.readers
            .read_long(move |c| {
                let mut statement = c
                    .prepare_cached(
                        "SELECT conversation_id, user_id FROM conversation_members \
                         WHERE conversation_id IN (SELECT value FROM json_each(?1)) \
                         ORDER BY conversation_id, user_id",
                    )
                    .db()?;
                rows::all(&mut statement, [json], 16, |row| {
                    Ok((row.get(0).db()?, row.get(1).db()?))
                })
            })
            .await
    }

    async fn add_member(&self, conversation_id: Id, user_id: Id, role: Role) -> StoreResult<()> {
        self.writer
            .write(move |c| {
                // Positions start at the conversation's newest message: what
                // was said before the member joined is not unread. No
                // conversation, no row.
                let added = c
                    .prepare_cached(
                        "INSERT INTO conversation_members (conversation_id, user_id, role, \
                             joined_at, last_read_seq, last_delivered_seq) \
                         SELECT id, ?2, ?3, ?4, last_seq, last_seq FROM conversations \
                         WHERE id = ?1",
                    )
                    .db()?
                    .execute(params![
                        conversation_id,
                        user_id,
                        role.as_i16(),
                        to_millis(chatterly_store::now())
                    ])
                    .map_err(conflict_or_not_found(CONFLICT_MEMBER))?;
                if added == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
            .await
    }

    async fn remove_member(&self, conversation_id: Id, user_id: Id) -> StoreResult<bool> {
        self.writer
            .write(move |c| {
                let removed = c
                    .prepare_cached(
                        "DELETE FROM conversation_members \
                         WHERE conversation_id = ?1 AND user_id = ?2",
                    )
                    .db()?
                    .execute([conversation_id, user_id])
                    .db()?;
                Ok(removed > 0)
            })
            .await
    }

    // ---- messages ----------------------------------------------------------------------

    async fn insert_message(&self, new: NewMessage) -> StoreResult<Inserted> {
        self.writer.write(move |c| send(c, new)).await
    }

    async fn message_by_id(&self, id: Id) -> StoreResult<Option<Message>> {
        self.readers.read(|c| {
            let mut statement = c
                .prepare_cached(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE id = ?1"
                ))
                .db()?;
            rows::optional(&mut statement, [id], rows::message)
        })
    }

    async fn history(&self, conversation_id: Id, page: HistoryPage) -> StoreResult<Vec<Message>> {
        let (HistoryPage::Before { limit: rows, .. } | HistoryPage::AfterSeq { limit: rows, .. }) =
            page;
        self.read_sized(rows as usize, move |c| match page {
            // Read newest first, returned oldest first.
            HistoryPage::Before {
                before_id,
                limit: l,
            } => {
                let (l, capacity) = limit(l);
                let mut statement = c.prepare_cached(HISTORY_BEFORE).db()?;
                let before = before_id.unwrap_or(Id::MAX);
                let mut messages = rows::all(
                    &mut statement,
                    params![conversation_id, before, l],
                    capacity,
                    rows::message,
                )?;
                messages.reverse();
                Ok(messages)
            }
            HistoryPage::AfterSeq {
                after_seq,
                limit: l,
            } => {
                let (l, capacity) = limit(l);
                let mut statement = c.prepare_cached(HISTORY_AFTER_SEQ).db()?;
                rows::all(
                    &mut statement,
                    params![conversation_id, after_seq, l],
                    capacity,
                    rows::message,
                )
            }
        })
        .await
    }

    async fn edit_message(
        &self,
        id: Id,
        content: &str,
        mentions: &Mentions,
        now: Timestamp,
    ) -> StoreResult<Message> {
        let content = content.to_owned();
        let mentions = mentions.clone();
        self.writer
            .write(move |c| {
                let edited = {
                    let mut statement = c
                        .prepare_cached(concat!(
                            "UPDATE messages SET content = ?2, edited_at = ?3, updated_at = ?3,",
                            " mentions = ?4, broadcast = ?5",
                            " WHERE id = ?1 AND deleted_at IS NULL RETURNING ",
                            message_columns!()
                        ))
                        .db()?;
                    rows::optional(
                        &mut statement,
                        params![
                            id,
                            content,
                            to_millis(now),
                            mentions_text(&mentions.user_ids),
                            mentions.broadcast.map(|b| b.as_i16())
                        ],
                        rows::message,
                    )?
                    .ok_or(StoreError::NotFound)?
                };
                c.prepare_cached("DELETE FROM mentions WHERE message_id = ?1")
                    .db()?
                    .execute([id])
                    .db()?;
                write_mentions(
                    c,
                    id,
                    edited.conversation_id,
                    edited.seq,
                    &mentions.notified,
                )?;
                Ok(edited)
            })
            .await
    }

    async fn soft_delete_message(&self, id: Id, now: Timestamp) -> StoreResult<()> {
        self.writer
            .write(move |c| {
                let updated = c
                    .prepare_cached(
                        "UPDATE messages SET deleted_at = ?2, updated_at = ?2 \
                         WHERE id = ?1 AND deleted_at IS NULL",
                    )
                    .db()?
                    .execute(params![id, to_millis(now)])
                    .db()?;
                if updated == 0 {
                    return Err(StoreError::NotFound);
                }
                c.prepare_cached("DELETE FROM mentions WHERE message_id = ?1")
                    .db()?
                    .execute([id])
                    .db()?;
                hide_attachments(c, "message_id = ?1", id, now)?;
                Ok(())
            })
            .await
    }

    // ---- attachments ---------------------------------------------------------------------

    async fn create_attachment(&self, new: NewAttachment) -> StoreResult<Attachment> {
        self.writer
            .write(move |c| {
                let now = chatterly_store::now();
                // The quota check and the insert are one statement on the
                // single writer: concurrent uploads cannot both slip under it.
                let mut statement = c
                    .prepare_cached(concat!(
                        "INSERT INTO attachments (user_id, name, content_type, size, width, height,",
                        " blob_key, thumbnail_key, created_at)",
                        " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9",
                        " WHERE ?10 IS NULL OR (SELECT coalesce(sum(size), 0) FROM attachments",
                        "   WHERE user_id = ?1 AND deleted_at IS NULL) + ?4 <= ?10",
                        " RETURNING ",
                        attachment_columns!()
                    ))
                    .db()?;
                // An unknown uploader is a foreign-key violation: NotFound.
                let mut rows = statement
                    .query(params![
                        new.user_id,
                        new.name,
                        new.content_type,
                        new.size,
                        new.width,
                        new.height,
                        new.blob_key,
                        new.thumbnail_key,
                        to_millis(now),
                        new.quota
                    ])
                    .map_err(not_found_or_backend)?;
                match rows.next().map_err(not_found_or_backend)? {
                    Some(row) => rows::attachment(row),
                    None => Err(StoreError::Conflict(CONFLICT_QUOTA)),
                }
            })
            .await
    }

    async fn attachment_by_id(&self, id: Id) -> StoreResult<Option<Attachment>> {
        self.readers.read(|c| {
            let mut statement = c
                .prepare_cached(concat!(
                    "SELECT ",
                    attachment_columns!(),
                    " FROM attachments WHERE id = ?1"
                ))
                .db()?;
            rows::optional(&mut statement, [id], rows::attachment)
        })
    }

    async fn attachments_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<Attachment>> {
        self.read_by_ids(
            ids,
            concat!(
                "SELECT ",
                attachment_columns!(),
                " FROM attachments WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id"
            ),
            rows::attachment,
        )
        .await
    }

    async fn attachments_for(&self, message_ids: &[Id]) -> StoreResult<Vec<Attachment>> {
        self.read_by_ids(
            message_ids,
            concat!(
                "SELECT ",
                attachment_columns!(),
                " FROM attachments WHERE message_id IN (SELECT value FROM json_each(?1))",
                " AND deleted_at IS NULL ORDER BY message_id, id"
            ),
            rows::attachment,
        )
        .await
    }

    async fn attachment_usage(&self, user_id: Id) -> StoreResult<i64> {
        self.readers.read(|c| {
            c.prepare_cached(
                "SELECT coalesce(sum(size), 0) FROM attachments \
                 WHERE user_id = ?1 AND deleted_at IS NULL",
            )
            .db()?
            .query_row([user_id], |row| row.get(0))
            .db()
        })
    }

    async fn hidden_attachments(
        &self,
        unattached_before: Timestamp,
        now: Timestamp,
        limit_: u32,
    ) -> StoreResult<Vec<Attachment>> {
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE attachments SET deleted_at = ?2 \
                     WHERE message_id IS NULL AND deleted_at IS NULL AND created_at < ?1",
                )
                .db()?
                .execute(params![to_millis(unattached_before), to_millis(now)])
                .db()?;
                let (l, capacity) = limit(limit_);
                let mut statement = c
                    .prepare_cached(concat!(
                        "SELECT ",
                        attachment_columns!(),
                        " FROM attachments WHERE deleted_at IS NOT NULL",
                        " ORDER BY deleted_at, id LIMIT ?1"
                    ))
                    .db()?;
                rows::all(&mut statement, [l], capacity, rows::attachment)
            })
            .await
    }

    async fn remove_attachments(&self, ids: &[Id]) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let json = json_ids(ids);
        self.writer
            .write(move |c| {
                let removed = c
                    .prepare_cached(
                        "DELETE FROM attachments \
                         WHERE id IN (SELECT value FROM json_each(?1)) AND deleted_at IS NOT NULL",
                    )
                    .db()?
                    .execute([json])
                    .db()?;
                Ok(removed as u64)
            })
            .await
    }

    // ---- search ------------------------------------------------------------------------

    async fn search_messages(&self, request: SearchRequest) -> StoreResult<Vec<SearchHit>> {
        // Ranking scores every match, however few rows come back: never inline.
        self.readers
            .read_long(move |c| snapshot(c, |c| search::search(c, &request)))
            .await
    }

    // ---- read state and mentions -------------------------------------------------------

    async fn inbox(&self, user_id: Id) -> StoreResult<Vec<InboxEntry>> {
        // As many rows as the user has conversations.
        self.readers
            .read_long(move |c| {
                snapshot(c, |c| {
                    let mut statement = c.prepare_cached(INBOX).db()?;
                    let mut entries = rows::all(&mut statement, [user_id], 16, inbox_row)?;
                    fill_latest(c, &mut entries)?;
                    sort_by_activity(&mut entries);
                    Ok(entries)
                })
            })
            .await
    }

    async fn inbox_page(
        &self,
        user_id: Id,
        after: Option<InboxCursor>,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>> {
        let (after_ms, after_id) = match after {
            Some(cursor) => (
                Some(to_millis(cursor.last_activity_at)),
                Some(cursor.conversation_id),
            ),
            None => (None, None),
        };
        self.readers
            .read_long(move |c| {
                snapshot(c, |c| {
                    let mut statement = c.prepare_cached(INBOX_PAGE).db()?;
                    let mut entries = rows::all(
                        &mut statement,
                        params![user_id, after_ms, after_id, i64::from(limit)],
                        limit.min(1_000) as usize,
                        inbox_row,
                    )?;
                    fill_latest(c, &mut entries)?;
                    sort_by_activity(&mut entries);
                    Ok(entries)
                })
            })
            .await
    }

    async fn inbox_entry(
        &self,
        conversation_id: Id,
        user_id: Id,
    ) -> StoreResult<Option<InboxEntry>> {
        self.readers.read(|c| {
            snapshot(c, |c| {
                let mut statement = c.prepare_cached(INBOX_ENTRY).db()?;
                let entry = rows::optional(&mut statement, [user_id, conversation_id], inbox_row)?;
                let mut entries: Vec<InboxEntry> = entry.into_iter().collect();
                fill_latest(c, &mut entries)?;
                Ok(entries.pop())
            })
        })
    }

    async fn mark(
        &self,
        conversation_id: Id,
        user_id: Id,
        kind: MarkKind,
        seq: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Marked> {
        self.writer
            .write(move |c| {
                // On the single writer: nothing commits between these
                // statements, so the check, the move and the counts agree.
                let current: Option<(i64, i64, i64)> = c
                    .prepare_cached(
                        "SELECT m.last_read_seq, m.last_delivered_seq, c.last_seq \
                         FROM conversation_members m \
                         JOIN conversations c ON c.id = m.conversation_id \
                         WHERE m.conversation_id = ?1 AND m.user_id = ?2",
                    )
                    .db()?
                    .query_row([conversation_id, user_id], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .optional()
                    .db()?;
                let Some((read, delivered, last_seq)) = current else {
                    return Err(StoreError::NotFound);
                };
                let target = seq.unwrap_or(last_seq);
                if target > last_seq {
                    return Ok(Marked::Beyond { last_seq });
                }
                let read_moved = kind == MarkKind::Read && target > read;
                let delivered_moved = target > delivered;
                if read_moved || delivered_moved {
                    c.prepare_cached(
                        "UPDATE conversation_members \
                         SET last_read_seq = CASE WHEN ?3 THEN ?4 ELSE last_read_seq END, \
                             read_at = CASE WHEN ?3 THEN ?5 ELSE read_at END, \
                             last_delivered_seq = max(last_delivered_seq, ?4) \
                         WHERE conversation_id = ?1 AND user_id = ?2",
                    )
                    .db()?
                    .execute(params![
                        conversation_id,
                        user_id,
                        read_moved,
                        target,
                        to_millis(now)
                    ])
                    .db()?;
                }
                let (state, kind) =
                    read_state_in(c, conversation_id, user_id)?.ok_or(StoreError::NotFound)?;
                Ok(Marked::Applied {
                    state,
                    kind,
                    read_moved,
                    delivered_moved,
                })
            })
            .await
    }

    async fn receipts(&self, conversation_id: Id, limit: Option<u32>) -> StoreResult<Vec<Receipt>> {
        let bound = limit.map_or(-1, i64::from);
        let read = move |c: &Connection| {
            let mut statement = c
                .prepare_cached(
                    "SELECT m.user_id, m.last_read_seq, m.read_at, m.last_delivered_seq, \
                            u.read_receipts \
                     FROM conversation_members m JOIN users u ON u.id = m.user_id \
                     WHERE m.conversation_id = ?1 ORDER BY m.user_id LIMIT ?2",
                )
                .db()?;
            rows::all(&mut statement, params![conversation_id, bound], 8, |row| {
                Ok(Receipt {
                    user_id: row.get(0).db()?,
                    last_read_seq: row.get(1).db()?,
                    read_at: from_millis_opt(row.get(2).db()?)?,
                    last_delivered_seq: row.get(3).db()?,
                    read_receipts: row.get(4).db()?,
                })
            })
        };
        match limit {
            Some(n) => self.read_sized(n as usize, read).await,
            None => self.readers.read_long(read).await,
        }
    }

    async fn members_named(
        &self,
        conversation_id: Id,
        usernames: &[String],
    ) -> StoreResult<Vec<(Id, String)>> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let names = json_strings(usernames);
        self.read_sized(usernames.len(), move |c| {
            let mut statement = c
                .prepare_cached(
                    "SELECT u.id, u.username FROM users u \
                     JOIN conversation_members m \
                       ON m.user_id = u.id AND m.conversation_id = ?1 \
                     WHERE u.username IN (SELECT value FROM json_each(?2)) \
                     ORDER BY u.id",
                )
                .db()?;
            rows::all(&mut statement, params![conversation_id, names], 4, |row| {
                Ok((row.get(0).db()?, row.get(1).db()?))
            })
        })
        .await
    }

    async fn mention_recipients(&self, message_id: Id) -> StoreResult<Vec<Id>> {
        // A broadcast reaches every member: unbounded.
        self.readers
            .read_long(move |c| {
                let mut statement = c
                    .prepare_cached(
                        "SELECT user_id FROM mentions WHERE message_id = ?1 ORDER BY user_id",
                    )
                    .db()?;
                rows::all(&mut statement, [message_id], 4, |row| row.get(0).db())
            })
            .await
    }

    async fn mentions_for(
        &self,
        user_id: Id,
        before_id: Option<Id>,
        limit_: u32,
    ) -> StoreResult<Vec<Message>> {
        let (limit, capacity) = limit(limit_);
        let before = before_id.unwrap_or(Id::MAX);
        self.read_sized(limit_ as usize, move |c| {
            // Newest first along the primary key (user_id, message_id); the
            // rows of conversations the user left are skipped.
            let mut statement = c
                .prepare_cached(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE id IN (",
                    "SELECT x.message_id FROM mentions x",
                    " JOIN conversation_members m",
                    "   ON m.conversation_id = x.conversation_id AND m.user_id = x.user_id",
                    " WHERE x.user_id = ?1 AND x.message_id < ?2",
                    " ORDER BY x.message_id DESC LIMIT ?3)",
                    " AND deleted_at IS NULL ORDER BY id DESC"
                ))
                .db()?;
            rows::all(
                &mut statement,
                params![user_id, before, limit],
                capacity,
                rows::message,
            )
        })
        .await
    }

    async fn purge_messages_before(&self, horizon: Timestamp, batch: u32) -> StoreResult<Purged> {
        let horizon = to_millis(horizon);
        let batch = i64::from(batch.max(1));
        let mut purged = Purged::default();
        // One short write per batch, so sends queue behind a batch at most;
        // reactions and mention rows go by ON DELETE CASCADE, replies'
        // parents by SET NULL. Members' read positions first move past the
        // batch's newest message of each conversation: unread counts are
        // last_seq - last_read_seq minus deletions, so a message removed
        // unread would otherwise stay counted (removed is read).
        loop {
            let deleted = self
                .writer
                .write(move |c| {
                    c.prepare_cached(
                        "UPDATE conversation_members \
                         SET last_read_seq = max(last_read_seq, p.max_seq), \
                             last_delivered_seq = max(last_delivered_seq, p.max_seq) \
                         FROM (SELECT conversation_id, max(seq) AS max_seq FROM messages \
                               WHERE id IN (SELECT id FROM messages WHERE created_at < ?1 \
                                            ORDER BY id LIMIT ?2) \
                               GROUP BY conversation_id) AS p \
                         WHERE conversation_members.conversation_id = p.conversation_id \
                           AND conversation_members.last_read_seq < p.max_seq",
                    )
                    .db()?
                    .execute(params![horizon, batch])
                    .db()?;
                    c.prepare_cached(
                        "UPDATE attachments SET deleted_at = ?3 \
                         WHERE deleted_at IS NULL AND message_id IN \
                         (SELECT id FROM messages WHERE created_at < ?1 ORDER BY id LIMIT ?2)",
                    )
                    .db()?
                    .execute(params![horizon, batch, to_millis(chatterly_store::now())])
                    .db()?;
                    c.prepare_cached(
                        "DELETE FROM messages WHERE id IN \
                         (SELECT id FROM messages WHERE created_at < ?1 ORDER BY id LIMIT ?2)",
                    )
                    .db()?
                    .execute(params![horizon, batch])
                    .db()
                })
                .await?;
            purged.messages += deleted as u64;
            if (deleted as i64) < batch {
                return Ok(purged);
            }
        }
    }

    // ---- reactions ---------------------------------------------------------------------

    async fn reactions_for(&self, message_ids: &[Id]) -> StoreResult<Vec<Reaction>> {
        // Reactions per message are few: sized by the number of messages.
        self.read_by_ids(
            message_ids,
            concat!(
                "SELECT ",
                reaction_columns!(),
                " FROM reactions WHERE message_id IN (SELECT value FROM json_each(?1))",
                " ORDER BY id"
            ),
            rows::reaction,
        )
        .await
    }

    async fn add_reaction(
        &self,
        message: &Message,
        user_id: Id,
        emoji: &str,
    ) -> StoreResult<Reaction> {
        let message_id = message.id;
        let emoji = emoji.to_owned();
        self.writer
            .write(move |c| {
                let mut statement = c
                    .prepare_cached(concat!(
                        "INSERT INTO reactions (message_id, user_id, emoji, created_at)",
                        " VALUES (?1, ?2, ?3, ?4) RETURNING ",
                        reaction_columns!()
                    ))
                    .db()?;
                let mut rows = statement
                    .query(params![
                        message_id,
                        user_id,
                        emoji,
                        to_millis(chatterly_store::now())
                    ])
                    .db()?;
                match rows
                    .next()
                    .map_err(conflict_or_not_found(CONFLICT_REACTION))?
                {
                    Some(row) => rows::reaction(row),
                    None => Err(StoreError::Backend("INSERT returned no row".into())),
                }
            })
            .await
    }

    async fn reaction_by_id(&self, id: Id) -> StoreResult<Option<Reaction>> {
        self.readers.read(|c| {
            let mut statement = c
                .prepare_cached(concat!(
                    "SELECT ",
                    reaction_columns!(),
                    " FROM reactions WHERE id = ?1"
                ))
                .db()?;
            rows::optional(&mut statement, [id], rows::reaction)
        })
    }

    async fn remove_reaction(&self, id: Id) -> StoreResult<bool> {
        self.writer
            .write(move |c| {
                let removed = c
                    .prepare_cached("DELETE FROM reactions WHERE id = ?1")
                    .db()?
                    .execute([id])
                    .db()?;
                Ok(removed > 0)
            })
            .await
    }

    // ---- calls ----------------------------------------------------------------------------

    async fn create_call(
        &self,
        new: NewCall,
        job: JobFor<CallSession>,
    ) -> StoreResult<CallSession> {
        self.writer
            .write(move |c| {
                let now = chatterly_store::now();
                // A second call that is not over fails on the partial unique
                // index `call_sessions_one_open`; a missing conversation (or
                // initiator) on its foreign key.
                let call = {
                    let mut statement = c
                        .prepare_cached(concat!(
                            "INSERT INTO call_sessions",
                            " (conversation_id, initiator_id, kind, status, created_at, updated_at)",
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING ",
                            call_columns!()
                        ))
                        .db()?;
                    let mut rows = statement
                        .query(params![
                            new.conversation_id,
                            new.initiator_id,
                            new.kind.as_i16(),
                            new.status.as_i16(),
                            to_millis(now)
                        ])
                        .db()?;
                    match rows.next().map_err(conflict_or_not_found(CONFLICT_CALL))? {
                        Some(row) => rows::call(row)?,
                        None => return Err(StoreError::Backend("INSERT returned no row".into())),
                    }
                };
                c.prepare_cached(
                    "INSERT INTO call_participants (call_session_id, user_id, joined_at) \
                     VALUES (?1, ?2, ?3)",
                )
                .db()?
                .execute(params![call.id, call.initiator_id, to_millis(now)])
                .map_err(not_found_or_backend)?;
                // In this savepoint: if anything above or here fails, neither
                // the call nor its job is written. A job whose unique_key is
                // already held is not enqueued (the one holding it stands for
                // it), as with `enqueue_job`.
                let job = job(&call);
                enqueue(c, &job, now)?;
                Ok(call)
            })
            .await
    }

    async fn call_by_id(&self, id: Id) -> StoreResult<Option<CallSession>> {
        self.readers.read(|c| call_in(c, id))
    }

    async fn calls_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<CallSession>> {
        self.read_by_ids(
            ids,
            concat!(
                "SELECT ",
                call_columns!(),
                " FROM call_sessions WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id"
            ),
            rows::call,
        )
        .await
    }

    async fn current_call(&self, conversation_id: Id) -> StoreResult<Option<CallSession>> {
        self.readers.read(|c| {
            let mut statement = c.prepare_cached(CURRENT_CALL).db()?;
            rows::optional(&mut statement, [conversation_id], rows::call)
        })
    }

    async fn call_participants(&self, call_id: Id) -> StoreResult<Vec<CallParticipant>> {
        // As many rows as joined the call: a few in practice, but nothing
        // bounds it below the conversation's members.
        self.readers
            .read_long(move |c| {
                let mut statement = c
                    .prepare_cached(concat!(
                        "SELECT ",
                        participant_columns!(),
                        " FROM call_participants WHERE call_session_id = ?1",
                        " ORDER BY joined_at, user_id"
                    ))
                    .db()?;
                rows::all(&mut statement, [call_id], 4, rows::participant)
            })
            .await
    }

    async fn transition_call(&self, transition: CallTransition) -> StoreResult<CallChange> {
        let from = json_statuses(&transition.from);
        self.writer
            .write(move |c| {
                let now = to_millis(transition.now);
                // The compare-and-set: one UPDATE guarded by the status, on
                // the single writer, so of racing transitions from one status
                // exactly one matches. The right-hand sides see the old row:
                // `?3 OR started_at IS NOT NULL` is "started once this
                // applies" (a transition may start and end at once).
                let applied = {
                    let mut statement = c
                        .prepare_cached(concat!(
                            "UPDATE call_sessions SET status = ?2,",
                            " started_at = CASE WHEN ?3 AND started_at IS NULL",
                            " THEN ?5 ELSE started_at END,",
                            " ended_at = CASE WHEN ?4 AND (?3 OR started_at IS NOT NULL)",
                            " THEN ?5 ELSE ended_at END,",
                            " updated_at = ?5",
                            " WHERE id = ?1 AND status IN (SELECT value FROM json_each(?6))",
                            " RETURNING ",
                            call_columns!()
                        ))
                        .db()?;
                    let mut rows = statement
                        .query(params![
                            transition.call_id,
                            transition.to.as_i16(),
                            transition.start,
                            transition.end,
                            now,
                            from
                        ])
                        .db()?;
                    // Into a status that is not over while the conversation
                    // has another such call: the partial unique index.
                    match rows.next().map_err(conflict_or_not_found(CONFLICT_CALL))? {
                        Some(row) => Some(rows::call(row)?),
                        None => None,
                    }
                };
                let Some(call) = applied else {
                    return match call_in(c, transition.call_id)? {
                        Some(call) => Ok(CallChange::Refused(call)),
                        None => Err(StoreError::NotFound),
                    };
                };

                if let Some(user_id) = transition.participant {
                    c.prepare_cached(
                        "INSERT INTO call_participants (call_session_id, user_id, joined_at) \
                         VALUES (?1, ?2, ?3) \
                         ON CONFLICT (call_session_id, user_id) DO NOTHING",
                    )
                    .db()?
                    .execute(params![call.id, user_id, now])
                    .map_err(not_found_or_backend)?;
                }

                let log = if transition.log {
                    let message = NewMessage {
                        attachment_ids: Vec::new(),
                        conversation_id: call.conversation_id,
                        user_id: call.initiator_id,
                        content: "call".into(),
                        kind: MessageKind::Call,
                        parent_message_id: None,
                        call_session_id: Some(call.id),
                        client_message_id: None,
                        mentions: Mentions::default(),
                    };
                    match send(c, message)? {
                        Inserted::Created(message) => Some(message),
                        // Only a client message id repeats a send.
                        Inserted::Existing(_) => {
                            return Err(StoreError::Backend(
                                "the call log was taken for a repeated send".into(),
                            ))
                        }
                    }
                } else {
                    None
                };
                Ok(CallChange::Applied { call, log })
            })
            .await
    }

    // ---- the durable job queue -------------------------------------------------------------
    //
    // Statuses in the SQL: 0 pending, 1 running, 2 dead (`JobStatus`). The
    // single writer thread runs every claim, completion and failure one
    // after the other, so a claim is never taken twice: no row locks needed.

    async fn enqueue_job(&self, job: NewJob) -> StoreResult<Option<Id>> {
        self.writer
            .write(move |c| enqueue(c, &job, chatterly_store::now()))
            .await
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        lease: std::time::Duration,
        limit_: u32,
    ) -> StoreResult<Vec<Job>> {
        if limit_ == 0 {
            return Ok(Vec::new());
        }
        let until = chrono::TimeDelta::from_std(lease)
            .ok()
            .and_then(|lease| now.checked_add_signed(lease))
            .ok_or_else(|| StoreError::Backend(format!("job lease out of range: {lease:?}")))?;
        let (limit, capacity) = limit(limit_);
        self.writer
            .write(move |c| {
                let mut statement = c.prepare_cached(CLAIM_JOBS).db()?;
                let mut jobs = rows::all(
                    &mut statement,
                    params![to_millis(now), to_millis(until), limit],
                    capacity,
                    rows::job,
                )?;
                jobs.sort_unstable_by_key(|job| (job.run_at, job.id));
                Ok(jobs)
            })
            .await
    }

    async fn complete_job(&self, id: Id, attempt: i32, next: Option<NewJob>) -> StoreResult<bool> {
        self.writer
            .write(move |c| {
                // Only under the caller's claim: a job whose lease lapsed and
                // was claimed again has more attempts, and is the new
                // claimer's to finish.
                let deleted = c
                    .prepare_cached(
                        "DELETE FROM jobs WHERE id = ?1 AND status = 1 AND attempts = ?2",
                    )
                    .db()?
                    .execute(params![id, attempt])
                    .db()?;
                if deleted == 0 {
                    return Ok(false);
                }
                // After the delete, so a recurring job's next run may take the
                // same unique_key.
                if let Some(next) = &next {
                    enqueue(c, next, chatterly_store::now())?;
                }
                Ok(true)
            })
            .await
    }

    async fn fail_job(
        &self,
        id: Id,
        attempt: i32,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let error = error.to_owned();
        self.writer
            .write(move |c| {
                let updated = c
                    .prepare_cached(
                        "UPDATE jobs SET last_error = ?3, \
                             status = CASE WHEN ?4 IS NULL THEN 2 ELSE 0 END, \
                             run_at = coalesce(?4, run_at), \
                             locked_until = NULL, updated_at = ?5 \
                         WHERE id = ?1 AND status = 1 AND attempts = ?2",
                    )
                    .db()?
                    .execute(params![
                        id,
                        attempt,
                        error,
                        retry_at.map(to_millis),
                        to_millis(now)
                    ])
                    .db()?;
                Ok(updated > 0)
            })
            .await
    }

    async fn list_jobs(&self, status: Option<JobStatus>, limit_: u32) -> StoreResult<Vec<Job>> {
        let (limit, capacity) = limit(limit_);
        // By status, a walk of `jobs_status_run_at`; all of them, a sort of
        // the whole table.
        let rows = match status {
            Some(_) => limit_ as usize,
            None => usize::MAX,
        };
        self.read_sized(rows, move |c| match status {
            Some(status) => {
                let mut statement = c
                    .prepare_cached(concat!(
                        "SELECT ",
                        job_columns!(),
                        " FROM jobs WHERE status = ?1 ORDER BY run_at, id LIMIT ?2"
                    ))
                    .db()?;
                rows::all(
                    &mut statement,
                    params![status.as_i16(), limit],
                    capacity,
                    rows::job,
                )
            }
            None => {
                let mut statement = c
                    .prepare_cached(concat!(
                        "SELECT ",
                        job_columns!(),
                        " FROM jobs ORDER BY run_at, id LIMIT ?1"
                    ))
                    .db()?;
                rows::all(&mut statement, [limit], capacity, rows::job)
            }
        })
        .await
    }

    async fn retry_job(&self, id: Id, now: Timestamp) -> StoreResult<bool> {
        self.writer
            .write(move |c| {
                // last_error is kept (what killed it, until the next run
                // says otherwise). Back in pending, the job takes its
                // unique_key again: if another job holds it meanwhile, the
                // partial unique index refuses.
                let updated = c
                    .prepare_cached(
                        "UPDATE jobs SET status = 0, run_at = ?2, attempts = 0, updated_at = ?2 \
                         WHERE id = ?1 AND status = 2",
                    )
                    .db()?
                    .execute(params![id, to_millis(now)])
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            StoreError::Conflict(CONFLICT_JOB)
                        } else {
                            backend(e)
                        }
                    })?;
                Ok(updated > 0)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chatterly_store::MessageKind;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::*;

    async fn open(dir: &tempfile::TempDir, name: &str) -> SqliteStore {
        let store = SqliteStore::open(&dir.path().join(name))
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        store
    }

    fn new_user(name: &str) -> NewUser {
        NewUser {
            email: format!("{name}@example.com"),
            username: name.into(),
            display_name: None,
            password_hash: "x".into(),
        }
    }

    fn text(conversation_id: Id, user_id: Id) -> NewMessage {
        NewMessage {
            attachment_ids: Vec::new(),
            conversation_id,
            user_id,
            content: "x".into(),
            kind: MessageKind::Text,
            parent_message_id: None,
            call_session_id: None,
            client_message_id: None,
            mentions: Default::default(),
        }
    }

    async fn channel(store: &SqliteStore, creator: Id) -> Id {
        store
            .create_conversation(NewConversation {
                kind: ConversationKind::Channel,
                name: None,
                description: None,
                created_by_id: creator,
                member_ids: vec![],
            })
            .await
            .expect("conversation")
            .0
            .id
    }

    /// A command that holds the writer thread until released, so that the
    /// commands sent meanwhile queue up and then run as one batch.
    struct Gate {
        release: std::sync::mpsc::Sender<()>,
        done: JoinHandle<StoreResult<()>>,
    }

    impl Gate {
        async fn hold(store: &SqliteStore) -> Gate {
            let (started, running) = oneshot::channel();
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let writer = store.writer.clone();
            let done = tokio::spawn(async move {
                writer
                    .write(move |_| {
                        let _ = started.send(());
                        let _ = wait.recv();
                        Ok(())
                    })
                    .await
            });
            running.await.expect("the gate runs");
            Gate { release, done }
        }

        async fn open(self) {
            self.release.send(()).expect("release");
            self.done.await.expect("gate task").expect("gate command");
        }
    }

    /// Waits until `n` commands are queued behind the gate.
    async fn queued(store: &SqliteStore, n: usize) {
        for _ in 0..500 {
            if store.writer.queued() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!(
            "expected {n} queued commands, have {}",
            store.writer.queued()
        );
    }

    /// Spawns `call` and waits until its command is the `n`th queued.
    async fn queue<T, F, Fut>(store: &SqliteStore, n: usize, call: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(SqliteStore) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let task = tokio::spawn(call(store.clone()));
        queued(store, n).await;
        task
    }

    fn batches(store: &SqliteStore) -> u64 {
        store.writer.stats.batches.load(Ordering::Relaxed)
    }

    /// The query plan of `sql`, one line per step.
    fn plan(store: &SqliteStore, sql: &str) -> String {
        store
            .readers
            .with(|c| {
                let mut statement = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).db()?;
                let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
                rows::all(
                    &mut statement,
                    rusqlite::params_from_iter(nulls),
                    4,
                    |row| row.get::<_, String>(3).db(),
                )
            })
            .expect("explain")
            .join("\n")
    }

    /// Search runs from the FTS5 match to each message and its membership by
    /// key, never through the searcher's whole history, and takes the newest
    /// matches in the order FTS5 yields them (so a `LIMIT` stops the match
    /// early), sorting only what it ranks.
    #[tokio::test]
    async fn search_starts_from_the_full_text_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "search-plan.db").await;
        for (statement, sorts) in [(search::RANKED_PAGE, 2), (search::RECENT_PAGE, 1)] {
            let plan = plan(&store, statement);
            let step = |prefix: &str| {
                plan.lines()
                    .position(|l| l.trim().starts_with(prefix))
                    .unwrap_or_else(|| panic!("{prefix}: {plan}"))
            };
            let fts = step("SCAN messages_fts VIRTUAL TABLE");
            let message = step("SEARCH m USING INTEGER PRIMARY KEY (rowid=?)");
            let member = step("SEARCH cm USING");
            assert!(fts < message && message < member, "{plan}");
            assert!(
                plan.contains("user_id=? AND conversation_id=?")
                    || plan.contains("conversation_id=? AND user_id=?"),
                "a point lookup of the membership: {plan}"
            );
            assert!(
                !plan
                    .lines()
                    .any(|l| l.trim() == "SCAN m" || l.trim() == "SCAN cm"),
                "{plan}"
            );
            assert_eq!(
                plan.matches("USE TEMP B-TREE FOR ORDER BY").count(),
                sorts,
                "only the ranked window is sorted: {plan}"
            );
        }
    }

    #[tokio::test]
    async fn history_reads_are_index_range_scans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "plan.db").await;

        let check = |before: String, after: String| {
            assert!(
                before.contains(
                    "USING INDEX messages_conversation_id (conversation_id=? AND rowid<?)"
                ),
                "{before}"
            );
            assert!(!before.contains("TEMP B-TREE"), "no sort: {before}");
            assert!(
                after.contains(
                    "USING INDEX messages_conversation_seq (conversation_id=? AND seq>?)"
                ),
                "{after}"
            );
            assert!(!after.contains("TEMP B-TREE"), "no sort: {after}");
        };
        check(
            plan(&store, HISTORY_BEFORE),
            plan(&store, HISTORY_AFTER_SEQ),
        );

        // Still so once the planner has statistics (as `maintain` may gather)
        // of a skewed table: one big conversation, many small ones.
        let user = store.create_user(new_user("a")).await.expect("user");
        for i in 0..20 {
            let conversation = channel(&store, user.id).await;
            for _ in 0..if i == 0 { 300 } else { 3 } {
                store
                    .insert_message(text(conversation, user.id))
                    .await
                    .expect("message");
            }
        }
        store
            .writer
            .write(|c| c.execute_batch("ANALYZE").db())
            .await
            .expect("analyze");
        store
            .maintain(chatterly_store::now())
            .await
            .expect("maintain");
        // Fresh readers, so they load the new statistics.
        drop(store);
        let store = open(&dir, "plan.db").await;
        check(
            plan(&store, HISTORY_BEFORE),
            plan(&store, HISTORY_AFTER_SEQ),
        );
    }

    #[tokio::test]
    async fn call_and_job_queries_use_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "calls-plan.db").await;
        let current = plan(&store, CURRENT_CALL);
        assert!(
            current.contains("USING INDEX call_sessions_one_open (conversation_id=?)"),
            "{current}"
        );
        // Both halves of the claim walk the index in order: no sort of the
        // due jobs (only of the at most 2 x limit rows they yield).
        let claim = plan(&store, CLAIM_JOBS);
        assert!(
            claim.contains("INDEX jobs_status_run_at (status=? AND run_at<?)"),
            "{claim}"
        );
        assert!(
            claim.contains("INDEX jobs_status_run_at (status=?)"),
            "{claim}"
        );
        assert_eq!(claim.matches("TEMP B-TREE").count(), 1, "{claim}");
        assert!(!claim.contains("SCAN jobs"), "{claim}");
    }

    #[tokio::test]
    async fn deleting_a_conversation_row_cascades_to_its_calls() {
        // The schema's own cascade, with the writer's foreign keys enforced
        // (delete_conversation also deletes the calls explicitly).
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "cascade.db").await;
        let alice = store.create_user(new_user("alice")).await.expect("alice");
        let conversation = channel(&store, alice.id).await;
        let call = store
            .create_call(
                NewCall {
                    conversation_id: conversation,
                    initiator_id: alice.id,
                    kind: chatterly_store::CallKind::Audio,
                    status: chatterly_store::CallStatus::Ringing,
                },
                Box::new(|call| NewJob {
                    kind: "call.missed".into(),
                    payload: call.id.to_string(),
                    run_at: call.created_at,
                    max_attempts: 1,
                    unique_key: None,
                }),
            )
            .await
            .expect("call");
        let count = |table: &'static str| {
            store.readers.with(|c| {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .db()
            })
        };
        assert_eq!(count("call_sessions").expect("count"), 1);
        assert_eq!(count("call_participants").expect("count"), 1);
        store
            .writer
            .write(move |c| {
                c.execute("DELETE FROM conversations WHERE id = ?1", [conversation])
                    .db()
            })
            .await
            .expect("delete the row");
        assert_eq!(store.call_by_id(call.id).await.expect("read"), None);
        assert_eq!(count("call_sessions").expect("count"), 0);
        assert_eq!(count("call_participants").expect("count"), 0);
    }

    #[tokio::test]
    async fn pragmas_are_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "pragmas.db").await;

        fn pragma(c: &rusqlite::Connection, name: &str) -> String {
            c.query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, rusqlite::types::Value>(0)
            })
            .map(|value| match value {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .expect(name)
        }
        fn common(c: &rusqlite::Connection) {
            assert_eq!(pragma(c, "journal_mode"), "wal");
            assert_eq!(pragma(c, "synchronous"), "1", "NORMAL");
            assert_eq!(pragma(c, "foreign_keys"), "1");
            assert_eq!(pragma(c, "busy_timeout"), "5000");
        }

        store
            .writer
            .write(|c| {
                common(c);
                assert_eq!(pragma(c, "query_only"), "0");
                assert!(!c.is_readonly(rusqlite::DatabaseName::Main).db()?);
                Ok(())
            })
            .await
            .expect("writer");
        assert_eq!(store.readers.idle(), read_connections());
        store.readers.each_idle(|c| {
            common(c);
            assert_eq!(pragma(c, "query_only"), "1", "the readers cannot write");
            assert!(c
                .is_readonly(rusqlite::DatabaseName::Main)
                .expect("readonly"));
            assert!(c.execute_batch("CREATE TABLE t (x)").is_err());
            assert!(c.execute_batch("DELETE FROM users").is_err());
        });
    }

    /// The counting statements read indexes only: no statement scans
    /// `messages` or `mentions` (a scan would grow with history).
    #[tokio::test]
    async fn read_state_statements_never_scan_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "plans.db").await;
        // Statistics as a real database has them, so the planner is honest.
        store
            .writer
            .alone(|c| c.execute_batch("ANALYZE").db())
            .await
            .expect("analyze");
        let plans = store
            .readers
            .with(|c| {
                let mut plans = Vec::new();
                for (sql, params) in [(INBOX, 1), (INBOX_ENTRY, 2), (READ_STATE, 2)] {
                    let mut statement = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).db()?;
                    let bound = &[1_i64, 1][..params];
                    let details = rows::all(
                        &mut statement,
                        rusqlite::params_from_iter(bound),
                        8,
                        |row| row.get::<_, String>(3).db(),
                    )?;
                    plans.push((sql, details));
                }
                Ok(plans)
            })
            .expect("plans");
        for (sql, details) in plans {
            for detail in &details {
                assert!(
                    !detail.starts_with("SCAN"),
                    "{detail:?} in the plan of {sql}: {details:#?}"
                );
            }
            let uses = |index: &str| details.iter().any(|d| d.contains(index));
            assert!(uses("messages_deleted_seq"), "{sql}: {details:#?}");
            assert!(
                uses("mentions_user_conversation_seq"),
                "{sql}: {details:#?}"
            );
        }
    }

    #[tokio::test]
    async fn a_failing_command_does_not_affect_its_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "batch.db").await;
        let alice = store.create_user(new_user("alice")).await.expect("alice");
        let conversation = channel(&store, alice.id).await;

        let gate = Gate::hold(&store).await;
        let before = batches(&store);
        let bob = queue(&store, 1, |s| async move {
            s.create_user(new_user("bob")).await
        })
        .await;
        let alice_again = queue(&store, 2, |s| async move {
            s.create_user(NewUser {
                username: "alice2".into(),
                ..new_user("alice")
            })
            .await
        })
        .await;
        let first = queue(&store, 3, move |s| async move {
            s.insert_message(text(conversation, alice.id)).await
        })
        .await;
        let nowhere = queue(&store, 4, move |s| async move {
            s.insert_message(text(9_999, alice.id)).await
        })
        .await;
        let stranger = queue(&store, 5, move |s| async move {
            s.add_member(conversation, 9_999, Role::Member).await
        })
        .await;
        let second = queue(&store, 6, move |s| async move {
            s.insert_message(text(conversation, alice.id)).await
        })
        .await;
        gate.open().await;

        let bob = bob.await.expect("task").expect("bob is created");
        assert!(matches!(
            alice_again.await.expect("task"),
            Err(StoreError::Conflict(chatterly_store::CONFLICT_EMAIL))
        ));
        let first = first.await.expect("task").expect("first").into_message();
        assert!(matches!(
            nowhere.await.expect("task"),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            stranger.await.expect("task"),
            Err(StoreError::NotFound)
        ));
        let second = second.await.expect("task").expect("second").into_message();
        assert_eq!(batches(&store), before + 1, "all in one transaction");

        // The others' writes are all there, and the failed ones left nothing
        // (no seq consumed, no member row).
        assert_eq!(store.user_by_id(bob.id).await.expect("read"), Some(bob));
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(
            store.message_by_id(second.id).await.expect("read"),
            Some(second)
        );
        let c = store
            .conversation_by_id(conversation)
            .await
            .expect("read")
            .expect("conversation");
        assert_eq!(c.last_seq, 2);
        assert_eq!(
            store.members_of(&[conversation]).await.expect("read").len(),
            1
        );
    }

    #[tokio::test]
    async fn a_failed_commit_fails_the_whole_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "commit.db").await;

        let gate = Gate::hold(&store).await;
        let s = store.clone();
        let bob = tokio::spawn(async move { s.create_user(new_user("bob")).await });
        queued(&store, 1).await;
        // A deferred foreign key is checked only at COMMIT, which then fails.
        let writer = store.writer.clone();
        let poison = tokio::spawn(async move {
            writer
                .write(|c| {
                    c.execute_batch(
                        "PRAGMA defer_foreign_keys = ON; \
                         INSERT INTO conversation_members \
                         (conversation_id, user_id, role, joined_at) VALUES (9999, 9999, 0, 0)",
                    )
                    .db()
                })
                .await
        });
        queued(&store, 2).await;
        let s = store.clone();
        let carol = tokio::spawn(async move { s.create_user(new_user("carol")).await });
        queued(&store, 3).await;
        gate.open().await;

        for result in [
            bob.await.expect("task").map(drop),
            poison.await.expect("task"),
            carol.await.expect("task").map(drop),
        ] {
            match result {
                Err(StoreError::Backend(message)) => {
                    assert!(message.contains("FOREIGN KEY"), "{message}")
                }
                other => panic!("expected the commit's error, got {other:?}"),
            }
        }
        assert_eq!(store.search_users(None, 10).await.expect("read"), vec![]);
        // The writer goes on.
        store.create_user(new_user("bob")).await.expect("bob");
        assert_eq!(store.search_users(None, 10).await.expect("read").len(), 1);
    }

    #[tokio::test]
    async fn a_panicking_command_is_rolled_back_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "panic.db").await;

        let gate = Gate::hold(&store).await;
        let writer = store.writer.clone();
        let panics = tokio::spawn(async move {
            writer
                .write(|c| -> StoreResult<()> {
                    c.execute_batch(
                        "INSERT INTO users (email, username, password_hash, created_at, \
                         updated_at) VALUES ('m@example.com', 'mallory', 'x', 0, 0)",
                    )
                    .db()?;
                    panic!("a bug");
                })
                .await
        });
        queued(&store, 1).await;
        let s = store.clone();
        let bob = tokio::spawn(async move { s.create_user(new_user("bob")).await });
        queued(&store, 2).await;
        gate.open().await;

        assert!(matches!(
            panics.await.expect("task"),
            Err(StoreError::Backend(_))
        ));
        bob.await.expect("task").expect("bob");
        let users = store.search_users(None, 10).await.expect("read");
        assert_eq!(
            users
                .iter()
                .map(|u| u.username.as_str())
                .collect::<Vec<_>>(),
            vec!["bob"]
        );
        store
            .create_user(new_user("carol"))
            .await
            .expect("still writing");
    }

    #[tokio::test]
    async fn a_command_cancelled_before_it_ran_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "skip.db").await;

        let gate = Gate::hold(&store).await;
        let s = store.clone();
        let bob = tokio::spawn(async move { s.create_user(new_user("bob")).await });
        queued(&store, 1).await;
        bob.abort();
        assert!(bob.await.expect_err("aborted").is_cancelled());
        gate.open().await;

        store.create_user(new_user("carol")).await.expect("carol");
        let users = store.search_users(None, 10).await.expect("read");
        assert_eq!(
            users
                .iter()
                .map(|u| u.username.as_str())
                .collect::<Vec<_>>(),
            vec!["carol"],
            "bob's command never ran"
        );
    }

    #[tokio::test]
    async fn a_command_cancelled_while_running_completes_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "whole.db").await;

        let (started, running) = oneshot::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let writer = store.writer.clone();
        let task = tokio::spawn(async move {
            writer
                .write(move |c| {
                    let insert = "INSERT INTO users (email, username, password_hash, \
                                  created_at, updated_at) VALUES (?1, ?1, 'x', 0, 0)";
                    c.execute(insert, ["first"]).db()?;
                    let _ = started.send(());
                    let _ = wait.recv();
                    c.execute(insert, ["second"]).db()?;
                    Ok(())
                })
                .await
        });
        running.await.expect("started");
        // The caller goes away halfway through its command.
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
        release.send(()).expect("release");

        // Once the next write is acknowledged, the batch before it committed.
        store.create_user(new_user("carol")).await.expect("carol");
        let users = store.search_users(None, 10).await.expect("read");
        assert_eq!(
            users
                .iter()
                .map(|u| u.username.as_str())
                .collect::<Vec<_>>(),
            vec!["carol", "first", "second"],
            "both halves are there"
        );
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "open.db").await;
        let alice = store.create_user(new_user("alice")).await.expect("alice");
        // A command run alone (as migrations are) that forgets its COMMIT.
        store
            .writer
            .alone(|c| {
                c.execute_batch("BEGIN; UPDATE users SET username = 'mallory'")
                    .db()
            })
            .await
            .expect("alone");
        // The next batch starts cleanly, commits, and the change is gone.
        let conversation = channel(&store, alice.id).await;
        assert!(store
            .conversation_by_id(conversation)
            .await
            .expect("read")
            .is_some());
        let user = store
            .user_by_id(alice.id)
            .await
            .expect("read")
            .expect("user");
        assert_eq!(user.username, "alice");
    }

    #[tokio::test]
    async fn migrations_set_the_user_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "version.db").await;
        let version = || {
            store.readers.with(|c| {
                c.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
                    .db()
            })
        };
        assert_eq!(version().expect("version"), migrate::latest());
        assert!(migrate::latest() >= 1);
        store.migrate().await.expect("idempotent");
        assert_eq!(version().expect("version"), migrate::latest());

        // A database from a newer build is refused, untouched.
        store
            .writer
            .alone(|c| c.execute_batch("PRAGMA user_version = 999").db())
            .await
            .expect("set version");
        assert!(matches!(
            store.migrate().await,
            Err(StoreError::Backend(message)) if message.contains("newer")
        ));
        assert_eq!(version().expect("version"), 999);
    }

    #[tokio::test]
    async fn a_database_made_by_the_sqlx_store_is_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sqlx.db");
        {
            // What the sqlx-based store left: the schema, its bookkeeping
            // table, user_version 0, and data.
            let c = rusqlite::Connection::open(&path).expect("create");
            c.execute_batch(migrate::MIGRATIONS[0].sql).expect("schema");
            c.execute_batch(
                "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, \
                 description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT 0, \
                 success BOOLEAN NOT NULL, checksum BLOB NOT NULL, \
                 execution_time BIGINT NOT NULL); \
                 INSERT INTO _sqlx_migrations VALUES (1, 'initial', 0, TRUE, x'00', 1); \
                 INSERT INTO users (email, username, password_hash, created_at, updated_at) \
                 VALUES ('old@example.com', 'old', 'x', 0, 0);",
            )
            .expect("sqlx bookkeeping");
        }
        let store = SqliteStore::open(&path).await.expect("open");
        store.migrate().await.expect("adopted, not re-created");
        assert!(store
            .user_by_email("old@example.com")
            .await
            .expect("read")
            .is_some());
        store.create_user(new_user("new")).await.expect("writes");
    }

    #[tokio::test]
    async fn the_read_pool_grows_for_concurrent_readers_and_shrinks_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, "pool.db").await;
        assert_eq!(store.readers.idle(), read_connections());

        // Nested reads hold one connection each, as that many threads would.
        fn nest(readers: &Readers, depth: usize) -> StoreResult<usize> {
            readers.with(|c| {
                let one: i64 = c.query_row("SELECT 1", [], |row| row.get(0)).db()?;
                if depth == 1 {
                    return Ok(one as usize);
                }
                Ok(one as usize + nest(readers, depth - 1)?)
            })
        }
        let depth = read_connections() * 2;
        assert_eq!(nest(&store.readers, depth).expect("reads"), depth);
        assert_eq!(store.readers.idle(), read_connections(), "extras closed");

        // Long reads run on blocking threads, on the same pool.
        let users = store
            .readers
            .read_long(|c| {
                c.query_row("SELECT count(*) FROM users", [], |row| row.get::<_, i64>(0))
                    .db()
            })
            .await
            .expect("long read");
        assert_eq!(users, 0);
        assert_eq!(store.readers.idle(), read_connections());
    }
}
