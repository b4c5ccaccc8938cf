//! `/api/v1/users` (contract 4.2).

use axum::extract::State;
use axum::Json;
use utoipa::ToSchema;

use super::extract::{Auth, Ids, JsonBody, QueryParams};
use super::AppState;
use crate::domain::{DomainResult, ProfileChanges};
use crate::views::{UserPublic, UserWithEmail};

/// Search users by username or display name (case-insensitive substring).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    security(("bearer" = [])),
    params(("search" = Option<String>, Query, description = "Substring of username or display name")),
    responses((status = 200, description = "Bare array, ordered by username, capped by --user-search-limit", body = [UserPublic]),
              (status = 401, description = "Not authenticated")))]
pub async fn search(
    State(state): State<AppState>,
    _auth: Auth,
    query: QueryParams,
) -> DomainResult<Json<Vec<UserPublic>>> {
    Ok(Json(
        state.domain.search_users(query.string("search")).await?,
    ))
}

/// The caller's own profile.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "Bare UserWithEmail", body = UserWithEmail),
              (status = 401, description = "Not authenticated")))]
pub async fn me(
    State(state): State<AppState>,
    Auth(identity): Auth,
) -> DomainResult<Json<UserWithEmail>> {
    Ok(Json(state.domain.me(&identity).await?))
}

/// A public profile.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "Bare UserPublic", body = UserPublic),
              (status = 404, description = "No such user")))]
pub async fn show(
    State(state): State<AppState>,
    _auth: Auth,
    ids: Ids,
) -> DomainResult<Json<UserPublic>> {
    Ok(Json(state.domain.show_user(ids.one()?).await?))
}

/// Profile fields that may change (flat, or under `user`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProfileRequest {
    display_name: Option<String>,
    avatar_url: Option<String>,
    /// Beyond the reference: `false` stops sending read receipts, and hides
    /// other members' from this user.
    read_receipts: Option<bool>,
}

/// Edit one's own profile (PATCH or PUT, contract 4.2).
#[utoipa::path(method(patch, put), path = "/api/v1/users/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id (must be the caller)")),
    request_body = ProfileRequest,
    responses((status = 200, description = "Bare UserWithEmail", body = UserWithEmail),
              (status = 400, description = "No field present"),
              (status = 403, description = "Not the caller's profile"),
              (status = 404, description = "No such user"),
              (status = 422, description = "Validation failed")))]
pub async fn update(
    State(state): State<AppState>,
    Auth(identity): Auth,
    ids: Ids,
    body: JsonBody,
) -> DomainResult<Json<UserWithEmail>> {
    let id = ids.one()?;
    let params = body.wrapped("user", &["display_name", "avatar_url", "read_receipts"]);
    let changes = match params {
        Ok(params) => ProfileChanges {
            display_name: params.nullable_string("display_name")?,
            avatar_url: params.nullable_string("avatar_url")?,
            read_receipts: params.boolean("read_receipts")?,
        },
        // The domain answers 404/403 before complaining about the body.
        Err(_) => ProfileChanges::default(),
    };
    Ok(Json(
        state.domain.update_profile(&identity, id, changes).await?,
    ))
}
