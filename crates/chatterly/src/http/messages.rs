//! Messages and reactions (contract 4.5, 4.6).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::extract::{Auth, Ids, JsonBody, QueryParams};
use super::AppState;
use crate::domain::DomainResult;
use crate::domain::{HistoryQuery, SendMessage};
use crate::views::{MessagePage, MessageView, ReactionView};

#[derive(Serialize, ToSchema)]
pub struct MessagePageBody {
    data: MessagePage,
}

#[derive(Serialize, ToSchema)]
pub struct MessageBody {
    data: MessageView,
}

/// Send body: flat or under `message`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SendMessageRequest {
    content: String,
    /// `text` (default), `image` or `file`.
    message_type: Option<String>,
    /// Thread parent; must be a message of the same conversation.
    parent_message_id: Option<i64>,
    /// Beyond the reference: idempotency key (≤ 64 chars). A retry with the same
    /// key returns the original message (200) instead of sending twice.
    client_message_id: Option<String>,
    /// Beyond the reference: uploads of the sender (`POST /api/v1/attachments`)
    /// to attach, at most `--max-attachments-per-message` (10). `content` may
    /// then be empty; without `message_type` the message is `image` when
    /// every file is a raster image, else `file` (`text` is refused).
    attachment_ids: Option<Vec<i64>>,
}

/// Edit body: flat or under `message`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditMessageRequest {
    content: String,
}

/// Reaction body: flat or under `reaction`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReactionRequest {
    message_id: i64,
    emoji: String,
}

/// History, 50 per page by default. Without `after_seq`: the newest messages
/// older than `cursor`, oldest first, `next_cursor` the oldest id of a full
/// page. With `after_seq` (catch-up after a reconnect): the oldest messages
/// with a higher `seq`, oldest first, `next_cursor` the newest `seq` of a full
/// page (pass it as the next `after_seq`).
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/messages", tag = "messages",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path),
           ("cursor" = Option<i64>, Query, description = "Only messages with id < cursor"),
           ("after_seq" = Option<i64>, Query, description = "Only messages with seq > after_seq (catch-up)"),
           ("limit" = Option<i64>, Query, description = "Page size, default 50, clamped to 1..=--max-page")),
    responses((status = 200, body = MessagePageBody),
              (status = 400, description = "A parameter is not an integer"),
              (status = 404, description = "Not a member")))]
pub async fn history(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
    query: QueryParams,
) -> DomainResult<Json<MessagePageBody>> {
    let query = HistoryQuery {
        cursor: query.integer("cursor")?,
        after_seq: query.integer("after_seq")?,
        limit: query.integer("limit")?,
    };
    Ok(Json(MessagePageBody {
        data: state.domain.history(&identity, ids.one()?, query).await?,
    }))
}

/// Send a message.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/messages", tag = "messages",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path)),
    request_body = SendMessageRequest,
    responses((status = 201, description = "Sent", body = MessageBody),
              (status = 200, description = "Idempotent retry: the message sent earlier with this client_message_id", body = MessageBody),
              (status = 404, description = "Not a member"),
              (status = 422, description = "Validation failed"),
              (status = 429, description = "Sending too fast")))]
pub async fn send(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
    body: JsonBody,
) -> DomainResult<(StatusCode, Json<MessageBody>)> {
    let conversation_id = ids.one()?;
    let params = body.wrapped(
        "message",
        &[
            "content",
            "message_type",
            "parent_message_id",
            "client_message_id",
            "attachment_ids",
        ],
    )?;
    let request = SendMessage {
        content: params.string("content")?,
        message_type: params.string("message_type")?,
        parent_message_id: params.id("parent_message_id")?,
        client_message_id: params.string("client_message_id")?,
        attachment_ids: params.ids("attachment_ids")?,
    };
    let sent = state
        .domain
        .send_message(&identity, conversation_id, request)
        .await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(MessageBody { data: sent.message })))
}

/// Edit one's own message (PATCH or PUT, contract 4.5).
#[utoipa::path(method(patch, put), path = "/api/v1/conversations/{conversation_id}/messages/{id}", tag = "messages",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path), ("id" = i64, Path)),
    request_body = EditMessageRequest,
    responses((status = 200, description = "Bare Message", body = MessageView),
              (status = 403, description = "Not the author"),
              (status = 404, description = "Not a member, or no such message in this conversation"),
              (status = 422, description = "Validation failed")))]
pub async fn edit(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
    body: JsonBody,
) -> DomainResult<Json<MessageView>> {
    let (conversation_id, message_id) = ids.two()?;
    let content = body.wrapped("message", &["content"])?.string("content")?;
    Ok(Json(
        state
            .domain
            .edit_message(&identity, conversation_id, message_id, content)
            .await?,
    ))
}

/// Soft-delete a message (author, or conversation admin).
#[utoipa::path(delete, path = "/api/v1/conversations/{conversation_id}/messages/{id}", tag = "messages",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, description = "`{\"message\": \"Message deleted\"}`"),
              (status = 403, description = "Neither author nor admin"),
              (status = 404, description = "Not a member, or no such message in this conversation")))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<Value>> {
    let (conversation_id, message_id) = ids.two()?;
    state
        .domain
        .delete_message(&identity, conversation_id, message_id)
        .await?;
    Ok(Json(json!({ "message": "Message deleted" })))
}

/// React to a message (members of its conversation).
#[utoipa::path(post, path = "/api/v1/reactions", tag = "reactions",
    security(("bearer" = [])),
    request_body = ReactionRequest,
    responses((status = 201, description = "Bare Reaction", body = ReactionView),
              (status = 404, description = "No such message, or not a member of its conversation"),
              (status = 422, description = "Validation failed, or already reacted with this emoji")))]
pub async fn react(
    State(state): State<AppState>,
    Auth(identity): Auth,
    body: JsonBody,
) -> DomainResult<(StatusCode, Json<ReactionView>)> {
    let params = body.wrapped("reaction", &["message_id", "emoji"])?;
    let reaction = state
        .domain
        .add_reaction(&identity, params.id("message_id")?, params.string("emoji")?)
        .await?;
    Ok((StatusCode::CREATED, Json(reaction)))
}

/// Remove one's own reaction.
#[utoipa::path(delete, path = "/api/v1/reactions/{id}", tag = "reactions",
    security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "`{\"message\": \"Reaction removed\"}`"),
              (status = 403, description = "Not the caller's reaction"),
              (status = 404, description = "No such reaction")))]
pub async fn unreact(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<Value>> {
    state.domain.remove_reaction(&identity, ids.one()?).await?;
    Ok(Json(json!({ "message": "Reaction removed" })))
}
