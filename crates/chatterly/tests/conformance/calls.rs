//! Contract 4.7, 5.7 and 10.7: calls over REST. Transitions are
//! compare-and-sets: illegal ones answer 4xx with JSON and change nothing;
//! racing ones leave exactly one winner. (The WebSocket flows are in
//! tests/node/calls.test.mjs.)

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn calls(conversation: i64) -> String {
    format!("/api/v1/conversations/{conversation}/calls")
}

fn call_path(conversation: i64, call: i64, action: &str) -> String {
    match action {
        "" => format!("/api/v1/conversations/{conversation}/calls/{call}"),
        action => format!("/api/v1/conversations/{conversation}/calls/{call}/{action}"),
    }
}

async fn start(app: &TestApp, user: &TestUser, conversation: i64, call_type: &str) -> Value {
    let body = app
        .post(
            &calls(conversation),
            Some(&user.token),
            json!({"call": {"call_type": call_type}}),
        )
        .await
        .expect(201);
    body["data"].clone()
}

fn assert_call_session(value: &Value) {
    for key in [
        "id",
        "call_type",
        "conversation_id",
        "created_at",
        "initiator_id",
        "status",
    ] {
        assert!(value.get(key).is_some(), "CallSession lacks {key}: {value}");
    }
    assert_id(&value["id"]);
    assert_ts(&value["created_at"]);
    assert!(["audio", "video"].contains(&value["call_type"].as_str().unwrap_or("?")));
}

/// The call logs of a conversation's history.
async fn call_logs(app: &TestApp, user: &TestUser, conversation: i64) -> Vec<Value> {
    app.all_messages(user, conversation)
        .await
        .into_iter()
        .filter(|m| m["message_type"] == "call")
        .collect()
}

async fn a_call_rings_is_accepted_and_ends_with_one_log(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.direct(&rana, &omar).await;

    let call = start(&app, &rana, id, "video").await;
    assert_call_session(&call);
    assert_eq!(call["status"], "ringing");
    assert_eq!(call["call_type"], "video");
    assert_eq!(call["initiator_id"], rana.id);
    assert_eq!(call["conversation_id"], id);
    let call_id = call["id"].as_i64().expect("id");
    // Ringing calls are not "active" (contract 4.7).
    app.get(&format!("{}/active", calls(id)), Some(&omar.token))
        .await
        .expect_body(404, not_found_body());

    let accepted = app
        .put(
            &call_path(id, call_id, "accept"),
            Some(&omar.token),
            json!({}),
        )
        .await
        .expect(200);
    assert!(
        accepted.get("data").is_none(),
        "bare CallSession: {accepted}"
    );
    assert_call_session(&accepted);
    assert_eq!(accepted["status"], "active");
    assert_ts(&accepted["started_at"]);

    let active = app
        .get(&format!("{}/active", calls(id)), Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(active["id"], call_id);
    assert_eq!(active["status"], "active");
    let participants: Vec<i64> = active["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            assert_user_public(p);
            p["id"].as_i64().expect("id")
        })
        .collect();
    assert_eq!(participants, vec![rana.id, omar.id]);

    // Nothing was logged yet; ending writes the one log.
    assert!(call_logs(&app, &rana, id).await.is_empty());
    app.delete(&call_path(id, call_id, ""), Some(&rana.token))
        .await
        .expect_body(200, json!({"message": "Call ended"}));
    let logs = call_logs(&app, &omar, id).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_message(log);
    assert_eq!(log["content"], "call");
    assert_eq!(log["user"]["id"], rana.id);
    let summary = &log["call_session"];
    let mut keys: Vec<&str> = summary
        .as_object()
        .expect("call_session is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "call_type",
            "duration",
            "ended_at",
            "id",
            "initiator_id",
            "started_at",
            "status"
        ]
    );
    assert_eq!(summary["id"], call_id);
    assert_eq!(summary["status"], "ended");
    assert_eq!(summary["initiator_id"], rana.id);
    assert_ts(&summary["started_at"]);
    assert_ts(&summary["ended_at"]);
    assert!(summary["duration"].as_i64().is_some_and(|d| d >= 0));

    // Terminal: ending again, accepting, declining are refused and change nothing.
    app.delete(&call_path(id, call_id, ""), Some(&rana.token))
        .await
        .expect_body(422, json!({"error": "Call has already ended"}));
    app.put(
        &call_path(id, call_id, "accept"),
        Some(&omar.token),
        json!({}),
    )
    .await
    .expect_body(422, json!({"error": "Call is no longer ringing"}));
    app.put(
        &call_path(id, call_id, "decline"),
        Some(&omar.token),
        json!({}),
    )
    .await
    .expect_body(422, json!({"error": "Call is no longer ringing"}));
    assert_eq!(call_logs(&app, &omar, id).await.len(), 1);
    app.get(&format!("{}/active", calls(id)), Some(&rana.token))
        .await
        .expect_body(404, not_found_body());
    // The conversation is free for a new call.
    let again = start(&app, &omar, id, "audio").await;
    assert_eq!(again["call_type"], "audio");
    assert_ne!(again["id"], call_id);
}

async fn declined_and_cancelled_calls_stay_terminal(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.direct(&rana, &omar).await;

    let call_id = start(&app, &rana, id, "audio").await["id"]
        .as_i64()
        .expect("id");
    let declined = app
        .put(
            &call_path(id, call_id, "decline"),
            Some(&omar.token),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(declined["status"], "declined");
    // Contract 10.7: the initiator's end no longer overwrites "declined".
    app.delete(&call_path(id, call_id, ""), Some(&rana.token))
        .await
        .expect_body(422, json!({"error": "Call has already ended"}));
    let logs = call_logs(&app, &rana, id).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["call_session"]["status"], "declined");
    assert!(logs[0]["call_session"]["started_at"].is_null());
    assert!(logs[0]["call_session"]["duration"].is_null());

    // Cancelled while ringing: ended, never started.
    let call_id = start(&app, &rana, id, "audio").await["id"]
        .as_i64()
        .expect("id");
    app.delete(&call_path(id, call_id, ""), Some(&rana.token))
        .await
        .expect(200);
    app.put(
        &call_path(id, call_id, "accept"),
        Some(&omar.token),
        json!({}),
    )
    .await
    .expect_body(422, json!({"error": "Call is no longer ringing"}));
    let logs = call_logs(&app, &rana, id).await;
    assert_eq!(logs.len(), 2);
    let cancelled = &logs[1]["call_session"];
    assert_eq!(cancelled["status"], "ended");
    assert!(cancelled["started_at"].is_null());
    assert!(cancelled["ended_at"].is_null());
}

async fn call_authorization_follows_the_matrix(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let other = app.group(&lina, "Elsewhere", &[]).await;

    // Non-members: 404, and no call is made.
    app.post(
        &calls(id),
        Some(&lina.token),
        json!({"call": {"call_type": "audio"}}),
    )
    .await
    .expect_body(404, not_found_body());
    let call_id = start(&app, &rana, id, "audio").await["id"]
        .as_i64()
        .expect("id");
    for action in ["accept", "decline"] {
        app.put(
            &call_path(id, call_id, action),
            Some(&lina.token),
            json!({}),
        )
        .await
        .expect_body(404, not_found_body());
        // The initiator cannot answer their own call.
        app.put(
            &call_path(id, call_id, action),
            Some(&rana.token),
            json!({}),
        )
        .await
        .expect_body(403, forbidden_body());
    }
    app.delete(&call_path(id, call_id, ""), Some(&lina.token))
        .await
        .expect_body(404, not_found_body());
    // Only the initiator ends over REST.
    app.delete(&call_path(id, call_id, ""), Some(&omar.token))
        .await
        .expect_body(403, forbidden_body());
    // The call must be in the path's conversation.
    app.put(
        &call_path(other, call_id, "accept"),
        Some(&lina.token),
        json!({}),
    )
    .await
    .expect_body(404, not_found_body());
    app.put(
        &call_path(id, 999_999, "accept"),
        Some(&omar.token),
        json!({}),
    )
    .await
    .expect_body(404, not_found_body());
    app.put(&call_path(id, call_id, "accept"), None, json!({}))
        .await
        .expect_body(401, no_token_body());
    // After all that, it still rings.
    let accepted = app
        .put(
            &call_path(id, call_id, "accept"),
            Some(&omar.token),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(accepted["status"], "active");
}

async fn call_input_is_validated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.direct(&rana, &omar).await;
    // The wrapper is mandatory (contract 1.6): flat or empty → 400.
    for body in [
        json!({"call_type": "audio"}),
        json!({"call": {}}),
        json!({}),
        json!({"call": "audio"}),
    ] {
        assert_400(&app.post(&calls(id), Some(&rana.token), body).await);
    }
    assert_400(
        &app.post_raw(&calls(id), Some(&rana.token), "{\"call\": ")
            .await,
    );
    assert_422(
        &app.post(
            &calls(id),
            Some(&rana.token),
            json!({"call": {"call_type": "hologram"}}),
        )
        .await,
        "Call type is not included in the list",
    );
    let resp = app
        .post(
            &calls(id),
            Some(&rana.token),
            json!({"call": {"call_type": 5}}),
        )
        .await;
    assert_eq!(resp.status.as_u16(), 422, "{:?}", resp.json());
    // None of that made a call.
    app.get(&format!("{}/active", calls(id)), Some(&rana.token))
        .await
        .expect(404);
    // Missing call_type means audio.
    let call = app
        .post(&calls(id), Some(&rana.token), json!({"call": {"other": 1}}))
        .await
        .expect(201);
    assert_eq!(call["data"]["call_type"], "audio");
    // One call at a time per conversation.
    let resp = app
        .post(
            &calls(id),
            Some(&omar.token),
            json!({"call": {"call_type": "video"}}),
        )
        .await;
    resp.expect_body(
        422,
        json!({"error": "A call is already in progress in this conversation"}),
    );
    // Ids that name nothing.
    app.put(
        &format!("/api/v1/conversations/{id}/calls/abc/accept"),
        Some(&omar.token),
        json!({}),
    )
    .await
    .expect(404);
}

async fn late_joiners_become_participants(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let id = app.group(&rana, "Crew", &[&omar, &lina]).await;
    let call_id = start(&app, &rana, id, "video").await["id"]
        .as_i64()
        .expect("id");
    // Not active yet: joining is refused.
    app.post(
        &call_path(id, call_id, "join"),
        Some(&lina.token),
        json!({}),
    )
    .await
    .expect_body(422, json!({"error": "Call is not active"}));
    app.put(
        &call_path(id, call_id, "accept"),
        Some(&omar.token),
        json!({}),
    )
    .await
    .expect(200);
    // A second accept is not how one joins an active call.
    app.put(
        &call_path(id, call_id, "accept"),
        Some(&lina.token),
        json!({}),
    )
    .await
    .expect_body(422, json!({"error": "Call is no longer ringing"}));
    let joined = app
        .post(
            &call_path(id, call_id, "join"),
            Some(&lina.token),
            json!({}),
        )
        .await
        .expect(200);
    let ids: Vec<i64> = joined["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![rana.id, omar.id, lina.id]);
    // Joining again changes nothing.
    let again = app
        .post(
            &call_path(id, call_id, "join"),
            Some(&lina.token),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(again["participants"], joined["participants"]);
    app.delete(&call_path(id, call_id, ""), Some(&rana.token))
        .await
        .expect(200);
    app.post(
        &call_path(id, call_id, "join"),
        Some(&lina.token),
        json!({}),
    )
    .await
    .expect_body(422, json!({"error": "Call is not active"}));
}

/// Two members accept at once (many times over): exactly one wins, the other
/// gets the contract's 422, and one consistent state remains.
async fn concurrent_accepts_have_one_winner(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let id = app.group(&rana, "Crew", &[&omar, &lina]).await;
    for _ in 0..8 {
        let call_id = start(&app, &rana, id, "audio").await["id"]
            .as_i64()
            .expect("id");
        let path = call_path(id, call_id, "accept");
        let (a, b) = tokio::join!(
            app.put(&path, Some(&omar.token), json!({})),
            app.put(&path, Some(&lina.token), json!({}))
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 422], "{:?} / {:?}", a.json(), b.json());
        let winner = if a.status.as_u16() == 200 {
            &omar
        } else {
            &lina
        };
        let active = app
            .get(&format!("{}/active", calls(id)), Some(&rana.token))
            .await
            .expect(200);
        let ids: Vec<i64> = active["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .filter_map(|p| p["id"].as_i64())
            .collect();
        assert_eq!(ids, vec![rana.id, winner.id]);
        app.delete(&call_path(id, call_id, ""), Some(&rana.token))
            .await
            .expect(200);
    }
    assert_eq!(call_logs(&app, &rana, id).await.len(), 8);
}

/// An accept racing the ring timeout: either the accept wins (and the call
/// is active, never missed) or the timeout does (the accept gets 422); never
/// both, and exactly one log once it is over.
async fn an_accept_racing_the_timeout_has_one_winner(backend: Backend) {
    let app = TestApp::start_with(backend, &["--call-ring-timeout", "1"]).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.direct(&rana, &omar).await;
    let mut outcomes = Vec::new();
    for round in 0..4u64 {
        let call_id = start(&app, &rana, id, "audio").await["id"]
            .as_i64()
            .expect("id");
        // Aim the accept at about the moment the timeout fires.
        tokio::time::sleep(Duration::from_millis(900 + 60 * round)).await;
        let accept = app
            .put(
                &call_path(id, call_id, "accept"),
                Some(&omar.token),
                json!({}),
            )
            .await;
        let accepted = match accept.status.as_u16() {
            200 => true,
            422 => false,
            other => panic!("accept answered {other}: {:?}", accept.json()),
        };
        // Let the timeout pass for sure, then end whatever is left.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if accepted {
            app.delete(&call_path(id, call_id, ""), Some(&rana.token))
                .await
                .expect(200);
        }
        let logs = call_logs(&app, &rana, id).await;
        let log = logs
            .iter()
            .find(|m| m["call_session"]["id"] == call_id)
            .expect("the call has its log");
        assert_eq!(
            logs.iter()
                .filter(|m| m["call_session"]["id"] == call_id)
                .count(),
            1
        );
        let status = log["call_session"]["status"].as_str().expect("status");
        assert_eq!(status, if accepted { "ended" } else { "missed" });
        outcomes.push(accepted);
    }
    println!("accept won {outcomes:?}");
}

/// Nobody answers: the job makes the call missed, once.
async fn an_unanswered_call_is_missed_once(backend: Backend) {
    let app = TestApp::start_with(backend, &["--call-ring-timeout", "1"]).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.direct(&rana, &omar).await;
    let call_id = start(&app, &rana, id, "video").await["id"]
        .as_i64()
        .expect("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = call_logs(&app, &omar, id).await;
        if !logs.is_empty() || tokio::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["call_session"]["id"], call_id);
    assert_eq!(logs[0]["call_session"]["status"], "missed");
    assert_eq!(logs[0]["user"]["id"], rana.id);
    app.put(
        &call_path(id, call_id, "accept"),
        Some(&omar.token),
        json!({}),
    )
    .await
    .expect_body(422, json!({"error": "Call is no longer ringing"}));
    app.delete(&call_path(id, call_id, ""), Some(&rana.token))
        .await
        .expect_body(422, json!({"error": "Call has already ended"}));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(call_logs(&app, &omar, id).await.len(), 1);
}

/// A server restarted while a call rings still misses it, once.
async fn a_restart_while_ringing_still_misses_the_call(backend: Backend) {
    let mut app = TestApp::start_with(backend, &["--call-ring-timeout", "2"]).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.direct(&rana, &omar).await;
    let call_id = start(&app, &rana, id, "audio").await["id"]
        .as_i64()
        .expect("id");
    app.stop().await;
    // Down for longer than the ring timeout: the job's time passes unrun.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = call_logs(&app, &rana, id).await;
        if !logs.is_empty() || tokio::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["call_session"]["id"], call_id);
    assert_eq!(logs[0]["call_session"]["status"], "missed");
}

/// Deleting a conversation takes its calls along; the pending timeout then
/// finds nothing to do.
async fn deleting_a_conversation_removes_its_calls(backend: Backend) {
    let app = TestApp::start_with(backend, &["--call-ring-timeout", "1"]).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let call_id = start(&app, &rana, id, "audio").await["id"]
        .as_i64()
        .expect("id");
    app.delete(&format!("/api/v1/conversations/{id}"), Some(&rana.token))
        .await
        .expect(200);
    app.put(
        &call_path(id, call_id, "accept"),
        Some(&omar.token),
        json!({}),
    )
    .await
    .expect(404);
    // The timeout passes harmlessly and the server stays healthy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let other = app.group(&rana, "Again", &[&omar]).await;
    start(&app, &rana, other, "audio").await;
}

conformance!(
    a_call_rings_is_accepted_and_ends_with_one_log,
    declined_and_cancelled_calls_stay_terminal,
    call_authorization_follows_the_matrix,
    call_input_is_validated,
    late_joiners_become_participants,
    concurrent_accepts_have_one_winner,
    an_accept_racing_the_timeout_has_one_winner,
    an_unanswered_call_is_missed_once,
    a_restart_while_ringing_still_misses_the_call,
    deleting_a_conversation_removes_its_calls,
);
