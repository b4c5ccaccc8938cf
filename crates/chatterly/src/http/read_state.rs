//! Read state and mentions (beyond the reference): marking read and
//! delivered, read receipts, the mentions list.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{Auth, Ids, JsonBody, QueryParams};
use super::AppState;
use crate::domain::DomainResult;
use crate::views::{MessagePage, ReadStateView, ReceiptView};

#[derive(Serialize, ToSchema)]
pub struct ReadStateBody {
    data: ReadStateView,
}

#[derive(Serialize, ToSchema)]
pub struct ReceiptsBody {
    data: Vec<ReceiptView>,
}

#[derive(Serialize, ToSchema)]
pub struct MentionsBody {
    /// Newest first; `next_cursor` is the id of the oldest message of a full
    /// page (pass it as `cursor`), else null.
    data: MessagePage,
}

/// Mark body (optional).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MarkRequest {
    /// Up to which `seq` (0 ..= the conversation's `last_seq`); absent means
    /// the newest message.
    seq: Option<i64>,
}

/// Mark the conversation read up to `seq`. The position never moves back
/// (a lower `seq` changes nothing) and marking is idempotent. The caller's
/// other devices get `conversation_read` on their UserChannel; other members
/// who take receipts get `read_receipt` (unless the caller has receipts off).
#[utoipa::path(method(put, post), path = "/api/v1/conversations/{conversation_id}/read", tag = "read state",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path)),
    request_body = MarkRequest,
    responses((status = 200, description = "The caller's read state after the mark", body = ReadStateBody),
              (status = 400, description = "Malformed JSON"),
              (status = 404, description = "Not a member"),
              (status = 422, description = "seq is not an integer, is negative, or is beyond the conversation's last seq")))]
pub async fn mark_read(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
    body: JsonBody,
) -> DomainResult<Json<ReadStateBody>> {
    let seq = body.top_level().integer("seq")?;
    Ok(Json(ReadStateBody {
        data: state.domain.mark_read(&identity, ids.one()?, seq).await?,
    }))
}

/// The caller's devices received every message up to `seq` (for delivery
/// ticks in direct conversations: the other member gets `message_delivered`).
/// Never moves back; marking read implies it.
#[utoipa::path(method(put, post), path = "/api/v1/conversations/{conversation_id}/delivered", tag = "read state",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path)),
    request_body = MarkRequest,
    responses((status = 200, description = "The caller's read state after the mark", body = ReadStateBody),
              (status = 400, description = "Malformed JSON"),
              (status = 404, description = "Not a member"),
              (status = 422, description = "seq is not an integer, is negative, or is beyond the conversation's last seq")))]
pub async fn mark_delivered(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
    body: JsonBody,
) -> DomainResult<Json<ReadStateBody>> {
    let seq = body.top_level().integer("seq")?;
    Ok(Json(ReadStateBody {
        data: state
            .domain
            .mark_delivered(&identity, ids.one()?, seq)
            .await?,
    }))
}

/// Every member's read and delivered positions, by user id. A member's
/// `last_read_seq` and `read_at` are null unless both they and the caller
/// have read receipts on (the caller's own always show).
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/receipts", tag = "read state",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path)),
    responses((status = 200, body = ReceiptsBody),
              (status = 404, description = "Not a member")))]
pub async fn receipts(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<ReceiptsBody>> {
    Ok(Json(ReceiptsBody {
        data: state.domain.receipts(&identity, ids.one()?).await?,
    }))
}

/// Messages that mention the caller (`@username`, or an admin's `@channel` /
/// `@here`), newest first, in conversations the caller is a member of.
#[utoipa::path(get, path = "/api/v1/mentions", tag = "read state",
    security(("bearer" = [])),
    params(("cursor" = Option<i64>, Query, description = "Only messages with id < cursor"),
           ("limit" = Option<i64>, Query, description = "Page size, default 50, clamped to 1..=--max-page")),
    responses((status = 200, body = MentionsBody),
              (status = 400, description = "A parameter is not an integer")))]
pub async fn mentions(
    State(state): State<AppState>,
    Auth(identity): Auth,
    query: QueryParams,
) -> DomainResult<Json<MentionsBody>> {
    let cursor = query.integer("cursor")?;
    let limit = query.integer("limit")?;
    Ok(Json(MentionsBody {
        data: state.domain.mentions(&identity, cursor, limit).await?,
    }))
}
