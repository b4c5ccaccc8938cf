//! Contract 4.6 (and 10.3, 10.11): reactions.

use serde_json::{json, Value};

use crate::common::*;

async fn react(app: &TestApp, user: &TestUser, body: Value) -> Resp {
    app.post("/api/v1/reactions", Some(&user.token), body).await
}

async fn members_react_once_per_emoji(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let message = app.send(&rana, id, "launch!").await;
    let mid = message["id"].as_i64().expect("id");

    let thumbs = react(&app, &omar, json!({"message_id": mid, "emoji": "👍"}))
        .await
        .expect(201);
    assert!(thumbs.get("data").is_none(), "bare Reaction: {thumbs}");
    assert_reaction(&thumbs);
    assert_eq!(thumbs.as_object().map(|o| o.len()), Some(4));
    assert_eq!(thumbs["emoji"], "👍");
    assert_eq!(thumbs["message_id"], mid);
    assert_eq!(thumbs["user_id"], omar.id);
    // Another emoji (wrapped form), and the same emoji by someone else.
    let party = react(
        &app,
        &omar,
        json!({"reaction": {"message_id": mid, "emoji": "🎉"}}),
    )
    .await
    .expect(201);
    assert_eq!(party["emoji"], "🎉");
    let ranas = react(&app, &rana, json!({"message_id": mid, "emoji": "👍"}))
        .await
        .expect(201);
    assert_ne!(ranas["id"], thumbs["id"]);
    // The same (message, user, emoji) again: 422.
    let resp = react(&app, &omar, json!({"message_id": mid, "emoji": "👍"})).await;
    resp.expect_body(
        422,
        json!({"errors": ["User already reacted with this emoji"]}),
    );
    // The message carries them, in id order.
    let messages = app.all_messages(&rana, id).await;
    assert_eq!(messages[0]["reactions"], json!([thumbs, party, ranas]));
    // Ten characters is the most, counted as characters.
    let ten = "👍".repeat(10);
    react(&app, &rana, json!({"message_id": mid, "emoji": ten}))
        .await
        .expect(201);
}

async fn reaction_input_is_validated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Crew", &[]).await;
    let message = app.send(&rana, id, "hello").await;
    let mid = message["id"].clone();
    assert_422(
        &react(&app, &rana, json!({"message_id": mid, "emoji": ""})).await,
        "Emoji can't be blank",
    );
    assert_422(
        &react(&app, &rana, json!({"message_id": mid})).await,
        "Emoji can't be blank",
    );
    assert_422(
        &react(
            &app,
            &rana,
            json!({"message_id": mid, "emoji": "x".repeat(11)}),
        )
        .await,
        "Emoji is too long (maximum is 10 characters)",
    );
    assert_422(
        &react(&app, &rana, json!({"message_id": mid, "emoji": 1})).await,
        "Emoji must be a string",
    );
    assert_422(
        &react(&app, &rana, json!({"message_id": "first", "emoji": "👍"})).await,
        "Message id must be an integer",
    );
    react(&app, &rana, json!({}))
        .await
        .expect_body(400, bad_request_body());
    react(&app, &rana, json!({"emoji": "👍"}))
        .await
        .expect_body(404, not_found_body());
    let messages = app.all_messages(&rana, id).await;
    assert_eq!(messages[0]["reactions"], json!([]), "nothing was written");
}

async fn reacting_needs_membership_of_a_live_message(backend: Backend) {
    // Contract 10.11: REF lets anyone react; we require membership (404 otherwise).
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let stranger = app.register("stranger").await;
    let id = app.group(&rana, "Private", &[]).await;
    let message = app.send(&rana, id, "members only").await;
    let gone = app.send(&rana, id, "deleted").await;
    app.delete(
        &format!("/api/v1/conversations/{id}/messages/{}", gone["id"]),
        Some(&rana.token),
    )
    .await
    .expect(200);
    react(
        &app,
        &stranger,
        json!({"message_id": message["id"], "emoji": "👀"}),
    )
    .await
    .expect_body(404, not_found_body());
    for message_id in [gone["id"].clone(), json!(987654), json!(-1)] {
        react(
            &app,
            &rana,
            json!({"message_id": message_id, "emoji": "👍"}),
        )
        .await
        .expect_body(404, not_found_body());
    }
    let messages = app.all_messages(&rana, id).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["reactions"], json!([]));
}

async fn only_the_owner_removes_a_reaction(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let message = app.send(&rana, id, "hello").await;
    let reaction = react(
        &app,
        &omar,
        json!({"message_id": message["id"], "emoji": "👍"}),
    )
    .await
    .expect(201);
    let path = format!("/api/v1/reactions/{}", reaction["id"]);
    app.delete(&path, Some(&rana.token))
        .await
        .expect_body(403, forbidden_body());
    assert_eq!(
        app.all_messages(&rana, id).await[0]["reactions"],
        json!([reaction])
    );
    app.delete(&path, Some(&omar.token))
        .await
        .expect_body(200, json!({"message": "Reaction removed"}));
    assert_eq!(app.all_messages(&rana, id).await[0]["reactions"], json!([]));
    app.delete(&path, Some(&omar.token))
        .await
        .expect_body(404, not_found_body());
    for bad in ["987654", "abc", "0", "99999999999999999999"] {
        app.delete(&format!("/api/v1/reactions/{bad}"), Some(&omar.token))
            .await
            .expect_body(404, not_found_body());
    }
    // It can be added again afterwards.
    react(
        &app,
        &omar,
        json!({"message_id": message["id"], "emoji": "👍"}),
    )
    .await
    .expect(201);
}

conformance!(
    members_react_once_per_emoji,
    reaction_input_is_validated,
    reacting_needs_membership_of_a_live_message,
    only_the_owner_removes_a_reaction,
);
