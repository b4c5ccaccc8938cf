//! Contract 4.4 (and 10.1: the creator is admin): memberships.

use serde_json::json;

use crate::common::*;

async fn the_creator_is_admin_and_adds_members(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[]).await;
    let path = format!("/api/v1/conversations/{id}/memberships");
    // Omar cannot read it yet.
    app.history_raw(&omar, id, "")
        .await
        .expect_body(404, not_found_body());
    app.post(&path, Some(&rana.token), json!({"user_id": omar.id}))
        .await
        .expect_body(201, json!({"message": "Member added"}));
    let shown = app
        .get(&format!("/api/v1/conversations/{id}"), Some(&omar.token))
        .await
        .expect(200);
    assert_eq!(shown["data"]["member_count"], 2);
    assert_eq!(app.conversations(&omar).await.len(), 1);
    let message = app.send(&omar, id, "I'm in").await;
    assert_eq!(message["seq"], 1);
    // Adding again: 422, and still two members.
    let resp = app
        .post(&path, Some(&rana.token), json!({"user_id": omar.id}))
        .await;
    resp.expect_body(
        422,
        json!({"errors": ["User is already a member of this conversation"]}),
    );
    let shown = app
        .get(&format!("/api/v1/conversations/{id}"), Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(shown["data"]["member_count"], 2);
}

async fn adding_members_is_admin_only(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let stranger = app.register("stranger").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let path = format!("/api/v1/conversations/{id}/memberships");
    // A plain member: 403. A non-member: 404 (before 403).
    app.post(&path, Some(&omar.token), json!({"user_id": lina.id}))
        .await
        .expect_body(403, forbidden_body());
    app.post(&path, Some(&stranger.token), json!({"user_id": lina.id}))
        .await
        .expect_body(404, not_found_body());
    app.post(
        "/api/v1/conversations/987654/memberships",
        Some(&rana.token),
        json!({"user_id": lina.id}),
    )
    .await
    .expect_body(404, not_found_body());
    // Unknown or missing user: 404.
    for body in [
        json!({"user_id": 987654}),
        json!({}),
        json!({"user_id": null}),
    ] {
        app.post(&path, Some(&rana.token), body)
            .await
            .expect_body(404, not_found_body());
    }
    // A user_id of the wrong type: 422.
    let resp = app
        .post(&path, Some(&rana.token), json!({"user_id": "lina"}))
        .await;
    assert_eq!(resp.expect(422)["errors"].as_array().map(Vec::len), Some(1));
    let shown = app
        .get(&format!("/api/v1/conversations/{id}"), Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(shown["data"]["member_count"], 2, "nobody was added");
    assert!(app.conversations(&lina).await.is_empty());
    // A direct conversation takes no third member.
    let direct = app.direct(&rana, &omar).await;
    let resp = app
        .post(
            &format!("/api/v1/conversations/{direct}/memberships"),
            Some(&rana.token),
            json!({"user_id": lina.id}),
        )
        .await;
    assert_eq!(resp.expect(422)["errors"].as_array().map(Vec::len), Some(1));
    assert!(app.conversations(&lina).await.is_empty());
}

async fn members_leave_and_admins_remove(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let stranger = app.register("stranger").await;
    let id = app.group(&rana, "Crew", &[&omar, &lina]).await;
    let remove = |user: i64| format!("/api/v1/conversations/{id}/memberships/{user}");
    let left = json!({"message": "Left conversation"});
    // A plain member cannot remove someone else.
    app.delete(&remove(lina.id), Some(&omar.token))
        .await
        .expect_body(403, forbidden_body());
    // A non-member learns nothing.
    app.delete(&remove(lina.id), Some(&stranger.token))
        .await
        .expect_body(404, not_found_body());
    // Target not a member: 404.
    app.delete(&remove(stranger.id), Some(&rana.token))
        .await
        .expect_body(404, not_found_body());
    app.delete(&remove(987654), Some(&rana.token))
        .await
        .expect_body(404, not_found_body());
    // Leaving.
    app.delete(&remove(omar.id), Some(&omar.token))
        .await
        .expect_body(200, left.clone());
    app.history_raw(&omar, id, "")
        .await
        .expect_body(404, not_found_body());
    app.send_raw(&omar, id, json!({"content": "still here?"}))
        .await
        .expect_body(404, not_found_body());
    assert!(app.conversations(&omar).await.is_empty());
    app.get(&format!("/api/v1/conversations/{id}"), Some(&omar.token))
        .await
        .expect_body(403, forbidden_body());
    // The admin removes someone.
    app.delete(&remove(lina.id), Some(&rana.token))
        .await
        .expect_body(200, left);
    assert!(app.conversations(&lina).await.is_empty());
    let shown = app
        .get(&format!("/api/v1/conversations/{id}"), Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(shown["data"]["member_count"], 1);
    // Again: no longer a member.
    app.delete(&remove(lina.id), Some(&rana.token))
        .await
        .expect_body(404, not_found_body());
}

conformance!(
    the_creator_is_admin_and_adds_members,
    adding_members_is_admin_only,
    members_leave_and_admins_remove,
);
