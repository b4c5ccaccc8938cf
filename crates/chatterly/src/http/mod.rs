//! The REST surface: routing, extraction, auth, rendering. Handlers are thin:
//! they read the request, call the domain, and render a view. No SQL, no rules.

mod attachments;
mod auth;
mod calls;
mod conversations;
mod error;
pub mod extract;
mod messages;
mod read_state;
mod search;
mod users;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::cable::{self, Cable};
use crate::domain::Domain;

pub use error::route_not_found;
pub use web::ClientSettings;

#[derive(Clone)]
pub struct AppState {
    pub domain: Arc<Domain>,
    pub cable: Arc<Cable>,
    /// What `GET /api/v1/client-config` tells clients (`--ice-servers`).
    pub client: Arc<ClientSettings>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chatterly API",
        description = "REST API of Chatterly. Compatible with the reference contract \
            (shared/contract/chatterly-api.md); fields marked 'beyond the reference' are additive. \
            The WebSocket gateway (Action Cable protocol) is at /cable."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Register, login, logout (JWT in the Authorization header)"),
        (name = "users"), (name = "conversations"), (name = "messages"), (name = "reactions"),
        (name = "calls"), (name = "health"),
        (name = "read state", description = "Read positions, unread and mention counts, read receipts, delivery, mentions"),
        (name = "search", description = "Full-text search of the caller's messages"),
        (name = "attachments", description = "Files: streamed uploads, attached to messages with attachment_ids, downloads with ranges"),
        (name = "client", description = "What the web client (served at /) and other clients need to know"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(users::search))
        .routes(routes!(users::me))
        .routes(routes!(users::show, users::update))
        .routes(routes!(conversations::list, conversations::create))
        .routes(routes!(conversations::show, conversations::delete))
        .routes(routes!(conversations::add_member))
        .routes(routes!(conversations::remove_member))
        .routes(routes!(messages::history, messages::send))
        .routes(routes!(messages::edit, messages::delete))
        .routes(routes!(messages::react))
        .routes(routes!(messages::unreact))
        .routes(routes!(calls::start))
        .routes(routes!(calls::active))
        .routes(routes!(calls::accept))
        .routes(routes!(calls::decline))
        .routes(routes!(calls::end))
        .routes(routes!(calls::join))
        .routes(routes!(read_state::mark_read))
        .routes(routes!(read_state::mark_delivered))
        .routes(routes!(read_state::receipts))
        .routes(routes!(read_state::mentions))
        .routes(routes!(search::search))
        .routes(routes!(web::client_config))
        .routes(routes!(attachments::content))
        .routes(routes!(attachments::thumbnail))
        // Uploads are streamed and counted against --max-upload-bytes, not
        // the JSON body limit (which every other route keeps).
        .merge(
            OpenApiRouter::new()
                .routes(routes!(attachments::upload))
                .layer(DefaultBodyLimit::disable()),
        )
}

pub struct HttpOptions {
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// Record request counts and latencies (`--metrics-listen` is set).
    pub metrics: bool,
    /// Proxies whose X-Forwarded-For names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

pub fn router(state: AppState, options: &HttpOptions) -> Router {
    let (api, spec) = api_routes().split_for_parts();
    let spec = Arc::new(spec);
    let routes = web::mount(api)
        .route("/cable", axum::routing::get(cable::upgrade))
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let spec = Arc::clone(&spec);
                async move { Json(spec.as_ref().clone()) }
            }),
        );
    // After routing, so the label is the matched route, not the raw URI.
    let routes = if options.metrics {
        routes.route_layer(axum::middleware::from_fn(track))
    } else {
        routes
    };
    routes
        .fallback(|| async { route_not_found() })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({ "status": 405, "error": "Method Not Allowed" })),
            )
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(axum::Extension(extract::TrustedProxies(Arc::new(
            options.trusted_proxies.clone(),
        ))))
        .layer(cors(&options.cors_origins))
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

/// The span every log line of a request carries: its id (`x-request-id`,
/// the client's or a new UUID, echoed in the response), method and path.
/// The path only: a query string can hold a token (`/cable?token=`).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Counts a routed request and its latency by method, matched route and
/// status.
async fn track(
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().as_str().to_owned();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("chatterly_http_requests_total", &labels).increment(1);
    metrics::histogram!("chatterly_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Contract 1.9: the configured origins exactly, credentials allowed, the
/// `Authorization` header exposed, preflights cached two hours.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::HEAD,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true)
        .expose_headers([header::AUTHORIZATION])
        .max_age(Duration::from_secs(7200))
}

/// Health: 200 when the database answers, 500 when it does not (contract 4.1).
#[utoipa::path(get, path = "/up", tag = "health",
    responses((status = 200, description = "Up: `{\"status\": \"up\", \"timestamp\": ...}` with Accept: application/json, else a green page"),
              (status = 500, description = "Down")))]
pub async fn health(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let up = state.domain.store().ping().await.is_ok();
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if wants_json {
        let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let body = json!({ "status": if up { "up" } else { "down" }, "timestamp": timestamp });
        (status, Json(body)).into_response()
    } else {
        let color = if up { "green" } else { "red" };
        (
            status,
            Html(format!(
                "<!DOCTYPE html><html><body style=\"background-color: {color}\"></body></html>"
            )),
        )
            .into_response()
    }
}
