//! Helpers for the operations tests: real `chatterly serve` processes and
//! `chatterly <command>` runs against their database, a raw Action Cable
//! socket, and REST calls.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{PgDatabase, PG_JWT_SECRET};

pub const BIN: &str = env!("CARGO_BIN_EXE_chatterly");
pub const WAIT: Duration = Duration::from_secs(10);
pub const PASSWORD: &str = "s3cret-pass";

pub fn redis_url() -> String {
    std::env::var("CHATTERLY_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A port nothing listens on, and one this process has not handed out
/// before: the kernel may return a just-released port again, so two calls
/// (an instance's API port and its metrics port) could otherwise collide.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Where a server keeps its data: a SQLite data dir, or a PostgreSQL
/// database with a Redis prefix (and a data dir for anything else).
pub enum Place<'a> {
    Sqlite(&'a Path),
    Postgres {
        db: &'a PgDatabase,
        prefix: &'a str,
        data_dir: &'a Path,
    },
}

impl Place<'_> {
    /// The storage flags of every command.
    pub fn storage_flags(&self) -> Vec<String> {
        match self {
            Place::Sqlite(dir) => vec!["--data-dir".into(), dir.display().to_string()],
            Place::Postgres { db, data_dir, .. } => vec![
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--database-url".into(),
                db.url.clone(),
            ],
        }
    }

    fn serve_flags(&self) -> Vec<String> {
        let mut flags = self.storage_flags();
        if let Place::Postgres { prefix, .. } = self {
            flags.extend([
                "--jwt-secret".into(),
                PG_JWT_SECRET.into(),
                "--redis-url".into(),
                redis_url(),
                "--redis-prefix".into(),
                (*prefix).to_owned(),
            ]);
        }
        flags
    }
}

/// The binary with a clean environment.
pub fn chatterly() -> Command {
    let mut command = Command::new(BIN);
    command.env_clear().env("RUST_BACKTRACE", "1");
    command
}

/// Runs `chatterly <args> <storage flags>` to completion, with `stdin` fed.
pub fn run_command(place: &Place<'_>, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut command = chatterly();
    command
        .args(args)
        .args(place.storage_flags())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn chatterly");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("chatterly runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
#[track_caller]
pub fn run_ok(place: &Place<'_>, args: &[&str], stdin: Option<&str>) -> String {
    let output = run_command(place, args, stdin);
    assert!(
        output.status.success(),
        "chatterly {args:?} failed\nstdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// One `chatterly serve` process, killed when dropped.
pub struct Instance {
    pub child: Child,
    pub port: u16,
}

impl Instance {
    pub async fn start(place: &Place<'_>, extra: &[&str]) -> Instance {
        Instance::start_env(place, extra, &[], None).await
    }

    /// On a given port (a restart in place).
    pub async fn start_on(place: &Place<'_>, port: u16, extra: &[&str]) -> Instance {
        Instance::launch(place, port, extra, &[], None).await
    }

    /// With environment variables, and the process's output (its logs) in
    /// `log` when given.
    pub async fn start_env(
        place: &Place<'_>,
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&std::fs::File>,
    ) -> Instance {
        Instance::launch(place, free_port(), extra, env, log).await
    }

    async fn launch(
        place: &Place<'_>,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&std::fs::File>,
    ) -> Instance {
        let (stdout, stderr): (Stdio, Stdio) = match log {
            Some(file) => (
                file.try_clone().expect("log file").into(),
                file.try_clone().expect("log file").into(),
            ),
            None => (Stdio::null(), Stdio::inherit()),
        };
        let child = chatterly()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(place.serve_flags())
            .args(["--rate-limits", "off", "--argon2-memory-kib", "64"])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the chatterly binary starts");
        let instance = Instance { child, port };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = client.get(instance.url("/up")).send().await {
                if resp.status().is_success() {
                    return instance;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "instance on port {port} did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct User {
    pub id: i64,
    pub token: String,
    pub email: String,
}

pub async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

pub async fn register(instance: &Instance, name: &str) -> User {
    let email = format!("{name}@example.test");
    let client = reqwest::Client::new();
    let resp = client
        .post(instance.url("/auth/register"))
        .json(&json!({ "user": { "email": email, "password": PASSWORD, "username": name } }))
        .send()
        .await
        .expect("register sent");
    assert_eq!(resp.status().as_u16(), 201);
    let token = bearer(&resp);
    let body: Value = resp.json().await.expect("json");
    User {
        id: body["user"]["id"].as_i64().expect("id"),
        token,
        email,
    }
}

fn bearer(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("bearer token")
        .to_owned()
}

/// Logs in; the status, body and token (if any).
pub async fn login(
    instance: &Instance,
    email: &str,
    password: &str,
) -> (u16, Value, Option<String>) {
    let client = reqwest::Client::new();
    let resp = client
        .post(instance.url("/auth/login"))
        .json(&json!({ "user": { "email": email, "password": password } }))
        .send()
        .await
        .expect("login sent");
    let status = resp.status().as_u16();
    let token = (status == 200).then(|| bearer(&resp));
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, token)
}

pub async fn me(instance: &Instance, token: &str) -> u16 {
    call(
        reqwest::Method::GET,
        instance.url("/api/v1/users/me"),
        Some(token),
        None,
    )
    .await
    .0
}

pub async fn group(instance: &Instance, owner: &User, name: &str, members: &[&User]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
    let (status, body) = call(
        reqwest::Method::POST,
        instance.url("/api/v1/conversations"),
        Some(&owner.token),
        Some(json!({ "name": name, "conversation_type": "group", "member_ids": ids })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_i64().expect("conversation id")
}

pub async fn send(instance: &Instance, user: &User, conversation: i64, body: Value) -> Value {
    let (status, reply) = call(
        reqwest::Method::POST,
        instance.url(&format!("/api/v1/conversations/{conversation}/messages")),
        Some(&user.token),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    reply["data"].clone()
}

pub struct Socket {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    pub async fn open(instance: &Instance, token: &str) -> Socket {
        let mut request = format!("ws://127.0.0.1:{}/cable?token={token}", instance.port)
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "actioncable-v1-json".parse().expect("header"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("socket opens");
        let mut socket = Socket { ws };
        let welcome = socket.next_frame().await.expect("welcome");
        assert_eq!(welcome["type"], "welcome");
        socket
    }

    /// The next frame that is not a ping; `None` when the socket closed.
    pub async fn next_frame(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("json frame");
                    if frame["type"] != "ping" {
                        return Some(frame);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Waits for a frame matching `pred`, skipping others.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.next_frame().await {
                Some(frame) if pred(&frame) => return frame,
                Some(_) => {}
                None => panic!("socket closed while waiting for {what}"),
            }
        }
    }

    pub async fn subscribe(&mut self, identifier: Value) {
        let identifier = identifier.to_string();
        self.ws
            .send(Message::text(
                json!({ "command": "subscribe", "identifier": identifier }).to_string(),
            ))
            .await
            .expect("subscribe sent");
        self.wait_for("confirm_subscription", |f| {
            f["type"] == "confirm_subscription" && f["identifier"] == identifier.as_str()
        })
        .await;
    }

    /// Reads until the server's `disconnect` frame and the close.
    pub async fn expect_disconnect(&mut self, reason: &str) {
        tokio::time::timeout(WAIT, self.read_until_disconnect(reason))
            .await
            .expect("a disconnect within the wait (pings do not count)");
    }

    async fn read_until_disconnect(&mut self, reason: &str) {
        loop {
            match self.next_frame().await {
                Some(frame) if frame["type"] == "disconnect" => {
                    assert_eq!(frame["reason"], reason, "{frame}");
                    assert!(self.next_frame().await.is_none(), "closed after disconnect");
                    return;
                }
                Some(_) => {}
                None => panic!("socket closed without a disconnect frame"),
            }
        }
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn path_string(path: &Path) -> String {
    path.display().to_string()
}

pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
