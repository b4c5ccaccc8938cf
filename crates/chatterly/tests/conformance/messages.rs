//! Contract 4.5 (and 10.3, 10.11, 10.14): messages, history pages, seq,
//! idempotent sends.

use serde_json::{json, Value};

use crate::common::*;

fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

fn contents(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["content"].as_str().expect("content").to_owned())
        .collect()
}

async fn send_returns_201_a_message_with_seq(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let resp = app
        .send_raw(
            &rana,
            id,
            json!({"content": "On my way", "message_type": "text"}),
        )
        .await;
    let body = resp.expect(201);
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only data: {body}"
    );
    let first = &body["data"];
    assert_message(first);
    assert_eq!(first["content"], "On my way");
    assert_eq!(first["message_type"], "text");
    assert_eq!(first["call_session"], Value::Null);
    assert_eq!(first["edited_at"], Value::Null);
    assert_eq!(first["parent_message_id"], Value::Null);
    assert_eq!(first["reactions"], json!([]));
    assert_eq!(first["user"]["id"], rana.id);
    assert_eq!(first["user"]["username"], "rana_h");
    assert_eq!(first["conversation_id"], id);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["client_message_id"], Value::Null);
    let second = app.send(&omar, id, "ok").await;
    assert_eq!(second["seq"], 2);
    assert!(second["id"].as_i64() > first["id"].as_i64(), "ids increase");
    assert_eq!(second["user"]["id"], omar.id);
    // The history returns the same representation.
    let (messages, next) = app.history(&omar, id, "").await;
    assert_eq!(next, Value::Null);
    assert_eq!(messages.len(), 2);
    messages.iter().for_each(assert_message);
    assert_eq!(messages[0]["id"], first["id"]);
    assert_eq!(messages[0]["created_at"], first["created_at"]);
    assert_eq!(messages[1]["id"], second["id"]);
    // Seq is per conversation.
    let other = app.group(&omar, "Other", &[]).await;
    assert_eq!(app.send(&omar, other, "elsewhere").await["seq"], 1);
    assert_eq!(app.send(&rana, id, "third").await["seq"], 3);
}

async fn send_accepts_the_wrapped_form_and_client_types(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Crew", &[]).await;
    let body = app
        .send_raw(
            &rana,
            id,
            json!({"message": {"content": "a picture", "message_type": "image"}}),
        )
        .await
        .expect(201);
    assert_eq!(body["data"]["message_type"], "image");
    assert_eq!(body["data"]["content"], "a picture");
    let body = app
        .send_raw(
            &rana,
            id,
            json!({"content": "a file", "message_type": "file"}),
        )
        .await
        .expect(201);
    assert_eq!(body["data"]["message_type"], "file");
    let body = app
        .send_raw(&rana, id, json!({"content": "plain"}))
        .await
        .expect(201);
    assert_eq!(body["data"]["message_type"], "text", "text by default");
    let (messages, _) = app.history(&rana, id, "").await;
    assert_eq!(contents(&messages), ["a picture", "a file", "plain"]);
}

async fn send_validation_failures_are_422_and_write_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Crew", &[]).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"content": ""}), "Content can't be blank"),
        (json!({"content": "   \n\t"}), "Content can't be blank"),
        (json!({"message_type": "text"}), "Content can't be blank"),
        (json!({"content": null}), "Content can't be blank"),
        (
            json!({"content": "x".repeat(4001)}),
            "Content is too long (maximum is 4000 characters)",
        ),
        (
            json!({"content": "é".repeat(4001)}),
            "Content is too long (maximum is 4000 characters)",
        ),
        // Contract 10.14: call logs are the server's; unknown types are 422, not 500.
        (
            json!({"content": "call", "message_type": "call"}),
            "Message type is not included in the list",
        ),
        (
            json!({"content": "x", "message_type": "video"}),
            "Message type is not included in the list",
        ),
        (
            json!({"content": "x", "message_type": "TEXT"}),
            "Message type is not included in the list",
        ),
        (json!({"content": 5}), "Content must be a string"),
    ];
    for (body, message) in cases {
        assert_422(&app.send_raw(&rana, id, body).await, message);
    }
    assert!(
        app.all_messages(&rana, id).await.is_empty(),
        "nothing was written"
    );
    // The limit counts characters: exactly 4000 multi-byte characters is fine.
    let long = "é".repeat(4000);
    let message = app.send(&rana, id, &long).await;
    assert_eq!(message["content"], long);
    assert_eq!(message["seq"], 1, "failed sends consumed no seq");
}

async fn thread_parents_must_be_in_the_same_conversation(backend: Backend) {
    // Contract 10.11.
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Crew", &[]).await;
    let other = app.group(&rana, "Other", &[]).await;
    let parent = app.send(&rana, id, "parent").await;
    let elsewhere = app.send(&rana, other, "elsewhere").await;
    let body = app
        .send_raw(
            &rana,
            id,
            json!({"content": "reply", "parent_message_id": parent["id"]}),
        )
        .await
        .expect(201);
    assert_eq!(body["data"]["parent_message_id"], parent["id"]);
    for parent_id in [elsewhere["id"].clone(), json!(987654)] {
        let resp = app
            .send_raw(
                &rana,
                id,
                json!({"content": "bad reply", "parent_message_id": parent_id}),
            )
            .await;
        assert_eq!(resp.expect(422)["errors"].as_array().map(Vec::len), Some(1));
    }
    let resp = app
        .send_raw(
            &rana,
            id,
            json!({"content": "bad reply", "parent_message_id": "abc"}),
        )
        .await;
    assert_422(&resp, "Parent message id must be an integer");
    let messages = app.all_messages(&rana, id).await;
    assert_eq!(
        contents(&messages),
        ["parent", "reply"],
        "replies are inline; failures wrote nothing"
    );
}

async fn non_members_get_404_on_every_message_route(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Private", &[]).await;
    let message = app.send(&rana, id, "secret").await;
    let mid = message["id"].as_i64().expect("id");
    let base = format!("/api/v1/conversations/{id}/messages");
    app.get(&base, Some(&omar.token))
        .await
        .expect_body(404, not_found_body());
    app.post(&base, Some(&omar.token), json!({"content": "let me in"}))
        .await
        .expect_body(404, not_found_body());
    app.patch(
        &format!("{base}/{mid}"),
        Some(&omar.token),
        json!({"content": "mine now"}),
    )
    .await
    .expect_body(404, not_found_body());
    app.delete(&format!("{base}/{mid}"), Some(&omar.token))
        .await
        .expect_body(404, not_found_body());
    app.get("/api/v1/conversations/987654/messages", Some(&rana.token))
        .await
        .expect_body(404, not_found_body());
    app.post(
        "/api/v1/conversations/987654/messages",
        Some(&rana.token),
        json!({"content": "x"}),
    )
    .await
    .expect_body(404, not_found_body());
    let messages = app.all_messages(&rana, id).await;
    assert_eq!(messages, vec![message], "untouched");
}

async fn history_pages_back_with_cursor(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Crew", &[]).await;
    let mut sent = Vec::new();
    for i in 1..=7 {
        sent.push(app.send(&rana, id, &format!("m{i}")).await);
    }
    let id_of = |seq: usize| sent[seq - 1]["id"].as_i64().expect("id");
    // Newest page first, returned oldest → newest; cursor = oldest id of a full page.
    let (page, next) = app.history(&rana, id, "limit=3").await;
    assert_eq!(seqs(&page), [5, 6, 7]);
    assert_eq!(next.as_i64(), Some(id_of(5)));
    let (page, next) = app
        .history(&rana, id, &format!("limit=3&cursor={}", id_of(5)))
        .await;
    assert_eq!(seqs(&page), [2, 3, 4]);
    assert_eq!(next.as_i64(), Some(id_of(2)));
    let (page, next) = app
        .history(&rana, id, &format!("limit=3&cursor={}", id_of(2)))
        .await;
    assert_eq!(seqs(&page), [1]);
    assert_eq!(next, Value::Null, "a partial page ends it");
    // A full last page yields a cursor whose next page is empty.
    let (page, next) = app.history(&rana, id, "limit=7").await;
    assert_eq!(seqs(&page), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(next.as_i64(), Some(id_of(1)));
    let body = app
        .history_raw(&rana, id, &format!("limit=7&cursor={}", id_of(1)))
        .await
        .expect(200);
    assert_eq!(body, json!({"data": {"messages": [], "next_cursor": null}}));
    // No limit: up to 50, not full here.
    let (page, next) = app.history(&rana, id, "").await;
    assert_eq!(page.len(), 7);
    assert_eq!(next, Value::Null);
    // Deleted messages are skipped, not counted.
    app.delete(
        &format!("/api/v1/conversations/{id}/messages/{}", id_of(6)),
        Some(&rana.token),
    )
    .await
    .expect(200);
    let (page, _) = app.history(&rana, id, "limit=3").await;
    assert_eq!(seqs(&page), [4, 5, 7]);
    // An empty conversation.
    let empty = app.group(&rana, "Empty", &[]).await;
    let body = app.history_raw(&rana, empty, "").await.expect(200);
    assert_eq!(body, json!({"data": {"messages": [], "next_cursor": null}}));
}

async fn history_limit_is_clamped_to_1_through_100(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Busy", &[]).await;
    for i in 1..=101 {
        app.send(&rana, id, &format!("m{i}")).await;
    }
    let (page, next) = app.history(&rana, id, "").await;
    assert_eq!(
        seqs(&page),
        (52..=101).collect::<Vec<_>>(),
        "50 by default, newest"
    );
    assert!(next.is_i64());
    let (page, next) = app.history(&rana, id, "limit=1000").await;
    assert_eq!(seqs(&page), (2..=101).collect::<Vec<_>>(), "clamped to 100");
    assert!(next.is_i64());
    for limit in ["0", "-5", "1"] {
        let (page, next) = app.history(&rana, id, &format!("limit={limit}")).await;
        assert_eq!(seqs(&page), [101], "limit={limit} is clamped to 1");
        assert_eq!(next, page[0]["id"]);
    }
    let everything = app.all_messages(&rana, id).await;
    assert_eq!(seqs(&everything), (1..=101).collect::<Vec<_>>());
}

async fn after_seq_catches_up_oldest_first(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Crew", &[]).await;
    for i in 1..=5 {
        app.send(&rana, id, &format!("m{i}")).await;
    }
    let (page, next) = app.history(&rana, id, "after_seq=0&limit=2").await;
    assert_eq!(seqs(&page), [1, 2]);
    assert_eq!(next, 2, "next_cursor is the newest seq of a full page");
    let (page, next) = app.history(&rana, id, "after_seq=2&limit=2").await;
    assert_eq!(seqs(&page), [3, 4]);
    assert_eq!(next, 4);
    let (page, next) = app.history(&rana, id, "after_seq=4&limit=2").await;
    assert_eq!(seqs(&page), [5]);
    assert_eq!(next, Value::Null);
    let (page, next) = app.history(&rana, id, "after_seq=5").await;
    assert!(page.is_empty());
    assert_eq!(next, Value::Null);
    let (page, _) = app.history(&rana, id, "after_seq=3").await;
    assert_eq!(contents(&page), ["m4", "m5"]);
    assert_400(&app.history_raw(&rana, id, "after_seq=1&cursor=5").await);
}

async fn bad_cursor_limit_and_after_seq_are_400(backend: Backend) {
    // Contract 10.14: malformed cursor/limit → 400, not 500.
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Crew", &[]).await;
    app.send(&rana, id, "hello").await;
    for query in [
        "cursor=abc",
        "cursor=1.5",
        "cursor=99999999999999999999",
        "limit=x",
        "limit=1e3",
        "limit=99999999999999999999",
        "after_seq=abc",
        "after_seq=-",
        "cursor=%FF%FE",
    ] {
        assert_400(&app.history_raw(&rana, id, query).await);
    }
    // Large but valid integers are fine.
    let (page, _) = app
        .history(
            &rana,
            id,
            "cursor=9223372036854775807&limit=9223372036854775807",
        )
        .await;
    assert_eq!(page.len(), 1);
    let (page, _) = app.history(&rana, id, "cursor=-5").await;
    assert!(page.is_empty());
}

async fn client_message_id_makes_sends_idempotent(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let other = app.group(&rana, "Other", &[]).await;
    let key = "c0ffee-0001";
    let first = app
        .send_raw(
            &rana,
            id,
            json!({"content": "once", "client_message_id": key}),
        )
        .await
        .expect(201);
    assert_eq!(first["data"]["client_message_id"], key);
    // The retry (even with other content) answers 200 with the original.
    for body in [
        json!({"content": "once", "client_message_id": key}),
        json!({"message": {"content": "different", "client_message_id": key}}),
    ] {
        let again = app.send_raw(&rana, id, body).await.expect(200);
        assert_eq!(again["data"], first["data"]);
    }
    let messages = app.all_messages(&rana, id).await;
    assert_eq!(messages.len(), 1, "no second row");
    // Another sender may use the same key.
    let omars = app
        .send_raw(
            &omar,
            id,
            json!({"content": "mine", "client_message_id": key}),
        )
        .await
        .expect(201);
    assert_ne!(omars["data"]["id"], first["data"]["id"]);
    assert_eq!(omars["data"]["seq"], 2, "retries consumed no seq");
    // The same sender may not reuse it in another conversation.
    let resp = app
        .send_raw(
            &rana,
            other,
            json!({"content": "elsewhere", "client_message_id": key}),
        )
        .await;
    assert_eq!(resp.expect(422)["errors"].as_array().map(Vec::len), Some(1));
    assert!(app.all_messages(&rana, other).await.is_empty());
    // Key validation.
    let resp = app
        .send_raw(
            &rana,
            id,
            json!({"content": "x", "client_message_id": "k".repeat(65)}),
        )
        .await;
    assert_422(
        &resp,
        "Client message id is too long (maximum is 64 characters)",
    );
    let resp = app
        .send_raw(&rana, id, json!({"content": "x", "client_message_id": ""}))
        .await;
    assert_422(&resp, "Client message id can't be blank");
    let resp = app
        .send_raw(&rana, id, json!({"content": "x", "client_message_id": 7}))
        .await;
    assert_422(&resp, "Client message id must be a string");
    assert_eq!(app.all_messages(&rana, id).await.len(), 2);
    let body = app
        .send_raw(
            &rana,
            id,
            json!({"content": "x", "client_message_id": "k".repeat(64)}),
        )
        .await
        .expect(201);
    assert_eq!(body["data"]["seq"], 3);
}

async fn the_author_edits_a_message(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let other = app.group(&omar, "Other", &[&rana]).await;
    let message = app.send(&omar, id, "typo").await;
    let untouched = app.send(&omar, id, "fine").await;
    let mid = message["id"].as_i64().expect("id");
    let path = format!("/api/v1/conversations/{id}/messages/{mid}");

    let edited = app
        .patch(&path, Some(&omar.token), json!({"content": "fixed"}))
        .await
        .expect(200);
    assert!(edited.get("data").is_none(), "bare Message: {edited}");
    assert_message(&edited);
    assert_eq!(edited["id"], mid);
    assert_eq!(edited["content"], "fixed");
    assert_eq!(edited["seq"], message["seq"]);
    assert_eq!(edited["created_at"], message["created_at"]);
    assert_ts(&edited["edited_at"]);
    let edited = app
        .put(
            &path,
            Some(&omar.token),
            json!({"message": {"content": "fixed again"}}),
        )
        .await
        .expect(200);
    assert_eq!(edited["content"], "fixed again");

    // Not the author (even the admin): 403. Wrong conversation or id: 404.
    app.patch(&path, Some(&rana.token), json!({"content": "admin edit"}))
        .await
        .expect_body(403, forbidden_body());
    app.patch(
        &format!("/api/v1/conversations/{other}/messages/{mid}"),
        Some(&omar.token),
        json!({"content": "x"}),
    )
    .await
    .expect_body(404, not_found_body());
    app.patch(
        &format!("/api/v1/conversations/{id}/messages/987654"),
        Some(&omar.token),
        json!({"content": "x"}),
    )
    .await
    .expect_body(404, not_found_body());
    // Validation and empty bodies.
    assert_422(
        &app.patch(&path, Some(&omar.token), json!({"content": " "}))
            .await,
        "Content can't be blank",
    );
    assert_422(
        &app.patch(
            &path,
            Some(&omar.token),
            json!({"content": "x".repeat(4001)}),
        )
        .await,
        "Content is too long (maximum is 4000 characters)",
    );
    app.patch(&path, Some(&omar.token), json!({}))
        .await
        .expect_body(400, bad_request_body());

    let messages = app.all_messages(&rana, id).await;
    assert_eq!(contents(&messages), ["fixed again", "fine"]);
    assert_ts(&messages[0]["edited_at"]);
    assert_eq!(messages[1]["edited_at"], Value::Null);
    assert_eq!(messages[1], untouched);
}

async fn authors_and_admins_delete_messages(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let id = app.group(&rana, "Crew", &[&omar, &lina]).await;
    let other = app.group(&omar, "Other", &[]).await;
    let m1 = app.send(&omar, id, "one").await;
    let m2 = app.send(&omar, id, "two").await;
    let m3 = app.send(&lina, id, "three").await;
    let path = |m: &Value| format!("/api/v1/conversations/{id}/messages/{}", m["id"]);
    let deleted = json!({"message": "Message deleted"});

    // Another plain member: 403. Wrong conversation: 404.
    app.delete(&path(&m1), Some(&lina.token))
        .await
        .expect_body(403, forbidden_body());
    app.delete(
        &format!("/api/v1/conversations/{other}/messages/{}", m1["id"]),
        Some(&omar.token),
    )
    .await
    .expect_body(404, not_found_body());
    // The author.
    app.delete(&path(&m1), Some(&omar.token))
        .await
        .expect_body(200, deleted.clone());
    // The conversation admin, on someone else's message.
    app.delete(&path(&m3), Some(&rana.token))
        .await
        .expect_body(200, deleted);
    let messages = app.all_messages(&lina, id).await;
    assert_eq!(
        messages,
        vec![m2.clone()],
        "deleted messages are never served"
    );
    // Gone for good: delete, edit and react answer 404.
    app.delete(&path(&m1), Some(&omar.token))
        .await
        .expect_body(404, not_found_body());
    app.patch(&path(&m1), Some(&omar.token), json!({"content": "back"}))
        .await
        .expect_body(404, not_found_body());
    app.post(
        "/api/v1/reactions",
        Some(&omar.token),
        json!({"message_id": m1["id"], "emoji": "👍"}),
    )
    .await
    .expect_body(404, not_found_body());
    // Seq is never reused.
    assert_eq!(app.send(&omar, id, "four").await["seq"], 4);
}

conformance!(
    send_returns_201_a_message_with_seq,
    send_accepts_the_wrapped_form_and_client_types,
    send_validation_failures_are_422_and_write_nothing,
    thread_parents_must_be_in_the_same_conversation,
    non_members_get_404_on_every_message_route,
    history_pages_back_with_cursor,
    history_limit_is_clamped_to_1_through_100,
    after_seq_catches_up_oldest_first,
    bad_cursor_limit_and_after_seq_are_400,
    client_message_id_makes_sends_idempotent,
    the_author_edits_a_message,
    authors_and_admins_delete_messages,
);
