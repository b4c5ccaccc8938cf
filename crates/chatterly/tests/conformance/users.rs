//! Contract 4.2: users.

use serde_json::{json, Value};

use crate::common::*;

async fn me_is_the_bare_user_with_email(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let me = app
        .get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect(200);
    assert!(me.get("data").is_none(), "never wrapped in data: {me}");
    assert!(me.get("user").is_none(), "bare: {me}");
    assert_user_with_email(&me);
    assert_eq!(me["id"], rana.id);
    assert_eq!(me["email"], rana.email);
    assert_eq!(me["username"], "rana_h");
    assert_eq!(me["display_name"], "Display rana_h");
}

async fn show_is_the_bare_public_profile_or_404(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let body = app
        .get(&format!("/api/v1/users/{}", omar.id), Some(&rana.token))
        .await
        .expect(200);
    assert_user_public(&body);
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(5),
        "exactly the UserPublic keys: {body}"
    );
    assert_eq!(body["id"], omar.id);
    assert_eq!(body["username"], "omar");
    for id in [
        "987654",
        "abc",
        "0",
        "-1",
        "99999999999999999999",
        "9223372036854775807",
        "1.5",
    ] {
        app.get(&format!("/api/v1/users/{id}"), Some(&rana.token))
            .await
            .expect_body(404, not_found_body());
    }
}

async fn search_matches_username_or_display_name_case_insensitively(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = app.register("alice_w").await;
    app.register("alina").await;
    app.register("bob").await;
    app.patch(
        &format!("/api/v1/users/{}", alice.id),
        Some(&alice.token),
        json!({"display_name": "Wonderland"}),
    )
    .await
    .expect(200);
    let names = |body: Value| -> Vec<String> {
        let mut names: Vec<String> = body
            .as_array()
            .unwrap_or_else(|| panic!("a bare array: {body}"))
            .iter()
            .map(|u| {
                assert_user_public(u);
                u["username"].as_str().expect("username").to_owned()
            })
            .collect();
        names.sort();
        names
    };
    let search = |q: &'static str| {
        let app = &app;
        let token = alice.token.clone();
        async move {
            app.get(&format!("/api/v1/users?search={q}"), Some(&token))
                .await
                .expect(200)
        }
    };
    assert_eq!(
        names(search("ALI").await),
        ["alice_w", "alina"],
        "the caller is included"
    );
    assert_eq!(
        names(search("wonder").await),
        ["alice_w"],
        "display name matches"
    );
    assert_eq!(names(search("zzz").await), Vec::<String>::new());
    assert_eq!(
        names(search("b_b").await),
        ["bob"],
        "`_` is a wildcard, as in the reference"
    );
    let all = app
        .get("/api/v1/users", Some(&alice.token))
        .await
        .expect(200);
    assert_eq!(
        names(all),
        ["alice_w", "alina", "bob"],
        "no search lists everyone"
    );
}

async fn update_changes_only_ones_own_profile(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let path = format!("/api/v1/users/{}", rana.id);

    let body = app
        .patch(
            &path,
            Some(&rana.token),
            json!({"display_name": "Rana H.", "email": "evil@example.test"}),
        )
        .await
        .expect(200);
    assert!(body.get("data").is_none(), "bare: {body}");
    assert_user_with_email(&body);
    assert_eq!(body["display_name"], "Rana H.");
    assert_eq!(body["email"], rana.email, "email cannot be changed");
    assert_eq!(body["avatar_url"], Value::Null);

    // Wrapped under `user`, and PUT as well as PATCH.
    let body = app
        .put(
            &path,
            Some(&rana.token),
            json!({"user": {"avatar_url": "https://example.test/a.png"}}),
        )
        .await
        .expect(200);
    assert_eq!(body["avatar_url"], "https://example.test/a.png");
    assert_eq!(body["display_name"], "Rana H.", "absent fields are kept");

    // null clears.
    let body = app
        .patch(&path, Some(&rana.token), json!({"display_name": null}))
        .await
        .expect(200);
    assert_eq!(body["display_name"], Value::Null);
    let me = app
        .get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(me["display_name"], Value::Null);
    assert_eq!(me["avatar_url"], "https://example.test/a.png");

    // Someone else's profile: 403, unchanged.
    app.patch(&path, Some(&omar.token), json!({"display_name": "hacked"}))
        .await
        .expect_body(403, forbidden_body());
    app.patch(
        "/api/v1/users/987654",
        Some(&omar.token),
        json!({"display_name": "x"}),
    )
    .await
    .expect_body(404, not_found_body());
    // Neither field: 400.
    app.patch(&path, Some(&rana.token), json!({}))
        .await
        .expect_body(400, bad_request_body());
    app.patch(&path, Some(&rana.token), json!({"username": "new_name"}))
        .await
        .expect_body(400, bad_request_body());
    // Validation.
    let resp = app
        .patch(
            &path,
            Some(&rana.token),
            json!({"display_name": "d".repeat(51)}),
        )
        .await;
    assert_422(&resp, "Display name is too long (maximum is 50 characters)");
    let resp = app
        .patch(&path, Some(&rana.token), json!({"display_name": 5}))
        .await;
    assert_eq!(resp.expect(422)["errors"].as_array().map(Vec::len), Some(1));
    let me = app
        .get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(
        me["display_name"],
        Value::Null,
        "failed updates wrote nothing"
    );
    assert_eq!(me["username"], "rana_h");
    let exactly_50 = "d".repeat(50);
    let body = app
        .patch(
            &path,
            Some(&rana.token),
            json!({"display_name": exactly_50}),
        )
        .await
        .expect(200);
    assert_eq!(body["display_name"], exactly_50);
}

conformance!(
    me_is_the_bare_user_with_email,
    show_is_the_bare_public_profile_or_404,
    search_matches_username_or_display_name_case_insensitively,
    update_changes_only_ones_own_profile,
);
