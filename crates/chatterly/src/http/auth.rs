//! `/auth/register`, `/auth/login`, `/auth/logout` (contract 2). The token goes
//! only in the `Authorization: Bearer` response header.

use axum::extract::State;
use axum::http::{header::AUTHORIZATION, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::extract::{BearerToken, ClientIp, JsonBody};
use super::AppState;
use crate::domain::{auth::NO_TOKEN, DomainError, DomainResult, Login, Registration};
use crate::views::UserWithEmail;

#[derive(Serialize, ToSchema)]
pub struct RegisteredBody {
    #[schema(example = "Registered successfully")]
    message: &'static str,
    user: UserWithEmail,
}

#[derive(Serialize, ToSchema)]
pub struct LoginBody {
    user: UserWithEmail,
}

/// Request body of register (the `user` wrapper is mandatory).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RegisterRequest {
    user: RegisterFields,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RegisterFields {
    email: String,
    password: String,
    password_confirmation: Option<String>,
    username: String,
    display_name: Option<String>,
}

/// Request body of login (the `user` wrapper is mandatory).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoginRequest {
    user: LoginFields,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoginFields {
    email: String,
    password: String,
}

fn with_token(status: StatusCode, token: &str, body: impl Serialize) -> DomainResult<Response> {
    let header = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| DomainError::Internal(format!("token header: {e}")))?;
    Ok((status, [(AUTHORIZATION, header)], Json(body)).into_response())
}

/// Create an account and sign in.
#[utoipa::path(post, path = "/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered; the JWT is in the Authorization response header", body = RegisteredBody),
        (status = 422, description = "Validation failed: `{\"errors\": [...]}`"),
        (status = 429, description = "Too many attempts from this address"),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: JsonBody,
) -> DomainResult<Response> {
    let form = match body.wrapper("user") {
        Some(user) => Registration {
            email: user.string("email")?,
            password: user.string("password")?,
            password_confirmation: user.string("password_confirmation")?,
            username: user.string("username")?,
            display_name: user.string("display_name")?,
        },
        // Without the wrapper every field is blank (contract 2.1).
        None => Registration::default(),
    };
    let (user, token) = state.domain.register(ip, form).await?;
    with_token(
        StatusCode::CREATED,
        &token,
        RegisteredBody {
            message: "Registered successfully",
            user,
        },
    )
}

/// Sign in.
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the JWT is in the Authorization response header", body = LoginBody),
        (status = 401, description = "`Invalid email or password.`, `Your account is locked.`, or no credentials"),
        (status = 429, description = "Too many attempts from this address"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: JsonBody,
) -> DomainResult<Response> {
    let Some(user) = body.wrapper("user") else {
        return Err(DomainError::Unauthenticated(NO_TOKEN.into()));
    };
    // Credentials of the wrong type are no credentials.
    let form = Login {
        email: user.string("email").ok().flatten(),
        password: user.string("password").ok().flatten(),
    };
    let (user, token) = state.domain.login(ip, form).await?;
    with_token(StatusCode::OK, &token, LoginBody { user })
}

/// Revoke the presented token. Always 200, also for a missing or invalid token.
#[utoipa::path(delete, path = "/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "`{\"message\": \"Logged out successfully\"}`")))]
pub async fn logout(
    State(state): State<AppState>,
    BearerToken(token): BearerToken,
) -> DomainResult<Response> {
    state.domain.logout(token.as_deref()).await?;
    Ok(Json(json!({ "message": "Logged out successfully" })).into_response())
}
