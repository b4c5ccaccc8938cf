//! Contract 4.3 (and 10.1, 10.10): conversations.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn member_ids(conversation: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = conversation["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_i64().expect("member id"))
        .collect();
    ids.sort_unstable();
    ids
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

async fn create_returns_201_with_members_in_data(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let resp = app
        .post(
            "/api/v1/conversations",
            Some(&rana.token),
            json!({"name": "Launch crew", "conversation_type": "group", "member_ids": [omar.id, lina.id]}),
        )
        .await;
    let body = resp.expect(201);
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only data: {body}"
    );
    let data = &body["data"];
    assert_conversation(data);
    assert_eq!(data["conversation_type"], "group");
    assert_eq!(data["name"], "Launch crew");
    assert_eq!(data["description"], Value::Null);
    assert_eq!(data["created_by_id"], rana.id);
    assert_eq!(data["member_count"], 3);
    assert_eq!(member_ids(data), sorted(vec![rana.id, omar.id, lina.id]));
    // Contract 10.16: a deterministic order, ids ascending.
    let in_order: Vec<i64> = data["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_i64().expect("member id"))
        .collect();
    assert_eq!(in_order, member_ids(data), "members are in id order");

    // Show gives the same conversation to every member.
    let id = data["id"].as_i64().expect("id");
    for user in [&rana, &omar, &lina] {
        let shown = app
            .get(&format!("/api/v1/conversations/{id}"), Some(&user.token))
            .await
            .expect(200);
        assert_conversation(&shown["data"]);
        assert_eq!(shown["data"]["id"], id);
        assert_eq!(shown["data"]["name"], "Launch crew");
        assert_eq!(shown["data"]["created_at"], data["created_at"]);
        assert_eq!(member_ids(&shown["data"]), member_ids(data));
    }
}

async fn create_defaults_to_channel_and_accepts_the_wrapped_form(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let data = app
        .create_conversation(
            &rana,
            json!({"conversation": {"name": "General", "description": "Everything"}}),
        )
        .await;
    assert_conversation(&data);
    assert_eq!(data["conversation_type"], "channel", "channel by default");
    assert_eq!(data["name"], "General");
    assert_eq!(data["description"], "Everything");
    assert_eq!(data["member_count"], 1);
    let data = app
        .create_conversation(
            &rana,
            json!({"name": "Announcements", "conversation_type": "channel"}),
        )
        .await;
    assert_eq!(data["conversation_type"], "channel");
}

async fn create_validation_failures_write_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let create = |body: Value| {
        let app = &app;
        let token = rana.token.clone();
        async move { app.post("/api/v1/conversations", Some(&token), body).await }
    };
    assert_422(
        &create(json!({"conversation_type": "group", "member_ids": [omar.id]})).await,
        "Name can't be blank",
    );
    assert_422(
        &create(json!({"name": "   ", "conversation_type": "channel"})).await,
        "Name can't be blank",
    );
    assert_422(
        &create(json!({"name": "n".repeat(101)})).await,
        "Name is too long (maximum is 100 characters)",
    );
    // Contract 10.14: an unknown type is a 422, not a 500.
    let resp = create(json!({"name": "x", "conversation_type": "bogus"})).await;
    assert_eq!(resp.expect(422)["errors"].as_array().map(Vec::len), Some(1));
    let resp = create(json!({"name": "x", "conversation_type": "call"})).await;
    resp.expect(422);
    // Only member_ids: no conversation fields at all → 400.
    create(json!({"member_ids": [omar.id]}))
        .await
        .expect_body(400, bad_request_body());
    create(json!({})).await.expect_body(400, bad_request_body());
    // Nothing was created for either user.
    assert!(app.conversations(&rana).await.is_empty());
    assert!(app.conversations(&omar).await.is_empty());
    // Exactly 100 characters is fine.
    let data = app
        .create_conversation(&rana, json!({"name": "n".repeat(100)}))
        .await;
    assert_eq!(data["name"].as_str().map(str::len), Some(100));
}

async fn create_skips_unknown_members_and_the_creator(backend: Backend) {
    // Contract 10.10: member_ids containing the creator must not half-create.
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let data = app
        .create_conversation(
            &rana,
            json!({"name": "Crew", "conversation_type": "group", "member_ids": [rana.id, 987654, omar.id, omar.id]}),
        )
        .await;
    assert_eq!(data["member_count"], 2);
    assert_eq!(member_ids(&data), sorted(vec![rana.id, omar.id]));
    assert_eq!(app.conversations(&rana).await.len(), 1);
}

async fn direct_conversations_are_one_per_pair(backend: Backend) {
    // Contract 10.10: a second create of the same pair returns the first (200).
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let first = app
        .post(
            "/api/v1/conversations",
            Some(&rana.token),
            json!({"conversation_type": "direct", "member_ids": [omar.id]}),
        )
        .await
        .expect(201);
    assert_conversation(&first["data"]);
    assert_eq!(first["data"]["conversation_type"], "direct");
    assert_eq!(first["data"]["name"], Value::Null, "a direct needs no name");
    assert_eq!(member_ids(&first["data"]), sorted(vec![rana.id, omar.id]));
    let id = first["data"]["id"].clone();
    for (user, other) in [(&rana, &omar), (&omar, &rana)] {
        let again = app
            .post(
                "/api/v1/conversations",
                Some(&user.token),
                json!({"conversation_type": "direct", "member_ids": [other.id]}),
            )
            .await
            .expect(200);
        assert_conversation(&again["data"]);
        assert_eq!(
            again["data"]["id"], id,
            "the existing one, same {{data: ...}} shape"
        );
    }
    assert_eq!(app.conversations(&rana).await.len(), 1);
    assert_eq!(app.conversations(&omar).await.len(), 1);
    // A different pair is a different conversation.
    let other = app.direct(&rana, &lina).await;
    assert_ne!(Value::from(other), id);

    // The member count of a direct is enforced.
    for member_ids in [
        json!([]),
        json!([rana.id]),
        json!([987654]),
        json!([omar.id, lina.id]),
    ] {
        let resp = app
            .post(
                "/api/v1/conversations",
                Some(&rana.token),
                json!({"conversation_type": "direct", "member_ids": member_ids}),
            )
            .await;
        assert_eq!(
            resp.expect(422)["errors"].as_array().map(Vec::len),
            Some(1),
            "{member_ids}"
        );
    }
    assert_eq!(app.conversations(&rana).await.len(), 2);
}

async fn list_returns_only_own_conversations_newest_activity_first(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let first = app.group(&rana, "First", &[]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let omars = app.group(&omar, "Omar's", &[]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let shared = app.group(&rana, "Shared", &[&omar]).await;
    let body = app
        .get("/api/v1/conversations", Some(&rana.token))
        .await
        .expect(200);
    let list = body["data"].as_array().expect("data is an array");
    list.iter().for_each(assert_conversation);
    let ids: Vec<i64> = list.iter().map(|c| c["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, [shared, first], "own only, newest first");
    let ids: Vec<i64> = app
        .conversations(&omar)
        .await
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [shared, omars]);
    // A message moves its conversation to the front.
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.send(&rana, first, "bump").await;
    let ids: Vec<i64> = app
        .conversations(&rana)
        .await
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [first, shared]);
}

/// `?limit=`/`?cursor=` (additive): pages of the list in its order with
/// `next_cursor` beside `data`; the pages put together are the list; bad
/// parameters are 400 with JSON; without them the answer has no cursor.
async fn list_pages_follow_the_cursor_and_bad_pages_are_400(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    for n in 0..5 {
        let id = app.group(&rana, &format!("Room {n}"), &[&omar]).await;
        if n == 1 {
            app.send(&omar, id, "hello").await;
        }
    }
    let whole = app
        .get("/api/v1/conversations", Some(&rana.token))
        .await
        .expect(200);
    assert!(whole.get("next_cursor").is_none(), "{whole}");
    let whole = whole["data"].as_array().expect("data").clone();
    assert_eq!(whole.len(), 5);

    let mut paged = Vec::new();
    let mut query = "limit=2".to_owned();
    for round in 0.. {
        assert!(round < 5, "the pages do not end");
        let body = app
            .get(&format!("/api/v1/conversations?{query}"), Some(&rana.token))
            .await
            .expect(200);
        let page = body["data"].as_array().expect("data").clone();
        page.iter().for_each(assert_conversation);
        assert!(page.len() <= 2);
        paged.extend(page.iter().cloned());
        match &body["next_cursor"] {
            Value::String(cursor) => {
                assert_eq!(page.len(), 2, "a cursor only after a full page");
                query = format!("limit=2&cursor={cursor}");
            }
            Value::Null => {
                assert!(page.len() < 2, "a full page has a cursor: {body}");
                break;
            }
            other => panic!("next_cursor is {other}"),
        }
    }
    assert_eq!(paged, whole, "the pages are the list");

    // A cursor alone takes the default page size.
    let first = app
        .get("/api/v1/conversations?limit=1", Some(&rana.token))
        .await
        .expect(200);
    let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    let rest = app
        .get(
            &format!("/api/v1/conversations?cursor={cursor}"),
            Some(&rana.token),
        )
        .await
        .expect(200);
    assert_eq!(rest["data"].as_array().map(Vec::len), Some(4));
    assert_eq!(rest["next_cursor"], Value::Null);
    // Limits are clamped, not refused.
    let all = app
        .get("/api/v1/conversations?limit=100000", Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(all["data"].as_array().map(Vec::len), Some(5));
    let one = app
        .get("/api/v1/conversations?limit=0", Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(one["data"].as_array().map(Vec::len), Some(1));

    for query in [
        "limit=x",
        "limit=1.5",
        "limit=99999999999999999999",
        "cursor=abc",
        "cursor=12",
        "cursor=1_x",
        "cursor=99999999999999999999_1",
        "limit=2&cursor=%FF%FE",
    ] {
        assert_400(
            &app.get(&format!("/api/v1/conversations?{query}"), Some(&rana.token))
                .await,
        );
    }
}

async fn show_is_403_for_non_members_and_404_when_missing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Private", &[]).await;
    app.get(&format!("/api/v1/conversations/{id}"), Some(&omar.token))
        .await
        .expect_body(403, forbidden_body());
    for missing in [
        "987654".to_owned(),
        "abc".to_owned(),
        "0".to_owned(),
        "99999999999999999999".to_owned(),
    ] {
        app.get(
            &format!("/api/v1/conversations/{missing}"),
            Some(&rana.token),
        )
        .await
        .expect_body(404, not_found_body());
    }
}

async fn delete_is_for_the_creator_and_removes_everything(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let id = app.group(&rana, "Doomed", &[&omar]).await;
    let message = app.send(&omar, id, "hello").await;
    let path = format!("/api/v1/conversations/{id}");
    // A plain member and a stranger may not.
    app.delete(&path, Some(&omar.token))
        .await
        .expect_body(403, forbidden_body());
    app.delete(&path, Some(&lina.token))
        .await
        .expect_body(403, forbidden_body());
    assert_eq!(
        app.all_messages(&rana, id).await.len(),
        1,
        "nothing deleted"
    );
    // The creator may.
    app.delete(&path, Some(&rana.token))
        .await
        .expect_body(200, json!({"message": "Conversation deleted"}));
    app.get(&path, Some(&rana.token))
        .await
        .expect_body(404, not_found_body());
    app.history_raw(&omar, id, "")
        .await
        .expect_body(404, not_found_body());
    app.post(
        "/api/v1/reactions",
        Some(&omar.token),
        json!({"message_id": message["id"], "emoji": "👍"}),
    )
    .await
    .expect_body(404, not_found_body());
    assert!(app.conversations(&rana).await.is_empty());
    assert!(app.conversations(&omar).await.is_empty());
    app.delete(&path, Some(&rana.token))
        .await
        .expect_body(404, not_found_body());
    app.delete("/api/v1/conversations/abc", Some(&rana.token))
        .await
        .expect_body(404, not_found_body());

    // The creator may delete even after leaving (created_by_id, contract 4.0).
    let id = app.group(&rana, "Left behind", &[&omar]).await;
    app.delete(
        &format!("/api/v1/conversations/{id}/memberships/{}", rana.id),
        Some(&rana.token),
    )
    .await
    .expect(200);
    app.delete(&format!("/api/v1/conversations/{id}"), Some(&rana.token))
        .await
        .expect_body(200, json!({"message": "Conversation deleted"}));
    assert!(app.conversations(&omar).await.is_empty());
}

conformance!(
    create_returns_201_with_members_in_data,
    create_defaults_to_channel_and_accepts_the_wrapped_form,
    create_validation_failures_write_nothing,
    create_skips_unknown_members_and_the_creator,
    direct_conversations_are_one_per_pair,
    list_returns_only_own_conversations_newest_activity_first,
    list_pages_follow_the_cursor_and_bad_pages_are_400,
    show_is_403_for_non_members_and_404_when_missing,
    delete_is_for_the_creator_and_removes_everything,
);
