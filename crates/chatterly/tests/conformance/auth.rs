//! Contract 2: register, login, logout, tokens, lockout, 401s.

use serde_json::{json, Value};

use crate::common::*;

async fn register_returns_201_the_user_and_a_bearer_header(backend: Backend) {
    let app = TestApp::start(backend).await;
    let resp = app
        .register_raw(json!({
            "email": "  Rana@Example.TEST ", "password": "s3cret-pass",
            "password_confirmation": "s3cret-pass",
            "username": "Rana_H", "display_name": "Rana Haddad",
        }))
        .await;
    let body = resp.expect(201);
    let token = resp.bearer();
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "only message and user: {body}"
    );
    assert_eq!(body["message"], "Registered successfully");
    let user = &body["user"];
    assert_user_with_email(user);
    let id = assert_id(&user["id"]);
    assert_eq!(
        user["email"], "rana@example.test",
        "email stripped and lowercased"
    );
    assert_eq!(user["username"], "rana_h", "username lowercased");
    assert_eq!(user["display_name"], "Rana Haddad");
    assert_eq!(user["avatar_url"], Value::Null);
    assert_eq!(user["last_seen_at"], Value::Null);

    // Contract 2.4: the reference's claims.
    let claims = claims(&token);
    assert_eq!(claims["sub"], id.to_string(), "sub is the id as a string");
    assert_eq!(claims["scp"], "user");
    assert_eq!(claims["aud"], Value::Null);
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - iat, 86_400, "24 h lifetime");
    assert_eq!(
        claims["jti"].as_str().map(str::len),
        Some(36),
        "jti is a UUID"
    );
    let header: Value = {
        let part = token.split('.').next().expect("header");
        claims_of_part(part)
    };
    assert_eq!(header["alg"], "HS256");

    // The token works.
    let me = app.get("/api/v1/users/me", Some(&token)).await.expect(200);
    assert_eq!(me["id"], id);
    // Display name is optional.
    let resp = app
        .register_raw(
            json!({ "email": "omar@example.test", "password": "s3cret-pass", "username": "omar" }),
        )
        .await;
    let body = resp.expect(201);
    assert_eq!(body["user"]["display_name"], Value::Null);
}

fn claims_of_part(part: &str) -> Value {
    // Reuse the payload decoder by building a fake three-part token.
    claims(&format!("x.{part}.x"))
}

async fn register_validation_failures_are_422_and_write_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"email": "RANA_H@example.test", "password": "s3cret-pass", "username": "other1"}),
            "Email has already been taken",
        ),
        (
            json!({"email": "new1@example.test", "password": "s3cret-pass", "username": "RANA_H"}),
            "Username has already been taken",
        ),
        (
            json!({"email": "not-an-email", "password": "s3cret-pass", "username": "new2"}),
            "Email is invalid",
        ),
        (
            json!({"email": "a b@example.test", "password": "s3cret-pass", "username": "new3"}),
            "Email is invalid",
        ),
        (
            json!({"email": "new4@example.test", "password": "short", "username": "new4"}),
            "Password is too short (minimum is 8 characters)",
        ),
        (
            json!({"email": "new5@example.test", "password": "p".repeat(129), "username": "new5"}),
            "Password is too long (maximum is 128 characters)",
        ),
        (
            json!({"email": "new6@example.test", "password": "s3cret-pass", "password_confirmation": "other-pass",
                   "username": "new6"}),
            "Password confirmation doesn't match Password",
        ),
        (
            json!({"email": "new7@example.test", "password": "s3cret-pass", "username": "new-7"}),
            "Username only lowercase letters, numbers, and underscores",
        ),
        (
            json!({"email": "new8@example.test", "password": "s3cret-pass", "username": "n8"}),
            "Username is too short (minimum is 3 characters)",
        ),
        (
            json!({"email": "new9@example.test", "password": "s3cret-pass", "username": "n".repeat(31)}),
            "Username is too long (maximum is 30 characters)",
        ),
        (
            json!({"email": "new10@example.test", "password": "s3cret-pass", "username": "new10",
                   "display_name": "d".repeat(51)}),
            "Display name is too long (maximum is 50 characters)",
        ),
        (
            json!({"password": "s3cret-pass", "username": "new11"}),
            "Email can't be blank",
        ),
        (
            json!({"email": "new12@example.test", "username": "new12"}),
            "Password can't be blank",
        ),
        (
            json!({"email": "new13@example.test", "password": "s3cret-pass", "username": "  "}),
            "Username can't be blank",
        ),
    ];
    for (user, message) in cases {
        let resp = app.register_raw(user.clone()).await;
        assert_422(&resp, message);
        assert!(
            resp.header("authorization").is_none(),
            "no token on failure"
        );
    }
    // No `user` wrapper at all: every required field is blank (contract 2.1).
    let resp = app
        .post(
            "/auth/register",
            None,
            json!({"email": "x@example.test", "password": "s3cret-pass"}),
        )
        .await;
    for message in [
        "Email can't be blank",
        "Password can't be blank",
        "Username can't be blank",
    ] {
        assert_422(&resp, message);
    }
    // Nothing was written: only rana exists, and the first one is untouched.
    let users = app
        .get("/api/v1/users", Some(&rana.token))
        .await
        .expect(200);
    let names: Vec<&str> = users
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["rana_h"]);
    app.login(&rana.email, &rana.password).await.expect(200);
}

async fn login_returns_200_the_user_and_a_fresh_bearer_header(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let resp = app
        .login(&format!("  {} ", rana.email.to_uppercase()), &rana.password)
        .await;
    let body = resp.expect(200);
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only the user key: {body}"
    );
    assert_user_with_email(&body["user"]);
    assert_eq!(body["user"]["id"], rana.id);
    assert_eq!(body["user"]["email"], rana.email);
    let token = resp.bearer();
    assert_ne!(token, rana.token, "a new token per login");
    assert_ne!(claims(&token)["jti"], claims(&rana.token)["jti"]);
    let me = app.get("/api/v1/users/me", Some(&token)).await.expect(200);
    assert_eq!(me["id"], rana.id);
}

async fn login_failures_are_401_with_a_json_error(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let invalid = json!({"error": "Invalid email or password."});
    app.login(&rana.email, "wrong-password")
        .await
        .expect_body(401, invalid.clone());
    app.login("nobody@example.test", &rana.password)
        .await
        .expect_body(401, invalid);
    for body in [
        json!({}),
        json!({"email": rana.email, "password": rana.password}),
        json!({"user": {"email": rana.email}}),
        json!({"user": {"password": rana.password}}),
        json!({"user": {"email": rana.email, "password": 12345678}}),
        json!({"user": "rana"}),
    ] {
        let resp = app.post("/auth/login", None, body).await;
        resp.expect_body(401, no_token_body());
        assert!(resp.header("authorization").is_none());
    }
}

async fn ten_failed_logins_lock_the_account(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    for attempt in 1..=9 {
        let body = app.login(&rana.email, "wrong-password").await.expect(401);
        assert_eq!(
            body["error"], "Invalid email or password.",
            "attempt {attempt}"
        );
    }
    let locked = json!({"error": "Your account is locked."});
    app.login(&rana.email, "wrong-password")
        .await
        .expect_body(401, locked.clone());
    // Even the right password is refused now.
    app.login(&rana.email, &rana.password)
        .await
        .expect_body(401, locked);
    // Existing tokens are not affected; other accounts are not affected.
    app.get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect(200);
    app.login(&omar.email, &omar.password).await.expect(200);

    // A successful login resets the counter.
    for _ in 0..9 {
        app.login(&omar.email, "wrong-password").await.expect(401);
    }
    app.login(&omar.email, &omar.password).await.expect(200);
    for _ in 0..9 {
        let body = app.login(&omar.email, "wrong-password").await.expect(401);
        assert_eq!(body["error"], "Invalid email or password.");
    }
    app.login(&omar.email, &omar.password).await.expect(200);
}

async fn a_lock_expires_after_the_configured_time(backend: Backend) {
    let app = TestApp::start_with(backend, &["--lock-after", "2", "--lock-seconds", "1"]).await;
    let rana = app.register("rana_h").await;
    app.login(&rana.email, "wrong-password").await.expect(401);
    let body = app.login(&rana.email, "wrong-password").await.expect(401);
    assert_eq!(body["error"], "Your account is locked.");
    let body = app.login(&rana.email, &rana.password).await.expect(401);
    assert_eq!(body["error"], "Your account is locked.");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    app.login(&rana.email, &rana.password).await.expect(200);
}

async fn logout_revokes_the_token_and_is_idempotent(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let second = app.login(&rana.email, &rana.password).await.bearer();
    let ok = json!({"message": "Logged out successfully"});
    app.delete("/auth/logout", Some(&rana.token))
        .await
        .expect_body(200, ok.clone());
    let revoked = json!({"error": "revoked token"});
    app.get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect_body(401, revoked.clone());
    app.get("/api/v1/conversations", Some(&rana.token))
        .await
        .expect_body(401, revoked.clone());
    app.post(
        "/api/v1/conversations",
        Some(&rana.token),
        json!({"name": "x"}),
    )
    .await
    .expect_body(401, revoked);
    // Only that token: the other session of the same user still works.
    app.get("/api/v1/users/me", Some(&second)).await.expect(200);
    assert!(app
        .conversations(&TestUser {
            token: second.clone(),
            ..rana.clone()
        })
        .await
        .is_empty());
    // Idempotent, also without a token or with garbage.
    app.delete("/auth/logout", Some(&rana.token))
        .await
        .expect_body(200, ok.clone());
    app.delete("/auth/logout", None)
        .await
        .expect_body(200, ok.clone());
    app.delete("/auth/logout", Some("not-a-jwt"))
        .await
        .expect_body(200, ok);
    app.get("/api/v1/users/me", Some(&second)).await.expect(200);
}

async fn bad_tokens_are_401_with_a_json_error(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let secret = app.jwt_secret();
    let now = chrono::Utc::now().timestamp();
    let claims_for = |sub: &str, iat: i64, exp: i64| {
        json!({"sub": sub, "scp": "user", "aud": null, "iat": iat, "exp": exp,
               "jti": uuid::Uuid::new_v4().to_string()})
    };
    // Sanity: a token the test signs itself with the server's secret is accepted,
    // so the refusals below are about what is wrong with each token.
    let own = sign(&secret, claims_for(&rana.id.to_string(), now, now + 60));
    app.get("/api/v1/users/me", Some(&own)).await.expect(200);

    let mut tampered = rana.token.clone();
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let cases: Vec<(String, Option<&str>)> = vec![
        (tampered, Some("Signature verification failed")),
        (
            sign(
                b"some-other-secret-some-other-secret!!",
                claims_for(&rana.id.to_string(), now, now + 60),
            ),
            Some("Signature verification failed"),
        ),
        (
            sign(
                &secret,
                claims_for(&rana.id.to_string(), now - 120, now - 60),
            ),
            Some("Signature has expired"),
        ),
        (
            sign(&secret, claims_for("987654321", now, now + 60)),
            Some("nil user"),
        ),
        ("garbage".to_owned(), None),
        ("a.b.c".to_owned(), None),
    ];
    for (token, message) in cases {
        let body = app.get("/api/v1/users/me", Some(&token)).await.expect(401);
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("401 without error: {body}"));
        if let Some(message) = message {
            assert_eq!(error, message, "token {token}");
        }
    }
    // Scheme matched case-sensitively; anything but `Bearer <token>` is no token.
    for header in [
        format!("bearer {}", rana.token),
        format!("Token {}", rana.token),
        "Bearer".to_owned(),
        String::new(),
    ] {
        let resp = app
            .client
            .get(app.url("/api/v1/users/me"))
            .header("authorization", header.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 401, "{header:?}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body, no_token_body(), "{header:?}");
    }
}

/// Every `/api/v1` route, as (method, path with real-looking ids).
pub fn api_routes() -> Vec<(reqwest::Method, &'static str)> {
    use reqwest::Method;
    vec![
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/users?search=a"),
        (Method::GET, "/api/v1/users/me"),
        (Method::GET, "/api/v1/users/1"),
        (Method::PATCH, "/api/v1/users/1"),
        (Method::PUT, "/api/v1/users/1"),
        (Method::GET, "/api/v1/conversations"),
        (Method::POST, "/api/v1/conversations"),
        (Method::GET, "/api/v1/conversations/1"),
        (Method::DELETE, "/api/v1/conversations/1"),
        (Method::POST, "/api/v1/conversations/1/memberships"),
        (Method::DELETE, "/api/v1/conversations/1/memberships/1"),
        (Method::GET, "/api/v1/conversations/1/messages"),
        (Method::POST, "/api/v1/conversations/1/messages"),
        (Method::PATCH, "/api/v1/conversations/1/messages/1"),
        (Method::PUT, "/api/v1/conversations/1/messages/1"),
        (Method::DELETE, "/api/v1/conversations/1/messages/1"),
        (Method::POST, "/api/v1/reactions"),
        (Method::DELETE, "/api/v1/reactions/1"),
        // Bad ids and bodies do not get past authentication either.
        (Method::GET, "/api/v1/users/abc"),
        (
            Method::GET,
            "/api/v1/conversations/99999999999999999999/messages",
        ),
    ]
}

async fn every_api_route_is_401_without_a_valid_token(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let conversation = app.group(&rana, "Launch crew", &[]).await;
    let message = app.send(&rana, conversation, "hello").await;
    let before = app.all_messages(&rana, conversation).await;
    app.delete("/auth/logout", Some(&rana.token))
        .await
        .expect(200);
    let expired = sign(
        &app.jwt_secret(),
        json!({"sub": rana.id.to_string(), "scp": "user", "aud": null, "iat": 1, "exp": 2, "jti": "x"}),
    );
    let body = json!({"content": "x", "name": "x", "user_id": rana.id, "message_id": message["id"], "emoji": "x",
                      "display_name": "x"});
    for (method, path) in api_routes() {
        let path = path.replace("/1", &format!("/{conversation}"));
        let without = app
            .request(method.clone(), &path, None, Body::Json(body.clone()))
            .await;
        without.expect_body(401, no_token_body());
        let revoked = app
            .request(
                method.clone(),
                &path,
                Some(&rana.token),
                Body::Json(body.clone()),
            )
            .await;
        revoked.expect_body(401, json!({"error": "revoked token"}));
        let old = app
            .request(
                method.clone(),
                &path,
                Some(&expired),
                Body::Json(body.clone()),
            )
            .await;
        old.expect_body(401, json!({"error": "Signature has expired"}));
    }
    // Nothing was written by any of them.
    let fresh = TestUser {
        token: app.login(&rana.email, &rana.password).await.bearer(),
        ..rana.clone()
    };
    assert_eq!(app.all_messages(&fresh, conversation).await, before);
    assert_eq!(app.conversations(&fresh).await.len(), 1);
    let me = app
        .get("/api/v1/users/me", Some(&fresh.token))
        .await
        .expect(200);
    assert_eq!(me["display_name"], "Display rana_h");
}

async fn default_password_hashing_registers_and_logs_in(backend: Backend) {
    // The production cost (argon2id, 19 MiB), once.
    let app = TestApp::start_with(backend, &["--argon2-memory-kib", "19456"]).await;
    let rana = app.register("rana_h").await;
    app.login(&rana.email, &rana.password).await.expect(200);
    let body = app.login(&rana.email, "wrong-password").await.expect(401);
    assert_eq!(body["error"], "Invalid email or password.");
}

conformance!(
    register_returns_201_the_user_and_a_bearer_header,
    register_validation_failures_are_422_and_write_nothing,
    login_returns_200_the_user_and_a_fresh_bearer_header,
    login_failures_are_401_with_a_json_error,
    ten_failed_logins_lock_the_account,
    a_lock_expires_after_the_configured_time,
    logout_revokes_the_token_and_is_idempotent,
    bad_tokens_are_401_with_a_json_error,
    every_api_route_is_401_without_a_valid_token,
    default_password_hashing_registers_and_logs_in,
);
