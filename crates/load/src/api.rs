//! The HTTP side: one shared `reqwest` client tuned so the client is not the
//! bottleneck, typed helpers for setup and verification (which parse bodies),
//! and [`Api::timed`] for the measured hot loops (which only drain bodies).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::target::Target;

/// How one measured request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with this status (body fully read).
    Status(u16),
    /// No answer within `--timeout`.
    Timeout,
    /// The connection could not be established.
    Connect,
    /// Any other transport failure (reset, truncated body, ...).
    Transport,
    /// Success of a step that has no HTTP status (a WebSocket welcome or
    /// subscription).
    Done,
    /// A failure with no HTTP status, named (e.g. `rejected`, `closed`).
    Failed(&'static str),
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(&s)) || self == Outcome::Done
    }

    /// Key used in the per-status counts: `"201"`, `"429"`, `"timeout"`, ...
    pub fn key(self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Connect => "connect".into(),
            Outcome::Transport => "transport".into(),
            Outcome::Done => "ok".into(),
            Outcome::Failed(kind) => kind.into(),
        }
    }

    fn from_error(e: &reqwest::Error) -> Outcome {
        if e.is_timeout() {
            Outcome::Timeout
        } else if e.is_connect() {
            Outcome::Connect
        } else {
            Outcome::Transport
        }
    }
}

/// A registered user and the value of its `Authorization` header.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub auth: HeaderValue,
}

impl Session {
    /// The JWT itself (the `Authorization` value without `Bearer `), as the
    /// `token` query parameter of `/cable` wants it.
    pub fn token(&self) -> &str {
        self.auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
    }
}

/// One page of `GET .../messages` (contract 4.5), with the fields the load
/// tool reads.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub messages: Vec<PageMessage>,
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct PageMessage {
    pub id: i64,
    /// Chatterly's per-conversation sequence number (beyond the reference).
    #[serde(default)]
    pub seq: Option<i64>,
    #[serde(default)]
    pub client_message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Debug, Deserialize)]
struct IdOnly {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct Registered {
    user: IdOnly,
}

/// Client plus target. Cheap to clone (the client is reference-counted).
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    target: Target,
}

impl Api {
    /// `pool` is the number of idle connections kept per host; give it at least
    /// the number of concurrent workers so no request waits for a handshake.
    pub fn new(target: Target, pool: usize, timeout: Duration) -> Result<Api> {
        let client = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            // Never follow a redirect: it could lead away from the loopback host.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("chatterly-load/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Api { client, target })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn endpoint(&self, path: &str) -> String {
        self.target.endpoint(path)
    }

    /// The send (and history) URL of each conversation, in order.
    pub fn messages_urls(&self, conversations: &[i64]) -> Vec<String> {
        conversations
            .iter()
            .map(|id| self.endpoint(&format!("/api/v1/conversations/{id}/messages")))
            .collect()
    }

    pub fn get(&self, url: &str, session: &Session) -> RequestBuilder {
        self.client
            .get(url)
            .header(AUTHORIZATION, session.auth.clone())
    }

    pub fn post_json(&self, url: &str, session: &Session, body: &Value) -> RequestBuilder {
        self.client
            .post(url)
            .header(AUTHORIZATION, session.auth.clone())
            .json(body)
    }

    /// Sends a request, drains the body, and returns how it ended with the time
    /// from just before sending to the last body byte.
    pub async fn timed(request: RequestBuilder) -> (Outcome, Duration) {
        let start = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(_) => Outcome::Status(status),
                    Err(e) => Outcome::from_error(&e),
                }
            }
            Err(e) => Outcome::from_error(&e),
        };
        (outcome, start.elapsed())
    }

    /// `GET /up`: fails with a readable error when nothing listens.
    pub async fn check_up(&self) -> Result<()> {
        let url = self.endpoint("/up");
        let response = self
            .client
            .get(&url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "no Chatterly server answers at {} ({}); start one, e.g. \
                     `chatterly serve --listen 127.0.0.1:3001 --rate-limits off`",
                    self.target.as_str(),
                    describe(&e)
                )
            })?;
        if !response.status().is_success() {
            bail!("GET {url} answered {}", response.status());
        }
        Ok(())
    }

    /// `POST /auth/register` (contract 2.1); the token comes from the
    /// `Authorization: Bearer` response header.
    pub async fn register(&self, username: &str, password: &str) -> Result<Session> {
        let body = json!({ "user": {
            "email": format!("{username}@load.test"),
            "password": password,
            "username": username,
            "display_name": format!("Load {username}"),
        }});
        let response = self
            .client
            .post(self.endpoint("/auth/register"))
            .json(&body)
            .send()
            .await
            .map_err(|e| anyhow!("POST /auth/register: {}", describe(&e)))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            bail!(
                "POST /auth/register answered 429 Too Many Requests: the server's rate limits are on; \
                 restart it with `--rate-limits off` for load tests"
            );
        }
        let auth = response.headers().get(AUTHORIZATION).cloned();
        let text = response.text().await.unwrap_or_default();
        if status != StatusCode::CREATED && status != StatusCode::OK {
            bail!("POST /auth/register answered {status}: {}", snippet(&text));
        }
        let auth = auth
            .filter(|v| v.to_str().is_ok_and(|s| s.starts_with("Bearer ")))
            .ok_or_else(|| {
                anyhow!("POST /auth/register: no `Authorization: Bearer` header in the response")
            })?;
        let registered: Registered = serde_json::from_str(&text)
            .with_context(|| format!("POST /auth/register: unexpected body {}", snippet(&text)))?;
        Ok(Session {
            id: registered.user.id,
            auth,
        })
    }

    /// `POST /api/v1/conversations` with type `group` (contract 4.3); returns
    /// `data.id`.
    pub async fn create_group(
        &self,
        owner: &Session,
        name: &str,
        member_ids: &[i64],
    ) -> Result<i64> {
        let body = json!({ "name": name, "conversation_type": "group", "member_ids": member_ids });
        let response = self
            .post_json(&self.endpoint("/api/v1/conversations"), owner, &body)
            .send()
            .await
            .map_err(|e| anyhow!("POST /api/v1/conversations: {}", describe(&e)))?;
        let created: Envelope<IdOnly> = parse("POST /api/v1/conversations", response).await?;
        Ok(created.data.id)
    }

    /// `POST .../messages` for seeding (not measured).
    pub async fn send_message(
        &self,
        session: &Session,
        conversation_id: i64,
        content: &str,
    ) -> Result<i64> {
        let path = format!("/api/v1/conversations/{conversation_id}/messages");
        let body = json!({ "content": content });
        let response = self
            .post_json(&self.endpoint(&path), session, &body)
            .send()
            .await
            .map_err(|e| anyhow!("POST {path}: {}", describe(&e)))?;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            bail!(
                "POST {path} answered 429 Too Many Requests: the server's rate limits are on; \
                 restart it with `--rate-limits off` for load tests"
            );
        }
        let sent: Envelope<IdOnly> = parse(&format!("POST {path}"), response).await?;
        Ok(sent.data.id)
    }

    /// `GET url` as `session`, parsed from JSON; a failure status is an
    /// error naming the request and the start of the body.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        session: &Session,
    ) -> Result<T> {
        let response = self
            .get(url, session)
            .send()
            .await
            .map_err(|e| anyhow!("GET {url}: {}", describe(&e)))?;
        parse(&format!("GET {url}"), response).await
    }

    /// One page of history, parsed.
    pub async fn history_page(
        &self,
        session: &Session,
        conversation_id: i64,
        cursor: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Page> {
        let url = self.endpoint(&history_path(conversation_id, cursor, limit));
        let page: Envelope<Page> = self.get_json(&url, session).await?;
        Ok(page.data)
    }
}

/// `/api/v1/conversations/{id}/messages[?cursor=..][&limit=..]`.
pub fn history_path(conversation_id: i64, cursor: Option<i64>, limit: Option<u32>) -> String {
    let mut path = format!("/api/v1/conversations/{conversation_id}/messages");
    let mut sep = '?';
    if let Some(cursor) = cursor {
        path.push_str(&format!("{sep}cursor={cursor}"));
        sep = '&';
    }
    if let Some(limit) = limit {
        path.push_str(&format!("{sep}limit={limit}"));
    }
    path
}

async fn parse<T: serde::de::DeserializeOwned>(
    what: &str,
    response: reqwest::Response,
) -> Result<T> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| anyhow!("{what}: reading the body: {}", describe(&e)))?;
    if !status.is_success() {
        bail!("{what} answered {status}: {}", snippet(&text));
    }
    serde_json::from_str(&text)
        .with_context(|| format!("{what}: unexpected body {}", snippet(&text)))
}

fn snippet(text: &str) -> String {
    let mut s: String = text.chars().take(300).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// A transport error with its causes (reqwest's `Display` alone is terse).
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_paths() {
        assert_eq!(
            history_path(7, None, None),
            "/api/v1/conversations/7/messages"
        );
        assert_eq!(
            history_path(7, Some(120), None),
            "/api/v1/conversations/7/messages?cursor=120"
        );
        assert_eq!(
            history_path(7, Some(120), Some(50)),
            "/api/v1/conversations/7/messages?cursor=120&limit=50"
        );
        assert_eq!(
            history_path(7, None, Some(100)),
            "/api/v1/conversations/7/messages?limit=100"
        );
    }

    #[test]
    fn outcome_keys_and_success() {
        assert!(Outcome::Status(201).is_success());
        assert!(!Outcome::Status(429).is_success());
        assert!(!Outcome::Timeout.is_success());
        assert_eq!(Outcome::Status(404).key(), "404");
        assert_eq!(Outcome::Timeout.key(), "timeout");
    }

    #[test]
    fn page_parses_with_and_without_seq() {
        let page: Envelope<Page> = serde_json::from_str(
            r#"{"data":{"messages":[{"id":3,"seq":1,"client_message_id":"a","content":"x"},
                {"id":4,"content":"y"}],"next_cursor":null}}"#,
        )
        .unwrap();
        assert_eq!(page.data.messages.len(), 2);
        assert_eq!(page.data.messages[0].seq, Some(1));
        assert_eq!(page.data.messages[1].seq, None);
        assert_eq!(page.data.next_cursor, None);
    }
}
