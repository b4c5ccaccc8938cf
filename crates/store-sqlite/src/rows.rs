//! Rows as SQLite returns them, converted into the store's models.
//!
//! Columns are read by position (the `*_columns!` lists fix the order), which
//! is cheaper than by name. Timestamps are INTEGER Unix milliseconds and enums
//! are small integers; a value the models cannot represent, or a column of an
//! unexpected type, becomes `StoreError::Backend` (never a panic).

use chatterly_store::{
    Attachment, Broadcast, CallKind, CallParticipant, CallSession, CallStatus, Conversation,
    ConversationKind, Id, Job, JobStatus, Member, Message, MessageKind, Reaction, Role, StoreError,
    StoreResult, Timestamp, User,
};
use chrono::DateTime;
use rusqlite::types::FromSql;
use rusqlite::{Params, Row, Statement};

use crate::error::Db;

/// The columns [`user`] reads, in this order.
macro_rules! user_columns {
    () => {
        "id, email, username, display_name, avatar_url, password_hash, failed_attempts, \
         locked_at, last_seen_at, created_at, read_receipts, disabled_at, site_admin, \
         sessions_revoked_at"
    };
}

/// The columns [`conversation`] reads.
macro_rules! conversation_columns {
    () => {
        "id, kind, name, description, created_by_id, created_at, last_seq, last_activity_at"
    };
}

/// The columns [`message`] reads.
macro_rules! message_columns {
    () => {
        "id, conversation_id, user_id, seq, content, kind, parent_message_id, call_session_id, \
         client_message_id, created_at, edited_at, deleted_at, mentions, broadcast"
    };
}

/// The columns [`reaction`] reads.
macro_rules! reaction_columns {
    () => {
        "id, message_id, user_id, emoji, created_at"
    };
}

/// The columns [`attachment`] reads.
macro_rules! attachment_columns {
    () => {
        "id, user_id, name, content_type, size, width, height, blob_key, thumbnail_key, \
         message_id, conversation_id, created_at, deleted_at"
    };
}

/// The columns [`call`] reads.
macro_rules! call_columns {
    () => {
        "id, conversation_id, initiator_id, kind, status, created_at, started_at, ended_at"
    };
}

/// The columns [`participant`] reads.
macro_rules! participant_columns {
    () => {
        "call_session_id, user_id, joined_at"
    };
}

/// The columns [`job`] reads.
macro_rules! job_columns {
    () => {
        "id, kind, payload, status, run_at, attempts, max_attempts, unique_key, last_error, \
         locked_until, created_at, updated_at"
    };
}

pub(crate) use {
    attachment_columns, call_columns, conversation_columns, job_columns, message_columns,
    participant_columns, reaction_columns, user_columns,
};

/// A model timestamp as stored: Unix milliseconds.
pub(crate) fn to_millis(ts: Timestamp) -> i64 {
    ts.timestamp_millis()
}

/// A stored timestamp back as a model timestamp.
pub(crate) fn from_millis(ms: i64) -> StoreResult<Timestamp> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Backend(format!("stored timestamp out of range: {ms}")))
}

pub(crate) fn from_millis_opt(ms: Option<i64>) -> StoreResult<Option<Timestamp>> {
    ms.map(from_millis).transpose()
}

fn bad_enum(what: &str, value: i16) -> StoreError {
    StoreError::Backend(format!("unknown {what} value stored: {value}"))
}

pub(crate) fn role_from(value: i16) -> StoreResult<Role> {
    Role::from_i16(value).ok_or_else(|| bad_enum("role", value))
}

/// Column `i` of `row`.
fn get<T: FromSql>(row: &Row<'_>, i: usize) -> StoreResult<T> {
    row.get(i).db()
}

/// A user from `user_columns!()`, starting at column `at`.
pub(crate) fn user(row: &Row<'_>, at: usize) -> StoreResult<User> {
    Ok(User {
        id: get(row, at)?,
        email: get(row, at + 1)?,
        username: get(row, at + 2)?,
        display_name: get(row, at + 3)?,
        avatar_url: get(row, at + 4)?,
        password_hash: get(row, at + 5)?,
        failed_attempts: get(row, at + 6)?,
        locked_at: from_millis_opt(get(row, at + 7)?)?,
        last_seen_at: from_millis_opt(get(row, at + 8)?)?,
        created_at: from_millis(get(row, at + 9)?)?,
        read_receipts: get(row, at + 10)?,
        disabled_at: from_millis_opt(get(row, at + 11)?)?,
        site_admin: get(row, at + 12)?,
        sessions_revoked_at: from_millis_opt(get(row, at + 13)?)?,
    })
}

/// A conversation from `conversation_columns!()`.
pub(crate) fn conversation(row: &Row<'_>) -> StoreResult<Conversation> {
    let kind: i16 = get(row, 1)?;
    Ok(Conversation {
        id: get(row, 0)?,
        kind: ConversationKind::from_i16(kind)
            .ok_or_else(|| bad_enum("conversation kind", kind))?,
        name: get(row, 2)?,
        description: get(row, 3)?,
        created_by_id: get(row, 4)?,
        created_at: from_millis(get(row, 5)?)?,
        last_seq: get(row, 6)?,
        last_activity_at: from_millis(get(row, 7)?)?,
    })
}

/// A member from `conversation_id, role, joined_at` then `user_columns!()`.
pub(crate) fn member(row: &Row<'_>) -> StoreResult<Member> {
    Ok(Member {
        conversation_id: get(row, 0)?,
        role: role_from(get(row, 1)?)?,
        joined_at: from_millis(get(row, 2)?)?,
        user: user(row, 3)?,
    })
}

/// A message from `message_columns!()`.
pub(crate) fn message(row: &Row<'_>) -> StoreResult<Message> {
    message_at(row, 0)?.ok_or_else(|| StoreError::Backend("a message row without an id".into()))
}

/// A message from `message_columns!()` starting at column `at`, or `None`
/// when its id there is NULL (an outer join that found none).
pub(crate) fn message_at(row: &Row<'_>, at: usize) -> StoreResult<Option<Message>> {
    let Some(id) = get::<Option<Id>>(row, at)? else {
        return Ok(None);
    };
    let kind: i16 = get(row, at + 5)?;
    Ok(Some(Message {
        id,
        conversation_id: get(row, at + 1)?,
        user_id: get(row, at + 2)?,
        seq: get(row, at + 3)?,
        content: get(row, at + 4)?,
        kind: MessageKind::from_i16(kind).ok_or_else(|| bad_enum("message kind", kind))?,
        parent_message_id: get(row, at + 6)?,
        call_session_id: get(row, at + 7)?,
        client_message_id: get(row, at + 8)?,
        created_at: from_millis(get(row, at + 9)?)?,
        edited_at: from_millis_opt(get(row, at + 10)?)?,
        deleted_at: from_millis_opt(get(row, at + 11)?)?,
        mentions: ids_from_json(get(row, at + 12)?, "mentions")?,
        broadcast: broadcast_from(get(row, at + 13)?)?,
    }))
}

/// A JSON array of ids at column `at` (NULL: none), in ascending order
/// whatever order it was written in.
pub(crate) fn id_array(row: &Row<'_>, at: usize, what: &str) -> StoreResult<Vec<Id>> {
    let mut ids = ids_from_json(get(row, at)?, what)?;
    ids.sort_unstable();
    Ok(ids)
}

/// A JSON array of ids (`messages.mentions` as [`json_ids`] writes it,
/// or `json_group_array` of ids), or NULL for none.
fn ids_from_json(text: Option<String>, what: &str) -> StoreResult<Vec<Id>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| StoreError::Backend(format!("stored {what} are not an array: {text}")))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            id.parse::<Id>()
                .map_err(|_| StoreError::Backend(format!("stored {what} are not ids: {text}")))
        })
        .collect()
}

/// `messages.mentions` as stored: NULL for none.
pub(crate) fn mentions_text(ids: &[Id]) -> Option<String> {
    (!ids.is_empty()).then(|| json_ids(ids))
}

fn broadcast_from(value: Option<i16>) -> StoreResult<Option<Broadcast>> {
    value
        .map(|v| Broadcast::from_i16(v).ok_or_else(|| bad_enum("broadcast", v)))
        .transpose()
}

/// A reaction from `reaction_columns!()`.
pub(crate) fn reaction(row: &Row<'_>) -> StoreResult<Reaction> {
    Ok(Reaction {
        id: get(row, 0)?,
        message_id: get(row, 1)?,
        user_id: get(row, 2)?,
        emoji: get(row, 3)?,
        created_at: from_millis(get(row, 4)?)?,
    })
}

/// An attachment from `attachment_columns!()`.
pub(crate) fn attachment(row: &Row<'_>) -> StoreResult<Attachment> {
    Ok(Attachment {
        id: get(row, 0)?,
        user_id: get(row, 1)?,
        name: get(row, 2)?,
        content_type: get(row, 3)?,
        size: get(row, 4)?,
        width: get(row, 5)?,
        height: get(row, 6)?,
        blob_key: get(row, 7)?,
        thumbnail_key: get(row, 8)?,
        message_id: get(row, 9)?,
        conversation_id: get(row, 10)?,
        created_at: from_millis(get(row, 11)?)?,
        deleted_at: from_millis_opt(get(row, 12)?)?,
    })
}

/// A call from `call_columns!()`.
pub(crate) fn call(row: &Row<'_>) -> StoreResult<CallSession> {
    let kind: i16 = get(row, 3)?;
    let status: i16 = get(row, 4)?;
    Ok(CallSession {
        id: get(row, 0)?,
        conversation_id: get(row, 1)?,
        initiator_id: get(row, 2)?,
        kind: CallKind::from_i16(kind).ok_or_else(|| bad_enum("call kind", kind))?,
        status: CallStatus::from_i16(status).ok_or_else(|| bad_enum("call status", status))?,
        created_at: from_millis(get(row, 5)?)?,
        started_at: from_millis_opt(get(row, 6)?)?,
        ended_at: from_millis_opt(get(row, 7)?)?,
    })
}

/// A call participant from `participant_columns!()`.
pub(crate) fn participant(row: &Row<'_>) -> StoreResult<CallParticipant> {
    Ok(CallParticipant {
        call_session_id: get(row, 0)?,
        user_id: get(row, 1)?,
        joined_at: from_millis(get(row, 2)?)?,
    })
}

/// A job from `job_columns!()`.
pub(crate) fn job(row: &Row<'_>) -> StoreResult<Job> {
    let status: i16 = get(row, 3)?;
    Ok(Job {
        id: get(row, 0)?,
        kind: get(row, 1)?,
        payload: get(row, 2)?,
        status: JobStatus::from_i16(status).ok_or_else(|| bad_enum("job status", status))?,
        run_at: from_millis(get(row, 4)?)?,
        attempts: get(row, 5)?,
        max_attempts: get(row, 6)?,
        unique_key: get(row, 7)?,
        last_error: get(row, 8)?,
        locked_until: from_millis_opt(get(row, 9)?)?,
        created_at: from_millis(get(row, 10)?)?,
        updated_at: from_millis(get(row, 11)?)?,
    })
}

/// The first row of `statement` converted, or `None` when there is none.
pub(crate) fn optional<T>(
    statement: &mut Statement<'_>,
    params: impl Params,
    convert: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut rows = statement.query(params).db()?;
    match rows.next().db()? {
        Some(row) => convert(row).map(Some),
        None => Ok(None),
    }
}

/// Every row of `statement` converted, failing on the first one that does not
/// convert. `capacity` is a hint (e.g. the query's LIMIT).
pub(crate) fn all<T>(
    statement: &mut Statement<'_>,
    params: impl Params,
    capacity: usize,
    convert: impl Fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut rows = statement.query(params).db()?;
    let mut out = Vec::with_capacity(capacity);
    while let Some(row) = rows.next().db()? {
        out.push(convert(row)?);
    }
    Ok(out)
}

/// `ids` as a JSON array, for `json_each(?)`: one statement (and one cached
/// prepared statement) whatever the number of ids.
pub(crate) fn json_ids(ids: &[Id]) -> String {
    json_integers(ids.iter().copied())
}

/// `texts` as a JSON array of strings, for `json_each(?)`.
pub(crate) fn json_strings(texts: &[String]) -> String {
    let mut json = String::with_capacity(2 + texts.iter().map(|t| t.len() + 3).sum::<usize>());
    json.push('[');
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('"');
        for ch in text.chars() {
            match ch {
                '"' => json.push_str("\\\""),
                '\\' => json.push_str("\\\\"),
                c if (c as u32) < 0x20 => json.push_str(&format!("\\u{:04x}", c as u32)),
                c => json.push(c),
            }
        }
        json.push('"');
    }
    json.push(']');
    json
}

/// Call statuses as a JSON array of their stored integers, for
/// `status IN (SELECT value FROM json_each(?))`.
pub(crate) fn json_statuses(statuses: &[CallStatus]) -> String {
    json_integers(statuses.iter().map(|s| i64::from(s.as_i16())))
}

fn json_integers(values: impl ExactSizeIterator<Item = i64>) -> String {
    let mut json = String::with_capacity(2 + values.len() * 8);
    json.push('[');
    for (i, value) in values.enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&value.to_string());
    }
    json.push(']');
    json
}
