//! The black-box harness (zero2prod's `spawn_app`): starts the real server on
//! a random port with its own fresh database, SQLite in a temporary directory
//! or PostgreSQL in a database created for the test and dropped afterwards,
//! and talks to it over HTTP only.
//!
//! PostgreSQL: the admin URL comes from `CHATTERLY_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). If it is unreachable the
//! tests fail with a message saying so; they never skip.

#![allow(dead_code)]

use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatterly::server::Server;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

/// Which store the server under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A PostgreSQL secret the harness knows, so tests can sign their own tokens.
pub const PG_JWT_SECRET: &str = "conformance-suite-secret-0123456789abcdef";

/// Databases this old (by the timestamp in their name) are leftovers of an
/// earlier run and are dropped when a run starts. Generous, so that a suite
/// running concurrently (another checkout, CI) never loses its databases.
const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const DB_PREFIX: &str = "chatterly_test_";

pub fn pg_admin_url() -> String {
    std::env::var("CHATTERLY_TEST_PG_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Runs `f` on its own thread with its own small runtime, and waits for it.
/// Usable from `Drop` and from sync code inside or outside a runtime.
fn on_side_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn block_on_side<T: Send + 'static, F>(make: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T>,
{
    on_side_runtime(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("helper runtime")
            .block_on(make())
    })
}

async fn admin_connection() -> sqlx::PgConnection {
    let url = pg_admin_url();
    match tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL is unreachable at {url} (set CHATTERLY_TEST_PG_URL to an admin URL): {e}"
        ),
        Err(_) => {
            panic!("PostgreSQL is unreachable at {url} (set CHATTERLY_TEST_PG_URL): timed out")
        }
    }
}

/// Drops `chatterly_test_*` databases left behind by earlier runs. Once per
/// test binary.
fn sweep_stale_databases() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        block_on_side(|| async {
            let mut conn = admin_connection().await;
            let names: Vec<(String,)> = sqlx::query_as(
                "SELECT datname FROM pg_database WHERE datname LIKE 'chatterly\\_test\\_%'",
            )
            .fetch_all(&mut conn)
            .await
            .expect("listing test databases");
            let cutoff = unix_now().saturating_sub(STALE_AFTER.as_secs());
            for (name,) in names {
                let created = name
                    .strip_prefix(DB_PREFIX)
                    .and_then(|rest| rest.split('_').next())
                    .and_then(|ts| ts.parse::<u64>().ok());
                if created.is_some_and(|t| t < cutoff) {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            }
        })
    });
}

/// A fresh PostgreSQL database, dropped (`WITH (FORCE)`) when this is dropped.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        sweep_stale_databases();
        let name = format!(
            "{DB_PREFIX}{}_{}",
            unix_now(),
            uuid::Uuid::new_v4().simple()
        );
        let admin = pg_admin_url();
        let url = match admin.rfind('/') {
            Some(slash) if admin[..slash].contains("://") && !admin[..slash].ends_with('/') => {
                let (base, rest) = admin.split_at(slash);
                let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
                format!("{base}/{name}{query}")
            }
            _ => panic!("CHATTERLY_TEST_PG_URL must name a database, like postgres://user@host:5432/postgres"),
        };
        let create = name.clone();
        block_on_side(move || async move {
            let mut conn = admin_connection().await;
            sqlx::query(&format!("CREATE DATABASE \"{create}\""))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("cannot create the test database {create}: {e}"));
        });
        PgDatabase { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_side(move || async move {
            let url = pg_admin_url();
            let mut last_error = String::new();
            // A server still shutting down may reconnect between FORCE's
            // terminate and the drop: retry a few times.
            for _ in 0..5 {
                match sqlx::PgConnection::connect(&url).await {
                    Ok(mut conn) => {
                        match sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await
                        {
                            Ok(_) => return,
                            Err(e) => last_error = e.to_string(),
                        }
                    }
                    Err(e) => last_error = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!(
                "could not drop the test database {name} (the next run sweeps it): {last_error}"
            );
        });
    }
}

/// The flags every test app gets unless the test overrides them.
fn default_flags(extra: &[&str]) -> Vec<String> {
    let mut flags = Vec::new();
    let has = |flag: &str| extra.contains(&flag);
    if !has("--rate-limits") {
        flags.extend(["--rate-limits", "off"]);
    }
    if !has("--argon2-memory-kib") {
        // Cheap hashing keeps the suite fast; one test uses the default.
        flags.extend(["--argon2-memory-kib", "64"]);
    }
    if !has("--listen") {
        flags.extend(["--listen", "127.0.0.1:0"]);
    }
    flags
        .into_iter()
        .map(str::to_owned)
        .chain(extra.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// A user registered through the API.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub token: String,
    pub email: String,
    pub password: String,
    pub username: String,
}

/// One HTTP response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// `METHOD path`, for failure messages.
    pub request: String,
}

impl Resp {
    /// The body as JSON; fails the test (showing the body) if it is not JSON
    /// or not labelled as JSON.
    pub fn json(&self) -> Value {
        let content_type = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{} answered {} with content-type {content_type:?}, not JSON: {}",
            self.request,
            self.status,
            self.text
        );
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "{} answered {} with invalid JSON ({e}): {}",
                self.request, self.status, self.text
            )
        })
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{} answered {} (expected {status}): {}",
            self.request,
            self.status,
            self.text
        );
        self.json()
    }

    /// Asserts the status and that the JSON body is exactly `body`.
    #[track_caller]
    pub fn expect_body(&self, status: u16, body: Value) {
        let got = self.expect(status);
        assert_eq!(
            got, body,
            "{} answered {status} with an unexpected body",
            self.request
        );
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer <jwt>` response header.
    #[track_caller]
    pub fn bearer(&self) -> String {
        let value = self.header("authorization").unwrap_or_else(|| {
            panic!(
                "{} sent no Authorization header: {:?}",
                self.request, self.headers
            )
        });
        let token = value.strip_prefix("Bearer ").unwrap_or_else(|| {
            panic!("Authorization header {value:?} does not start with \"Bearer \"")
        });
        assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
        assert!(!token.contains(' '), "one space only: {value:?}");
        token.to_owned()
    }
}

/// The request body of [`TestApp::request`].
pub enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

pub struct TestApp {
    pub backend: Backend,
    server: Option<Server>,
    addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    flags: Vec<String>,
    pub data_dir: tempfile::TempDir,
    // Dropped after the server handle (field order), so the database outlives
    // every connection the test makes through it.
    pub pg: Option<PgDatabase>,
}

impl TestApp {
    /// Starts a server with the harness defaults.
    pub async fn start(backend: Backend) -> TestApp {
        TestApp::start_with(backend, &[]).await
    }

    /// Starts a server with extra `serve` flags (a flag given here replaces the
    /// harness default of the same name).
    pub async fn start_with(backend: Backend, extra: &[&str]) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut flags = default_flags(extra);
        flags.extend([
            "--data-dir".to_owned(),
            data_dir.path().display().to_string(),
        ]);
        let pg = match backend {
            Backend::Sqlite => {
                // Never let a DATABASE_URL from the environment turn this into PostgreSQL.
                flags.extend(["--database-url".to_owned(), String::new()]);
                None
            }
            Backend::Postgres => {
                let db = PgDatabase::create();
                flags.extend(["--database-url".to_owned(), db.url.clone()]);
                if !extra.contains(&"--jwt-secret") {
                    flags.extend(["--jwt-secret".to_owned(), PG_JWT_SECRET.to_owned()]);
                }
                Some(db)
            }
        };
        let server = start_server(&flags).await;
        let addr = server.local_addr();
        TestApp {
            backend,
            server: Some(server),
            addr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            flags,
            data_dir,
            pg,
        }
    }

    /// Stops the server (finishing in-flight requests) and starts a new one on
    /// the same data directory or database. The address changes.
    pub async fn restart(&mut self) {
        self.stop().await;
        let server = start_server(&self.flags).await;
        self.addr = server.local_addr();
        self.server = Some(server);
        // Pooled connections point at the old server.
        self.client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server.shutdown())
                .await
                .expect("server shut down within 30 s")
                .expect("server shut down cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The token signing secret in use (generated in the data directory on
    /// SQLite, configured on PostgreSQL).
    pub fn jwt_secret(&self) -> Vec<u8> {
        match self.backend {
            Backend::Postgres => PG_JWT_SECRET.as_bytes().to_vec(),
            Backend::Sqlite => std::fs::read_to_string(self.data_dir.path().join("jwt_secret"))
                .expect("generated secret in the data directory")
                .trim()
                .as_bytes()
                .to_vec(),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
    ) -> Resp {
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(bytes) => request.header(CONTENT_TYPE, "application/json").body(bytes),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        Resp {
            status: response.status(),
            headers: response.headers().clone(),
            request: format!("{method} {path}"),
            text: response.text().await.expect("response body"),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(Method::GET, path, token, Body::None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.request(Method::POST, path, token, Body::Json(body))
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Resp {
        self.request(Method::POST, path, token, Body::Raw(body.into()))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.request(Method::PATCH, path, token, Body::Json(body))
            .await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.request(Method::PUT, path, token, Body::Json(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(Method::DELETE, path, token, Body::None).await
    }

    // ---- helpers over the API ------------------------------------------------

    pub async fn register_raw(&self, user: Value) -> Resp {
        self.post("/auth/register", None, json!({ "user": user }))
            .await
    }

    /// Registers `name` (a valid username) and returns the user with the token
    /// from the `Authorization` response header.
    pub async fn register(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.test");
        let password = format!("s3cret-pass-{name}");
        let resp = self
            .register_raw(json!({
                "email": email, "password": password, "username": name,
                "display_name": format!("Display {name}"),
            }))
            .await;
        let body = resp.expect(201);
        TestUser {
            id: body["user"]["id"].as_i64().expect("user.id is a number"),
            token: resp.bearer(),
            email,
            password,
            username: name.to_owned(),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.post(
            "/auth/login",
            None,
            json!({ "user": { "email": email, "password": password } }),
        )
        .await
    }

    /// `POST /api/v1/conversations`; asserts 201 and returns `data`.
    pub async fn create_conversation(&self, user: &TestUser, body: Value) -> Value {
        let resp = self
            .post("/api/v1/conversations", Some(&user.token), body)
            .await;
        resp.expect(201)["data"].clone()
    }

    /// A group named `name` created by `owner` (admin) with `members`.
    pub async fn group(&self, owner: &TestUser, name: &str, members: &[&TestUser]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|u| u.id).collect();
        let data = self
            .create_conversation(
                owner,
                json!({ "name": name, "conversation_type": "group", "member_ids": ids }),
            )
            .await;
        data["id"].as_i64().expect("conversation id")
    }

    pub async fn direct(&self, a: &TestUser, b: &TestUser) -> i64 {
        let data = self
            .create_conversation(
                a,
                json!({ "conversation_type": "direct", "member_ids": [b.id] }),
            )
            .await;
        data["id"].as_i64().expect("conversation id")
    }

    pub async fn send_raw(&self, user: &TestUser, conversation: i64, body: Value) -> Resp {
        self.post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&user.token),
            body,
        )
        .await
    }

    /// Sends a text message; asserts 201 and returns the Message.
    pub async fn send(&self, user: &TestUser, conversation: i64, content: &str) -> Value {
        let resp = self
            .send_raw(
                user,
                conversation,
                json!({ "content": content, "message_type": "text" }),
            )
            .await;
        resp.expect(201)["data"].clone()
    }

    pub async fn history_raw(&self, user: &TestUser, conversation: i64, query: &str) -> Resp {
        let sep = if query.is_empty() { "" } else { "?" };
        self.get(
            &format!("/api/v1/conversations/{conversation}/messages{sep}{query}"),
            Some(&user.token),
        )
        .await
    }

    /// One page: (messages, next_cursor).
    pub async fn history(
        &self,
        user: &TestUser,
        conversation: i64,
        query: &str,
    ) -> (Vec<Value>, Value) {
        let body = self
            .history_raw(user, conversation, query)
            .await
            .expect(200);
        let messages = body["data"]["messages"]
            .as_array()
            .expect("data.messages is an array")
            .clone();
        (messages, body["data"]["next_cursor"].clone())
    }

    /// Every message, oldest first, paging back with `cursor`.
    pub async fn all_messages(&self, user: &TestUser, conversation: i64) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        let mut query = "limit=100".to_owned();
        loop {
            let (mut page, next) = self.history(user, conversation, &query).await;
            page.extend(all);
            all = page;
            match next.as_i64() {
                Some(cursor) => query = format!("limit=100&cursor={cursor}"),
                None => return all,
            }
        }
    }

    pub async fn conversations(&self, user: &TestUser) -> Vec<Value> {
        let body = self
            .get("/api/v1/conversations", Some(&user.token))
            .await
            .expect(200);
        body["data"].as_array().expect("data is an array").clone()
    }
}

async fn start_server(flags: &[String]) -> Server {
    let config = chatterly::config::ServeArgs::from_flags(flags)
        .unwrap_or_else(|e| panic!("harness flags {flags:?} do not parse: {e}"))
        .validate()
        .unwrap_or_else(|e| panic!("harness flags {flags:?} are invalid: {e}"));
    chatterly::server::start(config)
        .await
        .unwrap_or_else(|e| panic!("the server did not start: {e:#}"))
}

// ---- shape assertions --------------------------------------------------------

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
#[track_caller]
pub fn assert_ts(value: &Value) {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    let ok = b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z';
    assert!(ok, "timestamp {s:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
}

#[track_caller]
pub fn assert_id(value: &Value) -> i64 {
    let id = value
        .as_i64()
        .unwrap_or_else(|| panic!("id is not a JSON integer: {value}"));
    assert!(id > 0, "id {id} is not positive");
    id
}

#[track_caller]
fn assert_keys(value: &Value, keys: &[&str], what: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {value}"));
    for key in keys {
        assert!(object.contains_key(*key), "{what} lacks `{key}`: {value}");
    }
}

#[track_caller]
pub fn assert_user_public(value: &Value) {
    assert_keys(
        value,
        &["id", "avatar_url", "display_name", "online", "username"],
        "UserPublic",
    );
    assert_id(&value["id"]);
    assert!(value["online"].is_boolean(), "online is a bool: {value}");
    assert!(
        value["username"].is_string(),
        "username is a string: {value}"
    );
    assert!(value["avatar_url"].is_null() || value["avatar_url"].is_string());
    assert!(value["display_name"].is_null() || value["display_name"].is_string());
    assert!(
        value.get("email").is_none(),
        "UserPublic must not leak the email: {value}"
    );
    assert!(value.get("password_hash").is_none() && value.get("encrypted_password").is_none());
}

#[track_caller]
pub fn assert_user_with_email(value: &Value) {
    assert_keys(
        value,
        &[
            "id",
            "avatar_url",
            "display_name",
            "email",
            "last_seen_at",
            "online",
            "username",
        ],
        "UserWithEmail",
    );
    assert_id(&value["id"]);
    assert!(value["email"].is_string(), "email is a string: {value}");
    assert!(value["online"].is_boolean());
    if !value["last_seen_at"].is_null() {
        assert_ts(&value["last_seen_at"]);
    }
    assert!(value.get("password_hash").is_none() && value.get("encrypted_password").is_none());
}

#[track_caller]
pub fn assert_conversation(value: &Value) {
    assert_keys(
        value,
        &[
            "id",
            "conversation_type",
            "created_at",
            "created_by_id",
            "description",
            "member_count",
            "members",
            "name",
        ],
        "ConversationWithMembers",
    );
    assert_id(&value["id"]);
    assert!(
        ["channel", "group", "direct"]
            .contains(&value["conversation_type"].as_str().unwrap_or("?")),
        "conversation_type: {value}"
    );
    assert_ts(&value["created_at"]);
    let members = value["members"].as_array().expect("members is an array");
    assert_eq!(
        value["member_count"].as_u64(),
        Some(members.len() as u64),
        "member_count is live"
    );
    members.iter().for_each(assert_user_public);
}

#[track_caller]
pub fn assert_reaction(value: &Value) {
    assert_keys(value, &["id", "emoji", "message_id", "user_id"], "Reaction");
    assert_id(&value["id"]);
    assert_id(&value["message_id"]);
    assert_id(&value["user_id"]);
    assert!(value["emoji"].is_string());
}

#[track_caller]
pub fn assert_message(value: &Value) {
    assert_keys(
        value,
        &[
            "id",
            "call_session",
            "content",
            "created_at",
            "edited_at",
            "message_type",
            "parent_message_id",
            "reactions",
            "user",
            "conversation_id",
            "seq",
            "client_message_id",
        ],
        "Message",
    );
    assert_id(&value["id"]);
    assert_id(&value["conversation_id"]);
    assert!(
        value["seq"].as_i64().is_some_and(|s| s >= 1),
        "seq is a positive integer: {value}"
    );
    assert!(value["content"].is_string());
    assert_ts(&value["created_at"]);
    if !value["edited_at"].is_null() {
        assert_ts(&value["edited_at"]);
    }
    assert!(value["parent_message_id"].is_null() || value["parent_message_id"].is_i64());
    assert!(
        ["text", "image", "file", "call"].contains(&value["message_type"].as_str().unwrap_or("?")),
        "message_type: {value}"
    );
    assert_eq!(
        value["call_session"].is_null(),
        value["message_type"] != "call",
        "call_session non-null iff call: {value}"
    );
    value["reactions"]
        .as_array()
        .expect("reactions is an array")
        .iter()
        .for_each(assert_reaction);
    assert_user_public(&value["user"]);
}

/// The contract's 401 for a request without a token.
pub fn no_token_body() -> Value {
    json!({ "error": "You need to sign in or sign up before continuing." })
}

pub fn not_found_body() -> Value {
    json!({ "error": "Not found" })
}

pub fn forbidden_body() -> Value {
    json!({ "error": "Not authorized" })
}

pub fn bad_request_body() -> Value {
    json!({ "status": 400, "error": "Bad Request" })
}

/// Asserts a 400 with the contract's `{"status": 400, "error": "..."}` shape
/// (the message may explain more than "Bad Request").
#[track_caller]
pub fn assert_400(resp: &Resp) {
    let body = resp.expect(400);
    assert_eq!(body["status"], 400, "{}: {body}", resp.request);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}: {body}",
        resp.request
    );
}

/// Asserts a 422 `{"errors": [...]}` containing `message`.
#[track_caller]
pub fn assert_422(resp: &Resp, message: &str) {
    let body = resp.expect(422);
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: 422 without an errors array: {body}", resp.request));
    assert!(
        errors.iter().any(|e| e == message),
        "{}: 422 errors {body} do not include {message:?}",
        resp.request
    );
    assert!(
        errors.iter().all(Value::is_string),
        "errors are strings: {body}"
    );
}

/// Signs a token with `secret` and these claims (for expired, foreign or
/// malformed tokens).
pub fn sign(secret: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("signed")
}

/// The claims of a token, without verifying it.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&base64url_decode(payload)).expect("JWT payload is JSON")
}

fn base64url_decode(input: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        }
    };
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in input.bytes().filter(|c| *c != b'=') {
        buffer = (buffer << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}
