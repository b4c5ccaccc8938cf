//! Chatterly's embedded store: [`chatterly_store::Store`] on one SQLite file.
//!
//! # Why two pools
//!
//! SQLite allows many readers but only one writer at a time. If several
//! connections wrote, they would contend for the database's write lock and
//! fail with `SQLITE_BUSY` (or sleep in the busy handler) under load. So every
//! write goes through a pool of exactly **one** connection: writers queue
//! fairly on that pool in memory instead of on a file lock, and a write
//! transaction (`BEGIN IMMEDIATE`) never waits for another. Reads go through a
//! separate pool of several connections: in WAL mode readers never block the
//! writer nor each other, and they see every transaction that committed before
//! they started, so a read after an acknowledged write sees it.
//!
//! The connection settings are the usual ones for a server: WAL journal with
//! `synchronous=NORMAL` (a committed transaction survives the process being
//! killed; only an OS crash or power loss can lose the last few), foreign keys
//! on, a busy timeout, a larger page cache and a prepared-statement cache.
//!
//! Timestamps are stored as INTEGER Unix milliseconds; ids are
//! `INTEGER PRIMARY KEY AUTOINCREMENT` so they are never reused. The schema is
//! in `migrations/`.

mod rows;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chatterly_store::{
    Conversation, ConversationKind, HistoryPage, Id, Inserted, Member, Message, NewConversation,
    NewMessage, NewUser, ProfileUpdate, Reaction, Role, Store, StoreError, StoreResult, Timestamp,
    User, CONFLICT_EMAIL, CONFLICT_MEMBER, CONFLICT_REACTION, CONFLICT_USERNAME,
};
use sqlx::error::ErrorKind;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::rows::{
    all, conversation_columns, from_millis, json_ids, message_columns, reaction_columns,
    role_from, to_millis, user_columns, ConversationRow, MemberRow, MessageRow, ReactionRow,
    UserRow,
};

/// Connections in the read pool.
const READ_CONNECTIONS: u32 = 4;
/// How long a connection waits on a lock held by another process (the only
/// way to contend, given the single writer) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache per connection, in KiB (`PRAGMA cache_size` takes negative KiB).
const CACHE_SIZE_KIB: i64 = 16 * 1024;
/// Memory-mapped I/O window: reads served from the OS page cache without a
/// copy per read, shared by all connections.
const MMAP_SIZE_BYTES: i64 = 256 * 1024 * 1024;
/// After a checkpoint, the WAL file is truncated back to at most this size.
const JOURNAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;
/// Prepared statements kept per connection (the store has about 40).
const STATEMENT_CACHE: usize = 128;

/// The embedded SQLite store. Cloning is cheap: the clones share the pools.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Exactly one connection; every write goes through it.
    writer: SqlitePool,
    /// Several read-only (`query_only`) connections.
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing, with its directory) the database file at
    /// `path`; does not migrate.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::Backend(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }

        let common = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(STATEMENT_CACHE)
            .pragma("cache_size", (-CACHE_SIZE_KIB).to_string())
            .pragma("mmap_size", MMAP_SIZE_BYTES.to_string())
            .pragma("temp_store", "MEMORY");

        // The writer opens first: it creates the file and switches it to WAL
        // (a persistent property of the database), so readers find it so.
        let write_options = common
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES.to_string());
        let writer = pool_options(1)
            .connect_with(write_options)
            .await
            .map_err(backend)?;

        let read_options = common
            .synchronous(SqliteSynchronous::Normal)
            .pragma("query_only", "ON");
        let reader = match pool_options(READ_CONNECTIONS)
            .connect_with(read_options)
            .await
        {
            Ok(reader) => reader,
            Err(e) => {
                writer.close().await;
                return Err(backend(e));
            }
        };

        tracing::debug!(path = %path.display(), readers = READ_CONNECTIONS, "sqlite store opened");
        Ok(SqliteStore { writer, reader })
    }

    /// Applies the embedded migrations (`migrations/`). Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations")
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
    }

    /// Starts a write transaction on the single writer connection.
    async fn write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

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

fn pool_options(connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .min_connections(connections)
        .max_connections(connections)
        // A SQLite connection does not go stale; pinging it before every use
        // would be a round trip to its worker thread per statement.
        .test_before_acquire(false)
        // Keep connections (and their statement caches) for the process's life.
        .idle_timeout(None)
        .max_lifetime(None)
}

// ---- errors -------------------------------------------------------------------

/// Any database failure that is not an expected constraint violation.
fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn error_kind(e: &sqlx::Error) -> Option<ErrorKind> {
    e.as_database_error().map(|db| db.kind())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(error_kind(e), Some(ErrorKind::UniqueViolation))
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(error_kind(e), Some(ErrorKind::ForeignKeyViolation))
}

/// A missing referenced row (a foreign key) means what the write depends on is
/// gone: `NotFound`. Anything else is a backend failure.
fn not_found_or_backend(e: sqlx::Error) -> StoreError {
    if is_foreign_key_violation(&e) {
        StoreError::NotFound
    } else {
        backend(e)
    }
}

/// SQLite names the columns of a failed unique constraint in its message:
/// `UNIQUE constraint failed: users.email`.
fn user_conflict(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        if let Some(db) = e.as_database_error() {
            let message = db.message();
            if message.contains("users.email") {
                return StoreError::Conflict(CONFLICT_EMAIL);
            }
            if message.contains("users.username") {
                return StoreError::Conflict(CONFLICT_USERNAME);
            }
        }
    }
    backend(e)
}

fn limit(limit: u32) -> i64 {
    i64::from(limit)
}

// ---- the store ----------------------------------------------------------------

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn maintain(&self, now: Timestamp) -> StoreResult<()> {
        let purged = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= ?1")
            .bind(to_millis(now))
            .execute(&self.writer)
            .await
            .map_err(backend)?
            .rows_affected();
        // Refreshes the planner's statistics where they have gone stale
        // (cheap when nothing changed).
        sqlx::query("PRAGMA optimize")
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        tracing::debug!(purged, "sqlite store maintained");
        Ok(())
    }

    // ---- users ------------------------------------------------------------------

    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        let now = to_millis(chatterly_store::now());
        let row: UserRow = sqlx::query_as(concat!(
            "INSERT INTO users (email, username, display_name, password_hash, created_at, updated_at) ",
            "VALUES (?1, ?2, ?3, ?4, ?5, ?5) ",
            "RETURNING ",
            user_columns!()
        ))
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(now)
        .fetch_one(&self.writer)
        .await
        .map_err(user_conflict)?;
        row.into_model()
    }

    async fn user_by_id(&self, id: Id) -> StoreResult<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?1"))
                .bind(id)
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        row.map(UserRow::into_model).transpose()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE email = ?1"))
                .bind(email)
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        row.map(UserRow::into_model).transpose()
    }

    async fn users_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id"
        ))
        .bind(json_ids(ids))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        all(rows, UserRow::into_model)
    }

    async fn search_users(&self, query: Option<&str>, limit_: u32) -> StoreResult<Vec<User>> {
        let rows: Vec<UserRow> = match query {
            // LIKE is case-insensitive for ASCII; `%` and `_` in the query stay
            // wildcards, as in the reference.
            Some(query) => sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users",
                " WHERE username LIKE '%' || ?1 || '%' OR display_name LIKE '%' || ?1 || '%'",
                " ORDER BY username LIMIT ?2"
            ))
            .bind(query.to_lowercase())
            .bind(limit(limit_))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?,
            None => sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users ORDER BY username LIMIT ?1"
            ))
            .bind(limit(limit_))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?,
        };
        all(rows, UserRow::into_model)
    }

    async fn update_profile(&self, id: Id, update: ProfileUpdate) -> StoreResult<User> {
        let now = to_millis(chatterly_store::now());
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "UPDATE users SET",
            " display_name = CASE WHEN ?2 THEN ?3 ELSE display_name END,",
            " avatar_url = CASE WHEN ?4 THEN ?5 ELSE avatar_url END,",
            " updated_at = ?6",
            " WHERE id = ?1 RETURNING ",
            user_columns!()
        ))
        .bind(id)
        .bind(update.display_name.is_some())
        .bind(update.display_name.flatten())
        .bind(update.avatar_url.is_some())
        .bind(update.avatar_url.flatten())
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        row.ok_or(StoreError::NotFound)?.into_model()
    }

    async fn record_failed_login(
        &self,
        id: Id,
        lock_after: i32,
        now: Timestamp,
    ) -> StoreResult<User> {
        // The right-hand sides of an UPDATE see the old row, so
        // `failed_attempts + 1` is the new count.
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "UPDATE users SET",
            " failed_attempts = failed_attempts + 1,",
            " locked_at = CASE WHEN locked_at IS NULL AND failed_attempts + 1 >= ?2",
            " THEN ?3 ELSE locked_at END",
            " WHERE id = ?1 RETURNING ",
            user_columns!()
        ))
        .bind(id)
        .bind(lock_after)
        .bind(to_millis(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        row.ok_or(StoreError::NotFound)?.into_model()
    }

    async fn reset_failed_logins(&self, id: Id) -> StoreResult<()> {
        // Only touches the row when there is something to clear: the common
        // case (a successful login with a clean record) writes nothing.
        sqlx::query(
            "UPDATE users SET failed_attempts = 0, locked_at = NULL \
             WHERE id = ?1 AND (failed_attempts <> 0 OR locked_at IS NOT NULL)",
        )
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn touch_last_seen(&self, id: Id, now: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_seen_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(to_millis(now))
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    // ---- token revocation ----------------------------------------------------------

    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query("INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)")
            .bind(jti)
            .bind(to_millis(expires_at))
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?1)")
            .bind(jti)
            .fetch_one(&self.reader)
            .await
            .map_err(backend)
    }

    async fn active_revocations(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ?1 ORDER BY jti",
        )
        .bind(to_millis(now))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|(jti, expires_at)| Ok((jti, from_millis(expires_at)?)))
            .collect()
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
        let now = to_millis(chatterly_store::now());

        let mut tx = self.write().await?;
        // For a direct pair that already has a conversation, the unique
        // direct_key makes this insert nothing; the writer being single, the
        // select below then finds the one that won.
        let created: Option<ConversationRow> = sqlx::query_as(concat!(
            "INSERT INTO conversations",
            " (kind, name, description, created_by_id, direct_key, last_seq, last_activity_at, created_at, updated_at)",
            " VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6, ?6)",
            " ON CONFLICT (direct_key) DO NOTHING",
            " RETURNING ",
            conversation_columns!()
        ))
        .bind(new.kind.as_i16())
        .bind(&new.name)
        .bind(&new.description)
        .bind(new.created_by_id)
        .bind(&direct_key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(not_found_or_backend)?;

        let Some(created) = created else {
            let existing: Option<ConversationRow> = sqlx::query_as(concat!(
                "SELECT ",
                conversation_columns!(),
                " FROM conversations WHERE direct_key = ?1"
            ))
            .bind(&direct_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            tx.rollback().await.map_err(backend)?;
            let existing = existing.ok_or_else(|| {
                StoreError::Backend("direct conversation conflicted but was not found".into())
            })?;
            return Ok((existing.into_model()?, false));
        };
        let conversation = created.into_model()?;

        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(conversation.id)
        .bind(new.created_by_id)
        .bind(Role::Admin.as_i16())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(not_found_or_backend)?;
        if !new.member_ids.is_empty() {
            // All other members in one statement. `WHERE true` keeps SQLite
            // from reading ON CONFLICT as part of the SELECT; a duplicate (or
            // the creator again) is skipped, keeping the first role.
            sqlx::query(
                "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) \
                 SELECT ?1, value, ?2, ?3 FROM json_each(?4) WHERE true \
                 ON CONFLICT (conversation_id, user_id) DO NOTHING",
            )
            .bind(conversation.id)
            .bind(Role::Member.as_i16())
            .bind(now)
            .bind(json_ids(&new.member_ids))
            .execute(&mut *tx)
            .await
            .map_err(not_found_or_backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok((conversation, true))
    }

    async fn conversation_by_id(&self, id: Id) -> StoreResult<Option<Conversation>> {
        let row: Option<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.map(ConversationRow::into_model).transpose()
    }

    async fn conversations_for_user(&self, user_id: Id) -> StoreResult<Vec<Conversation>> {
        let rows: Vec<ConversationRow> = sqlx::query_as(
            "SELECT c.id, c.kind, c.name, c.description, c.created_by_id, c.created_at, \
                    c.last_seq, c.last_activity_at \
             FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.user_id = ?1 \
             ORDER BY c.last_activity_at DESC, c.id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        all(rows, ConversationRow::into_model)
    }

    async fn delete_conversation(&self, id: Id) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        sqlx::query(
            "DELETE FROM reactions \
             WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = ?1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM messages WHERE conversation_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let deleted = sqlx::query("DELETE FROM conversations WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(deleted > 0)
    }

    async fn membership(&self, conversation_id: Id, user_id: Id) -> StoreResult<Option<Role>> {
        let role: Option<i16> = sqlx::query_scalar(
            "SELECT role FROM conversation_members WHERE conversation_id = ?1 AND user_id = ?2",
        )
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        role.map(role_from).transpose()
    }

    async fn members_of(&self, conversation_ids: &[Id]) -> StoreResult<Vec<Member>> {
        if conversation_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT m.conversation_id, m.role, m.joined_at, \
                    u.id, u.email, u.username, u.display_name, u.avatar_url, u.password_hash, \
                    u.failed_attempts, u.locked_at, u.last_seen_at, u.created_at \
             FROM conversation_members m JOIN users u ON u.id = m.user_id \
             WHERE m.conversation_id IN (SELECT value FROM json_each(?1)) \
             ORDER BY m.conversation_id, m.user_id",
        )
        .bind(json_ids(conversation_ids))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        all(rows, MemberRow::into_model)
    }

    async fn add_member(&self, conversation_id: Id, user_id: Id, role: Role) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(conversation_id)
        .bind(user_id)
        .bind(role.as_i16())
        .bind(to_millis(chatterly_store::now()))
        .execute(&self.writer)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(CONFLICT_MEMBER)
            } else {
                not_found_or_backend(e)
            }
        })?;
        Ok(())
    }

    async fn remove_member(&self, conversation_id: Id, user_id: Id) -> StoreResult<bool> {
        let removed = sqlx::query(
            "DELETE FROM conversation_members WHERE conversation_id = ?1 AND user_id = ?2",
        )
        .bind(conversation_id)
        .bind(user_id)
        .execute(&self.writer)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(removed > 0)
    }

    // ---- messages ----------------------------------------------------------------------

    async fn insert_message(&self, new: NewMessage) -> StoreResult<Inserted> {
        let now = chatterly_store::now();
        let mut tx = self.write().await?;

        if let Some(client_message_id) = &new.client_message_id {
            let existing: Option<MessageRow> = sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE user_id = ?1 AND client_message_id = ?2"
            ))
            .bind(new.user_id)
            .bind(client_message_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if let Some(existing) = existing {
                tx.rollback().await.map_err(backend)?;
                return Ok(Inserted::Existing(existing.into_model()?));
            }
        }

        // The single writer serialises senders, so seq is gap-free; the
        // unique (conversation_id, seq) index would refuse a duplicate anyway.
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = ?2 \
             WHERE id = ?1 RETURNING last_seq",
        )
        .bind(new.conversation_id)
        .bind(to_millis(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        // Dropping the transaction rolls it back.
        let Some(seq) = seq else {
            return Err(StoreError::NotFound);
        };

        let id: Id = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, user_id, seq, content, kind, \
                 parent_message_id, call_session_id, client_message_id, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) RETURNING id",
        )
        .bind(new.conversation_id)
        .bind(new.user_id)
        .bind(seq)
        .bind(&new.content)
        .bind(new.kind.as_i16())
        .bind(new.parent_message_id)
        .bind(new.call_session_id)
        .bind(&new.client_message_id)
        .bind(to_millis(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(not_found_or_backend)?;
        tx.commit().await.map_err(backend)?;

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
        }))
    }

    async fn message_by_id(&self, id: Id) -> StoreResult<Option<Message>> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.map(MessageRow::into_model).transpose()
    }

    async fn history(&self, conversation_id: Id, page: HistoryPage) -> StoreResult<Vec<Message>> {
        let rows: Vec<MessageRow> = match page {
            // Read newest first, returned oldest first.
            HistoryPage::Before { before_id, limit: limit_ } => {
                let mut rows: Vec<MessageRow> = sqlx::query_as(HISTORY_BEFORE)
                .bind(conversation_id)
                .bind(before_id.unwrap_or(Id::MAX))
                .bind(limit(limit_))
                .fetch_all(&self.reader)
                .await
                .map_err(backend)?;
                rows.reverse();
                rows
            }
            HistoryPage::AfterSeq {
                after_seq,
                limit: limit_,
            } => sqlx::query_as(HISTORY_AFTER_SEQ)
            .bind(conversation_id)
            .bind(after_seq)
            .bind(limit(limit_))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?,
        };
        all(rows, MessageRow::into_model)
    }

    async fn edit_message(&self, id: Id, content: &str, now: Timestamp) -> StoreResult<Message> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "UPDATE messages SET content = ?2, edited_at = ?3, updated_at = ?3",
            " WHERE id = ?1 AND deleted_at IS NULL RETURNING ",
            message_columns!()
        ))
        .bind(id)
        .bind(content)
        .bind(to_millis(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        row.ok_or(StoreError::NotFound)?.into_model()
    }

    async fn soft_delete_message(&self, id: Id, now: Timestamp) -> StoreResult<()> {
        let updated = sqlx::query(
            "UPDATE messages SET deleted_at = ?2, updated_at = ?2 \
             WHERE id = ?1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(to_millis(now))
        .execute(&self.writer)
        .await
        .map_err(backend)?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ---- reactions ---------------------------------------------------------------------

    async fn reactions_for(&self, message_ids: &[Id]) -> StoreResult<Vec<Reaction>> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<ReactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            reaction_columns!(),
            " FROM reactions WHERE message_id IN (SELECT value FROM json_each(?1)) ORDER BY id"
        ))
        .bind(json_ids(message_ids))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        all(rows, ReactionRow::into_model)
    }

    async fn add_reaction(
        &self,
        message: &Message,
        user_id: Id,
        emoji: &str,
    ) -> StoreResult<Reaction> {
        let row: ReactionRow = sqlx::query_as(concat!(
            "INSERT INTO reactions (message_id, user_id, emoji, created_at)",
            " VALUES (?1, ?2, ?3, ?4) RETURNING ",
            reaction_columns!()
        ))
        .bind(message.id)
        .bind(user_id)
        .bind(emoji)
        .bind(to_millis(chatterly_store::now()))
        .fetch_one(&self.writer)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(CONFLICT_REACTION)
            } else {
                not_found_or_backend(e)
            }
        })?;
        row.into_model()
    }

    async fn reaction_by_id(&self, id: Id) -> StoreResult<Option<Reaction>> {
        let row: Option<ReactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            reaction_columns!(),
            " FROM reactions WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.map(ReactionRow::into_model).transpose()
    }

    async fn remove_reaction(&self, id: Id) -> StoreResult<bool> {
        let removed = sqlx::query("DELETE FROM reactions WHERE id = ?1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(backend)?
            .rows_affected();
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plan of `sql`, one line per step.
    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&store.reader)
            .await
            .expect("explain");
        rows.into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn history_reads_are_index_range_scans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("plan.db")).await.expect("open");
        store.migrate().await.expect("migrate");

        let before = plan(&store, HISTORY_BEFORE).await;
        assert!(
            before.contains("USING INDEX messages_conversation_id (conversation_id=? AND rowid<?)"),
            "{before}"
        );
        assert!(!before.contains("TEMP B-TREE"), "no sort: {before}");

        let after = plan(&store, HISTORY_AFTER_SEQ).await;
        assert!(
            after.contains("USING INDEX messages_conversation_seq (conversation_id=? AND seq>?)"),
            "{after}"
        );
        assert!(!after.contains("TEMP B-TREE"), "no sort: {after}");
    }

    #[tokio::test]
    async fn pragmas_are_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("pragmas.db")).await.expect("open");

        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.writer)
            .await
            .expect("journal_mode");
        assert_eq!(journal, "wal");
        for pool in [&store.writer, &store.reader] {
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .expect("synchronous");
            assert_eq!(synchronous, 1, "NORMAL");
            let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .expect("foreign_keys");
            assert_eq!(foreign_keys, 1);
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(pool)
                .await
                .expect("busy_timeout");
            assert_eq!(busy, 5_000);
        }
        let query_only: i64 = sqlx::query_scalar("PRAGMA query_only")
            .fetch_one(&store.reader)
            .await
            .expect("query_only");
        assert_eq!(query_only, 1, "the read pool cannot write");
        assert_eq!(store.writer.size(), 1);
        assert!(sqlx::query("CREATE TABLE t (x)").execute(&store.reader).await.is_err());
    }
}
