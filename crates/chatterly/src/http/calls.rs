//! Calls (contract 4.7), nested under a conversation. The reference client
//! drives calls over the WebSocket (CallChannel); these routes make the same
//! transitions and send the same events.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::extract::{Auth, Ids, JsonBody};
use super::AppState;
use crate::domain::{DomainError, DomainResult};
use crate::views::{CallSessionView, CallWithParticipantsView};

#[derive(Serialize, ToSchema)]
pub struct CallBody {
    data: CallSessionView,
}

/// Start body: the `call` wrapper is mandatory (contract 1.6).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StartCallRequest {
    call: StartCallParams,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StartCallParams {
    /// `audio` (default) or `video`.
    call_type: Option<String>,
}

/// Start a call: every other member's CallChannel gets `incoming_call`; it is
/// `missed` if nobody answers within `--call-ring-timeout` seconds.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/calls", tag = "calls",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path)),
    request_body = StartCallRequest,
    responses((status = 201, description = "Ringing", body = CallBody),
              (status = 400, description = "The `call` wrapper is missing or empty"),
              (status = 404, description = "Not a member"),
              (status = 422, description = "Unknown call_type, or a call is already in progress here")))]
pub async fn start(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
    body: JsonBody,
) -> DomainResult<(StatusCode, Json<CallBody>)> {
    let call_type = match body.wrapper("call") {
        Some(params) if !params.0.is_empty() => params.string("call_type"),
        _ => Err(DomainError::BadRequest(None)),
    };
    let call = state
        .domain
        .start_call(&identity, ids.one()?, call_type)
        .await?;
    Ok((StatusCode::CREATED, Json(CallBody { data: call })))
}

/// The conversation's active call with its participants (ringing calls are
/// not returned).
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/calls/active", tag = "calls",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path)),
    responses((status = 200, description = "Bare CallSessionWithParticipants", body = CallWithParticipantsView),
              (status = 404, description = "Not a member, or no active call")))]
pub async fn active(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<CallWithParticipantsView>> {
    Ok(Json(state.domain.active_call(&identity, ids.one()?).await?))
}

/// Accept a ringing call (members other than the initiator); the initiator's
/// CallChannel gets `call_accepted`.
#[utoipa::path(put, path = "/api/v1/conversations/{conversation_id}/calls/{id}/accept", tag = "calls",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, description = "Bare CallSession, now active", body = CallSessionView),
              (status = 403, description = "The initiator cannot accept"),
              (status = 404, description = "Not a member, or no such call here"),
              (status = 422, description = "`{\"error\": \"Call is no longer ringing\"}`")))]
pub async fn accept(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<CallSessionView>> {
    let (conversation_id, call_id) = ids.two()?;
    Ok(Json(
        state
            .domain
            .accept_call(&identity, Some(conversation_id), call_id)
            .await?,
    ))
}

/// Decline a ringing call; the initiator gets `call_declined`, every other
/// ringing device `call_ended`, and the call log is written.
#[utoipa::path(put, path = "/api/v1/conversations/{conversation_id}/calls/{id}/decline", tag = "calls",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, description = "Bare CallSession, now declined", body = CallSessionView),
              (status = 403, description = "The initiator cannot decline"),
              (status = 404, description = "Not a member, or no such call here"),
              (status = 422, description = "`{\"error\": \"Call is no longer ringing\"}`")))]
pub async fn decline(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<CallSessionView>> {
    let (conversation_id, call_id) = ids.two()?;
    Ok(Json(
        state
            .domain
            .decline_call(&identity, Some(conversation_id), call_id)
            .await?,
    ))
}

/// End (or, while ringing, cancel) a call: initiator only. Everyone else
/// gets `call_ended`; the call log is written.
#[utoipa::path(delete, path = "/api/v1/conversations/{conversation_id}/calls/{id}", tag = "calls",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, description = "`{\"message\": \"Call ended\"}`"),
              (status = 403, description = "Not the initiator"),
              (status = 404, description = "Not a member, or no such call here"),
              (status = 422, description = "`{\"error\": \"Call has already ended\"}` (ended, declined or missed)")))]
pub async fn end(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<Value>> {
    let (conversation_id, call_id) = ids.two()?;
    state
        .domain
        .end_call_as_initiator(&identity, conversation_id, call_id)
        .await?;
    Ok(Json(json!({ "message": "Call ended" })))
}

/// Beyond the reference: join an active call late (group calls). The other
/// participants get `participant_joined`; joining twice is a no-op.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/calls/{id}/join", tag = "calls",
    security(("bearer" = [])),
    params(("conversation_id" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, description = "Bare CallSessionWithParticipants", body = CallWithParticipantsView),
              (status = 404, description = "Not a member, or no such call here"),
              (status = 422, description = "`{\"error\": \"Call is not active\"}`")))]
pub async fn join(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
) -> DomainResult<Json<CallWithParticipantsView>> {
    let (conversation_id, call_id) = ids.two()?;
    Ok(Json(
        state
            .domain
            .join_call(&identity, Some(conversation_id), call_id)
            .await?,
    ))
}
