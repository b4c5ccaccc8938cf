//! Chatterly's PostgreSQL store: [`PgStore`] implements
//! [`chatterly_store::Store`] on a sqlx pool.
//!
//! The schema is `migrations/` (see also `crates/store/SCHEMA.md`). Messages are
//! partitioned by month on `created_at` (see `partitions.rs`); everything else
//! is plain tables. Each trait method is one statement where that is enough
//! (a single statement is its own transaction), or one explicit transaction.
//!
//! Sending a message is the hot path. A send bumps the conversation's
//! `last_seq` under its row lock (serialising the senders of one conversation
//! so `seq` is gap-free), inserts the row and claims the sender's
//! `client_message_id` (if any), all in one statement. The row lock is held
//! until the commit has flushed the WAL, so the sends of one conversation are
//! group-committed: while one is being written, the others queue, and are
//! then written together as one statement (one transaction, one flush). See
//! `sends.rs` for the design and its guarantees; [`PgStore::send_stats`]
//! exposes its counters.
//!
//! Calls (`calls.rs`) change status by one compare-and-set; a transition that
//! writes the call-log message writes it as a lone send would, inside the
//! transition's transaction.
//! The job queue (`jobs.rs`) is a table claimed with `FOR UPDATE SKIP
//! LOCKED`.

mod calls;
mod error;
mod jobs;
mod partitions;
mod read_state;
mod rows;
mod search;
mod sends;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatterly_store::{
    millis, now, AccountChange, Attachment, CallChange, CallParticipant, CallSession,
    CallTransition, Conversation, ConversationKind, HistoryPage, Id, InboxCursor, InboxEntry,
    Inserted, Job, JobFor, JobStatus, MarkKind, Marked, Member, Mentions, Message, NewAttachment,
    NewCall, NewConversation, NewJob, NewMessage, NewUser, ProfileUpdate, Purged, Reaction,
    Receipt, Role, SearchHit, SearchRequest, Store, StoreError, StoreResult, Timestamp, User,
    CONFLICT_EMAIL, CONFLICT_MEMBER, CONFLICT_QUOTA, CONFLICT_REACTION, CONFLICT_USERNAME,
};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Connection;

use crate::error::{backend, fk_not_found, violation, Violation};
#[doc(hidden)]
pub use crate::partitions::MESSAGE_TABLE_COLUMNS;
#[doc(hidden)]
pub use crate::read_state::INBOX_QUERY;
use crate::rows::{
    attachment_columns, conversation_columns, convert_all, message_columns, reaction_columns,
    user_columns, AttachmentRow, ConversationRow, MemberRow, MessageRow, ReactionRow, UserRow,
};
pub use crate::sends::SendStats;
use crate::sends::Sends;

/// A pooled connection idle for this long is pinged before it is used again.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The PostgreSQL store. Cheap to clone (the clones share the pool and the
/// send batching).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    sends: Arc<Sends>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sends = self.send_stats();
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .field("idle_connections", &self.pool.num_idle())
            .field("send_batches", &sends.batches)
            .field("sends", &sends.sends)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url`
    /// (`postgres://…`); does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // sqlx's default pings every connection it hands out: a round
            // trip before every query. It already pings each connection it
            // takes back, so only one that sat idle (through a server restart,
            // say) needs checking before use.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await
            .map_err(backend)?;
        Ok(PgStore {
            sends: Arc::new(Sends::new(pool.clone())),
            pool,
        })
    }

    /// Counters of the send path (batches written, sends in them, queues).
    pub fn send_stats(&self) -> SendStats {
        self.sends.stats()
    }

    /// Applies the embedded migrations, then makes sure the message
    /// partitions for this month and the next exist. Idempotent, and safe
    /// when several instances start at once (sqlx serialises migrations with
    /// an advisory lock; partition creation takes its own).
    pub async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        // sqlx holds a session-level advisory lock while migrating and does
        // not release it when a migration fails; never hand that connection
        // back to the pool.
        conn.close_on_drop();
        sqlx::migrate!("./migrations")
            .run(&mut *conn)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        drop(conn);
        partitions::ensure_current_and_next(&self.pool, now()).await
    }

    /// The migrations of this build not applied (successfully) to the
    /// database, as `NNNN description`; read only (`chatterly doctor`).
    pub async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
        let applied: Vec<i64> = if exists.is_some() {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?
        } else {
            Vec::new()
        };
        Ok(sqlx::migrate!("./migrations")
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{:04} {}", m.version, m.description))
            .collect())
    }

    /// The monthly message partitions that should exist by `now` (this month
    /// and the next, which `maintain` keeps ahead) but do not.
    pub async fn missing_partitions(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        partitions::missing(&self.pool, now).await
    }

    /// Makes `language` (a PostgreSQL text search configuration, e.g.
    /// `simple` or `english`) the one messages are indexed and searched
    /// with; run after [`PgStore::migrate`]. Refused, naming it, if there is
    /// no such configuration. A change re-indexes every message in one
    /// transaction; returns whether it did. Every instance must be started
    /// with the same language (the last one started wins).
    pub async fn set_search_language(&self, language: &str) -> StoreResult<bool> {
        search::set_language(&self.pool, language).await
    }
}

fn limit(n: u32) -> i64 {
    i64::from(n)
}

/// `"{low}:{high}"`, the key that makes one direct conversation per pair.
fn direct_key(a: Id, b: Id) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

fn rows_to_users(rows: Vec<UserRow>) -> Vec<User> {
    rows.into_iter().map(User::from).collect()
}

impl PgStore {
    async fn conversation_by_direct_key(&self, key: &str) -> StoreResult<Option<Conversation>> {
        let row: Option<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE direct_key = $1"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(Conversation::try_from).transpose()
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    fn pool_usage(&self) -> Option<(u32, u32)> {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some((open.saturating_sub(idle), open))
    }

    async fn maintain(&self, now: Timestamp) -> StoreResult<()> {
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
            .bind(millis(now))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        partitions::ensure_current_and_next(&self.pool, now).await
    }

    // ---- users -------------------------------------------------------------

    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        let result: Result<UserRow, sqlx::Error> = sqlx::query_as(concat!(
            "INSERT INTO users (email, username, display_name, password_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             RETURNING ",
            user_columns!()
        ))
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(now())
        .fetch_one(&self.pool)
        .await;
        match result {
            Ok(row) => Ok(row.into()),
            Err(e) => Err(match violation(&e) {
                Some(Violation::Unique(Some("users_email_key"))) => {
                    StoreError::Conflict(CONFLICT_EMAIL)
                }
                Some(Violation::Unique(Some("users_username_key"))) => {
                    StoreError::Conflict(CONFLICT_USERNAME)
                }
                _ => backend(e),
            }),
        }
    }

    async fn user_by_id(&self, id: Id) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(User::from))
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(User::from))
    }

    async fn users_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ANY($1) ORDER BY id"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows_to_users(rows))
    }

    async fn search_users(&self, query: Option<&str>, max: u32) -> StoreResult<Vec<User>> {
        let rows: Vec<UserRow> = match query {
            None => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users ORDER BY username LIMIT $1"
                ))
                .bind(limit(max))
                .fetch_all(&self.pool)
                .await
            }
            // `%` and `_` in the query stay wildcards (as in the reference);
            // ESCAPE '' makes a backslash an ordinary character, as in SQLite,
            // instead of an error when it ends the pattern.
            Some(q) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users
                  WHERE username ILIKE ('%' || $1 || '%') ESCAPE ''
                     OR display_name ILIKE ('%' || $1 || '%') ESCAPE ''
                  ORDER BY username
                  LIMIT $2"
                ))
                .bind(q)
                .bind(limit(max))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(backend)?;
        Ok(rows_to_users(rows))
    }

    async fn update_profile(&self, id: Id, update: ProfileUpdate) -> StoreResult<User> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "UPDATE users
             SET display_name = CASE WHEN $2 THEN $3 ELSE display_name END,
                 avatar_url = CASE WHEN $4 THEN $5 ELSE avatar_url END,
                 read_receipts = COALESCE($7, read_receipts),
                 updated_at = $6
             WHERE id = $1
             RETURNING ",
            user_columns!()
        ))
        .bind(id)
        .bind(update.display_name.is_some())
        .bind(update.display_name.flatten())
        .bind(update.avatar_url.is_some())
        .bind(update.avatar_url.flatten())
        .bind(now())
        .bind(update.read_receipts)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(User::from).ok_or(StoreError::NotFound)
    }

    async fn record_failed_login(
        &self,
        id: Id,
        lock_after: i32,
        now: Timestamp,
    ) -> StoreResult<User> {
        // On the right-hand side of SET, columns hold their old values.
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "UPDATE users
             SET failed_attempts = failed_attempts + 1,
                 locked_at = CASE WHEN locked_at IS NULL AND failed_attempts + 1 >= $2 THEN $3
                                  ELSE locked_at END
             WHERE id = $1
             RETURNING ",
            user_columns!()
        ))
        .bind(id)
        .bind(lock_after)
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(User::from).ok_or(StoreError::NotFound)
    }

    async fn reset_failed_logins(&self, id: Id) -> StoreResult<()> {
        // Writes only when there is something to clear: the common case (a
        // clean record) costs no new row version. A missing user is not an
        // error, as in the SQLite store.
        sqlx::query(
            "UPDATE users SET failed_attempts = 0, locked_at = NULL
             WHERE id = $1 AND (failed_attempts <> 0 OR locked_at IS NOT NULL)",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(User::from))
    }

    async fn change_account(
        &self,
        id: Id,
        change: AccountChange,
        job: Option<NewJob>,
    ) -> StoreResult<User> {
        let now = now();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let query = match &change {
            AccountChange::Disabled(at) => sqlx::query_as(concat!(
                "UPDATE users SET disabled_at = $2, updated_at = $3 WHERE id = $1 RETURNING ",
                user_columns!()
            ))
            .bind(id)
            .bind(at.map(millis)),
            AccountChange::SiteAdmin(admin) => sqlx::query_as(concat!(
                "UPDATE users SET site_admin = $2, updated_at = $3 WHERE id = $1 RETURNING ",
                user_columns!()
            ))
            .bind(id)
            .bind(*admin),
            AccountChange::PasswordHash(hash) => sqlx::query_as(concat!(
                "UPDATE users SET password_hash = $2, failed_attempts = 0, locked_at = NULL,
                                  sessions_revoked_at = $3, updated_at = $3
                 WHERE id = $1 RETURNING ",
                user_columns!()
            ))
            .bind(id)
            .bind(hash.as_str()),
        };
        let row: Option<UserRow> = query
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let user = row.map(User::from).ok_or(StoreError::NotFound)?;
        if let Some(job) = &job {
            jobs::insert(&mut *tx, job, now).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(user)
    }

    async fn touch_last_seen(&self, id: Id, now: Timestamp) -> StoreResult<()> {
        // A missing user is not an error, as in the SQLite store.
        sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1")
            .bind(id)
            .bind(millis(now))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    // ---- token revocation ----------------------------------------------------

    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
            .bind(jti)
            .bind(millis(expires_at))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)")
            .bind(jti)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }

    async fn active_revocations(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>> {
        let rows: Vec<(String, Timestamp)> = sqlx::query_as(
            "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1 ORDER BY jti",
        )
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(jti, at)| (jti, millis(at)))
            .collect())
    }

    // ---- conversations and members --------------------------------------------

    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)> {
        let key = match (new.kind, new.member_ids.as_slice()) {
            (ConversationKind::Direct, [other]) => Some(direct_key(new.created_by_id, *other)),
            (ConversationKind::Direct, others) => {
                return Err(StoreError::Backend(format!(
                    "a direct conversation needs exactly one other member, got {}",
                    others.len()
                )))
            }
            _ => None,
        };
        // The creator as admin, then each other member once (a repeat, or the
        // creator again, is skipped, as in the SQLite store).
        let mut user_ids = Vec::with_capacity(new.member_ids.len() + 1);
        let mut roles = Vec::with_capacity(new.member_ids.len() + 1);
        user_ids.push(new.created_by_id);
        roles.push(Role::Admin.as_i16());
        for &id in &new.member_ids {
            if !user_ids.contains(&id) {
                user_ids.push(id);
                roles.push(Role::Member.as_i16());
            }
        }

        // A deleted-in-between direct conversation makes the lookup below
        // miss; trying again then creates it.
        for _ in 0..3 {
            let now = now();
            // One statement, so one transaction: the conversation and all its
            // memberships, or (a direct pair that already exists) nothing.
            let created: Option<ConversationRow> = sqlx::query_as(concat!(
                "WITH created AS (
                     INSERT INTO conversations (kind, name, description, created_by_id, direct_key,
                                                last_seq, last_activity_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $6)
                     ON CONFLICT (direct_key) DO NOTHING
                     RETURNING ",
                conversation_columns!(),
                "
                 ), members AS (
                     INSERT INTO conversation_members (conversation_id, user_id, role, joined_at)
                     SELECT created.id, m.user_id, m.role, $6
                     FROM created, unnest($7::bigint[], $8::smallint[]) AS m (user_id, role)
                 )
                 SELECT ",
                conversation_columns!(),
                " FROM created"
            ))
            .bind(new.kind.as_i16())
            .bind(&new.name)
            .bind(&new.description)
            .bind(new.created_by_id)
            .bind(&key)
            .bind(now)
            .bind(&user_ids)
            .bind(&roles)
            .fetch_optional(&self.pool)
            .await
            .map_err(fk_not_found)?;

            if let Some(row) = created {
                return Ok((row.try_into()?, true));
            }
            let Some(key) = key.as_deref() else {
                return Err(StoreError::Backend(
                    "conversation insert returned no row".into(),
                ));
            };
            // The pair already has its conversation (a concurrent create waits
            // on the unique key until the winner commits, so it is visible now).
            if let Some(existing) = self.conversation_by_direct_key(key).await? {
                return Ok((existing, false));
            }
        }
        Err(StoreError::Backend(
            "direct conversation kept disappearing while being created".into(),
        ))
    }

    async fn conversation_by_id(&self, id: Id) -> StoreResult<Option<Conversation>> {
        let row: Option<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(Conversation::try_from).transpose()
    }

    async fn conversations_for_user(&self, user_id: Id) -> StoreResult<Vec<Conversation>> {
        let rows: Vec<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations
              WHERE id IN (SELECT conversation_id FROM conversation_members WHERE user_id = $1)
              ORDER BY last_activity_at DESC, id DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        convert_all(rows)
    }

    async fn delete_conversation(&self, id: Id) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The row lock makes concurrent sends wait (and then find no
        // conversation), so no message can slip in behind the deletes below.
        let locked: Option<i64> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if locked.is_none() {
            return Ok(false);
        }
        let statements = [
            "DELETE FROM reactions
             WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = $1)",
            "DELETE FROM message_client_ids c
             USING messages m
             WHERE m.conversation_id = $1
               AND c.user_id = m.user_id
               AND c.client_message_id = m.client_message_id",
            "DELETE FROM mentions
             WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = $1)",
            "DELETE FROM message_deletions WHERE conversation_id = $1",
            // Hidden, not deleted: the cleanup job removes their blobs first.
            "UPDATE attachments SET deleted_at = now()
             WHERE conversation_id = $1 AND deleted_at IS NULL",
            "DELETE FROM messages WHERE conversation_id = $1",
            // After the messages, as a message's delete goes (its row, then
            // the copy).
            "DELETE FROM latest_messages WHERE conversation_id = $1",
            "DELETE FROM conversation_members WHERE conversation_id = $1",
            // Cascades to call_sessions and from there to call_participants
            // (lock order conversation, then call, as in transition_call).
            "DELETE FROM conversations WHERE id = $1",
        ];
        for sql in statements {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn membership(&self, conversation_id: Id, user_id: Id) -> StoreResult<Option<Role>> {
        let role: Option<i16> = sqlx::query_scalar(
            "SELECT role FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        role.map(|r| {
            Role::from_i16(r)
                .ok_or_else(|| StoreError::Backend(format!("unknown role {r} in the database")))
        })
        .transpose()
    }

    async fn members_of(&self, conversation_ids: &[Id]) -> StoreResult<Vec<Member>> {
        if conversation_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT m.conversation_id, m.role, m.joined_at,
                    u.id, u.email, u.username, u.display_name, u.avatar_url, u.password_hash,
                    u.failed_attempts, u.locked_at, u.last_seen_at, u.created_at,
                    u.read_receipts, u.disabled_at, u.site_admin, u.sessions_revoked_at
             FROM conversation_members m
             JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = ANY($1)
             ORDER BY m.conversation_id, m.user_id",
        )
        .bind(conversation_ids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        convert_all(rows)
    }

    async fn member_ids_of(&self, conversation_ids: &[Id]) -> StoreResult<Vec<(Id, Id)>> {
        read_state::member_ids_of(&self.pool, conversation_ids).await
    }

    async fn add_member(&self, conversation_id: Id, user_id: Id, role: Role) -> StoreResult<()> {
        // Positions start at the conversation's newest message: what was said
        // before the member joined is not unread. No conversation, no row.
        let added = sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at,
                                               last_read_seq, last_delivered_seq)
             SELECT id, $2, $3, $4, last_seq, last_seq FROM conversations WHERE id = $1",
        )
        .bind(conversation_id)
        .bind(user_id)
        .bind(role.as_i16())
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| match violation(&e) {
            Some(Violation::Unique(_)) => StoreError::Conflict(CONFLICT_MEMBER),
            _ => fk_not_found(e),
        })?;
        if added.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn remove_member(&self, conversation_id: Id, user_id: Id) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation_id)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    // ---- messages --------------------------------------------------------------

    async fn insert_message(&self, new: NewMessage) -> StoreResult<Inserted> {
        self.sends.send(new).await
    }

    async fn message_by_id(&self, id: Id) -> StoreResult<Option<Message>> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(Message::try_from).transpose()
    }

    async fn history(&self, conversation_id: Id, page: HistoryPage) -> StoreResult<Vec<Message>> {
        let rows: Vec<MessageRow> = match page {
            // Newest first through the (conversation_id, id) index, then
            // reversed. No cursor is `id < i64::MAX` so the bound stays an
            // index condition in a generic plan.
            HistoryPage::Before {
                before_id,
                limit: n,
            } => {
                let mut rows: Vec<MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages
                      WHERE conversation_id = $1 AND id < $2 AND deleted_at IS NULL
                      ORDER BY id DESC
                      LIMIT $3"
                ))
                .bind(conversation_id)
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(limit(n))
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
                rows.reverse();
                rows
            }
            HistoryPage::AfterSeq {
                after_seq,
                limit: n,
            } => sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages
                  WHERE conversation_id = $1 AND seq > $2 AND deleted_at IS NULL
                  ORDER BY seq
                  LIMIT $3"
            ))
            .bind(conversation_id)
            .bind(after_seq)
            .bind(limit(n))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?,
        };
        convert_all(rows)
    }

    async fn edit_message(
        &self,
        id: Id,
        content: &str,
        mentions: &Mentions,
        now: Timestamp,
    ) -> StoreResult<Message> {
        read_state::edit_message(&self.pool, id, content, mentions, now).await
    }

    async fn soft_delete_message(&self, id: Id, now: Timestamp) -> StoreResult<()> {
        read_state::soft_delete_message(&self.pool, id, now).await
    }

    // ---- attachments -------------------------------------------------------------

    async fn create_attachment(&self, new: NewAttachment) -> StoreResult<Attachment> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if new.quota.is_some() {
            // The uploader's row lock serialises their uploads, so two
            // concurrent ones cannot both slip under the quota.
            let found: Option<i64> =
                sqlx::query_scalar("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                    .bind(new.user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            if found.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        let row: Option<AttachmentRow> = sqlx::query_as(concat!(
            "INSERT INTO attachments (user_id, name, content_type, size, width, height,
                                      blob_key, thumbnail_key, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
             WHERE $10::bigint IS NULL
                OR (SELECT coalesce(sum(size), 0) FROM attachments
                    WHERE user_id = $1 AND deleted_at IS NULL) + $4 <= $10
             RETURNING ",
            attachment_columns!()
        ))
        .bind(new.user_id)
        .bind(&new.name)
        .bind(&new.content_type)
        .bind(new.size)
        .bind(new.width)
        .bind(new.height)
        .bind(&new.blob_key)
        .bind(&new.thumbnail_key)
        .bind(now())
        .bind(new.quota)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fk_not_found)?;
        let row = row.ok_or(StoreError::Conflict(CONFLICT_QUOTA))?;
        tx.commit().await.map_err(backend)?;
        Ok(row.into())
    }

    async fn attachment_by_id(&self, id: Id) -> StoreResult<Option<Attachment>> {
        let row: Option<AttachmentRow> = sqlx::query_as(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(Attachment::from))
    }

    async fn attachments_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<Attachment>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<AttachmentRow> = sqlx::query_as(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments WHERE id = ANY($1) ORDER BY id"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(Attachment::from).collect())
    }

    async fn attachments_for(&self, message_ids: &[Id]) -> StoreResult<Vec<Attachment>> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<AttachmentRow> = sqlx::query_as(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments WHERE message_id = ANY($1) AND deleted_at IS NULL
              ORDER BY message_id, id"
        ))
        .bind(message_ids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(Attachment::from).collect())
    }

    async fn attachment_usage(&self, user_id: Id) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT coalesce(sum(size), 0)::bigint FROM attachments
             WHERE user_id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)
    }

    async fn hidden_attachments(
        &self,
        unattached_before: Timestamp,
        now: Timestamp,
        limit_: u32,
    ) -> StoreResult<Vec<Attachment>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // A send attaching one of these concurrently either committed first
        // (message_id is set, the row is left alone) or waits on the row
        // lock and then finds it hidden (and fails).
        sqlx::query(
            "UPDATE attachments SET deleted_at = $2
             WHERE message_id IS NULL AND deleted_at IS NULL AND created_at < $1",
        )
        .bind(millis(unattached_before))
        .bind(millis(now))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let rows: Vec<AttachmentRow> = sqlx::query_as(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments WHERE deleted_at IS NOT NULL ORDER BY deleted_at, id LIMIT $1"
        ))
        .bind(limit(limit_))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(rows.into_iter().map(Attachment::from).collect())
    }

    async fn remove_attachments(&self, ids: &[Id]) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let done =
            sqlx::query("DELETE FROM attachments WHERE id = ANY($1) AND deleted_at IS NOT NULL")
                .bind(ids)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected())
    }

    // ---- read state and mentions (read_state.rs) -------------------------------------

    async fn inbox(&self, user_id: Id) -> StoreResult<Vec<InboxEntry>> {
        read_state::inbox(&self.pool, user_id).await
    }

    async fn inbox_page(
        &self,
        user_id: Id,
        after: Option<InboxCursor>,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>> {
        read_state::inbox_page(&self.pool, user_id, after, limit).await
    }

    async fn inbox_entry(
        &self,
        conversation_id: Id,
        user_id: Id,
    ) -> StoreResult<Option<InboxEntry>> {
        read_state::inbox_entry(&self.pool, conversation_id, user_id).await
    }

    async fn mark(
        &self,
        conversation_id: Id,
        user_id: Id,
        kind: MarkKind,
        seq: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Marked> {
        read_state::mark(&self.pool, conversation_id, user_id, kind, seq, now).await
    }

    async fn receipts(&self, conversation_id: Id, limit: Option<u32>) -> StoreResult<Vec<Receipt>> {
        read_state::receipts(&self.pool, conversation_id, limit).await
    }

    async fn members_named(
        &self,
        conversation_id: Id,
        usernames: &[String],
    ) -> StoreResult<Vec<(Id, String)>> {
        read_state::members_named(&self.pool, conversation_id, usernames).await
    }

    async fn mention_recipients(&self, message_id: Id) -> StoreResult<Vec<Id>> {
        read_state::mention_recipients(&self.pool, message_id).await
    }

    async fn mentions_for(
        &self,
        user_id: Id,
        before_id: Option<Id>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        read_state::mentions_for(&self.pool, user_id, before_id, limit).await
    }

    async fn purge_messages_before(&self, horizon: Timestamp, batch: u32) -> StoreResult<Purged> {
        partitions::purge_before(&self.pool, millis(horizon), batch).await
    }

    // ---- search ------------------------------------------------------------------

    async fn search_messages(&self, request: SearchRequest) -> StoreResult<Vec<SearchHit>> {
        search::search(&self.pool, &request).await
    }

    // ---- reactions ---------------------------------------------------------------

    async fn reactions_for(&self, message_ids: &[Id]) -> StoreResult<Vec<Reaction>> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<ReactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            reaction_columns!(),
            " FROM reactions WHERE message_id = ANY($1) ORDER BY id"
        ))
        .bind(message_ids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(Reaction::from).collect())
    }

    async fn add_reaction(
        &self,
        message: &Message,
        user_id: Id,
        emoji: &str,
    ) -> StoreResult<Reaction> {
        // The message's created_at lets the existence check prune to one
        // partition.
        let row: Option<ReactionRow> = sqlx::query_as(concat!(
            "INSERT INTO reactions (message_id, message_created_at, user_id, emoji, created_at)
             SELECT $1, $2, $3, $4, $5
             WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1 AND created_at = $2)
             RETURNING ",
            reaction_columns!()
        ))
        .bind(message.id)
        .bind(millis(message.created_at))
        .bind(user_id)
        .bind(emoji)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| match violation(&e) {
            Some(Violation::Unique(_)) => StoreError::Conflict(CONFLICT_REACTION),
            _ => fk_not_found(e),
        })?;
        row.map(Reaction::from).ok_or(StoreError::NotFound)
    }

    async fn reaction_by_id(&self, id: Id) -> StoreResult<Option<Reaction>> {
        let row: Option<ReactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            reaction_columns!(),
            " FROM reactions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(Reaction::from))
    }

    async fn remove_reaction(&self, id: Id) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM reactions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    // ---- calls (calls.rs) ---------------------------------------------------------

    async fn create_call(
        &self,
        new: NewCall,
        job: JobFor<CallSession>,
    ) -> StoreResult<CallSession> {
        calls::create(&self.pool, new, job).await
    }

    async fn call_by_id(&self, id: Id) -> StoreResult<Option<CallSession>> {
        calls::by_id(&self.pool, id).await
    }

    async fn calls_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<CallSession>> {
        calls::by_ids(&self.pool, ids).await
    }

    async fn current_call(&self, conversation_id: Id) -> StoreResult<Option<CallSession>> {
        calls::current(&self.pool, conversation_id).await
    }

    async fn call_participants(&self, call_id: Id) -> StoreResult<Vec<CallParticipant>> {
        calls::participants(&self.pool, call_id).await
    }

    async fn transition_call(&self, transition: CallTransition) -> StoreResult<CallChange> {
        calls::transition(&self.pool, transition).await
    }

    // ---- the durable job queue (jobs.rs) -------------------------------------------

    async fn enqueue_job(&self, job: NewJob) -> StoreResult<Option<Id>> {
        jobs::enqueue(&self.pool, job).await
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        jobs::claim(&self.pool, now, lease, limit).await
    }

    async fn complete_job(&self, id: Id, attempt: i32, next: Option<NewJob>) -> StoreResult<bool> {
        jobs::complete(&self.pool, id, attempt, next).await
    }

    async fn fail_job(
        &self,
        id: Id,
        attempt: i32,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        jobs::fail(&self.pool, id, attempt, error, retry_at, now).await
    }

    async fn list_jobs(&self, status: Option<JobStatus>, limit: u32) -> StoreResult<Vec<Job>> {
        jobs::list(&self.pool, status, limit).await
    }

    async fn retry_job(&self, id: Id, now: Timestamp) -> StoreResult<bool> {
        jobs::retry(&self.pool, id, now).await
    }
}
