//! Calls: `call_sessions` and `call_participants`.
//!
//! # Creating
//!
//! One transaction: the call with its initiator's participant row (one
//! statement), then the job built from the inserted call. The partial unique
//! index `call_sessions_current_key` (one call not over per conversation) is
//! the race-free check: a concurrent create waits for the first to commit and
//! then violates it.
//!
//! # Transitions
//!
//! A transition is one compare-and-set: `UPDATE … WHERE id = $1 AND status =
//! ANY($from)`. Of two racing transitions from the same status, the second
//! waits on the call's row lock, and under READ COMMITTED re-evaluates its
//! WHERE against the row the first committed, which no longer matches: it
//! updates nothing and reads the call to answer `Refused`.
//!
//! A transition that writes the call-log message does so in the same
//! transaction, as a lone send does (`sends::send_in`): `last_seq + 1` under
//! the conversation's row lock, held until commit, so the log message is
//! gap-free and in commit order with the group-committed sends. It takes that
//! lock *before* the call's: `delete_conversation` locks the conversation and
//! then (cascading) the call, and the opposite order would deadlock with it.
//! Transitions without a log message never touch the conversation row.

use chatterly_store::{
    millis, now, CallChange, CallParticipant, CallSession, CallTransition, Id, Inserted, JobFor,
    MessageKind, NewCall, NewMessage, StoreError, StoreResult, CONFLICT_CALL,
};
use sqlx::{PgExecutor, PgPool};

use crate::error::{backend, fk_not_found, violation, Violation};
use crate::jobs;
use crate::rows::{call_columns, convert_all, participant_columns, CallRow, ParticipantRow};
use crate::sends;

/// The content of a call-log message (contract 5.7).
const LOG_CONTENT: &str = "call";

pub(crate) async fn create(
    pool: &PgPool,
    new: NewCall,
    job: JobFor<CallSession>,
) -> StoreResult<CallSession> {
    let now = now();
    let mut tx = pool.begin().await.map_err(backend)?;
    let row: CallRow = sqlx::query_as(concat!(
        "WITH call AS (
             INSERT INTO call_sessions (conversation_id, initiator_id, kind, status,
                                        created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             RETURNING ",
        call_columns!(),
        "
         ), initiator AS (
             INSERT INTO call_participants (call_session_id, user_id, joined_at)
             SELECT id, initiator_id, created_at FROM call
         )
         SELECT ",
        call_columns!(),
        " FROM call"
    ))
    .bind(new.conversation_id)
    .bind(new.initiator_id)
    .bind(new.kind.as_i16())
    .bind(new.status.as_i16())
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match violation(&e) {
        Some(Violation::Unique(Some("call_sessions_current_key"))) => {
            StoreError::Conflict(CONFLICT_CALL)
        }
        // The conversation (or the initiator) does not exist.
        _ => fk_not_found(e),
    })?;
    let call = CallSession::try_from(row)?;
    // A job whose unique_key is already held is not written, as with
    // enqueue_job: the job holding the key does the same work.
    jobs::insert(&mut *tx, &job(&call), now).await?;
    tx.commit().await.map_err(backend)?;
    Ok(call)
}

pub(crate) async fn by_id<'e, E: PgExecutor<'e>>(
    executor: E,
    id: Id,
) -> StoreResult<Option<CallSession>> {
    let row: Option<CallRow> = sqlx::query_as(concat!(
        "SELECT ",
        call_columns!(),
        " FROM call_sessions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await
    .map_err(backend)?;
    row.map(CallSession::try_from).transpose()
}

pub(crate) async fn by_ids(pool: &PgPool, ids: &[Id]) -> StoreResult<Vec<CallSession>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<CallRow> = sqlx::query_as(concat!(
        "SELECT ",
        call_columns!(),
        " FROM call_sessions WHERE id = ANY($1) ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    convert_all(rows)
}

pub(crate) async fn current(
    pool: &PgPool,
    conversation_id: Id,
) -> StoreResult<Option<CallSession>> {
    // The predicate of call_sessions_current_key, so that index answers.
    let row: Option<CallRow> = sqlx::query_as(concat!(
        "SELECT ",
        call_columns!(),
        " FROM call_sessions WHERE conversation_id = $1 AND status IN (0, 1, 2)"
    ))
    .bind(conversation_id)
    .fetch_optional(pool)
    .await
    .map_err(backend)?;
    row.map(CallSession::try_from).transpose()
}

pub(crate) async fn participants(pool: &PgPool, call_id: Id) -> StoreResult<Vec<CallParticipant>> {
    let rows: Vec<ParticipantRow> = sqlx::query_as(concat!(
        "SELECT ",
        participant_columns!(),
        " FROM call_participants WHERE call_session_id = $1 ORDER BY joined_at, user_id"
    ))
    .bind(call_id)
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    Ok(rows.into_iter().map(CallParticipant::from).collect())
}

pub(crate) async fn transition(pool: &PgPool, t: CallTransition) -> StoreResult<CallChange> {
    let now = millis(t.now);
    let mut tx = pool.begin().await.map_err(backend)?;

    if t.log {
        // The conversation's row lock first (see the module documentation).
        // A call's conversation never changes, so looking it up unlocked is
        // safe. No row: no such call (or its conversation was deleted, and
        // the call with it).
        let locked: Option<Id> = sqlx::query_scalar(
            "SELECT c.id FROM conversations c
             WHERE c.id = (SELECT conversation_id FROM call_sessions WHERE id = $1)
             FOR NO KEY UPDATE OF c",
        )
        .bind(t.call_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if locked.is_none() {
            tx.rollback().await.map_err(backend)?;
            return Err(StoreError::NotFound);
        }
    }

    // The compare-and-set. On the right-hand side of SET columns hold their
    // old values: ended_at is stamped if the call had started or starts now.
    let from: Vec<i16> = t.from.iter().map(|s| s.as_i16()).collect();
    let applied: Option<CallRow> = sqlx::query_as(concat!(
        "UPDATE call_sessions
         SET status = $2,
             started_at = CASE WHEN $3 THEN COALESCE(started_at, $5) ELSE started_at END,
             ended_at = CASE WHEN $4 AND (started_at IS NOT NULL OR $3) THEN $5
                             ELSE ended_at END,
             updated_at = $5
         WHERE id = $1 AND status = ANY($6)
         RETURNING ",
        call_columns!()
    ))
    .bind(t.call_id)
    .bind(t.to.as_i16())
    .bind(t.start)
    .bind(t.end)
    .bind(now)
    .bind(&from)
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;

    let Some(row) = applied else {
        // Nothing written: release the locks at once rather than when the
        // connection is next used.
        let call = by_id(&mut *tx, t.call_id).await?;
        tx.rollback().await.map_err(backend)?;
        return call.map(CallChange::Refused).ok_or(StoreError::NotFound);
    };
    let call = CallSession::try_from(row)?;

    if let Some(user_id) = t.participant {
        sqlx::query(
            "INSERT INTO call_participants (call_session_id, user_id, joined_at)
             VALUES ($1, $2, $3)
             ON CONFLICT (call_session_id, user_id) DO NOTHING",
        )
        .bind(call.id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(fk_not_found)?;
    }

    let log = if t.log {
        let inserted = sends::send_in(
            &mut *tx,
            &NewMessage {
                attachment_ids: Vec::new(),
                conversation_id: call.conversation_id,
                user_id: call.initiator_id,
                content: LOG_CONTENT.to_string(),
                kind: MessageKind::Call,
                parent_message_id: None,
                call_session_id: Some(call.id),
                client_message_id: None,
                mentions: Default::default(),
            },
            now,
        )
        .await?;
        match inserted {
            Inserted::Created(message) => Some(message),
            Inserted::Existing(_) => {
                return Err(StoreError::Backend(
                    "a call-log message without client id was found existing".into(),
                ))
            }
        }
    } else {
        None
    };

    tx.commit().await.map_err(backend)?;
    Ok(CallChange::Applied { call, log })
}
