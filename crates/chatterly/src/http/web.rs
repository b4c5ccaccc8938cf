//! The web client (`crates/chatterly/web/`), embedded in the binary at build
//! time and served from the same origin as the API it uses.
//!
//! - `/` and the client's own routes (`/c/{id}`) answer `index.html`, which
//!   names the other files under `/assets/{version}/`, where `version` is a
//!   hash of every embedded file. So those are cached for a year
//!   (`immutable`); `index.html` is revalidated on each load (`no-cache` with
//!   an ETag), and a new build is picked up at the next reload.
//! - Every answer carries `X-Content-Type-Options: nosniff`, a strict
//!   Content-Security-Policy (scripts, styles and connections from this origin
//!   only; WebSocket included) and `Referrer-Policy: no-referrer`.
//! - `GET /api/v1/client-config` tells signed-in clients the ICE servers
//!   (`--ice-servers`, kept in [`ClientSettings`] on the app state) and the
//!   limits they should respect.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Auth;
use super::{route_not_found, AppState};

/// One embedded file of `web/`.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)),
        }),*]
    };
}

/// Every file the page loads (a test checks this list against `web/`).
const ASSETS: &[Asset] = assets![
    "app.css",
    "icon.svg",
    "js/actions.js",
    "js/api.js",
    "js/cable.js",
    "js/calls.js",
    "js/dom.js",
    "js/format.js",
    "js/main.js",
    "js/state.js",
    "js/views/attachments.js",
    "js/views/auth.js",
    "js/views/call.js",
    "js/views/composer.js",
    "js/views/conversation.js",
    "js/views/dialogs.js",
    "js/views/members.js",
    "js/views/messages.js",
    "js/views/people.js",
    "js/views/search.js",
    "js/views/sidebar.js",
    "js/views/thread.js",
    "vendor/actioncable.LICENSE.txt",
    "vendor/actioncable.esm.js",
];

const INDEX_TEMPLATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/index.html"));

/// Only this origin may run scripts, style the page or be talked to (REST and
/// `/cable`: CSP 3's `'self'` covers `ws:`/`wss:` to the same host). Media
/// streams are shown through `srcObject`; no plugins, frames or forms
/// elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    media-src 'self' blob: mediastream:; connect-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Built {
    version: String,
    index: Vec<u8>,
    index_etag: HeaderValue,
    etags: Vec<HeaderValue>,
}

/// FNV-1a: a stable content hash for versions and ETags (not for security).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Separates parts, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn etag(hash: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{hash:016x}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let mut parts: Vec<&[u8]> = vec![INDEX_TEMPLATE.as_bytes()];
    for asset in ASSETS {
        parts.push(asset.path.as_bytes());
        parts.push(asset.bytes);
    }
    let version = format!("{:012x}", fnv1a(&parts) >> 16);
    let index = INDEX_TEMPLATE.replace("{{version}}", &version).into_bytes();
    Built {
        index_etag: etag(fnv1a(&[&index])),
        etags: ASSETS.iter().map(|a| etag(fnv1a(&[a.bytes]))).collect(),
        version,
        index,
    }
});

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// The file with its headers, or `304 Not Modified` when the browser's copy
/// (`If-None-Match`) is current.
fn serve(
    request: &HeaderMap,
    bytes: &'static [u8],
    path: &str,
    etag: &HeaderValue,
    cache: &'static str,
) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t.as_bytes() == etag.as_bytes())
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        bytes.into_response()
    };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
    }
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn index(headers: HeaderMap) -> Response {
    let built = &*BUILT;
    // `index` lives as long as the process (a LazyLock static).
    let bytes: &'static [u8] = built.index.as_slice();
    serve(&headers, bytes, "index.html", &built.index_etag, "no-cache")
}

async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let built = &*BUILT;
    let found = ASSETS.iter().position(|a| a.path == path);
    match found {
        Some(n) if version == built.version => serve(
            &headers,
            ASSETS[n].bytes,
            &path,
            &built.etags[n],
            "public, max-age=31536000, immutable",
        ),
        // Another build's file: reloading the page fetches the current ones.
        _ => route_not_found(),
    }
}

/// Adds the web client's routes to `api`.
pub fn mount(api: Router<AppState>) -> Router<AppState> {
    api.route("/", get(index))
        .route("/c/{id}", get(index))
        .route("/assets/{version}/{*path}", get(asset))
}

/// Server settings handed to clients.
pub struct ClientSettings {
    /// Validated RTCIceServer objects (a JSON array), from `--ice-servers`.
    pub ice_servers: serde_json::Value,
}

/// What a client needs to know that is not in the contract.
#[derive(Serialize, ToSchema)]
pub struct ClientConfig {
    /// RTCIceServer objects (`urls`, `username`, `credential`) for
    /// `new RTCPeerConnection({iceServers})`; empty unless the server is
    /// started with `--ice-servers`. Only signed-in users see them, since
    /// TURN credentials are in them.
    #[schema(value_type = Vec<Object>)]
    ice_servers: serde_json::Value,
    /// Longest message content, in characters (`--max-message-chars`).
    max_message_chars: usize,
    /// Seconds a call rings before it is missed (`--call-ring-timeout`).
    call_ring_timeout: i64,
}

/// Beyond the reference: client settings (ICE servers for calls, limits).
#[utoipa::path(get, path = "/api/v1/client-config", tag = "client",
    security(("bearer" = [])),
    responses((status = 200, description = "Bare object", body = ClientConfig),
              (status = 401, description = "Not authenticated")))]
pub async fn client_config(
    State(state): State<AppState>,
    Auth(_identity): Auth,
) -> Json<ClientConfig> {
    let limits = state.domain.limits();
    Json(ClientConfig {
        ice_servers: state.client.ice_servers.clone(),
        max_message_chars: limits.max_message_chars,
        call_ring_timeout: limits.call_ring_timeout.num_seconds(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `web/` is embedded (the page would 404 on a missing
    /// one), and nothing embedded is missing from it.
    #[test]
    fn every_web_file_is_embedded() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("web/ is readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    let relative = path.strip_prefix(base).expect("under web/");
                    out.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut files = Vec::new();
        walk(&base, &base, &mut files);
        files.retain(|f| f != "index.html");
        files.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(files, embedded, "ASSETS in http/web.rs lists web/");
    }

    #[test]
    fn the_index_names_this_build() {
        let index = String::from_utf8(BUILT.index.clone()).expect("utf-8");
        assert!(!index.contains("{{version}}"));
        assert!(index.contains(&format!("/assets/{}/js/main.js", BUILT.version)));
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }
}
