//! Read state (beyond the reference, additive): read positions, unread and
//! mention counts on the conversation list and show, marking over REST and
//! over the ConversationChannel, a user's other devices, read receipts with
//! the privacy switch, delivery in direct conversations, mentions, and every
//! bad input (4xx with JSON, nothing changed).
//!
//! The live parts are checked over a raw Action Cable socket (the events go
//! to the UserChannel, see `domain::read_state`).

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::*;

// ---- helpers -------------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);

fn user_channel() -> Value {
    json!({ "channel": "UserChannel" })
}

fn room(id: i64) -> Value {
    json!({ "channel": "ConversationChannel", "conversation_id": id })
}

/// A raw Action Cable socket: what a device of a user receives.
struct Device {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Device {
    async fn open(app: &TestApp, token: &str) -> Device {
        let url = app
            .url(&format!("/cable?token={token}"))
            .replacen("http", "ws", 1);
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "actioncable-v1-json".parse().expect("header"),
        );
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")
            .expect("socket opens");
        let mut device = Device { ws };
        let welcome = device.frame(WAIT).await.expect("welcome");
        assert_eq!(welcome["type"], "welcome");
        device
    }

    /// Opens a socket subscribed to the user's stream.
    async fn on_user_stream(app: &TestApp, token: &str) -> Device {
        let mut device = Device::open(app, token).await;
        device.subscribe(user_channel()).await;
        device
    }

    /// The next frame that is not a ping, if one comes within `within`.
    async fn frame(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match next {
                Some(Ok(Frame::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("json frame");
                    if frame["type"] != "ping" {
                        return Some(frame);
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    }

    async fn send(&mut self, command: Value) {
        self.ws
            .send(Frame::text(command.to_string()))
            .await
            .expect("frame sent");
    }

    async fn subscribe(&mut self, identifier: Value) {
        let identifier = identifier.to_string();
        self.send(json!({ "command": "subscribe", "identifier": identifier }))
            .await;
        loop {
            let frame = self.frame(WAIT).await.expect("confirmation in time");
            if frame["identifier"] == identifier.as_str() && frame["type"].is_string() {
                assert_eq!(frame["type"], "confirm_subscription", "{frame}");
                return;
            }
        }
    }

    async fn perform(&mut self, identifier: Value, data: Value) {
        self.send(json!({
            "command": "message",
            "identifier": identifier.to_string(),
            "data": data.to_string(),
        }))
        .await;
    }

    /// The payload of the next event with this `type` (others are skipped).
    async fn event(&mut self, kind: &str) -> Value {
        self.event_where(kind, |_| true).await
    }

    async fn event_where(&mut self, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.frame(left).await else {
                panic!("no {kind} event within {WAIT:?}");
            };
            let payload = &frame["message"];
            if payload["type"] == kind && matches(payload) {
                return payload.clone();
            }
        }
    }

    /// Asserts that no event of this `type` arrives for a while.
    async fn no_event(&mut self, kind: &str) {
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.frame(left).await else {
                return;
            };
            assert_ne!(frame["message"]["type"], kind, "unexpected {frame}");
        }
    }
}

async fn show(app: &TestApp, user: &TestUser, id: i64) -> Value {
    app.get(&format!("/api/v1/conversations/{id}"), Some(&user.token))
        .await
        .expect(200)["data"]
        .clone()
}

/// The conversation as the list shows it to `user`.
async fn listed(app: &TestApp, user: &TestUser, id: i64) -> Value {
    app.conversations(user)
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("conversation {id} is in the list"))
}

/// (last_read_seq, unread_count, mention_count), checked to agree between
/// the list and show.
async fn counts(app: &TestApp, user: &TestUser, id: i64) -> (i64, i64, i64) {
    let one = show(app, user, id).await;
    let row = listed(app, user, id).await;
    let get = |v: &Value, k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"));
    let from_show = (
        get(&one, "last_read_seq"),
        get(&one, "unread_count"),
        get(&one, "mention_count"),
    );
    let from_list = (
        get(&row, "last_read_seq"),
        get(&row, "unread_count"),
        get(&row, "mention_count"),
    );
    assert_eq!(from_show, from_list, "show and list agree");
    from_show
}

async fn mark_raw(app: &TestApp, user: &TestUser, id: i64, body: Value) -> Resp {
    app.put(
        &format!("/api/v1/conversations/{id}/read"),
        Some(&user.token),
        body,
    )
    .await
}

/// Marks read up to `seq`; returns the read state answered.
async fn mark(app: &TestApp, user: &TestUser, id: i64, seq: i64) -> Value {
    mark_raw(app, user, id, json!({ "seq": seq }))
        .await
        .expect(200)["data"]
        .clone()
}

async fn delivered(app: &TestApp, user: &TestUser, id: i64, seq: i64) -> Value {
    app.put(
        &format!("/api/v1/conversations/{id}/delivered"),
        Some(&user.token),
        json!({ "seq": seq }),
    )
    .await
    .expect(200)["data"]
        .clone()
}

async fn receipts(app: &TestApp, user: &TestUser, id: i64) -> Vec<Value> {
    app.get(
        &format!("/api/v1/conversations/{id}/receipts"),
        Some(&user.token),
    )
    .await
    .expect(200)["data"]
        .as_array()
        .expect("data is an array")
        .clone()
}

fn receipt_of(receipts: &[Value], user: &TestUser) -> Value {
    receipts
        .iter()
        .find(|r| r["user_id"] == user.id)
        .cloned()
        .unwrap_or_else(|| panic!("a receipt for {} in {receipts:?}", user.username))
}

async fn set_receipts(app: &TestApp, user: &TestUser, on: bool) {
    let body = app
        .patch(
            &format!("/api/v1/users/{}", user.id),
            Some(&user.token),
            json!({ "read_receipts": on }),
        )
        .await
        .expect(200);
    assert_eq!(body["read_receipts"], on);
}

async fn edit(app: &TestApp, user: &TestUser, id: i64, message: &Value, content: &str) -> Value {
    app.patch(
        &format!("/api/v1/conversations/{id}/messages/{}", message["id"]),
        Some(&user.token),
        json!({ "content": content }),
    )
    .await
    .expect(200)
}

async fn delete(app: &TestApp, user: &TestUser, id: i64, message: &Value) {
    app.delete(
        &format!("/api/v1/conversations/{id}/messages/{}", message["id"]),
        Some(&user.token),
    )
    .await
    .expect(200);
}

async fn mentions_page(app: &TestApp, user: &TestUser, query: &str) -> (Vec<Value>, Value) {
    let body = app
        .get(&format!("/api/v1/mentions{query}"), Some(&user.token))
        .await
        .expect(200);
    (
        body["data"]["messages"]
            .as_array()
            .expect("messages array")
            .clone(),
        body["data"]["next_cursor"].clone(),
    )
}

fn ids(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

// ---- counts ------------------------------------------------------------------------

async fn unread_counts_follow_sends_edits_and_deletes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;

    // The additive fields, on a conversation with nothing in it yet.
    let fresh = show(&app, &omar, id).await;
    assert_conversation(&fresh);
    assert_eq!(
        (
            &fresh["last_read_seq"],
            &fresh["unread_count"],
            &fresh["mention_count"],
            &fresh["last_message"]
        ),
        (&json!(0), &json!(0), &json!(0), &Value::Null)
    );

    let m1 = app.send(&rana, id, "one").await;
    let m2 = app.send(&rana, id, "two").await;
    let m3 = app.send(&rana, id, "three").await;
    assert_eq!(counts(&app, &omar, id).await, (0, 3, 0));
    // One's own messages never count.
    assert_eq!(counts(&app, &rana, id).await, (3, 0, 0));
    let row = listed(&app, &omar, id).await;
    assert_conversation(&row);
    assert_eq!(row["last_seq"], 3);
    assert_message(&row["last_message"]);
    assert_eq!(row["last_message"]["id"], m3["id"]);

    // Edits are no new messages.
    edit(&app, &rana, id, &m2, "two, edited").await;
    assert_eq!(counts(&app, &omar, id).await, (0, 3, 0));
    // A deleted message no longer counts, nor shows as the latest.
    delete(&app, &rana, id, &m3).await;
    assert_eq!(counts(&app, &omar, id).await, (0, 2, 0));
    assert_eq!(
        listed(&app, &omar, id).await["last_message"]["id"],
        m2["id"]
    );
    assert_eq!(
        show(&app, &omar, id).await["last_message"]["content"],
        "two, edited"
    );

    // Replying reads what came before; the other side now has one unread.
    let reply = app.send(&omar, id, "got it").await;
    assert_eq!(
        counts(&app, &omar, id).await,
        (reply["seq"].as_i64().unwrap(), 0, 0)
    );
    assert_eq!(counts(&app, &rana, id).await, (3, 1, 0));
    // Deleting one's own message changes nothing for oneself.
    delete(&app, &omar, id, &reply).await;
    assert_eq!(counts(&app, &omar, id).await, (4, 0, 0));
    assert_eq!(counts(&app, &rana, id).await, (3, 0, 0));
    assert_eq!(
        listed(&app, &rana, id).await["last_message"]["id"],
        m2["id"]
    );
    let _ = m1;

    // A member added later starts with the earlier history read.
    let lina = app.register("lina").await;
    app.post(
        &format!("/api/v1/conversations/{id}/memberships"),
        Some(&rana.token),
        json!({ "user_id": lina.id }),
    )
    .await
    .expect(201);
    assert_eq!(counts(&app, &lina, id).await, (4, 0, 0));
    app.send(&rana, id, "welcome").await;
    assert_eq!(counts(&app, &lina, id).await, (4, 1, 0));
}

async fn marking_moves_forward_only_and_is_idempotent(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    for i in 1..=5 {
        app.send(&rana, id, &format!("m{i}")).await;
    }

    let state = mark(&app, &omar, id, 3).await;
    assert_eq!(
        (
            &state["conversation_id"],
            &state["last_read_seq"],
            &state["unread_count"],
            &state["mention_count"],
            &state["last_seq"],
            &state["last_delivered_seq"]
        ),
        (
            &json!(id),
            &json!(3),
            &json!(2),
            &json!(0),
            &json!(5),
            &json!(3)
        )
    );
    assert_ts(&state["read_at"]);
    assert_eq!(counts(&app, &omar, id).await, (3, 2, 0));

    // The same mark again, or an older one: nothing moves.
    for seq in [3, 1, 0] {
        let again = mark(&app, &omar, id, seq).await;
        assert_eq!(again, state, "seq {seq} changes nothing");
    }
    // POST is accepted as well; no seq means everything.
    let all = app
        .post(
            &format!("/api/v1/conversations/{id}/read"),
            Some(&omar.token),
            json!({}),
        )
        .await
        .expect(200)["data"]
        .clone();
    assert_eq!(
        (&all["last_read_seq"], &all["unread_count"]),
        (&json!(5), &json!(0))
    );
    let empty = app
        .request(
            Method::PUT,
            &format!("/api/v1/conversations/{id}/read"),
            Some(&omar.token),
            Body::None,
        )
        .await
        .expect(200);
    assert_eq!(empty["data"]["last_read_seq"], 5);
    // A numeric string is an integer, as everywhere else.
    assert_eq!(
        mark_raw(&app, &omar, id, json!({ "seq": "4" }))
            .await
            .expect(200)["data"]["last_read_seq"],
        5
    );
    assert_eq!(counts(&app, &omar, id).await, (5, 0, 0));
}

async fn bad_marks_are_4xx_and_change_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let eve = app.register("eve").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    for i in 1..=3 {
        app.send(&rana, id, &format!("m{i}")).await;
    }
    mark(&app, &omar, id, 1).await;
    let before = (show(&app, &omar, id).await, receipts(&app, &rana, id).await);

    let beyond = mark_raw(&app, &omar, id, json!({ "seq": 4 })).await;
    assert_422(
        &beyond,
        "Seq must be at most the conversation's last seq (3)",
    );
    let negative = mark_raw(&app, &omar, id, json!({ "seq": -1 })).await;
    assert_422(&negative, "Seq must be greater than or equal to 0");
    for wrong in [
        json!("soon"),
        json!(1.5),
        json!(true),
        json!([2]),
        json!({"n": 2}),
    ] {
        let resp = mark_raw(&app, &omar, id, json!({ "seq": wrong })).await;
        assert_422(&resp, "Seq must be an integer");
    }
    let huge = mark_raw(&app, &omar, id, json!({ "seq": i64::MAX })).await;
    huge.expect(422);
    let malformed = app
        .request(
            Method::PUT,
            &format!("/api/v1/conversations/{id}/read"),
            Some(&omar.token),
            Body::Raw(b"{\"seq\": ".to_vec()),
        )
        .await;
    assert_400(&malformed);
    let not_object = app
        .request(
            Method::PUT,
            &format!("/api/v1/conversations/{id}/read"),
            Some(&omar.token),
            Body::Raw(b"[1]".to_vec()),
        )
        .await;
    assert_400(&not_object);
    // Non-members and unknown conversations: 404, as for history.
    for (user, conversation) in [(&eve, id), (&omar, 99_999)] {
        for path in ["read", "delivered"] {
            app.put(
                &format!("/api/v1/conversations/{conversation}/{path}"),
                Some(&user.token),
                json!({ "seq": 1 }),
            )
            .await
            .expect_body(404, not_found_body());
        }
        app.get(
            &format!("/api/v1/conversations/{conversation}/receipts"),
            Some(&user.token),
        )
        .await
        .expect_body(404, not_found_body());
    }
    app.put(
        "/api/v1/conversations/abc/read",
        Some(&omar.token),
        json!({ "seq": 1 }),
    )
    .await
    .expect(404);
    // No token: 401.
    for (method, path) in [
        (Method::PUT, format!("/api/v1/conversations/{id}/read")),
        (Method::PUT, format!("/api/v1/conversations/{id}/delivered")),
        (Method::GET, format!("/api/v1/conversations/{id}/receipts")),
        (Method::GET, "/api/v1/mentions".to_owned()),
    ] {
        app.request(method, &path, None, Body::Json(json!({ "seq": 1 })))
            .await
            .expect_body(401, no_token_body());
    }
    // The same checks on the delivered mark.
    let beyond = app
        .put(
            &format!("/api/v1/conversations/{id}/delivered"),
            Some(&omar.token),
            json!({ "seq": 9 }),
        )
        .await;
    assert_422(
        &beyond,
        "Seq must be at most the conversation's last seq (3)",
    );
    // The mentions list: a cursor or limit that is no integer.
    for query in ["?cursor=x", "?limit=ten"] {
        assert_400(
            &app.get(&format!("/api/v1/mentions{query}"), Some(&omar.token))
                .await,
        );
    }
    // The setting must be a boolean.
    let resp = app
        .patch(
            &format!("/api/v1/users/{}", omar.id),
            Some(&omar.token),
            json!({ "read_receipts": "no" }),
        )
        .await;
    assert_422(&resp, "Read receipts must be true or false");
    app.patch(
        &format!("/api/v1/users/{}", rana.id),
        Some(&omar.token),
        json!({ "read_receipts": false }),
    )
    .await
    .expect_body(403, forbidden_body());

    let after = (show(&app, &omar, id).await, receipts(&app, &rana, id).await);
    assert_eq!(after, before, "nothing changed");
    let me = app
        .get("/api/v1/users/me", Some(&omar.token))
        .await
        .expect(200);
    assert_eq!(me["read_receipts"], true);
    let rana_me = app
        .get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(rana_me["read_receipts"], true);
}

async fn concurrent_sends_while_marking_keep_counts_exact(backend: Backend) {
    let app = Arc::new(TestApp::start(backend).await);
    let reader = app.register("reader").await;
    let mut senders = Vec::new();
    for i in 0..4 {
        senders.push(app.register(&format!("sender_{i}")).await);
    }
    let others: Vec<&TestUser> = senders.iter().collect();
    let id = app.group(&reader, "Busy", &others).await;

    let mut tasks = Vec::new();
    for sender in senders.iter().cloned() {
        let app = Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                app.send(&sender, id, &format!("{} {i}", sender.username))
                    .await;
            }
        }));
    }
    let marker = {
        let app = Arc::clone(&app);
        let reader = reader.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for _ in 0..20 {
                let state =
                    mark_raw(&app, &reader, id, json!({})).await.expect(200)["data"].clone();
                let position = state["last_read_seq"].as_i64().expect("position");
                assert!(position >= last, "never backwards: {state}");
                assert_eq!(
                    state["unread_count"].as_i64(),
                    Some(state["last_seq"].as_i64().expect("last_seq") - position),
                    "exact while sends race: {state}"
                );
                last = position;
            }
        })
    };
    for task in tasks {
        task.await.expect("sender");
    }
    marker.await.expect("marker");

    // Delete a few, then compare every member's count with the history.
    let all = app.all_messages(&reader, id).await;
    assert_eq!(all.len(), 60);
    for message in all.iter().step_by(9) {
        let author = senders
            .iter()
            .find(|s| message["user"]["id"] == s.id)
            .expect("author");
        delete(&app, author, id, message).await;
    }
    let live = app.all_messages(&reader, id).await;
    for member in std::iter::once(&reader).chain(senders.iter()) {
        let (position, unread, _) = counts(&app, member, id).await;
        let expected = live
            .iter()
            .filter(|m| m["seq"].as_i64() > Some(position) && m["user"]["id"] != member.id)
            .count() as i64;
        assert_eq!(unread, expected, "{} at {position}", member.username);
    }
}

// ---- devices and receipts ----------------------------------------------------------

async fn other_devices_learn_the_read_position(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    for i in 1..=4 {
        app.send(&rana, id, &format!("m{i}")).await;
    }
    // Omar's phone and desktop: two logins, two sockets.
    let desktop_token = app.login(&omar.email, &omar.password).await.bearer();
    let mut phone = Device::on_user_stream(&app, &omar.token).await;
    let mut desktop = Device::on_user_stream(&app, &desktop_token).await;

    // Read on the phone over REST: the desktop hears of it at once.
    mark(&app, &omar, id, 2).await;
    let event = desktop.event("conversation_read").await;
    assert_eq!(
        (
            &event["conversation_id"],
            &event["last_read_seq"],
            &event["unread_count"],
            &event["mention_count"],
            &event["last_seq"]
        ),
        (&json!(id), &json!(2), &json!(2), &json!(0), &json!(4))
    );
    assert_ts(&event["read_at"]);
    phone.event("conversation_read").await;

    // Read on the desktop through its ConversationChannel: the phone hears.
    desktop.subscribe(room(id)).await;
    desktop
        .perform(room(id), json!({ "action": "mark_read", "seq": 4 }))
        .await;
    let event = phone.event("conversation_read").await;
    assert_eq!(
        (&event["last_read_seq"], &event["unread_count"]),
        (&json!(4), &json!(0))
    );
    assert_eq!(counts(&app, &omar, id).await, (4, 0, 0));

    // A repeat moves nothing and tells nobody; nor does a bad action.
    desktop
        .perform(room(id), json!({ "action": "mark_read", "seq": 3 }))
        .await;
    desktop
        .perform(room(id), json!({ "action": "mark_read", "seq": 99 }))
        .await;
    desktop
        .perform(room(id), json!({ "action": "mark_read", "seq": "x" }))
        .await;
    desktop
        .perform(room(id), json!({ "action": "mark_read", "seq": -2 }))
        .await;
    phone.no_event("conversation_read").await;
    assert_eq!(counts(&app, &omar, id).await, (4, 0, 0));
    // Without a seq: everything, also what arrived meanwhile.
    app.send(&rana, id, "m5").await;
    desktop
        .perform(room(id), json!({ "action": "mark_read" }))
        .await;
    let event = phone.event("conversation_read").await;
    assert_eq!(event["last_read_seq"], 5);
    // Another member's stream gets a receipt, never omar's own state.
    let mut rana_device = Device::on_user_stream(&app, &rana.token).await;
    app.send(&rana, id, "m6").await;
    mark(&app, &omar, id, 6).await;
    phone.event("conversation_read").await;
    rana_device.no_event("conversation_read").await;
}

async fn read_receipts_follow_the_setting_both_ways(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let id = app.group(&rana, "Crew", &[&omar, &lina]).await;
    for i in 1..=3 {
        app.send(&rana, id, &format!("m{i}")).await;
    }
    set_receipts(&app, &lina, false).await;
    let mut rana_device = Device::on_user_stream(&app, &rana.token).await;
    let mut lina_device = Device::on_user_stream(&app, &lina.token).await;

    // Omar reads: rana (receipts on) sees it; lina (off) sees no one's.
    let state = mark(&app, &omar, id, 2).await;
    let receipt = rana_device.event("read_receipt").await;
    assert_eq!(
        receipt,
        json!({
            "type": "read_receipt",
            "conversation_id": id,
            "user_id": omar.id,
            "last_read_seq": 2,
            "read_at": state["read_at"],
        })
    );
    lina_device.no_event("read_receipt").await;

    // Lina reads: she sends no receipt.
    mark(&app, &lina, id, 3).await;
    rana_device.no_event("read_receipt").await;

    // The REST list, as each sees it.
    let seen_by_rana = receipts(&app, &rana, id).await;
    assert_eq!(seen_by_rana.len(), 3);
    assert_eq!(receipt_of(&seen_by_rana, &omar)["last_read_seq"], 2);
    assert_ts(&receipt_of(&seen_by_rana, &omar)["read_at"]);
    assert_eq!(
        receipt_of(&seen_by_rana, &rana)["last_read_seq"],
        3,
        "own sends"
    );
    let lina_seen = receipt_of(&seen_by_rana, &lina);
    assert_eq!(
        (&lina_seen["last_read_seq"], &lina_seen["read_at"]),
        (&Value::Null, &Value::Null),
        "lina's position is hers"
    );
    // Delivery is no read receipt: it shows (read implies delivered).
    assert_eq!(lina_seen["last_delivered_seq"], 3);
    let seen_by_lina = receipts(&app, &lina, id).await;
    assert_eq!(
        receipt_of(&seen_by_lina, &omar)["last_read_seq"],
        Value::Null
    );
    assert_eq!(
        receipt_of(&seen_by_lina, &rana)["last_read_seq"],
        Value::Null
    );
    assert_eq!(
        receipt_of(&seen_by_lina, &lina)["last_read_seq"],
        3,
        "her own"
    );
    let ordered: Vec<i64> = seen_by_lina
        .iter()
        .map(|r| r["user_id"].as_i64().expect("user_id"))
        .collect();
    let mut sorted = ordered.clone();
    sorted.sort_unstable();
    assert_eq!(ordered, sorted, "by user id");

    // Lina turns receipts back on: both ways again.
    set_receipts(&app, &lina, true).await;
    assert_eq!(
        receipt_of(&receipts(&app, &rana, id).await, &lina)["last_read_seq"],
        3
    );
    assert_eq!(
        receipt_of(&receipts(&app, &lina, id).await, &omar)["last_read_seq"],
        2
    );
    mark(&app, &omar, id, 3).await;
    let receipt = lina_device.event("read_receipt").await;
    assert_eq!(
        (&receipt["user_id"], &receipt["last_read_seq"]),
        (&json!(omar.id), &json!(3))
    );
    rana_device.event("read_receipt").await;

    // Omar turns his off: his next read reaches no one.
    set_receipts(&app, &omar, false).await;
    app.send(&rana, id, "m4").await;
    mark(&app, &omar, id, 4).await;
    rana_device.no_event("read_receipt").await;
    lina_device.no_event("read_receipt").await;
    assert_eq!(
        receipt_of(&receipts(&app, &rana, id).await, &omar)["last_read_seq"],
        Value::Null
    );
}

async fn delivery_ticks_in_direct_conversations(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let dm = app.direct(&rana, &omar).await;
    let m1 = app.send(&rana, dm, "hi").await;
    let m2 = app.send(&rana, dm, "there").await;
    let mut rana_device = Device::on_user_stream(&app, &rana.token).await;

    // Omar's device got the events: delivered, not read.
    let mut omar_device = Device::open(&app, &omar.token).await;
    omar_device.subscribe(room(dm)).await;
    omar_device
        .perform(
            room(dm),
            json!({ "action": "mark_delivered", "seq": m2["seq"] }),
        )
        .await;
    let tick = rana_device.event("message_delivered").await;
    assert_eq!(
        tick,
        json!({
            "type": "message_delivered",
            "conversation_id": dm,
            "user_id": omar.id,
            "last_delivered_seq": 2,
        })
    );
    rana_device.no_event("read_receipt").await;
    let omar_receipt = receipt_of(&receipts(&app, &rana, dm).await, &omar);
    assert_eq!(
        (
            &omar_receipt["last_read_seq"],
            &omar_receipt["last_delivered_seq"]
        ),
        (&json!(0), &json!(2))
    );
    assert_eq!(
        counts(&app, &omar, dm).await,
        (0, 2, 0),
        "delivered is not read"
    );

    // Delivered again (or lower): no new tick. Then read: the read tick.
    delivered(&app, &omar, dm, 1).await;
    rana_device.no_event("message_delivered").await;
    mark(&app, &omar, dm, m1["seq"].as_i64().unwrap()).await;
    let receipt = rana_device.event("read_receipt").await;
    assert_eq!(receipt["last_read_seq"], 1);

    // With receipts off, reading still delivers (never reads).
    set_receipts(&app, &omar, false).await;
    let m3 = app.send(&rana, dm, "third").await;
    mark(&app, &omar, dm, m3["seq"].as_i64().unwrap()).await;
    let tick = rana_device.event("message_delivered").await;
    assert_eq!(tick["last_delivered_seq"], 3);
    rana_device.no_event("read_receipt").await;

    // In a group, delivery is kept but announced to no one.
    let group = app.group(&rana, "Crew", &[&omar]).await;
    app.send(&rana, group, "group hi").await;
    let state = delivered(&app, &omar, group, 1).await;
    assert_eq!(
        (&state["last_delivered_seq"], &state["last_read_seq"]),
        (&json!(1), &json!(0))
    );
    rana_device.no_event("message_delivered").await;
}

// ---- mentions ----------------------------------------------------------------------

async fn mentions_resolve_count_list_edit_and_delete(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let outsider = app.register("outsider").await;
    let id = app.group(&rana, "Crew", &[&omar, &lina]).await;
    let mut omar_device = Device::on_user_stream(&app, &omar.token).await;
    let mut lina_device = Device::on_user_stream(&app, &lina.token).await;
    let mut outsider_device = Device::on_user_stream(&app, &outsider.token).await;

    // Members named are mentioned; strangers, unknown names, e-mail
    // addresses and oneself are plain text.
    let message = app
        .send(
            &rana,
            id,
            "@Omar look, cc @outsider @nobody mail@lina.test @rana_h",
        )
        .await;
    assert_message(&message);
    assert_eq!(message["mentions"], json!([omar.id]));
    assert_eq!(message["broadcast_mention"], Value::Null);
    let event = omar_device.event("mention").await;
    assert_eq!(event["conversation_id"], id);
    assert_eq!(event["message"], message);
    outsider_device.no_event("mention").await;
    lina_device.no_event("mention").await;
    assert_eq!(counts(&app, &omar, id).await, (0, 1, 1));
    assert_eq!(counts(&app, &lina, id).await, (0, 1, 0));
    // The history shows the same array.
    let (history, _) = app.history(&omar, id, "").await;
    assert_eq!(history[0]["mentions"], json!([omar.id]));
    let plain = app.send(&rana, id, "no one").await;
    assert_eq!(plain["mentions"], json!([]));

    // The list.
    let (listed, next) = mentions_page(&app, &omar, "").await;
    assert_eq!(ids(&listed), vec![message["id"].as_i64().unwrap()]);
    assert_eq!(next, Value::Null);
    listed.iter().for_each(assert_message);
    assert!(mentions_page(&app, &lina, "").await.0.is_empty());

    // An edit moves the mention from omar to lina.
    let edited = edit(&app, &rana, id, &message, "actually @lina").await;
    assert_eq!(edited["mentions"], json!([lina.id]));
    let removed = omar_device.event("mention_removed").await;
    assert_eq!(
        removed,
        json!({ "type": "mention_removed", "conversation_id": id, "message_id": message["id"] })
    );
    let event = lina_device.event("mention").await;
    assert_eq!(event["message"]["content"], "actually @lina");
    assert_eq!(counts(&app, &omar, id).await, (0, 2, 0));
    assert_eq!(counts(&app, &lina, id).await, (0, 2, 1));
    assert!(mentions_page(&app, &omar, "").await.0.is_empty());
    assert_eq!(mentions_page(&app, &lina, "").await.0.len(), 1);
    // An edit that keeps the mention announces nothing new.
    edit(&app, &rana, id, &message, "actually @lina, really").await;
    lina_device.no_event("mention").await;
    assert_eq!(counts(&app, &lina, id).await, (0, 2, 1));

    // Reading past it stops counting it; it stays listed.
    mark(&app, &lina, id, message["seq"].as_i64().unwrap()).await;
    assert_eq!(counts(&app, &lina, id).await, (1, 1, 0));
    assert_eq!(mentions_page(&app, &lina, "").await.0.len(), 1);

    // A delete removes it everywhere.
    let second = app.send(&omar, id, "@lina and @rana_h").await;
    let mut both = vec![rana.id, lina.id];
    both.sort_unstable();
    assert_eq!(second["mentions"], json!(both), "ascending ids");
    lina_device.event("mention").await;
    assert_eq!(counts(&app, &lina, id).await, (1, 2, 1));
    delete(&app, &omar, id, &second).await;
    let removed = lina_device.event("mention_removed").await;
    assert_eq!(removed["message_id"], second["id"]);
    assert_eq!(counts(&app, &lina, id).await, (1, 1, 0));
    assert_eq!(counts(&app, &rana, id).await.2, 0);
    assert_eq!(mentions_page(&app, &lina, "").await.0.len(), 1);
    let _ = plain;
}

async fn broadcast_mentions_are_for_admins_and_rate_limited(backend: Backend) {
    let app = TestApp::start_with(
        backend,
        &[
            "--rate-limits",
            "on",
            "--auth-per-minute",
            "100000",
            "--sends-per-second",
            "100000",
            "--send-burst",
            "100000",
        ],
    )
    .await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let id = app.group(&rana, "Crew", &[&omar, &lina]).await;
    // Omar is online (a presence subscription); lina is not.
    let mut omar_device = Device::on_user_stream(&app, &omar.token).await;
    omar_device
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;
    let mut lina_device = Device::on_user_stream(&app, &lina.token).await;

    // From a member who is no admin: plain text.
    let plain = app.send(&omar, id, "@channel hello all").await;
    assert_eq!(
        (&plain["mentions"], &plain["broadcast_mention"]),
        (&json!([]), &Value::Null)
    );
    lina_device.no_event("mention").await;

    // The admin's @here: the members online.
    let here = app.send(&rana, id, "@here standup").await;
    assert_eq!(here["broadcast_mention"], "here");
    assert_eq!(here["mentions"], json!([]));
    omar_device.event("mention").await;
    lina_device.no_event("mention").await;
    assert_eq!(counts(&app, &omar, id).await.2, 1);
    assert_eq!(counts(&app, &lina, id).await.2, 0);

    // The admin's @channel: everyone but the author.
    let all = app.send(&rana, id, "@channel release at 5").await;
    assert_eq!(all["broadcast_mention"], "channel");
    omar_device.event("mention").await;
    lina_device.event("mention").await;
    assert_eq!(counts(&app, &lina, id).await.2, 1);
    assert_eq!(counts(&app, &rana, id).await.2, 0);

    // Rate limited per conversation: the next one is refused, nothing sent.
    let before = app.all_messages(&rana, id).await.len();
    let refused = app
        .send_raw(&rana, id, json!({ "content": "@here again" }))
        .await;
    let body = refused.expect(429);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("@channel")),
        "{body}"
    );
    assert_eq!(app.all_messages(&rana, id).await.len(), before);
    lina_device.no_event("mention").await;
    // Plain messages and named mentions still go.
    let named = app.send(&rana, id, "@lina just you").await;
    assert_eq!(named["mentions"], json!([lina.id]));
    // An edit that keeps the broadcast costs nothing and keeps its reach.
    let kept = edit(&app, &rana, id, &all, "@channel release at 6").await;
    assert_eq!(kept["broadcast_mention"], "channel");
    assert_eq!(counts(&app, &lina, id).await.2, 2);
    // An edit that drops it takes the mentions back.
    edit(&app, &rana, id, &all, "release at 6").await;
    lina_device.event("mention_removed").await;
    assert_eq!(counts(&app, &lina, id).await.2, 1);
}

async fn the_mentions_list_pages_with_a_cursor(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let other = app.group(&rana, "Other", &[&omar]).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let conversation = if i % 2 == 0 { id } else { other };
        sent.push(
            app.send(&rana, conversation, &format!("@omar #{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    sent.reverse();
    let (first, next) = mentions_page(&app, &omar, "?limit=2").await;
    assert_eq!(ids(&first), sent[..2].to_vec(), "newest first");
    assert_eq!(next, json!(sent[1]));
    let (second, next) = mentions_page(&app, &omar, &format!("?limit=2&cursor={}", sent[1])).await;
    assert_eq!(ids(&second), sent[2..4].to_vec());
    assert_eq!(next, json!(sent[3]));
    let (third, next) = mentions_page(&app, &omar, &format!("?limit=2&cursor={}", sent[3])).await;
    assert_eq!(ids(&third), sent[4..].to_vec());
    assert_eq!(next, Value::Null);
    // Leaving a conversation takes its mentions out of the list.
    app.delete(
        &format!("/api/v1/conversations/{other}/memberships/{}", omar.id),
        Some(&omar.token),
    )
    .await
    .expect(200);
    let (left, _) = mentions_page(&app, &omar, "").await;
    assert!(left.iter().all(|m| m["conversation_id"] == id), "{left:?}");
    assert_eq!(left.len(), 3);
    // The limit is clamped like the history's.
    assert_eq!(mentions_page(&app, &omar, "?limit=0").await.0.len(), 1);
}

async fn read_state_routes_are_documented(backend: Backend) {
    let app = TestApp::start(backend).await;
    let doc = app.get("/api/openapi.json", None).await.expect(200);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        (
            "/api/v1/conversations/{conversation_id}/read",
            &["put", "post"][..],
        ),
        (
            "/api/v1/conversations/{conversation_id}/delivered",
            &["put", "post"][..],
        ),
        (
            "/api/v1/conversations/{conversation_id}/receipts",
            &["get"][..],
        ),
        ("/api/v1/mentions", &["get"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path][*method]["responses"].is_object(),
                "{method} {path} is documented"
            );
        }
    }
    let schemas = &doc["components"]["schemas"];
    for field in [
        "last_read_seq",
        "unread_count",
        "mention_count",
        "last_message",
    ] {
        assert!(
            schemas["ConversationView"]["properties"][field].is_object(),
            "ConversationView.{field}"
        );
    }
    assert!(schemas["MessageView"]["properties"]["mentions"].is_object());
    assert!(schemas["UserWithEmail"]["properties"]["read_receipts"].is_object());
}

conformance!(
    unread_counts_follow_sends_edits_and_deletes,
    marking_moves_forward_only_and_is_idempotent,
    bad_marks_are_4xx_and_change_nothing,
    concurrent_sends_while_marking_keep_counts_exact,
    other_devices_learn_the_read_position,
    read_receipts_follow_the_setting_both_ways,
    delivery_ticks_in_direct_conversations,
    mentions_resolve_count_list_edit_and_delete,
    broadcast_mentions_are_for_admins_and_rate_limited,
    the_mentions_list_pages_with_a_cursor,
    read_state_routes_are_documented,
);
