//! Restart persistence: everything acknowledged, sessions, revocations and
//! lockouts survive a restart of the server on the same data.

use serde_json::{json, Value};

use crate::common::*;

async fn data_and_sessions_survive_a_restart(backend: Backend) {
    let mut app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let group = app.group(&rana, "Crew", &[&omar]).await;
    let direct = app.direct(&rana, &omar).await;
    let m1 = app.send(&rana, group, "one").await;
    let m2 = app
        .send_raw(
            &omar,
            group,
            json!({"content": "two", "client_message_id": "k-2", "parent_message_id": m1["id"]}),
        )
        .await
        .expect(201)["data"]
        .clone();
    let m3 = app.send(&rana, group, "three").await;
    app.patch(
        &format!("/api/v1/conversations/{group}/messages/{}", m1["id"]),
        Some(&rana.token),
        json!({"content": "one (edited)"}),
    )
    .await
    .expect(200);
    app.delete(
        &format!("/api/v1/conversations/{group}/messages/{}", m3["id"]),
        Some(&rana.token),
    )
    .await
    .expect(200);
    app.post(
        "/api/v1/reactions",
        Some(&omar.token),
        json!({"message_id": m1["id"], "emoji": "👍"}),
    )
    .await
    .expect(201);
    app.patch(
        &format!("/api/v1/users/{}", omar.id),
        Some(&omar.token),
        json!({"display_name": "Omar K."}),
    )
    .await
    .expect(200);
    // Two sessions of rana: one logged out.
    let second = app.login(&rana.email, &rana.password).await.bearer();
    app.delete("/auth/logout", Some(&rana.token))
        .await
        .expect(200);
    let rana2 = TestUser {
        token: second,
        ..rana.clone()
    };

    let history_before = app.all_messages(&rana2, group).await;
    let conversations_before = app.conversations(&rana2).await;
    let omar_before = app
        .get("/api/v1/users/me", Some(&omar.token))
        .await
        .expect(200);
    assert_eq!(history_before.len(), 2);

    app.restart().await;

    // Sessions: the revoked token stays revoked, live ones stay live (the
    // signing secret persisted).
    app.get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect_body(401, json!({"error": "revoked token"}));
    app.get("/api/v1/users/me", Some(&rana2.token))
        .await
        .expect(200);
    assert_eq!(
        app.get("/api/v1/users/me", Some(&omar.token))
            .await
            .expect(200),
        omar_before
    );
    app.login(&rana.email, &rana.password).await.expect(200);
    // Data.
    assert_eq!(app.all_messages(&rana2, group).await, history_before);
    assert_eq!(app.conversations(&rana2).await, conversations_before);
    let messages = app.all_messages(&omar, group).await;
    assert_eq!(messages[0]["content"], "one (edited)");
    assert_eq!(messages[0]["reactions"][0]["emoji"], "👍");
    assert_eq!(messages[1]["parent_message_id"], m1["id"]);
    // Seq continues after the deleted message's; idempotency keys are remembered.
    let next = app.send(&omar, group, "four").await;
    assert_eq!(next["seq"], 4);
    assert!(
        next["id"].as_i64() > m3["id"].as_i64(),
        "ids are never reused"
    );
    let again = app
        .send_raw(
            &omar,
            group,
            json!({"content": "two", "client_message_id": "k-2"}),
        )
        .await
        .expect(200);
    assert_eq!(again["data"]["id"], m2["id"]);
    // Direct de-duplication and memberships.
    let resp = app
        .post(
            "/api/v1/conversations",
            Some(&omar.token),
            json!({"conversation_type": "direct", "member_ids": [rana.id]}),
        )
        .await;
    assert_eq!(resp.expect(200)["data"]["id"], direct);
    let lina = app.register("lina").await;
    app.post(
        &format!("/api/v1/conversations/{group}/memberships"),
        Some(&rana2.token),
        json!({"user_id": lina.id}),
    )
    .await
    .expect(201);
    // Roles too: omar is a plain member.
    let zoe = app.register("zoe").await;
    app.post(
        &format!("/api/v1/conversations/{group}/memberships"),
        Some(&omar.token),
        json!({"user_id": zoe.id}),
    )
    .await
    .expect_body(403, forbidden_body());
    let ids: Vec<Value> = app
        .all_messages(&lina, group)
        .await
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![m1["id"].clone(), m2["id"].clone(), next["id"].clone()]
    );
}

async fn lockouts_and_failed_attempts_survive_a_restart(backend: Backend) {
    let mut app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    for _ in 0..10 {
        app.login(&rana.email, "wrong-password").await.expect(401);
    }
    for _ in 0..9 {
        app.login(&omar.email, "wrong-password").await.expect(401);
    }
    app.restart().await;
    let body = app.login(&rana.email, &rana.password).await.expect(401);
    assert_eq!(body["error"], "Your account is locked.");
    // Omar's ninth failure was remembered: one more locks him.
    let body = app.login(&omar.email, "wrong-password").await.expect(401);
    assert_eq!(body["error"], "Your account is locked.");
}

conformance!(
    data_and_sessions_survive_a_restart,
    lockouts_and_failed_attempts_survive_a_restart
);
