//! The WebSocket gateway at `/cable`, speaking the Action Cable JSON protocol
//! (contract 6) so existing Action Cable clients work unmodified. It owns
//! connections and subscriptions; every rule it applies comes from the domain.

mod calls;
mod connection;
pub mod hub;
pub mod protocol;
mod read_state;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use tracing::Instrument;

use crate::domain::Domain;
use crate::http::extract::QueryParams;
use crate::http::{route_not_found, AppState};
use hub::Hub;

/// The subprotocol Action Cable clients offer and require.
pub const SUBPROTOCOL: &str = "actioncable-v1-json";

/// Gateway limits; every one configurable.
#[derive(Debug, Clone)]
pub struct CableOptions {
    /// Browser origins allowed to open a socket (besides same-origin pages).
    pub allowed_origins: Vec<String>,
    pub ping_interval: Duration,
    /// Largest client frame, in bytes.
    pub max_frame_bytes: usize,
    pub max_subscriptions: usize,
    /// Channel actions per second per socket (0 switches the limit off), and
    /// the burst above it.
    pub actions_per_second: u32,
    pub action_burst: u32,
    /// Frames a socket may have queued before it counts as a slow consumer.
    pub outbox_capacity: usize,
    /// Malformed frames tolerated before the socket is closed.
    pub max_garbage_frames: u32,
}

/// Everything the gateway shares between sockets.
pub struct Cable {
    pub domain: Arc<Domain>,
    pub hub: Arc<Hub>,
    pub options: CableOptions,
}

/// Same-origin pages (the bundled web client) and the configured frontend
/// origins may connect; clients that send no Origin (not browsers) too.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

/// `GET /cable?token=JWT`. A plain GET, or a browser page from a foreign
/// origin, gets 404 (contract 6.1). Authentication happens after the upgrade,
/// so a refused client gets a `disconnect` frame it will not retry (6.2).
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: QueryParams,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let cable = Arc::clone(&state.cable);
    let Ok(upgrade) = upgrade else {
        return route_not_found();
    };
    if !origin_allowed(&headers, &cable.options.allowed_origins) {
        return route_not_found();
    }
    let token = query.string("token").map(str::to_owned);
    // Every line a socket logs at debug level carries its connection id
    // (and, once known, its user). A debug span, not info: an enabled span
    // lives as long as the socket, and at info (the default) it cost each
    // idle socket ~2.1 KiB (9.3 against 7.2 KiB at 10,000 sockets), a
    // quarter of the memory budget; disabled, it costs nothing.
    let span = tracing::debug_span!(
        "socket",
        connection_id = NEXT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        user_id = tracing::field::Empty,
    );
    configure(upgrade, &cable.options)
        .on_upgrade(move |mut socket| {
            async move {
                let identity = match cable.domain.authenticate(token.as_deref()).await {
                    Ok(identity) => identity,
                    Err(_) => return refuse(&mut socket).await,
                };
                let user = match cable.domain.socket_user(&identity).await {
                    Ok(user) => user,
                    Err(_) => return refuse(&mut socket).await,
                };
                tracing::Span::current().record("user_id", identity.user_id);
                tracing::debug!("socket opened");
                connection::run(socket, cable, identity, user).await;
                tracing::debug!("socket closed");
            }
            .instrument(span)
        })
        .into_response()
}

/// Names sockets in logs.
static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn configure(upgrade: WebSocketUpgrade, options: &CableOptions) -> WebSocketUpgrade {
    upgrade
        .protocols([SUBPROTOCOL])
        // tungstenite's default read buffer is 128 KiB per socket; client frames
        // are small, and the buffer grows for the rare large one.
        .read_buffer_size(256)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_frame_size(options.max_frame_bytes)
        .max_message_size(options.max_frame_bytes)
}

async fn refuse(socket: &mut axum::extract::ws::WebSocket) {
    let bye = protocol::disconnect("unauthorized", false);
    let _ = socket.send(Message::Text(bye.into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("host"));
        if let Some(origin) = origin {
            headers.insert(
                header::ORIGIN,
                HeaderValue::from_str(origin).expect("origin"),
            );
        }
        headers
    }

    #[test]
    fn origins_allowed_are_configured_same_origin_or_absent() {
        let allowed = vec!["http://localhost:3000".to_owned()];
        assert!(origin_allowed(
            &headers(Some("http://localhost:3000"), "localhost:3001"),
            &allowed
        ));
        assert!(origin_allowed(
            &headers(Some("http://127.0.0.1:3001"), "127.0.0.1:3001"),
            &allowed
        ));
        assert!(origin_allowed(&headers(None, "127.0.0.1:3001"), &allowed));
        assert!(!origin_allowed(
            &headers(Some("http://evil.test"), "127.0.0.1:3001"),
            &allowed
        ));
    }
}
