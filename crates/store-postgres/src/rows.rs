//! Row structs as PostgreSQL returns them, and their conversion into the
//! backend-neutral models (small integers into enums, timestamps truncated to
//! milliseconds).

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};

use chatterly_store::{
    millis, Attachment, Broadcast, CallKind, CallParticipant, CallSession, CallStatus,
    Conversation, ConversationKind, InboxEntry, Job, JobStatus, Member, Message, MessageKind,
    Reaction, ReadState, Receipt, Role, StoreError, StoreResult, Timestamp, User,
};

/// The column lists the row structs read, so every query returns the same
/// shape. Macros rather than constants so `concat!` can build `&'static str`
/// queries at compile time.
macro_rules! user_columns {
    () => {
        "id, email, username, display_name, avatar_url, password_hash, failed_attempts, \
         locked_at, last_seen_at, created_at, read_receipts, disabled_at, site_admin, \
         sessions_revoked_at"
    };
}
macro_rules! conversation_columns {
    () => {
        "id, kind, name, description, created_by_id, created_at, last_seq, last_activity_at"
    };
}
macro_rules! message_columns {
    () => {
        "id, conversation_id, user_id, seq, content, kind, parent_message_id, call_session_id, \
         client_message_id, created_at, edited_at, deleted_at, mentions, broadcast"
    };
}
/// The columns `latest_messages` copies from `messages` (all but
/// `conversation_id`, its key, and `deleted_at`, always NULL for a live
/// message).
macro_rules! latest_columns {
    () => {
        "id, user_id, seq, content, kind, parent_message_id, call_session_id, \
         client_message_id, created_at, edited_at, mentions, broadcast"
    };
}
/// Copies the newest row of `$source` (a name in scope with the message
/// columns) into `latest_messages`, unless the copy there is newer: a send's
/// step that keeps its conversation's newest message (see migration 0008).
macro_rules! copy_latest {
    ($source:literal) => {
        concat!(
            "INSERT INTO latest_messages (conversation_id, ",
            latest_columns!(),
            ")
             SELECT conversation_id, ",
            latest_columns!(),
            " FROM ",
            $source,
            " ORDER BY seq DESC LIMIT 1
             ON CONFLICT (conversation_id) DO UPDATE
             SET id = excluded.id, user_id = excluded.user_id, seq = excluded.seq,
                 content = excluded.content, kind = excluded.kind,
                 parent_message_id = excluded.parent_message_id,
                 call_session_id = excluded.call_session_id,
                 client_message_id = excluded.client_message_id,
                 created_at = excluded.created_at, edited_at = excluded.edited_at,
                 mentions = excluded.mentions, broadcast = excluded.broadcast
             WHERE latest_messages.seq < excluded.seq"
        )
    };
}
macro_rules! reaction_columns {
    () => {
        "id, message_id, user_id, emoji, created_at"
    };
}
macro_rules! attachment_columns {
    () => {
        "id, user_id, name, content_type, size, width, height, blob_key, thumbnail_key, \
         message_id, conversation_id, created_at, deleted_at"
    };
}
macro_rules! call_columns {
    () => {
        "id, conversation_id, initiator_id, kind, status, created_at, started_at, ended_at"
    };
}
macro_rules! participant_columns {
    () => {
        "call_session_id, user_id, joined_at"
    };
}
macro_rules! job_columns {
    () => {
        "id, kind, payload, status, run_at, attempts, max_attempts, unique_key, last_error, \
         locked_until, created_at, updated_at"
    };
}
pub(crate) use {
    attachment_columns, call_columns, conversation_columns, copy_latest, job_columns,
    latest_columns, message_columns, participant_columns, reaction_columns, user_columns,
};

fn ms(ts: Timestamp) -> Timestamp {
    millis(ts)
}

fn ms_opt(ts: Option<Timestamp>) -> Option<Timestamp> {
    ts.map(millis)
}

fn bad(what: &str, value: i16) -> StoreError {
    StoreError::Backend(format!("unknown {what} {value} in the database"))
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    email: String,
    username: String,
    display_name: Option<String>,
    avatar_url: Option<String>,
    password_hash: String,
    failed_attempts: i32,
    locked_at: Option<Timestamp>,
    last_seen_at: Option<Timestamp>,
    created_at: Timestamp,
    read_receipts: bool,
    disabled_at: Option<Timestamp>,
    site_admin: bool,
    sessions_revoked_at: Option<Timestamp>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User {
            id: r.id,
            email: r.email,
            username: r.username,
            display_name: r.display_name,
            avatar_url: r.avatar_url,
            password_hash: r.password_hash,
            failed_attempts: r.failed_attempts,
            locked_at: ms_opt(r.locked_at),
            last_seen_at: ms_opt(r.last_seen_at),
            created_at: ms(r.created_at),
            read_receipts: r.read_receipts,
            disabled_at: ms_opt(r.disabled_at),
            site_admin: r.site_admin,
            sessions_revoked_at: ms_opt(r.sessions_revoked_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ConversationRow {
    id: i64,
    kind: i16,
    name: Option<String>,
    description: Option<String>,
    created_by_id: Option<i64>,
    created_at: Timestamp,
    last_seq: i64,
    last_activity_at: Timestamp,
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StoreError;
    fn try_from(r: ConversationRow) -> StoreResult<Conversation> {
        Ok(Conversation {
            id: r.id,
            kind: ConversationKind::from_i16(r.kind)
                .ok_or_else(|| bad("conversation kind", r.kind))?,
            name: r.name,
            description: r.description,
            created_by_id: r.created_by_id,
            created_at: ms(r.created_at),
            last_seq: r.last_seq,
            last_activity_at: ms(r.last_activity_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    conversation_id: i64,
    role: i16,
    joined_at: Timestamp,
    #[sqlx(flatten)]
    user: UserRow,
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;
    fn try_from(r: MemberRow) -> StoreResult<Member> {
        Ok(Member {
            conversation_id: r.conversation_id,
            role: Role::from_i16(r.role).ok_or_else(|| bad("role", r.role))?,
            joined_at: ms(r.joined_at),
            user: r.user.into(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: i64,
    conversation_id: i64,
    user_id: i64,
    seq: i64,
    content: String,
    kind: i16,
    parent_message_id: Option<i64>,
    call_session_id: Option<i64>,
    client_message_id: Option<String>,
    created_at: Timestamp,
    edited_at: Option<Timestamp>,
    deleted_at: Option<Timestamp>,
    mentions: Option<Vec<i64>>,
    broadcast: Option<i16>,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> StoreResult<Message> {
        Ok(Message {
            id: r.id,
            conversation_id: r.conversation_id,
            user_id: r.user_id,
            seq: r.seq,
            content: r.content,
            kind: MessageKind::from_i16(r.kind).ok_or_else(|| bad("message kind", r.kind))?,
            parent_message_id: r.parent_message_id,
            call_session_id: r.call_session_id,
            client_message_id: r.client_message_id,
            created_at: ms(r.created_at),
            edited_at: ms_opt(r.edited_at),
            deleted_at: ms_opt(r.deleted_at),
            mentions: r.mentions.unwrap_or_default(),
            broadcast: r
                .broadcast
                .map(|b| Broadcast::from_i16(b).ok_or_else(|| bad("broadcast", b)))
                .transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ReactionRow {
    id: i64,
    message_id: i64,
    user_id: i64,
    emoji: String,
    created_at: Timestamp,
}

impl From<ReactionRow> for Reaction {
    fn from(r: ReactionRow) -> Reaction {
        Reaction {
            id: r.id,
            message_id: r.message_id,
            user_id: r.user_id,
            emoji: r.emoji,
            created_at: ms(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttachmentRow {
    id: i64,
    user_id: i64,
    name: String,
    content_type: String,
    size: i64,
    width: Option<i32>,
    height: Option<i32>,
    blob_key: String,
    thumbnail_key: Option<String>,
    message_id: Option<i64>,
    conversation_id: Option<i64>,
    created_at: Timestamp,
    deleted_at: Option<Timestamp>,
}

impl From<AttachmentRow> for Attachment {
    fn from(r: AttachmentRow) -> Attachment {
        Attachment {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            content_type: r.content_type,
            size: r.size,
            width: r.width,
            height: r.height,
            blob_key: r.blob_key,
            thumbnail_key: r.thumbnail_key,
            message_id: r.message_id,
            conversation_id: r.conversation_id,
            created_at: ms(r.created_at),
            deleted_at: r.deleted_at.map(ms),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CallRow {
    id: i64,
    conversation_id: i64,
    initiator_id: i64,
    kind: i16,
    status: i16,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
}

impl TryFrom<CallRow> for CallSession {
    type Error = StoreError;
    fn try_from(r: CallRow) -> StoreResult<CallSession> {
        Ok(CallSession {
            id: r.id,
            conversation_id: r.conversation_id,
            initiator_id: r.initiator_id,
            kind: CallKind::from_i16(r.kind).ok_or_else(|| bad("call kind", r.kind))?,
            status: CallStatus::from_i16(r.status).ok_or_else(|| bad("call status", r.status))?,
            created_at: ms(r.created_at),
            started_at: ms_opt(r.started_at),
            ended_at: ms_opt(r.ended_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ParticipantRow {
    call_session_id: i64,
    user_id: i64,
    joined_at: Timestamp,
}

impl From<ParticipantRow> for CallParticipant {
    fn from(r: ParticipantRow) -> CallParticipant {
        CallParticipant {
            call_session_id: r.call_session_id,
            user_id: r.user_id,
            joined_at: ms(r.joined_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: i64,
    kind: String,
    payload: String,
    status: i16,
    run_at: Timestamp,
    attempts: i32,
    max_attempts: i32,
    unique_key: Option<String>,
    last_error: Option<String>,
    locked_until: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> StoreResult<Job> {
        Ok(Job {
            id: r.id,
            kind: r.kind,
            payload: r.payload,
            status: JobStatus::from_i16(r.status).ok_or_else(|| bad("job status", r.status))?,
            run_at: ms(r.run_at),
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            unique_key: r.unique_key,
            last_error: r.last_error,
            locked_until: ms_opt(r.locked_until),
            created_at: ms(r.created_at),
            updated_at: ms(r.updated_at),
        })
    }
}

/// Converts every row, failing on the first that does not fit the model.
pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// A row of the inbox query (see `read_state.rs`): the conversation, the
/// member's positions and counts, and the newest message (`l_*`, all NULL
/// when the lookup found none).
pub(crate) struct InboxRow {
    conversation: ConversationRow,
    user_id: i64,
    last_read_seq: i64,
    read_at: Option<Timestamp>,
    last_delivered_seq: i64,
    deleted_after: i64,
    mentions_after: i64,
    l_id: Option<i64>,
    l_conversation_id: Option<i64>,
    l_user_id: Option<i64>,
    l_seq: Option<i64>,
    l_content: Option<String>,
    l_kind: Option<i16>,
    l_parent_message_id: Option<i64>,
    l_call_session_id: Option<i64>,
    l_client_message_id: Option<String>,
    l_created_at: Option<Timestamp>,
    l_edited_at: Option<Timestamp>,
    l_deleted_at: Option<Timestamp>,
    l_mentions: Option<Vec<i64>>,
    l_broadcast: Option<i16>,
    member_ids: Vec<i64>,
}

/// Reads a row's columns one after the other, by position and without the
/// per-column type check: for the inbox's 1,000 rows of 29 columns, sqlx's
/// lookup of each column by name and its compatibility check were a third of
/// the server's CPU per conversation list. The statement is ours and fixed;
/// [`Columns::finish`] refuses a row whose column count differs, and the
/// store tests check every value.
struct Columns<'r> {
    row: &'r PgRow,
    next: usize,
}

impl<'r> Columns<'r> {
    fn new(row: &'r PgRow) -> Self {
        Columns { row, next: 0 }
    }

    fn next<T>(&mut self) -> sqlx::Result<T>
    where
        T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        let i = self.next;
        self.next += 1;
        self.row.try_get_unchecked(i)
    }

    fn finish<T>(self, value: T) -> sqlx::Result<T> {
        if self.next == self.row.len() {
            Ok(value)
        } else {
            Err(sqlx::Error::Decode(
                format!(
                    "the statement returned {} columns, the row reads {}",
                    self.row.len(),
                    self.next
                )
                .into(),
            ))
        }
    }
}

/// By position: the order of `inbox_select!` (struct fields are evaluated
/// in the order written).
impl<'r> sqlx::FromRow<'r, PgRow> for InboxRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        let mut at = Columns::new(row);
        let value = InboxRow {
            conversation: ConversationRow {
                id: at.next()?,
                kind: at.next()?,
                name: at.next()?,
                description: at.next()?,
                created_by_id: at.next()?,
                created_at: at.next()?,
                last_seq: at.next()?,
                last_activity_at: at.next()?,
            },
            user_id: at.next()?,
            last_read_seq: at.next()?,
            read_at: at.next()?,
            last_delivered_seq: at.next()?,
            deleted_after: at.next()?,
            mentions_after: at.next()?,
            l_id: at.next()?,
            l_conversation_id: at.next()?,
            l_user_id: at.next()?,
            l_seq: at.next()?,
            l_content: at.next()?,
            l_kind: at.next()?,
            l_parent_message_id: at.next()?,
            l_call_session_id: at.next()?,
            l_client_message_id: at.next()?,
            l_created_at: at.next()?,
            l_edited_at: at.next()?,
            l_deleted_at: at.next()?,
            l_mentions: at.next()?,
            l_broadcast: at.next()?,
            member_ids: at.next()?,
        };
        at.finish(value)
    }
}

impl TryFrom<InboxRow> for InboxEntry {
    type Error = StoreError;
    fn try_from(r: InboxRow) -> StoreResult<InboxEntry> {
        let conversation = Conversation::try_from(r.conversation)?;
        let latest = match (
            r.l_id,
            r.l_conversation_id,
            r.l_user_id,
            r.l_seq,
            r.l_content,
            r.l_kind,
            r.l_created_at,
        ) {
            (
                Some(id),
                Some(conversation_id),
                Some(user_id),
                Some(seq),
                Some(content),
                Some(kind),
                Some(created_at),
            ) => Some(Message::try_from(MessageRow {
                id,
                conversation_id,
                user_id,
                seq,
                content,
                kind,
                parent_message_id: r.l_parent_message_id,
                call_session_id: r.l_call_session_id,
                client_message_id: r.l_client_message_id,
                created_at,
                edited_at: r.l_edited_at,
                deleted_at: r.l_deleted_at,
                mentions: r.l_mentions,
                broadcast: r.l_broadcast,
            })?),
            _ => None,
        };
        let read = ReadState {
            conversation_id: conversation.id,
            user_id: r.user_id,
            last_read_seq: r.last_read_seq,
            read_at: ms_opt(r.read_at),
            last_delivered_seq: r.last_delivered_seq,
            last_seq: conversation.last_seq,
            unread_count: (conversation.last_seq - r.last_read_seq - r.deleted_after).max(0),
            mention_count: r.mentions_after,
        };
        let mut member_ids = r.member_ids;
        member_ids.sort_unstable();
        Ok(InboxEntry {
            conversation,
            read,
            latest,
            member_ids,
        })
    }
}

/// A member's positions as `receipts` reads them.
#[derive(sqlx::FromRow)]
pub(crate) struct ReceiptRow {
    user_id: i64,
    last_read_seq: i64,
    read_at: Option<Timestamp>,
    last_delivered_seq: i64,
    read_receipts: bool,
}

impl From<ReceiptRow> for Receipt {
    fn from(r: ReceiptRow) -> Receipt {
        Receipt {
            user_id: r.user_id,
            last_read_seq: r.last_read_seq,
            read_at: ms_opt(r.read_at),
            last_delivered_seq: r.last_delivered_seq,
            read_receipts: r.read_receipts,
        }
    }
}
