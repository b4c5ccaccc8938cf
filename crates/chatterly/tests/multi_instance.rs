//! Scale-out: three real `chatterly serve` processes on one PostgreSQL
//! database and one Redis. Messages, presence and revocation cross instances;
//! an instance killed with SIGKILL loses nothing: its clients reconnect to
//! another instance, catch up with `since_seq`, and receive every message sent
//! during the outage exactly once; its users go offline when its presence TTL
//! lapses.

mod common;
#[path = "ops/mod.rs"]
mod ops;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::PgDatabase;
use futures::{SinkExt, StreamExt};
use ops::{call, register, Instance, Place, Socket, User, WAIT};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// One `chatterly serve` process on the shared PostgreSQL and Redis, with a
/// short presence TTL (so a killed instance's users go offline quickly) and
/// `extra` flags.
async fn start(
    db: &PgDatabase,
    prefix: &str,
    data_dir: &std::path::Path,
    extra: &[&str],
) -> Instance {
    let place = Place::Postgres {
        db,
        prefix,
        data_dir,
    };
    let mut flags = vec!["--presence-ttl", "3"];
    flags.extend_from_slice(extra);
    Instance::start(&place, &flags).await
}

async fn send(instance: &Instance, user: &User, conversation: i64, content: &str) -> Value {
    ops::send(instance, user, conversation, json!({ "content": content })).await
}

fn presence_of(frame: &Value, user_id: i64, status: &str) -> bool {
    frame["message"]["user_id"] == user_id && frame["message"]["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_messages_presence_revocation_and_survive_a_kill() {
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let data_dir = tempfile::tempdir().expect("temp dir");
    let one = start(&db, &prefix, data_dir.path(), &[]).await;
    let mut two = start(&db, &prefix, data_dir.path(), &[]).await;
    let three = start(&db, &prefix, data_dir.path(), &[]).await;

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
    let mut bob_socket = Socket::open(&two, &bob.token).await;
    bob_socket.subscribe(room.clone()).await;
    let mut carol_socket = Socket::open(&three, &carol.token).await;
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
    let mut alice_phone = Socket::open(&one, &alice.token).await;
    alice_phone
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;
    carol_socket
        .wait_for("alice online", |f| presence_of(f, alice.id, "online"))
        .await;
    let mut alice_desktop = Socket::open(&two, &alice.token).await;
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
    let mut dave_socket = Socket::open(&two, &dave.token).await;
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

    let mut watcher = Socket::open(&three, &alice.token).await;
    watcher
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;

    // Revocation crosses instances: logout on instance 1 closes carol's socket
    // on instance 3, and every instance refuses the token.
    let mut carol_second = Socket::open(&three, &carol.token).await;
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
    let mut bob_again = Socket::open(&three, &bob.token).await;
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

// ---- calls and the durable job queue across instances -------------------------

/// Calls ring for two seconds in these tests.
const RING_FLAGS: [&str; 2] = ["--call-ring-timeout", "2"];

/// Every frame (pings aside) one socket receives, recorded in the background.
struct Recorder {
    frames: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    fn start(mut socket: Socket) -> Recorder {
        let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&frames);
        let task = tokio::spawn(async move {
            while let Some(Ok(message)) = socket.ws.next().await {
                if let Message::Text(text) = message {
                    let frame: Value = serde_json::from_str(&text).expect("json frame");
                    if frame["type"] != "ping" {
                        sink.lock().expect("lock").push(frame);
                    }
                }
            }
        });
        Recorder { frames, task }
    }

    /// How many channel messages match `pred`.
    fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.frames
            .lock()
            .expect("lock")
            .iter()
            .filter(|f| pred(&f["message"]))
            .count()
    }

    fn dump(&self) -> String {
        serde_json::to_string(&*self.frames.lock().expect("lock")).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn call_ended(call_id: i64) -> impl Fn(&Value) -> bool {
    move |m| m["type"] == "call_ended" && m["call_session_id"] == call_id
}

fn call_log(call_id: i64) -> impl Fn(&Value) -> bool {
    move |m| {
        m["type"] == "new_message"
            && m["message"]["message_type"] == "call"
            && m["message"]["call_session"]["id"] == call_id
    }
}

/// Polls `done` until it holds; fails with `what` after `limit`.
async fn eventually(what: &str, limit: Duration, done: impl Fn() -> Option<String>) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let Some(missing) = done() else { return };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {limit:?}: {missing}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A socket for `user` on `instance`, on its CallChannel and the
/// conversations' streams, recording.
async fn call_socket(instance: &Instance, user: &User, conversations: &[i64]) -> Recorder {
    let mut socket = Socket::open(instance, &user.token).await;
    socket.subscribe(json!({ "channel": "CallChannel" })).await;
    for id in conversations {
        socket
            .subscribe(json!({ "channel": "ConversationChannel", "conversation_id": id }))
            .await;
    }
    Recorder::start(socket)
}

async fn group_of(instance: &Instance, owner: &User, members: &[&User]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
    let (status, body) = call(
        reqwest::Method::POST,
        instance.url("/api/v1/conversations"),
        Some(&owner.token),
        Some(json!({ "name": "callers", "conversation_type": "group", "member_ids": ids })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_i64().expect("conversation id")
}

/// `POST .../calls` through `instance`; returns the CallSession.
async fn start_call(instance: &Instance, user: &User, conversation: i64) -> Value {
    let (status, body) = call(
        reqwest::Method::POST,
        instance.url(&format!("/api/v1/conversations/{conversation}/calls")),
        Some(&user.token),
        Some(json!({ "call": { "call_type": "audio" } })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["status"], "ringing");
    body["data"].clone()
}

/// The call logs of `call_id` in the conversation's history, read through
/// `instance`.
async fn logs_in_history(
    instance: &Instance,
    user: &User,
    conversation: i64,
    call_id: i64,
) -> Vec<Value> {
    let (status, body) = call(
        reqwest::Method::GET,
        instance.url(&format!(
            "/api/v1/conversations/{conversation}/messages?limit=100"
        )),
        Some(&user.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["message_type"] == "call" && m["call_session"]["id"] == call_id)
        .cloned()
        .collect()
}

/// Asserts the one call log of a missed call, written no earlier than the
/// ring timeout after the call was created.
#[track_caller]
fn assert_missed_log(logs: &[Value], call: &Value) {
    assert_eq!(
        logs.len(),
        1,
        "exactly one call log for call {}: {logs:?}",
        call["id"]
    );
    let log = &logs[0];
    assert_eq!(log["content"], "call");
    assert_eq!(log["user"]["id"], call["initiator_id"]);
    assert_eq!(log["call_session"]["status"], "missed", "{log}");
    let at = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp")).expect("timestamp")
    };
    let rang = at(&log["created_at"]) - at(&call["created_at"]);
    assert!(
        rang >= chrono::TimeDelta::milliseconds(1900),
        "missed only after the ring timeout, not after {rang}: {log}"
    );
}

/// No `call.missed` job is left pending in the shared database.
fn assert_no_pending_missed_call(db: &PgDatabase, data_dir: &std::path::Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_chatterly"))
        .env_remove("DATABASE_URL")
        .args(["jobs", "list", "--status", "pending"])
        .args(["--database-url", &db.url, "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .expect("chatterly jobs list");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "jobs list: {output:?}");
    assert!(stdout.contains("job(s)"), "a table: {stdout}");
    assert!(
        !stdout.contains("call.missed"),
        "no missed-call job is left pending:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_started_on_any_instance_are_missed_once_and_announced_everywhere() {
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let data_dir = tempfile::tempdir().expect("temp dir");
    let one = start(&db, &prefix, data_dir.path(), &RING_FLAGS).await;
    let two = start(&db, &prefix, data_dir.path(), &RING_FLAGS).await;
    let three = start(&db, &prefix, data_dir.path(), &RING_FLAGS).await;
    let instances = [&one, &two, &three];
    let users = [
        register(&one, "alice").await,
        register(&two, "bob").await,
        register(&three, "carol").await,
    ];
    // One group per caller (a conversation holds one call at a time).
    let mut conversations = Vec::new();
    for (i, owner) in users.iter().enumerate() {
        let others: Vec<&User> = users.iter().filter(|u| u.id != owner.id).collect();
        conversations.push(group_of(instances[i], owner, &others).await);
    }
    // User i listens on instance i+1 and calls through instance i: every
    // event a socket sees for its own call crossed instances.
    let mut sockets = Vec::new();
    for (i, user) in users.iter().enumerate() {
        sockets.push(call_socket(instances[(i + 1) % 3], user, &conversations).await);
    }
    let mut calls = Vec::new();
    for (i, user) in users.iter().enumerate() {
        calls.push(start_call(instances[i], user, conversations[i]).await);
    }
    let ids: Vec<i64> = calls
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();

    eventually(
        "every socket sees every call missed and logged",
        Duration::from_secs(15),
        || {
            for (j, socket) in sockets.iter().enumerate() {
                for id in &ids {
                    if socket.count(call_ended(*id)) == 0 || socket.count(call_log(*id)) == 0 {
                        return Some(format!("socket {j} lacks call {id}: {}", socket.dump()));
                    }
                }
            }
            None
        },
    )
    .await;
    // Several polls of three workers later: nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (j, socket) in sockets.iter().enumerate() {
        for (i, id) in ids.iter().enumerate() {
            let what = format!(
                "socket of user {j} (instance {}), call {id}",
                (j + 1) % 3 + 1
            );
            assert_eq!(
                socket.count(call_ended(*id)),
                1,
                "{what}: {}",
                socket.dump()
            );
            assert_eq!(
                socket.count(|m| call_ended(*id)(m) && m["status"] == "missed"),
                1,
                "{what}: the call_ended says missed"
            );
            assert_eq!(socket.count(call_log(*id)), 1, "{what}: one call log");
            assert_eq!(
                socket.count(
                    |m| call_log(*id)(m) && m["message"]["call_session"]["status"] == "missed"
                ),
                1,
                "{what}: the log says missed"
            );
            let incoming =
                socket.count(|m| m["type"] == "incoming_call" && m["call_session_id"] == *id);
            assert_eq!(incoming, usize::from(i != j), "{what}: incoming_call");
        }
    }
    for (i, call) in calls.iter().enumerate() {
        let reader = &users[(i + 2) % 3];
        let logs = logs_in_history(instances[(i + 2) % 3], reader, conversations[i], ids[i]).await;
        assert_missed_log(&logs, call);
    }
    assert_no_pending_missed_call(&db, data_dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_instance_dies_after_the_201_is_still_missed_once() {
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut one = start(&db, &prefix, data_dir.path(), &RING_FLAGS).await;
    let two = start(&db, &prefix, data_dir.path(), &RING_FLAGS).await;
    let three = start(&db, &prefix, data_dir.path(), &RING_FLAGS).await;
    let alice = register(&one, "alice").await;
    let bob = register(&two, "bob").await;
    let conversation = group_of(&two, &alice, &[&bob]).await;
    let alice_socket = call_socket(&two, &alice, &[conversation]).await;
    let bob_socket = call_socket(&three, &bob, &[conversation]).await;

    let call = start_call(&one, &alice, conversation).await;
    one.kill();
    let id = call["id"].as_i64().expect("id");

    eventually(
        "both sockets see the call missed and logged",
        Duration::from_secs(15),
        || {
            for socket in [&alice_socket, &bob_socket] {
                if socket.count(call_ended(id)) == 0 || socket.count(call_log(id)) == 0 {
                    return Some(socket.dump());
                }
            }
            None
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for socket in [&alice_socket, &bob_socket] {
        assert_eq!(socket.count(call_ended(id)), 1, "{}", socket.dump());
        assert_eq!(
            socket.count(|m| call_ended(id)(m) && m["status"] == "missed"),
            1,
            "{}",
            socket.dump()
        );
        assert_eq!(socket.count(call_log(id)), 1, "{}", socket.dump());
    }
    assert_missed_log(
        &logs_in_history(&three, &bob, conversation, id).await,
        &call,
    );
    // The call is over everywhere.
    let (status, body) = call_api_accept(&two, &bob, conversation, id).await;
    assert_eq!(status, 422, "{body}");
    assert_no_pending_missed_call(&db, data_dir.path());
}

async fn call_api_accept(
    instance: &Instance,
    user: &User,
    conversation: i64,
    id: i64,
) -> (u16, Value) {
    call(
        reqwest::Method::PUT,
        instance.url(&format!(
            "/api/v1/conversations/{conversation}/calls/{id}/accept"
        )),
        Some(&user.token),
        None,
    )
    .await
}

/// A participant who joined through another instance hears every toggle,
/// even from a socket on an instance that had the call's roster cached
/// before the join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_on_another_instance_hears_every_toggle() {
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let data_dir = tempfile::tempdir().expect("temp dir");
    let one = start(&db, &prefix, data_dir.path(), &[]).await;
    let two = start(&db, &prefix, data_dir.path(), &[]).await;
    let three = start(&db, &prefix, data_dir.path(), &[]).await;
    let alice = register(&one, "alice").await;
    let bob = register(&two, "bob").await;
    let carol = register(&three, "carol").await;
    let conversation = group_of(&one, &alice, &[&bob, &carol]).await;
    let mut alice_socket = Socket::open(&one, &alice.token).await;
    alice_socket
        .subscribe(json!({ "channel": "CallChannel" }))
        .await;
    let mut bob_socket = Socket::open(&two, &bob.token).await;
    bob_socket
        .subscribe(json!({ "channel": "CallChannel" }))
        .await;
    let carol_socket = call_socket(&three, &carol, &[]).await;
    let calls_id = json!({ "channel": "CallChannel" }).to_string();
    let perform = |data: Value| {
        json!({ "command": "message", "identifier": calls_id, "data": data.to_string() })
            .to_string()
    };

    let started = start_call(&one, &alice, conversation).await;
    let id = started["id"].as_i64().expect("id");
    bob_socket
        .wait_for("incoming_call", |f| f["message"]["type"] == "incoming_call")
        .await;
    bob_socket
        .ws
        .send(Message::text(perform(
            json!({ "action": "accept_call", "call_session_id": id }),
        )))
        .await
        .expect("sent");
    alice_socket
        .wait_for("call_accepted", |f| f["message"]["type"] == "call_accepted")
        .await;
    // Signals both ways: instances one and two now know who is in the call.
    alice_socket
        .ws
        .send(Message::text(perform(json!({
            "action": "send_signal", "call_session_id": id, "target_user_id": bob.id,
            "signal": { "type": "offer", "sdp": "v=0" },
        }))))
        .await
        .expect("sent");
    bob_socket
        .wait_for("offer", |f| f["message"]["type"] == "signal")
        .await;
    bob_socket
        .ws
        .send(Message::text(perform(json!({
            "action": "send_signal", "call_session_id": id, "target_user_id": alice.id,
            "signal": { "type": "answer", "sdp": "v=0" },
        }))))
        .await
        .expect("sent");
    alice_socket
        .wait_for("answer", |f| f["message"]["type"] == "signal")
        .await;

    // Carol joins through instance three.
    let (status, body) = call(
        reqwest::Method::POST,
        three.url(&format!(
            "/api/v1/conversations/{conversation}/calls/{id}/join"
        )),
        Some(&carol.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for socket in [&mut alice_socket, &mut bob_socket] {
        let joined = socket
            .wait_for("participant_joined", |f| {
                f["message"]["type"] == "participant_joined"
            })
            .await;
        assert_eq!(joined["message"]["user"]["id"], carol.id);
    }

    // Alice (on one) mutes, bob (on two) turns his camera off: carol hears both.
    alice_socket
        .ws
        .send(Message::text(perform(json!({
            "action": "toggle_mute", "call_session_id": id, "muted": true,
        }))))
        .await
        .expect("sent");
    bob_socket
        .ws
        .send(Message::text(perform(json!({
            "action": "toggle_camera", "call_session_id": id, "camera_off": true,
        }))))
        .await
        .expect("sent");
    let muted = bob_socket
        .wait_for("participant_muted", |f| {
            f["message"]["type"] == "participant_muted"
        })
        .await;
    assert_eq!(muted["message"]["user_id"], alice.id);
    eventually("carol hears both toggles", Duration::from_secs(5), || {
        let muted =
            carol_socket.count(|m| m["type"] == "participant_muted" && m["user_id"] == alice.id);
        let camera = carol_socket
            .count(|m| m["type"] == "participant_camera_toggled" && m["user_id"] == bob.id);
        (muted != 1 || camera != 1).then(|| carol_socket.dump())
    })
    .await;
}

// ---- read state across instances ------------------------------------------------

/// A second token for `user` (another device), through `instance`.
/// The caller's view of one conversation through `instance`.
async fn conversation_on(instance: &Instance, user: &User, id: i64) -> Value {
    let (status, body) = call(
        reqwest::Method::GET,
        instance.url(&format!("/api/v1/conversations/{id}")),
        Some(&user.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// `socket.wait_for`, failing after `WAIT` even while pings keep coming.
async fn wait_within(socket: &mut Socket, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, socket.wait_for(what, pred))
        .await
        .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_positions_receipts_and_mentions_cross_instances() {
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let data_dir = tempfile::tempdir().expect("temp dir");
    let one = start(&db, &prefix, data_dir.path(), &[]).await;
    let two = start(&db, &prefix, data_dir.path(), &[]).await;

    let alice = register(&one, "alice").await;
    let bob = register(&two, "bob").await;
    let (status, created) = call(
        reqwest::Method::POST,
        one.url("/api/v1/conversations"),
        Some(&alice.token),
        Some(json!({ "conversation_type": "direct", "member_ids": [bob.id] })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let dm = created["data"]["id"].as_i64().expect("conversation id");
    for i in 1..=3 {
        send(&one, &alice, dm, &format!("m{i}")).await;
    }

    // Bob's phone is on instance 1, his desktop on instance 2; alice (who
    // takes receipts) on instance 1.
    let (status, body, token) = ops::login(&one, &bob.email, ops::PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let phone_user = User {
        id: bob.id,
        token: token.expect("a token"),
        email: bob.email.clone(),
    };
    let mut phone = Socket::open(&one, &phone_user.token).await;
    phone.subscribe(json!({ "channel": "UserChannel" })).await;
    let mut desktop = Socket::open(&two, &bob.token).await;
    let room = json!({ "channel": "ConversationChannel", "conversation_id": dm });
    desktop.subscribe(room.clone()).await;
    let mut alice_socket = Socket::open(&one, &alice.token).await;
    alice_socket
        .subscribe(json!({ "channel": "UserChannel" }))
        .await;

    // Read on the desktop (instance 2, a channel action): the phone on
    // instance 1 hears at once, and so does alice.
    desktop
        .ws
        .send(Message::text(
            json!({
                "command": "message",
                "identifier": room.to_string(),
                "data": json!({ "action": "mark_read", "seq": 2 }).to_string(),
            })
            .to_string(),
        ))
        .await
        .expect("action sent");
    let read = wait_within(&mut phone, "conversation_read", |f| {
        f["message"]["type"] == "conversation_read"
    })
    .await;
    assert_eq!(read["message"]["last_read_seq"], 2);
    assert_eq!(read["message"]["unread_count"], 1);
    // The delivered tick goes out first, then the read one.
    let ticked = wait_within(&mut alice_socket, "message_delivered", |f| {
        f["message"]["type"] == "message_delivered"
    })
    .await;
    assert_eq!(ticked["message"]["last_delivered_seq"], 2);
    let receipt = wait_within(&mut alice_socket, "read_receipt", |f| {
        f["message"]["type"] == "read_receipt"
    })
    .await;
    assert_eq!(receipt["message"]["user_id"], bob.id);
    assert_eq!(receipt["message"]["last_read_seq"], 2);

    // Both instances answer the same counts.
    for instance in [&one, &two] {
        let view = conversation_on(instance, &bob, dm).await;
        assert_eq!(
            (&view["last_read_seq"], &view["unread_count"]),
            (&json!(2), &json!(1))
        );
    }

    // A mention sent through instance 2 reaches bob's phone on instance 1,
    // and reading (REST on instance 1) reaches the desktop's stream too.
    let mention = {
        let (status, body) = call(
            reqwest::Method::POST,
            two.url(&format!("/api/v1/conversations/{dm}/messages")),
            Some(&alice.token),
            Some(json!({ "content": "@bob see this" })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    };
    assert_eq!(mention["mentions"], json!([bob.id]));
    let heard = wait_within(&mut phone, "mention", |f| f["message"]["type"] == "mention").await;
    assert_eq!(heard["message"]["message"]["id"], mention["id"]);
    assert_eq!(conversation_on(&two, &bob, dm).await["mention_count"], 1);
    desktop.subscribe(json!({ "channel": "UserChannel" })).await;
    let (status, body) = call(
        reqwest::Method::PUT,
        one.url(&format!("/api/v1/conversations/{dm}/read")),
        Some(&bob.token),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cleared = wait_within(&mut desktop, "conversation_read on instance 2", |f| {
        f["message"]["type"] == "conversation_read" && f["message"]["last_read_seq"] == 4
    })
    .await;
    assert_eq!(
        (
            &cleared["message"]["unread_count"],
            &cleared["message"]["mention_count"]
        ),
        (&json!(0), &json!(0))
    );
}
