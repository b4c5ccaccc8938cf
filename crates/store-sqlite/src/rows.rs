//! Rows as SQLite returns them, and their conversion into the store's models.
//!
//! Timestamps are INTEGER Unix milliseconds and enums are small integers; a
//! value the models cannot represent becomes `StoreError::Backend` (never a
//! panic).

use chatterly_store::{
    Conversation, ConversationKind, Id, Member, Message, MessageKind, Reaction, Role, StoreError,
    StoreResult, Timestamp, User,
};
use chrono::DateTime;

/// The columns `UserRow` reads, in table order.
macro_rules! user_columns {
    () => {
        "id, email, username, display_name, avatar_url, password_hash, failed_attempts, \
         locked_at, last_seen_at, created_at"
    };
}

/// The columns `ConversationRow` reads.
macro_rules! conversation_columns {
    () => {
        "id, kind, name, description, created_by_id, created_at, last_seq, last_activity_at"
    };
}

/// The columns `MessageRow` reads.
macro_rules! message_columns {
    () => {
        "id, conversation_id, user_id, seq, content, kind, parent_message_id, call_session_id, \
         client_message_id, created_at, edited_at, deleted_at"
    };
}

/// The columns `ReactionRow` reads.
macro_rules! reaction_columns {
    () => {
        "id, message_id, user_id, emoji, created_at"
    };
}

pub(crate) use {conversation_columns, message_columns, reaction_columns, user_columns};

/// A model timestamp as stored: Unix milliseconds.
pub(crate) fn to_millis(ts: Timestamp) -> i64 {
    ts.timestamp_millis()
}

/// A stored timestamp back as a model timestamp.
pub(crate) fn from_millis(ms: i64) -> StoreResult<Timestamp> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Backend(format!("stored timestamp out of range: {ms}")))
}

fn from_millis_opt(ms: Option<i64>) -> StoreResult<Option<Timestamp>> {
    ms.map(from_millis).transpose()
}

fn bad_enum(what: &str, value: i16) -> StoreError {
    StoreError::Backend(format!("unknown {what} value stored: {value}"))
}

pub(crate) fn role_from(value: i16) -> StoreResult<Role> {
    Role::from_i16(value).ok_or_else(|| bad_enum("role", value))
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Id,
    email: String,
    username: String,
    display_name: Option<String>,
    avatar_url: Option<String>,
    password_hash: String,
    failed_attempts: i32,
    locked_at: Option<i64>,
    last_seen_at: Option<i64>,
    created_at: i64,
}

impl UserRow {
    pub(crate) fn into_model(self) -> StoreResult<User> {
        Ok(User {
            id: self.id,
            email: self.email,
            username: self.username,
            display_name: self.display_name,
            avatar_url: self.avatar_url,
            password_hash: self.password_hash,
            failed_attempts: self.failed_attempts,
            locked_at: from_millis_opt(self.locked_at)?,
            last_seen_at: from_millis_opt(self.last_seen_at)?,
            created_at: from_millis(self.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ConversationRow {
    id: Id,
    kind: i16,
    name: Option<String>,
    description: Option<String>,
    created_by_id: Option<Id>,
    created_at: i64,
    last_seq: i64,
    last_activity_at: i64,
}

impl ConversationRow {
    pub(crate) fn into_model(self) -> StoreResult<Conversation> {
        Ok(Conversation {
            id: self.id,
            kind: ConversationKind::from_i16(self.kind)
                .ok_or_else(|| bad_enum("conversation kind", self.kind))?,
            name: self.name,
            description: self.description,
            created_by_id: self.created_by_id,
            created_at: from_millis(self.created_at)?,
            last_seq: self.last_seq,
            last_activity_at: from_millis(self.last_activity_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    conversation_id: Id,
    role: i16,
    joined_at: i64,
    #[sqlx(flatten)]
    user: UserRow,
}

impl MemberRow {
    pub(crate) fn into_model(self) -> StoreResult<Member> {
        Ok(Member {
            conversation_id: self.conversation_id,
            role: role_from(self.role)?,
            joined_at: from_millis(self.joined_at)?,
            user: self.user.into_model()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: Id,
    conversation_id: Id,
    user_id: Id,
    seq: i64,
    content: String,
    kind: i16,
    parent_message_id: Option<Id>,
    call_session_id: Option<Id>,
    client_message_id: Option<String>,
    created_at: i64,
    edited_at: Option<i64>,
    deleted_at: Option<i64>,
}

impl MessageRow {
    pub(crate) fn into_model(self) -> StoreResult<Message> {
        Ok(Message {
            id: self.id,
            conversation_id: self.conversation_id,
            user_id: self.user_id,
            seq: self.seq,
            content: self.content,
            kind: MessageKind::from_i16(self.kind)
                .ok_or_else(|| bad_enum("message kind", self.kind))?,
            parent_message_id: self.parent_message_id,
            call_session_id: self.call_session_id,
            client_message_id: self.client_message_id,
            created_at: from_millis(self.created_at)?,
            edited_at: from_millis_opt(self.edited_at)?,
            deleted_at: from_millis_opt(self.deleted_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ReactionRow {
    id: Id,
    message_id: Id,
    user_id: Id,
    emoji: String,
    created_at: i64,
}

impl ReactionRow {
    pub(crate) fn into_model(self) -> StoreResult<Reaction> {
        Ok(Reaction {
            id: self.id,
            message_id: self.message_id,
            user_id: self.user_id,
            emoji: self.emoji,
            created_at: from_millis(self.created_at)?,
        })
    }
}

/// Converts every row, failing on the first one that does not convert.
pub(crate) fn all<R, T>(
    rows: Vec<R>,
    convert: impl Fn(R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.into_iter().map(convert).collect()
}

/// `ids` as a JSON array, for `json_each(?)`: one statement (and one cached
/// prepared statement) whatever the number of ids.
pub(crate) fn json_ids(ids: &[Id]) -> String {
    let mut json = String::with_capacity(2 + ids.len() * 8);
    json.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&id.to_string());
    }
    json.push(']');
    json
}
