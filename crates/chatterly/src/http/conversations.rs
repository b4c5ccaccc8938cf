//! `/api/v1/conversations` and memberships (contract 4.3, 4.4).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::extract::{Auth, Ids, JsonBody, QueryParams};
use super::AppState;
use crate::domain::{DomainError, DomainResult, NewConversationRequest};
use crate::views::ConversationView;

#[derive(Serialize, ToSchema)]
pub struct ConversationBody {
    data: ConversationView,
}

/// The schema of the list; the answer is rendered by
/// [`crate::views::inbox::ConversationList`] in the same shape.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ConversationListBody {
    data: Vec<ConversationView>,
    /// Only on a page (`limit` or `cursor` given): the `cursor` of the next
    /// page, null on the last one.
    next_cursor: Option<String>,
}

/// Conversation create body: `name`, `description`, `conversation_type` flat
/// or under `conversation`; `member_ids` always top-level.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreateConversationRequest {
    /// `channel` (default), `group` or `direct`.
    conversation_type: Option<String>,
    name: Option<String>,
    description: Option<String>,
    member_ids: Vec<i64>,
}

/// Body of add member.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AddMemberRequest {
    user_id: i64,
}

/// The caller's conversations, most recent activity first: all of them, or
/// with `limit` or `cursor` a page, with `next_cursor` beside `data`.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations",
    security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "Page size (default 50, clamped to 1..=--max-page); without limit and cursor, the whole list"),
           ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "The list; a page carries next_cursor (null on the last page)", body = ConversationListBody),
              (status = 400, description = "limit is not an integer or cursor is not a list cursor")))]
pub async fn list(
    State(state): State<AppState>,
    Auth(identity): Auth,
    query: QueryParams,
) -> DomainResult<Response> {
    let limit = query.integer("limit")?;
    let cursor = query.string("cursor").filter(|c| !c.trim().is_empty());
    if limit.is_none() && cursor.is_none() {
        let list = state.domain.list_conversations(&identity).await?;
        // Sized up front, a long list is serialized without the buffer
        // growing (and copying) a dozen times.
        let capacity = list.json_len_hint();
        return json_response(&Data { data: &list }, capacity);
    }
    let (list, next_cursor) = state
        .domain
        .list_conversations_page(&identity, limit, cursor)
        .await?;
    let capacity = list.json_len_hint() + 64;
    json_response(
        &Page {
            data: &list,
            next_cursor,
        },
        capacity,
    )
}

/// One conversation with its members.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations",
    security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ConversationBody),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such conversation")))]
pub async fn show(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Response> {
    let list = state
        .domain
        .show_conversation(&identity, ids.one()?)
        .await?;
    let row = list
        .first()
        .ok_or_else(|| DomainError::Internal("showing a conversation found no row".into()))?;
    let body = Data { data: row };
    json_response(&body, list.json_len_hint())
}

/// `{"data": …}` around a borrowed body: the shapes of [`ConversationBody`]
/// and [`ConversationListBody`] (the OpenAPI schema) without owning views.
#[derive(Serialize)]
struct Data<T> {
    data: T,
}

#[derive(Serialize)]
struct Page<T> {
    data: T,
    next_cursor: Option<String>,
}

fn json_response(body: &impl Serialize, capacity: usize) -> DomainResult<Response> {
    let mut bytes = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut bytes, body)
        .map_err(|e| DomainError::Internal(format!("rendering conversations: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// Create a channel, group or direct conversation; the caller becomes admin.
/// A direct conversation that already exists for the pair is returned (200).
#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations",
    security(("bearer" = [])),
    request_body = CreateConversationRequest,
    responses((status = 201, description = "Created", body = ConversationBody),
              (status = 200, description = "The existing direct conversation of this pair", body = ConversationBody),
              (status = 400, description = "No conversation fields at all"),
              (status = 422, description = "Validation failed")))]
pub async fn create(
    State(state): State<AppState>,
    Auth(identity): Auth,
    body: JsonBody,
) -> DomainResult<(StatusCode, Json<ConversationBody>)> {
    let params = body.wrapped(
        "conversation",
        &["name", "description", "conversation_type"],
    )?;
    let request = NewConversationRequest {
        conversation_type: params.string("conversation_type")?,
        name: params.string("name")?,
        description: params.string("description")?,
        member_ids: body.top_level().ids("member_ids")?,
    };
    let (data, created) = state.domain.create_conversation(&identity, request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ConversationBody { data })))
}

/// Delete a conversation with everything in it (creator or admin).
#[utoipa::path(delete, path = "/api/v1/conversations/{id}", tag = "conversations",
    security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "`{\"message\": \"Conversation deleted\"}`"),
              (status = 403, description = "Neither creator nor admin"),
              (status = 404, description = "No such conversation")))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<Value>> {
    state
        .domain
        .delete_conversation(&identity, ids.one()?)
        .await?;
    Ok(Json(json!({ "message": "Conversation deleted" })))
}

/// Add a member (admins only).
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/memberships", tag = "conversations",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path)),
    request_body = AddMemberRequest,
    responses((status = 201, description = "`{\"message\": \"Member added\"}`"),
              (status = 403, description = "Caller is not an admin"),
              (status = 404, description = "Caller not a member, or unknown user"),
              (status = 422, description = "Already a member")))]
pub async fn add_member(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
    body: JsonBody,
) -> DomainResult<(StatusCode, Json<Value>)> {
    let user_id = body.top_level().id("user_id")?;
    state
        .domain
        .add_member(&identity, ids.one()?, user_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "message": "Member added" })),
    ))
}

/// Remove a member (admins), or leave (anyone, with their own id).
#[utoipa::path(delete, path = "/api/v1/conversations/{conversation_id}/memberships/{user_id}", tag = "conversations",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path), ("user_id" = i64, Path, description = "The user to remove")),
    responses((status = 200, description = "`{\"message\": \"Left conversation\"}`"),
              (status = 403, description = "Removing someone else without being admin"),
              (status = 404, description = "Caller or target not a member")))]
pub async fn remove_member(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<Value>> {
    let (conversation_id, user_id) = ids.two()?;
    state
        .domain
        .remove_member(&identity, conversation_id, user_id)
        .await?;
    Ok(Json(json!({ "message": "Left conversation" })))
}
