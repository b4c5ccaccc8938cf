//! Scale-out: three real `chatterly serve` processes on one PostgreSQL
//! database and one Redis. Messages, presence and revocation cross instances;
//! an instance killed with SIGKILL loses nothing: its clients reconnect to
//! another instance, catch up with `since_seq`, and receive every message sent
//! during the outage exactly once; its users go offline when its presence TTL
//! lapses.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{PgDatabase, PG_JWT_SECRET};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);

fn redis_url() -> String {
    std::env::var("CHATTERLY_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `chatterly serve` process, killed when dropped.
struct Instance {
    child: Child,
    port: u16,
}

impl Instance {
    async fn start(db: &PgDatabase, prefix: &str, data_dir: &std::path::Path) -> Instance {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_chatterly"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", &data_dir.display().to_string()])
            .args(["--database-url", &db.url, "--jwt-secret", PG_JWT_SECRET])
            .args(["--redis-url", &redis_url(), "--redis-prefix", prefix])
            .args([
                "--presence-ttl",
                "3",
                "--rate-limits",
                "off",
                "--argon2-memory-kib",
                "64",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
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

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

struct User {
    id: i64,
    token: String,
}

async fn call(
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

async fn register(instance: &Instance, name: &str) -> User {
    let client = reqwest::Client::new();
    let resp = client
        .post(instance.url("/auth/register"))
        .json(&json!({ "user": { "email": format!("{name}@example.test"), "password": "s3cret-pass", "username": name } }))
        .send()
        .await
        .expect("register sent");
    assert_eq!(resp.status().as_u16(), 201);
    let token = resp
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("bearer token")
        .to_owned();
    let body: Value = resp.json().await.expect("json");
    User {
        id: body["user"]["id"].as_i64().expect("id"),
        token,
    }
}

async fn send(instance: &Instance, user: &User, conversation: i64, content: &str) -> Value {
    let (status, body) = call(
        reqwest::Method::POST,
        instance.url(&format!("/api/v1/conversations/{conversation}/messages")),
        Some(&user.token),
        Some(json!({ "content": content })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"].clone()
}

struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    async fn open(instance: &Instance, user: &User) -> Socket {
        let mut request = format!(
            "ws://127.0.0.1:{}/cable?token={}",
            instance.port, user.token
        )
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
    async fn next_frame(&mut self) -> Option<Value> {
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

    /// Waits for a channel message matching `pred`, skipping others.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.next_frame().await {
                Some(frame) if pred(&frame) => return frame,
                Some(_) => {}
                None => panic!("socket closed while waiting for {what}"),
            }
        }
    }

    async fn subscribe(&mut self, identifier: Value) {
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
}

fn presence_of(frame: &Value, user_id: i64, status: &str) -> bool {
    frame["message"]["user_id"] == user_id && frame["message"]["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_messages_presence_revocation_and_survive_a_kill() {
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let data_dir = tempfile::tempdir().expect("temp dir");
    let one = Instance::start(&db, &prefix, data_dir.path()).await;
    let mut two = Instance::start(&db, &prefix, data_dir.path()).await;
    let three = Instance::start(&db, &prefix, data_dir.path()).await;

    let alice = register(&one, "alice").await;
    let bob = register(&two, "bob").await;
    let carol = register(&three, "carol").await;
    let dave = register(&one, "dave").await;
    let (status, created) = call(
        reqwest::Method::POST,
        one.url("/api/v1/conversations"),
        Some(&alice.token),
        Some(json!({ "name": "crew", "conversation_type": "group", "member_ids": [bob.id, carol.id, dave.id] })),
    )
    .await;
    assert_eq!(status, 201);
    let conversation = created["data"]["id"].as_i64().expect("conversation id");
    let room = json!({ "channel": "ConversationChannel", "conversation_id": conversation });

    // A message sent through instance 1 reaches sockets on instances 2 and 3.
    let mut bob_socket = Socket::open(&two, &bob).await;
    bob_socket.subscribe(room.clone()).await;
    let mut carol_socket = Socket::open(&three, &carol).await;
    carol_socket.subscribe(room.clone()).await;
    carol_socket
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;
    let first = send(&one, &alice, conversation, "hello from one").await;
    for socket in [&mut bob_socket, &mut carol_socket] {
        let frame = socket
            .wait_for("new_message", |f| f["message"]["type"] == "new_message")
            .await;
        assert_eq!(frame["message"]["message"]["id"], first["id"]);
    }

    // Presence crosses instances and counts devices across instances.
    let mut alice_phone = Socket::open(&one, &alice).await;
    alice_phone
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;
    carol_socket
        .wait_for("alice online", |f| presence_of(f, alice.id, "online"))
        .await;
    let mut alice_desktop = Socket::open(&two, &alice).await;
    alice_desktop
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;
    carol_socket
        .wait_for("alice's second device announced", |f| {
            presence_of(f, alice.id, "online")
        })
        .await;
    drop(alice_phone);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Alice is still online on her desktop: the next presence event carol sees
    // is dave's (below), not alice's offline.
    let mut dave_socket = Socket::open(&two, &dave).await;
    dave_socket
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;
    let next = carol_socket
        .wait_for("a presence event", |f| f["message"]["status"].is_string())
        .await;
    assert!(presence_of(&next, dave.id, "online"), "unexpected {next}");
    drop(alice_desktop);
    carol_socket
        .wait_for("alice offline", |f| presence_of(f, alice.id, "offline"))
        .await;

    let mut watcher = Socket::open(&three, &alice).await;
    watcher
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;

    // Revocation crosses instances: logout on instance 1 closes carol's socket
    // on instance 3, and every instance refuses the token.
    let mut carol_second = Socket::open(&three, &carol).await;
    let (status, _) = call(
        reqwest::Method::DELETE,
        one.url("/auth/logout"),
        Some(&carol.token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let bye = carol_second
        .wait_for("disconnect", |f| f["type"] == "disconnect")
        .await;
    assert_eq!(
        bye,
        json!({ "type": "disconnect", "reason": "unauthorized", "reconnect": false })
    );
    for instance in [&one, &two, &three] {
        let (status, _) = call(
            reqwest::Method::GET,
            instance.url("/api/v1/users/me"),
            Some(&carol.token),
            None,
        )
        .await;
        assert_eq!(status, 401);
    }

    // Instance 2 dies. Messages sent meanwhile are caught up on instance 3,
    // each exactly once; dave (only ever on instance 2) goes offline.
    let last_seen_seq = first["seq"].as_i64().expect("seq");
    two.kill();
    while bob_socket.next_frame().await.is_some() {}
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(
            send(
                &one,
                &alice,
                conversation,
                &format!("during the outage {i}"),
            )
            .await,
        );
    }
    let mut bob_again = Socket::open(&three, &bob).await;
    let catch_up = json!({ "channel": "ConversationChannel", "conversation_id": conversation, "since_seq": last_seen_seq });
    bob_again.subscribe(catch_up).await;
    // A message racing the catch-up is delivered once too.
    sent.push(send(&one, &alice, conversation, "right after the reconnect").await);
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let frame = bob_again
            .wait_for("caught-up messages", |f| {
                f["message"]["type"] == "new_message"
            })
            .await;
        received.push(frame["message"]["message"]["seq"].as_i64().expect("seq"));
    }
    let expected: Vec<i64> = sent
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        received, expected,
        "every message of the outage exactly once, in order"
    );
    let extra = tokio::time::timeout(Duration::from_millis(500), bob_again.ws.next()).await;
    if let Ok(Some(Ok(Message::Text(text)))) = extra {
        let frame: Value = serde_json::from_str(&text).expect("json");
        assert_ne!(
            frame["message"]["type"], "new_message",
            "a duplicate arrived: {frame}"
        );
    }
    watcher
        .wait_for("dave offline after instance 2 died", |f| {
            presence_of(f, dave.id, "offline")
        })
        .await;
}
