//! The one place where a [`DomainError`] becomes an HTTP response with the
//! contract's status code and JSON body (contract 1.8).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::DomainError;

impl IntoResponse for DomainError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            DomainError::Unauthenticated(message) => {
                (StatusCode::UNAUTHORIZED, json!({ "error": message }))
            }
            DomainError::Forbidden => (StatusCode::FORBIDDEN, json!({ "error": "Not authorized" })),
            DomainError::NotFound => (StatusCode::NOT_FOUND, json!({ "error": "Not found" })),
            DomainError::Invalid(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "errors": errors }),
            ),
            DomainError::Unprocessable(message) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": message }),
            ),
            DomainError::BadRequest(None) => (
                StatusCode::BAD_REQUEST,
                json!({ "status": 400, "error": "Bad Request" }),
            ),
            DomainError::BadRequest(Some(message)) => (
                StatusCode::BAD_REQUEST,
                json!({ "status": 400, "error": message }),
            ),
            DomainError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "status": 413, "error": "Request body is too large" }),
            ),
            DomainError::FileTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": format!("File is too large (limit {limit} bytes)") }),
            ),
            DomainError::QuotaExceeded { quota } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": format!("Upload quota exceeded (quota {quota} bytes)") }),
            ),
            DomainError::RangeNotSatisfiable { size } => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(axum::http::header::CONTENT_RANGE, format!("bytes */{size}"))],
                    axum::Json(json!({ "error": "Range Not Satisfiable" })),
                )
                    .into_response()
            }
            DomainError::RateLimited(message) => {
                (StatusCode::TOO_MANY_REQUESTS, json!({ "error": message }))
            }
            DomainError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "status": 500, "error": "Internal Server Error" }),
                )
            }
        };
        (status, axum::Json(body)).into_response()
    }
}

/// The contract's body for an unknown route.
pub fn route_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "status": 404, "error": "Not Found" })),
    )
        .into_response()
}
