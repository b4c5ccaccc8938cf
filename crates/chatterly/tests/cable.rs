//! Black-box tests of the WebSocket gateway (`/cable`, contract 6 and 7).
//!
//! Two halves:
//! - the Node suite in `tests/node/`, which drives the real server with the
//!   official `@rails/actioncable` client (run here with `node --test`; its
//!   packages come from `npm ci --prefix crates/chatterly/tests/node`, which
//!   `scripts/test` runs);
//! - protocol edge cases a well-behaved client cannot produce, spoken with a
//!   raw WebSocket client (tokio-tungstenite).
//!
//! Every test starts its own server (its own temporary database), so they run
//! in parallel; every wait has a timeout.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Backend, TestApp, TestUser};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

// ---- the Node suite -----------------------------------------------------------

const NODE_SUITE_LIMIT: Duration = Duration::from_secs(300);

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// The `*.test.mjs` files of the Node suite, sorted.
fn node_test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(node_dir())
        .expect("tests/node exists")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    files
}

/// Runs `node --test` on `files` against `app`, and fails (printing Node's
/// output) unless every test passed.
async fn run_node_suite(app: &TestApp, files: &[String], env: &[(&str, String)]) {
    let dir = node_dir();
    for package in ["@rails/actioncable", "ws"] {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        assert!(
            manifest.is_file(),
            "the Node test packages are not installed ({} is missing): run \
             `npm ci --prefix crates/chatterly/tests/node` (scripts/test does it)",
            manifest.display()
        );
    }
    assert!(
        !files.is_empty(),
        "no *.test.mjs files in {}",
        dir.display()
    );
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(&dir)
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("--test-concurrency=8")
        .args(files)
        .env("CHATTERLY_URL", app.url(""))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`node` is not on PATH: the cable tests need Node.js 20 or newer")
        }
        Err(e) => panic!("cannot start node: {e}"),
    };
    let started = Instant::now();
    let output = match tokio::time::timeout(NODE_SUITE_LIMIT, child.wait_with_output()).await {
        Ok(output) => output.expect("node output"),
        Err(_) => panic!("node --test {files:?} did not finish within {NODE_SUITE_LIMIT:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!(
        "node --test {files:?} exited with {} after {:.1?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status,
        started.elapsed()
    );
    assert!(output.status.success(), "{report}");
    let count = |label: &str| -> Option<u64> {
        stdout.lines().find_map(|line| {
            line.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
                .strip_prefix(label)?
                .trim()
                .parse()
                .ok()
        })
    };
    assert_eq!(count("fail "), Some(0), "{report}");
    assert_eq!(
        count("skipped "),
        Some(0),
        "no test may be skipped\n{report}"
    );
    assert!(
        count("pass ").is_some_and(|n| n >= files.len() as u64),
        "node ran too few tests\n{report}"
    );
    println!("{report}");
}

/// The Node files that need a server of their own (see the tests below).
const OWN_SERVER_FILES: [&str; 2] = ["ratelimit.test.mjs", "calls.test.mjs"];

/// Every other Node file, on SQLite with rate limits off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_client_suite() {
    let app = TestApp::start(Backend::Sqlite).await;
    let files: Vec<String> = node_test_files()
        .into_iter()
        .filter(|f| !OWN_SERVER_FILES.contains(&f.as_str()))
        .collect();
    run_node_suite(&app, &files, &[]).await;
}

/// The call file, against a server whose calls ring for one second only (the
/// file relies on it: unanswered calls are missed within its wait times).
async fn official_client_calls_on(backend: Backend) {
    let app = TestApp::start_with(backend, &["--call-ring-timeout", "1"]).await;
    run_node_suite(&app, &["calls.test.mjs".to_owned()], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_client_calls() {
    official_client_calls_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_client_calls_on_postgres() {
    official_client_calls_on(Backend::Postgres).await;
}

/// The rate-limit file, against a server with a small action rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_client_rate_limit() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[
            "--rate-limits",
            "on",
            "--auth-per-minute",
            "100000",
            "--sends-per-second",
            "100000",
            "--send-burst",
            "100000",
            "--cable-actions-per-second",
            "2",
            "--cable-action-burst",
            "5",
        ],
    )
    .await;
    run_node_suite(
        &app,
        &["ratelimit.test.mjs".to_owned()],
        &[
            ("CABLE_ACTIONS_PER_SECOND", "2".to_owned()),
            ("CABLE_ACTION_BURST", "5".to_owned()),
        ],
    )
    .await;
}

/// The conversation-event, catch-up and read-state files on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_client_conversation_events_on_postgres() {
    let app = TestApp::start(Backend::Postgres).await;
    run_node_suite(
        &app,
        &[
            "events.test.mjs".to_owned(),
            "catchup.test.mjs".to_owned(),
            "readstate.test.mjs".to_owned(),
        ],
        &[],
    )
    .await;
}

// ---- a raw WebSocket client ---------------------------------------------------

/// How long a test waits for something the server should do promptly.
const WAIT: Duration = Duration::from_secs(5);
const OFFERED_PROTOCOLS: &str = "actioncable-v1-json, actioncable-unsupported";

type Stream = WebSocketStream<TcpStream>;

fn host(app: &TestApp) -> String {
    app.url("").trim_start_matches("http://").to_owned()
}

/// A `/cable` upgrade request offering what browsers offer.
fn cable_request(app: &TestApp, query: &str) -> Request {
    let mut request = format!("ws://{}/cable{query}", host(app))
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(OFFERED_PROTOCOLS),
    );
    request
}

/// The WebSocket handshake over `tcp` (or a new connection).
async fn handshake(
    app: &TestApp,
    request: Request,
    tcp: Option<TcpStream>,
) -> Result<(Stream, Response), WsError> {
    let tcp = match tcp {
        Some(tcp) => tcp,
        None => TcpStream::connect(host(app)).await.expect("tcp connect"),
    };
    tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("handshake within 5 s")
}

#[derive(Debug)]
// The `Closed` text is read through `Debug`, in failure messages.
#[allow(dead_code)]
enum Read {
    Text(String),
    Binary,
    /// Close frame, end of stream or a read error.
    Closed(String),
}

struct Ws {
    stream: Stream,
    /// Frames read while looking for another one.
    skipped: Vec<Value>,
}

fn unauthorized() -> Value {
    json!({ "type": "disconnect", "reason": "unauthorized", "reconnect": false })
}

impl Ws {
    /// Connects with `token` and reads the `welcome`.
    async fn open(app: &TestApp, token: &str) -> Ws {
        Ws::open_over(app, token, None).await
    }

    async fn open_over(app: &TestApp, token: &str, tcp: Option<TcpStream>) -> Ws {
        let request = cable_request(app, &format!("?token={token}"));
        let (stream, response) = handshake(app, request, tcp)
            .await
            .expect("upgrade to a WebSocket");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("actioncable-v1-json")
        );
        let mut ws = Ws {
            stream,
            skipped: Vec::new(),
        };
        let welcome = ws.next_json().await;
        assert_eq!(welcome, json!({ "type": "welcome" }));
        ws
    }

    /// Connects and expects to be refused with `disconnect unauthorized`.
    async fn refused(app: &TestApp, query: &str) {
        let (stream, _) = handshake(app, cable_request(app, query), None)
            .await
            .unwrap_or_else(|e| panic!("{query}: the upgrade itself failed: {e}"));
        let mut ws = Ws {
            stream,
            skipped: Vec::new(),
        };
        let frames = ws.expect_end(WAIT).await;
        assert_eq!(frames, vec![unauthorized()], "{query}");
    }

    async fn read(&mut self, timeout: Duration) -> Option<Read> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
            return Some(match next.ok()? {
                None => Read::Closed("end of stream".into()),
                Some(Err(e)) => Read::Closed(format!("read error: {e}")),
                Some(Ok(Message::Text(text))) => Read::Text(text.to_string()),
                Some(Ok(Message::Binary(_))) => Read::Binary,
                Some(Ok(Message::Close(frame))) => Read::Closed(format!("close frame {frame:?}")),
                Some(Ok(_)) => continue,
            });
        }
    }

    /// The next frame that is not a heartbeat.
    async fn next_json(&mut self) -> Value {
        self.expect("any frame", |_| true).await
    }

    /// Reads until a frame (not a heartbeat) matches; the others are kept in
    /// `skipped`.
    async fn expect(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Some(Read::Text(text)) => {
                    let value: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("server frame is not JSON ({e}): {text}"));
                    if value["type"] == "ping" {
                        continue;
                    }
                    if matches(&value) {
                        return value;
                    }
                    self.skipped.push(value);
                }
                Some(other) => panic!(
                    "waiting for {what}: got {other:?}; before it: {:?}",
                    self.skipped
                ),
                None => panic!(
                    "no {what} within {WAIT:?}; got meanwhile: {:?}",
                    self.skipped
                ),
            }
        }
    }

    /// Every frame but heartbeats for `duration`; fails if the socket closes.
    async fn collect(&mut self, duration: Duration) -> Vec<Value> {
        let deadline = Instant::now() + duration;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                None => return frames,
                Some(Read::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON frame");
                    if value["type"] != "ping" {
                        frames.push(value);
                    }
                }
                Some(other) => panic!("socket ended: {other:?}; frames: {frames:?}"),
            }
        }
    }

    /// Reads until the socket ends; returns the frames before (no heartbeats).
    async fn expect_end(&mut self, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Some(Read::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON frame");
                    if value["type"] != "ping" {
                        frames.push(value);
                    }
                }
                Some(Read::Binary) => panic!("the server sent a binary frame"),
                Some(Read::Closed(_)) => return frames,
                None => panic!("the socket was not closed within {timeout:?}; frames: {frames:?}"),
            }
        }
    }

    async fn send_text(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        tokio::time::timeout(WAIT, self.stream.send(Message::text(text)))
            .await
            .expect("send within 5 s")
            .expect("send");
    }

    async fn command(&mut self, command: &str, identifier: &str) {
        self.send_text(json!({ "command": command, "identifier": identifier }).to_string())
            .await;
    }

    async fn perform(&mut self, identifier: &str, data: Value) {
        self.send_text(
            json!({ "command": "message", "identifier": identifier, "data": data.to_string() })
                .to_string(),
        )
        .await;
    }

    /// The confirmation or rejection of `identifier`.
    async fn answer(&mut self, identifier: &str) -> Value {
        self.expect(&format!("an answer to subscribe {identifier}"), |v| {
            v["identifier"] == identifier
                && (v["type"] == "confirm_subscription" || v["type"] == "reject_subscription")
        })
        .await
    }

    async fn subscribe(&mut self, identifier: &str) {
        self.command("subscribe", identifier).await;
        let answer = self.answer(identifier).await;
        assert_eq!(answer["type"], "confirm_subscription", "{identifier}");
    }

    async fn expect_rejected(&mut self, identifier: &str) {
        self.command("subscribe", identifier).await;
        let answer = self.answer(identifier).await;
        assert_eq!(answer["type"], "reject_subscription", "{identifier}");
    }

    /// Waits for the `new_message` of `message_id` on `identifier`.
    async fn expect_message(&mut self, identifier: &str, message_id: i64) -> Value {
        self.expect(&format!("new_message {message_id}"), |v| {
            v["identifier"] == identifier
                && v["message"]["type"] == "new_message"
                && v["message"]["message"]["id"] == message_id
        })
        .await
    }
}

fn conversation_identifier(id: i64) -> String {
    json!({ "channel": "ConversationChannel", "conversation_id": id }).to_string()
}

const PRESENCE: &str = r#"{"channel":"PresenceChannel"}"#;
const USER: &str = r#"{"channel":"UserChannel"}"#;
const CALLS: &str = r#"{"channel":"CallChannel"}"#;

/// Two users in a group conversation.
async fn pair(app: &TestApp) -> (TestUser, TestUser, i64) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation = app.group(&alice, "Cable", &[&bob]).await;
    (alice, bob, conversation)
}

fn count(frames: &[Value], matches: impl Fn(&Value) -> bool) -> usize {
    frames.iter().filter(|v| matches(v)).count()
}

// ---- handshake ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_get_on_cable_is_a_json_404() {
    let app = TestApp::start(Backend::Sqlite).await;
    let alice = app.register("alice").await;
    for path in ["/cable".to_owned(), format!("/cable?token={}", alice.token)] {
        app.get(&path, None)
            .await
            .expect_body(404, json!({ "status": 404, "error": "Not Found" }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_gets_404_and_no_upgrade() {
    let app = TestApp::start(Backend::Sqlite).await;
    let alice = app.register("alice").await;
    let with_origin = |origin: &str| {
        let mut request = cable_request(&app, &format!("?token={}", alice.token));
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("origin"));
        request
    };
    match handshake(&app, with_origin("http://evil.test"), None).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 404);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("JSON body");
            assert_eq!(body, json!({ "status": 404, "error": "Not Found" }));
        }
        Err(other) => panic!("expected an HTTP 404, got {other}"),
        Ok(_) => panic!("a foreign origin was upgraded"),
    }
    // The configured frontend origin and the server's own origin are allowed.
    for origin in ["http://localhost:3000".to_owned(), app.url("")] {
        let (stream, _) = handshake(&app, with_origin(&origin), None)
            .await
            .unwrap_or_else(|e| panic!("origin {origin} refused: {e}"));
        let mut ws = Ws {
            stream,
            skipped: Vec::new(),
        };
        assert_eq!(
            ws.next_json().await,
            json!({ "type": "welcome" }),
            "{origin}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_subprotocol_is_selected_and_welcome_comes_first() {
    let app = TestApp::start(Backend::Sqlite).await;
    let alice = app.register("alice").await;
    // `open` asserts the selected protocol and the welcome.
    let mut ws = Ws::open(&app, &alice.token).await;
    ws.subscribe(USER).await;
    assert!(ws.skipped.is_empty(), "unexpected frames: {:?}", ws.skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_disconnect_unauthorized_without_reconnect() {
    let app = TestApp::start(Backend::Sqlite).await;
    let alice = app.register("alice").await;
    let secret = app.jwt_secret();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = |sub: String, exp: i64| {
        json!({ "sub": sub, "scp": "user", "aud": null, "iat": now - 10, "exp": exp,
                "jti": uuid::Uuid::new_v4().to_string() })
    };
    let expired = common::sign(&secret, claims(alice.id.to_string(), now - 5));
    let foreign = common::sign(
        b"another-secret-another-secret-0123456789",
        claims(alice.id.to_string(), now + 600),
    );
    let nobody = common::sign(&secret, claims("999999999".into(), now + 600));
    let revoked = app.login(&alice.email, &alice.password).await.bearer();
    app.delete("/auth/logout", Some(&revoked)).await.expect(200);
    for query in [
        String::new(),
        "?token=".to_owned(),
        "?token=not-a-jwt".to_owned(),
        format!("?token={expired}"),
        format!("?token={foreign}"),
        format!("?token={nobody}"),
        format!("?token={revoked}"),
    ] {
        Ws::refused(&app, &query).await;
    }
    // The user's other token still works.
    Ws::open(&app, &alice.token).await.subscribe(USER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_arrives_every_3_s_with_unix_seconds() {
    let app = TestApp::start(Backend::Sqlite).await;
    let alice = app.register("alice").await;
    let mut ws = Ws::open(&app, &alice.token).await;
    let welcomed = Instant::now();
    let mut pings = Vec::new();
    while pings.len() < 2 {
        match ws.read(Duration::from_millis(3500)).await {
            Some(Read::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] == "ping" {
                    pings.push((welcomed.elapsed(), value));
                }
            }
            other => panic!("no ping within 3.5 s of the previous frame: {other:?}"),
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    for (at, ping) in &pings {
        assert_eq!(ping.as_object().map(|o| o.len()), Some(2), "{ping}");
        let seconds = ping["message"]
            .as_i64()
            .unwrap_or_else(|| panic!("ping message is an integer: {ping}"));
        assert!((seconds - now).abs() <= 10, "ping {seconds} vs now {now}");
        assert!(*at <= Duration::from_millis(7000), "ping after {at:?}");
    }
    assert!(
        pings[0].0 <= Duration::from_millis(3500),
        "first ping after {:?}",
        pings[0].0
    );
    let gap = pings[1].0 - pings[0].0;
    assert!(
        gap >= Duration::from_millis(2500) && gap <= Duration::from_millis(3500),
        "pings {gap:?} apart"
    );
}

// ---- malformed input ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_malformed_frames_close_only_that_socket() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (alice, bob, conversation) = pair(&app).await;
    let room = conversation_identifier(conversation);
    let mut victim = Ws::open(&app, &alice.token).await;
    victim.subscribe(&room).await;
    let mut bystander = Ws::open(&app, &bob.token).await;
    bystander.subscribe(&room).await;

    let garbage = [
        "not json",
        "{}",
        "[1,2,3]",
        "\"a string\"",
        r#"{"identifier":"{}"}"#,
        r#"{"command":"dance","identifier":"{}"}"#,
        r#"{"command":"message","identifier":"{}"}"#,
        r#"{"command":"subscribe""#,
    ];
    for frame in garbage {
        victim.send_text(frame).await;
    }
    // Data that is not an object with an action, for a subscribed identifier.
    victim
        .send_text(json!({ "command": "message", "identifier": room, "data": "nope" }).to_string())
        .await;
    // Nine so far: the socket still works.
    victim.subscribe(USER).await;
    let message = app.send(&alice, conversation, "still here").await;
    let id = message["id"].as_i64().expect("id");
    victim.expect_message(&room, id).await;
    bystander.expect_message(&room, id).await;

    // The tenth closes it.
    victim.send_text("{{{").await;
    let frames = victim.expect_end(WAIT).await;
    assert_eq!(
        frames,
        vec![json!({ "type": "disconnect", "reason": "invalid_request", "reconnect": false })]
    );
    // The server and the other socket carry on.
    assert_eq!(app.get("/up", None).await.status.as_u16(), 200);
    let message = app.send(&alice, conversation, "after the close").await;
    bystander
        .expect_message(&room, message["id"].as_i64().expect("id"))
        .await;
    Ws::open(&app, &alice.token).await.subscribe(&room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_count_as_malformed() {
    let app = TestApp::start(Backend::Sqlite).await;
    let alice = app.register("alice").await;
    let mut ws = Ws::open(&app, &alice.token).await;
    // A binary frame carrying a valid command is still not the JSON protocol.
    let subscribe = json!({ "command": "subscribe", "identifier": USER }).to_string();
    ws.stream
        .send(Message::binary(subscribe.into_bytes()))
        .await
        .expect("send binary");
    let frames = ws.collect(Duration::from_millis(300)).await;
    assert!(
        frames.is_empty(),
        "a binary subscribe was answered: {frames:?}"
    );
    for _ in 0..8 {
        ws.stream
            .send(Message::binary(vec![0u8, 159, 146, 150]))
            .await
            .expect("send binary");
    }
    ws.subscribe(USER).await;
    ws.stream
        .send(Message::binary(vec![1u8]))
        .await
        .expect("send binary");
    let frames = ws.expect_end(WAIT).await;
    assert_eq!(
        frames,
        vec![json!({ "type": "disconnect", "reason": "invalid_request", "reconnect": false })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_commands_are_not_malformed() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (alice, bob, conversation) = pair(&app).await;
    let room = conversation_identifier(conversation);
    let mut ws = Ws::open(&app, &alice.token).await;
    ws.subscribe(&room).await;
    for _ in 0..12 {
        // An identifier that is not subscribed, an unknown action, and an
        // unsubscribe of nothing: logged and ignored, never counted.
        ws.perform(USER, json!({ "action": "typing" })).await;
        ws.perform(&room, json!({ "action": "dance" })).await;
        ws.command("unsubscribe", CALLS).await;
    }
    let frames = ws.collect(Duration::from_millis(500)).await;
    assert!(
        frames.is_empty(),
        "ignored commands were answered: {frames:?}"
    );
    // Alive and subscribed.
    let message = app.send(&bob, conversation, "hello").await;
    ws.expect_message(&room, message["id"].as_i64().expect("id"))
        .await;
    ws.subscribe(USER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_closes_only_that_socket() {
    let app = TestApp::start_with(Backend::Sqlite, &["--cable-max-frame-bytes", "2048"]).await;
    let (alice, bob, conversation) = pair(&app).await;
    let room = conversation_identifier(conversation);
    let mut victim = Ws::open(&app, &alice.token).await;
    let mut bystander = Ws::open(&app, &bob.token).await;
    bystander.subscribe(&room).await;

    // Just under the limit is fine.
    let padded = json!({ "channel": "UserChannel", "pad": "x".repeat(1800) }).to_string();
    victim.subscribe(&padded).await;
    // Over it: that socket is closed.
    let oversized = json!({ "command": "subscribe",
        "identifier": json!({ "channel": "UserChannel", "pad": "x".repeat(4096) }).to_string() })
    .to_string();
    victim.send_text(oversized).await;
    let frames = victim.expect_end(WAIT).await;
    assert!(
        frames.iter().all(|f| f["type"] != "confirm_subscription"),
        "an oversized subscribe was confirmed: {frames:?}"
    );
    // Everyone else is unaffected.
    let message = app.send(&alice, conversation, "still serving").await;
    bystander
        .expect_message(&room, message["id"].as_i64().expect("id"))
        .await;
    Ws::open(&app, &alice.token).await.subscribe(&padded).await;
}

// ---- subscriptions ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_beyond_the_limit_are_rejected() {
    let app = TestApp::start_with(Backend::Sqlite, &["--cable-max-subscriptions", "3"]).await;
    let alice = app.register("alice").await;
    let mut ws = Ws::open(&app, &alice.token).await;
    for identifier in [PRESENCE, USER, CALLS] {
        ws.subscribe(identifier).await;
    }
    let fourth = r#"{"channel":"UserChannel","tab":2}"#;
    ws.expect_rejected(fourth).await;
    // A duplicate of a held subscription is ignored, not rejected.
    ws.command("subscribe", USER).await;
    // Freeing a slot makes room.
    ws.command("unsubscribe", CALLS).await;
    ws.subscribe(fourth).await;
    ws.expect_rejected(CALLS).await;
    assert_eq!(
        count(&ws.skipped, |v| v["identifier"] == USER),
        0,
        "no answer to the duplicate: {:?}",
        ws.skipped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_subscribe_is_confirmed_once() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (alice, bob, conversation) = pair(&app).await;
    let room = conversation_identifier(conversation);
    let mut ws = Ws::open(&app, &alice.token).await;
    for _ in 0..3 {
        ws.command("subscribe", &room).await;
        ws.command("subscribe", PRESENCE).await;
    }
    // A later subscription's confirmation orders the answers before it.
    ws.subscribe(USER).await;
    let message = app.send(&bob, conversation, "once").await;
    let id = message["id"].as_i64().expect("id");
    ws.expect_message(&room, id).await;
    let mut frames = std::mem::take(&mut ws.skipped);
    frames.extend(ws.collect(Duration::from_millis(300)).await);
    let confirmations = |identifier: &str| {
        count(&frames, |v| {
            v["identifier"] == identifier && v["type"] == "confirm_subscription"
        })
    };
    assert_eq!(confirmations(&room), 1, "{frames:?}");
    assert_eq!(confirmations(PRESENCE), 1, "{frames:?}");
    assert_eq!(
        count(&frames, |v| v["message"]["type"] == "initial_presence"),
        1,
        "{frames:?}"
    );
    assert_eq!(
        count(&frames, |v| v["message"]["type"] == "new_message"),
        0,
        "the event came once (the one awaited): {frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_unsubscribe_subscribe_is_handled_in_order() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (alice, bob, conversation) = pair(&app).await;
    let room = conversation_identifier(conversation);
    let mut ws = Ws::open(&app, &alice.token).await;
    let mut bystander = Ws::open(&app, &bob.token).await;
    bystander.subscribe(&room).await;

    // Ends subscribed: two confirmations, and each event arrives once.
    ws.command("subscribe", &room).await;
    ws.command("unsubscribe", &room).await;
    ws.command("subscribe", &room).await;
    ws.subscribe(USER).await;
    let message = app.send(&bob, conversation, "first").await;
    let first = message["id"].as_i64().expect("id");
    ws.expect_message(&room, first).await;
    bystander.expect_message(&room, first).await;
    let mut frames = std::mem::take(&mut ws.skipped);
    frames.extend(ws.collect(Duration::from_millis(300)).await);
    assert_eq!(
        count(&frames, |v| v["identifier"] == room.as_str()
            && v["type"] == "confirm_subscription"),
        2,
        "{frames:?}"
    );
    assert_eq!(
        count(&frames, |v| v["message"]["type"] == "new_message"),
        0,
        "{frames:?}"
    );

    // Ends unsubscribed: one more confirmation, and no event.
    ws.command("unsubscribe", &room).await;
    ws.command("subscribe", &room).await;
    ws.command("unsubscribe", &room).await;
    ws.subscribe(CALLS).await;
    let message = app.send(&bob, conversation, "second").await;
    let second = message["id"].as_i64().expect("id");
    bystander.expect_message(&room, second).await;
    let mut frames = std::mem::take(&mut ws.skipped);
    frames.extend(ws.collect(Duration::from_millis(500)).await);
    assert_eq!(
        count(&frames, |v| v["identifier"] == room.as_str()
            && v["type"] == "confirm_subscription"),
        1,
        "{frames:?}"
    );
    assert_eq!(
        count(&frames, |v| v["identifier"] == room.as_str()),
        1,
        "no event after the final unsubscribe: {frames:?}"
    );

    // Presence: subscribe, unsubscribe, subscribe leaves the user online.
    let mut watcher = Ws::open(&app, &bob.token).await;
    watcher.subscribe(PRESENCE).await;
    ws.command("subscribe", PRESENCE).await;
    ws.command("unsubscribe", PRESENCE).await;
    ws.command("subscribe", PRESENCE).await;
    ws.answer(PRESENCE).await;
    ws.answer(PRESENCE).await;
    let statuses: Vec<String> = watcher
        .collect(Duration::from_millis(500))
        .await
        .iter()
        .filter(|v| v["message"]["user_id"] == alice.id)
        .map(|v| v["message"]["status"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(statuses, ["online", "offline", "online"]);
}

// ---- slow consumers and shutdown ----------------------------------------------

/// A client that stops reading while a conversation is busy is disconnected
/// once its outbox (32 frames here) is full; the other subscribers get every
/// message. The slow socket's receive buffer is tiny, so the kernel buffers
/// fill quickly; the sender stops as soon as the server has let the slow
/// socket go (its user goes offline), or fails after a bounded amount of
/// traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_consumer_is_disconnected_and_others_keep_receiving() {
    const MAX_MESSAGES: i64 = 3000;
    const TIME_LIMIT: Duration = Duration::from_secs(90);
    let app = TestApp::start_with(Backend::Sqlite, &["--cable-outbox", "32"]).await;
    let alice = app.register("alice").await;
    let slow_user = app.register("slow").await;
    let fast_user = app.register("fast").await;
    let conversation = app.group(&alice, "Busy", &[&slow_user, &fast_user]).await;
    let room = conversation_identifier(conversation);

    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket
        .connect(host(&app).parse().expect("address"))
        .await
        .expect("connect");
    let mut slow = Ws::open_over(&app, &slow_user.token, Some(tcp)).await;
    slow.subscribe(&room).await;
    slow.subscribe(PRESENCE).await;

    let mut fast = Ws::open(&app, &fast_user.token).await;
    fast.subscribe(&room).await;
    fast.subscribe(PRESENCE).await;
    // The fast client reads continuously on its own task.
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = tokio::spawn(async move {
        loop {
            match fast.read(Duration::from_secs(120)).await {
                Some(Read::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    if frames_tx.send(value).is_err() {
                        return;
                    }
                }
                other => panic!("the fast client's socket ended: {other:?}"),
            }
        }
    });

    // From here on the slow client reads nothing.
    let content = "z".repeat(3000);
    let started = Instant::now();
    let mut seqs: Vec<i64> = Vec::new();
    let mut slow_offline = false;
    let mut sent = 0;
    let drain = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
                 seqs: &mut Vec<i64>,
                 offline: &mut bool| {
        while let Ok(frame) = rx.try_recv() {
            let message = &frame["message"];
            if message["type"] == "new_message" {
                seqs.push(message["message"]["seq"].as_i64().expect("seq"));
            }
            if message["user_id"] == slow_user.id && message["status"] == "offline" {
                *offline = true;
            }
            assert_ne!(
                frame["type"], "disconnect",
                "the fast client was disconnected"
            );
        }
    };
    while !slow_offline {
        assert!(
            sent < MAX_MESSAGES && started.elapsed() < TIME_LIMIT,
            "the slow consumer was still connected after {sent} messages in {:?}",
            started.elapsed()
        );
        app.send(&alice, conversation, &content).await;
        sent += 1;
        drain(&mut frames_rx, &mut seqs, &mut slow_offline);
    }
    // The fast client got every message, in order.
    let deadline = Instant::now() + WAIT;
    while seqs.len() < sent as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        drain(&mut frames_rx, &mut seqs, &mut slow_offline);
    }
    assert_eq!(seqs, (1..=sent).collect::<Vec<_>>());
    reader.abort();

    // The slow client, reading at last, finds its stream cut short.
    let frames = slow.expect_end(Duration::from_secs(10)).await;
    let delivered = count(&frames, |v| v["message"]["type"] == "new_message");
    assert!(
        (delivered as i64) < sent,
        "the slow client got all {sent} messages"
    );
    for frame in frames.iter().filter(|f| f["type"] == "disconnect") {
        assert_eq!(
            *frame,
            json!({ "type": "disconnect", "reason": "slow_consumer", "reconnect": true })
        );
    }
    println!(
        "slow consumer let go after {sent} messages in {:.1?}; it had {delivered} of them; frames after: {:?}",
        started.elapsed(),
        frames.iter().filter(|f| f["type"] == "disconnect").collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_sends_server_restart() {
    let mut app = TestApp::start(Backend::Sqlite).await;
    let (alice, bob, conversation) = pair(&app).await;
    let mut sockets = vec![
        Ws::open(&app, &alice.token).await,
        Ws::open(&app, &bob.token).await,
    ];
    for ws in &mut sockets {
        ws.subscribe(&conversation_identifier(conversation)).await;
        ws.subscribe(PRESENCE).await;
    }
    app.stop().await;
    for ws in &mut sockets {
        let frames = ws.expect_end(WAIT).await;
        let last = frames.last().cloned().unwrap_or(Value::Null);
        assert_eq!(
            last,
            json!({ "type": "disconnect", "reason": "server_restart", "reconnect": true }),
            "{frames:?}"
        );
    }
}

/// The `new_message` event carries the same attachments as the REST answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_message_events_carry_attachments() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (alice, bob, conversation) = pair(&app).await;
    let room = conversation_identifier(conversation);
    let mut ws = Ws::open(&app, &bob.token).await;
    ws.subscribe(&room).await;
    let boundary = "cable-test-boundary";
    let upload = app
        .client
        .post(app.url("/api/v1/attachments"))
        .header("authorization", format!("Bearer {}", alice.token))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n\
             some text\r\n--{boundary}--\r\n"
        ))
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 201);
    let attachment: Value = upload.json().await.expect("json");
    let sent = app
        .send_raw(
            &alice,
            conversation,
            json!({ "attachment_ids": [attachment["data"]["id"]] }),
        )
        .await
        .expect(201)["data"]
        .clone();
    let id = sent["id"].as_i64().expect("id");
    let event = ws.expect_message(&room, id).await;
    assert_eq!(
        event["message"]["message"]["attachments"],
        sent["attachments"]
    );
    assert_eq!(
        event["message"]["message"]["attachments"][0]["content_type"],
        "text/plain"
    );
}
