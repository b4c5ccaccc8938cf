//! Bad input: malformed JSON, wrong types, missing fields, unknown or huge
//! ids, oversized bodies, unknown routes. Always a 4xx with a JSON body in the
//! contract's shape, nothing written, never a 5xx.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

/// A world with one of everything, and a snapshot of what it holds, to check
/// that bad requests wrote nothing.
struct World {
    rana: TestUser,
    omar: TestUser,
    conversation: i64,
    message: i64,
    reaction: i64,
}

impl World {
    async fn new(app: &TestApp) -> World {
        let rana = app.register("rana_h").await;
        let omar = app.register("omar").await;
        let conversation = app.group(&rana, "Crew", &[&omar]).await;
        let message = app.send(&rana, conversation, "hello").await["id"]
            .as_i64()
            .expect("id");
        let reaction = app
            .post(
                "/api/v1/reactions",
                Some(&omar.token),
                json!({"message_id": message, "emoji": "👍"}),
            )
            .await
            .expect(201)["id"]
            .as_i64()
            .expect("id");
        World {
            rana,
            omar,
            conversation,
            message,
            reaction,
        }
    }

    async fn snapshot(&self, app: &TestApp) -> Value {
        let users = app
            .get("/api/v1/users", Some(&self.rana.token))
            .await
            .expect(200);
        let me = app
            .get("/api/v1/users/me", Some(&self.rana.token))
            .await
            .expect(200);
        let rana_list = app.conversations(&self.rana).await;
        let omar_list = app.conversations(&self.omar).await;
        let messages = app.all_messages(&self.rana, self.conversation).await;
        json!({"users": users, "me": me, "rana": rana_list, "omar": omar_list, "messages": messages})
    }

    /// Every route that takes a body: (method, path, token).
    fn write_routes(&self) -> Vec<(Method, String, Option<String>)> {
        let (c, m) = (self.conversation, self.message);
        let token = Some(self.rana.token.clone());
        vec![
            (Method::POST, "/auth/register".into(), None),
            (Method::POST, "/auth/login".into(), None),
            (
                Method::PATCH,
                format!("/api/v1/users/{}", self.rana.id),
                token.clone(),
            ),
            (
                Method::PUT,
                format!("/api/v1/users/{}", self.rana.id),
                token.clone(),
            ),
            (Method::POST, "/api/v1/conversations".into(), token.clone()),
            (
                Method::POST,
                format!("/api/v1/conversations/{c}/memberships"),
                token.clone(),
            ),
            (
                Method::POST,
                format!("/api/v1/conversations/{c}/messages"),
                token.clone(),
            ),
            (
                Method::PATCH,
                format!("/api/v1/conversations/{c}/messages/{m}"),
                token.clone(),
            ),
            (
                Method::PUT,
                format!("/api/v1/conversations/{c}/messages/{m}"),
                token.clone(),
            ),
            (Method::POST, "/api/v1/reactions".into(), token),
        ]
    }
}

async fn malformed_json_is_400_and_writes_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let world = World::new(&app).await;
    let before = world.snapshot(&app).await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"content": "hi","#.to_vec(),
        br#"{"content": "hi"} trailing"#.to_vec(),
        b"{'content': 'hi'}".to_vec(),
        b"not json at all".to_vec(),
        br#"["content", "hi"]"#.to_vec(),
        br#""just a string""#.to_vec(),
        b"null".to_vec(),
        b"42".to_vec(),
        vec![0xff, 0xfe, 0x7b, 0x7d],
        deep.into_bytes(),
    ];
    for (method, path, token) in world.write_routes() {
        for body in &bodies {
            let resp = app
                .request(
                    method.clone(),
                    &path,
                    token.as_deref(),
                    Body::Raw(body.clone()),
                )
                .await;
            assert_400(&resp);
        }
    }
    assert_eq!(world.snapshot(&app).await, before, "nothing was written");
}

async fn wrong_types_are_422_with_errors_and_write_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let world = World::new(&app).await;
    let before = world.snapshot(&app).await;
    let (c, m) = (world.conversation, world.message);
    let messages = format!("/api/v1/conversations/{c}/messages");
    let message = format!("{messages}/{m}");
    let user = format!("/api/v1/users/{}", world.rana.id);
    let cases: Vec<(Method, String, Value)> = vec![
        (Method::POST, messages.clone(), json!({"content": 123})),
        (Method::POST, messages.clone(), json!({"content": ["hi"]})),
        (
            Method::POST,
            messages.clone(),
            json!({"content": {"text": "hi"}}),
        ),
        (Method::POST, messages.clone(), json!({"content": true})),
        (
            Method::POST,
            messages.clone(),
            json!({"content": "hi", "message_type": 0}),
        ),
        (
            Method::POST,
            messages.clone(),
            json!({"content": "hi", "parent_message_id": "first"}),
        ),
        (
            Method::POST,
            messages.clone(),
            json!({"content": "hi", "parent_message_id": 1.5}),
        ),
        (
            Method::POST,
            messages.clone(),
            json!({"content": "hi", "parent_message_id": 1e300}),
        ),
        (
            Method::POST,
            messages.clone(),
            json!({"content": "hi", "client_message_id": ["k"]}),
        ),
        (Method::PATCH, message.clone(), json!({"content": 5})),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            json!({"name": 5}),
        ),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            json!({"name": "x", "conversation_type": 2}),
        ),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            json!({"name": "x", "description": []}),
        ),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            json!({"name": "x", "member_ids": "1"}),
        ),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            json!({"name": "x", "member_ids": [true]}),
        ),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            json!({"name": "x", "member_ids": [1e30]}),
        ),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            serde_json::from_str(r#"{"name": "x", "member_ids": [99999999999999999999]}"#)
                .expect("json"),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/memberships"),
            json!({"user_id": "omar"}),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/memberships"),
            json!({"user_id": [1]}),
        ),
        (Method::PATCH, user.clone(), json!({"display_name": 5})),
        (
            Method::PATCH,
            user.clone(),
            json!({"avatar_url": {"url": "x"}}),
        ),
        (
            Method::POST,
            "/api/v1/reactions".into(),
            json!({"message_id": "x", "emoji": "👍"}),
        ),
        (
            Method::POST,
            "/api/v1/reactions".into(),
            json!({"message_id": m, "emoji": ["👍"]}),
        ),
        (
            Method::POST,
            "/auth/register".into(),
            json!({"user": {"email": 5, "password": "s3cret-pass", "username": "new_user"}}),
        ),
        (
            Method::POST,
            "/auth/register".into(),
            json!({"user": {"email": "n@example.test", "password": 12345678, "username": "new_user"}}),
        ),
    ];
    for (method, path, body) in cases {
        let resp = app
            .request(
                method.clone(),
                &path,
                Some(&world.rana.token),
                Body::Json(body.clone()),
            )
            .await;
        let got = resp.expect(422);
        let errors = got["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} {body}: {got}"));
        assert!(
            !errors.is_empty() && errors.iter().all(Value::is_string),
            "{method} {path} {body}: {got}"
        );
    }
    assert_eq!(world.snapshot(&app).await, before, "nothing was written");
}

async fn missing_fields_and_empty_bodies_are_4xx(backend: Backend) {
    let app = TestApp::start(backend).await;
    let world = World::new(&app).await;
    let before = world.snapshot(&app).await;
    let (c, m) = (world.conversation, world.message);
    let token = Some(world.rana.token.as_str());
    // No wrapper keys at all: the contract's 400.
    for (method, path) in [
        (Method::POST, format!("/api/v1/conversations/{c}/messages")),
        (
            Method::PATCH,
            format!("/api/v1/conversations/{c}/messages/{m}"),
        ),
        (Method::POST, "/api/v1/conversations".to_owned()),
        (Method::POST, "/api/v1/reactions".to_owned()),
        (Method::PATCH, format!("/api/v1/users/{}", world.rana.id)),
    ] {
        for body in [
            Body::None,
            Body::Json(json!({})),
            Body::Json(json!({"unknown": 1})),
            Body::Raw(b"  ".to_vec()),
        ] {
            app.request(method.clone(), &path, token, body)
                .await
                .expect_body(400, bad_request_body());
        }
        // A wrapper that is not an object is no wrapper either.
        let wrapper = match path.as_str() {
            p if p.contains("messages") => "message",
            p if p.contains("reactions") => "reaction",
            p if p.contains("users") => "user",
            _ => "conversation",
        };
        app.request(
            method.clone(),
            &path,
            token,
            Body::Json(json!({wrapper: "text"})),
        )
        .await
        .expect_body(400, bad_request_body());
    }
    // Register without a body: 422 listing the blanks; login: 401.
    let resp = app
        .request(Method::POST, "/auth/register", None, Body::None)
        .await;
    assert_422(&resp, "Email can't be blank");
    app.request(Method::POST, "/auth/login", None, Body::None)
        .await
        .expect_body(401, no_token_body());
    // Memberships without a user: 404.
    app.request(
        Method::POST,
        &format!("/api/v1/conversations/{c}/memberships"),
        token,
        Body::None,
    )
    .await
    .expect_body(404, not_found_body());
    assert_eq!(world.snapshot(&app).await, before, "nothing was written");
}

async fn unknown_and_huge_ids_are_404_json(backend: Backend) {
    let app = TestApp::start(backend).await;
    let world = World::new(&app).await;
    let before = world.snapshot(&app).await;
    let token = Some(world.rana.token.as_str());
    let (c, m) = (world.conversation, world.message);
    let bad_ids = [
        "987654",
        "abc",
        "0",
        "-1",
        "1.5",
        "1e3",
        "99999999999999999999",
        "9223372036854775807",
        "9223372036854775808",
        "%20",
        "%F0%9F%91%8D",
    ];
    for bad in bad_ids {
        let routes: Vec<(Method, String, Value)> = vec![
            (Method::GET, format!("/api/v1/users/{bad}"), json!(null)),
            (
                Method::PATCH,
                format!("/api/v1/users/{bad}"),
                json!({"display_name": "x"}),
            ),
            (
                Method::GET,
                format!("/api/v1/conversations/{bad}"),
                json!(null),
            ),
            (
                Method::DELETE,
                format!("/api/v1/conversations/{bad}"),
                json!(null),
            ),
            (
                Method::POST,
                format!("/api/v1/conversations/{bad}/memberships"),
                json!({"user_id": world.omar.id}),
            ),
            (
                Method::DELETE,
                format!("/api/v1/conversations/{bad}/memberships/{}", world.omar.id),
                json!(null),
            ),
            (
                Method::DELETE,
                format!("/api/v1/conversations/{c}/memberships/{bad}"),
                json!(null),
            ),
            (
                Method::GET,
                format!("/api/v1/conversations/{bad}/messages"),
                json!(null),
            ),
            (
                Method::POST,
                format!("/api/v1/conversations/{bad}/messages"),
                json!({"content": "x"}),
            ),
            (
                Method::PATCH,
                format!("/api/v1/conversations/{bad}/messages/{m}"),
                json!({"content": "x"}),
            ),
            (
                Method::PATCH,
                format!("/api/v1/conversations/{c}/messages/{bad}"),
                json!({"content": "x"}),
            ),
            (
                Method::PUT,
                format!("/api/v1/conversations/{c}/messages/{bad}"),
                json!({"content": "x"}),
            ),
            (
                Method::DELETE,
                format!("/api/v1/conversations/{c}/messages/{bad}"),
                json!(null),
            ),
            (
                Method::DELETE,
                format!("/api/v1/conversations/{bad}/messages/{m}"),
                json!(null),
            ),
            (
                Method::DELETE,
                format!("/api/v1/reactions/{bad}"),
                json!(null),
            ),
        ];
        for (method, path, body) in routes {
            let body = if body.is_null() {
                Body::None
            } else {
                Body::Json(body)
            };
            app.request(method, &path, token, body)
                .await
                .expect_body(404, not_found_body());
        }
    }
    // Ids in bodies.
    for message_id in [
        json!(987654),
        json!(0),
        json!(-1),
        json!(9223372036854775807i64),
    ] {
        app.post(
            "/api/v1/reactions",
            token,
            json!({"message_id": message_id, "emoji": "👍"}),
        )
        .await
        .expect_body(404, not_found_body());
    }
    app.post(
        &format!("/api/v1/conversations/{c}/memberships"),
        token,
        json!({"user_id": 9223372036854775807i64}),
    )
    .await
    .expect_body(404, not_found_body());
    assert_eq!(world.snapshot(&app).await, before, "nothing was written");
    let _ = world.reaction;
}

async fn unknown_routes_are_404_json(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    let not_found = json!({"status": 404, "error": "Not Found"});
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::GET, "/api/v1/nope"),
        (Method::GET, "/api/v2/users"),
        (Method::POST, "/auth/nope"),
        (Method::POST, "/api/v1/auth/login"),
        (Method::GET, "/api/v1/conversations/1/messages/1/extra"),
    ] {
        for token in [None, Some(rana.token.as_str())] {
            app.request(method.clone(), path, token, Body::None)
                .await
                .expect_body(404, not_found.clone());
        }
    }
    // A known path with a method it does not serve: a JSON 405.
    for (method, path) in [
        (Method::DELETE, "/api/v1/users".to_owned()),
        (Method::GET, "/auth/login".to_owned()),
        (Method::POST, format!("/api/v1/users/{}", rana.id)),
    ] {
        app.request(method, &path, Some(&rana.token), Body::None)
            .await
            .expect_body(405, json!({"status": 405, "error": "Method Not Allowed"}));
    }
}

async fn oversized_bodies_are_413_json_and_write_nothing(backend: Backend) {
    let app = TestApp::start_with(backend, &["--max-body-bytes", "2048"]).await;
    let world = World::new(&app).await;
    let before = world.snapshot(&app).await;
    let big = "x".repeat(3000);
    for (method, path, token) in world.write_routes() {
        let body = json!({"content": big, "name": big, "display_name": big, "emoji": big,
                          "user": {"email": "big@example.test", "password": big, "username": "big"}});
        let resp = app
            .request(method, &path, token.as_deref(), Body::Json(body))
            .await;
        let got = resp.expect(413);
        assert_eq!(got["status"], 413, "{}: {got}", resp.request);
        assert!(got["error"].is_string(), "{}: {got}", resp.request);
    }
    // Without a content length (chunked), the limit still holds.
    let payload = format!(r#"{{"content": "{big}"}}"#);
    let request = format!(
        "POST /api/v1/conversations/{}/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{payload}\r\n0\r\n\r\n",
        world.conversation,
        world.rana.token,
        payload.len()
    );
    let (status, body) = raw_http(&app, request.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    let got: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(got["status"], 413);
    assert_eq!(world.snapshot(&app).await, before, "nothing was written");
    // Just under the limit is fine.
    let fits = "y".repeat(1900);
    app.send(&world.rana, world.conversation, &fits).await;
}

/// Sends raw bytes over TCP and returns (status, body) of the answer.
async fn raw_http(app: &TestApp, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = app.url("");
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer before reading everything; a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn garbage_never_causes_a_5xx(backend: Backend) {
    let app = TestApp::start(backend).await;
    let world = World::new(&app).await;
    let before = world.snapshot(&app).await;
    let payloads = [
        json!(null),
        json!([]),
        json!("string"),
        json!({"content": null, "message_type": null, "parent_message_id": null}),
        json!({"message": {"content": {"nested": [1, 2, {"deeper": null}]}}}),
        json!({"message": []}),
        json!({"conversation": {"name": ["a"], "conversation_type": {"x": 1}}}),
        json!({"name": "x", "conversation_type": "direct", "member_ids": [[1]]}),
        json!({"user_id": -9223372036854775807i64}),
        json!({"user_id": 1.0e308}),
        json!({"message_id": {"id": 1}, "emoji": null}),
        json!({"display_name": null, "avatar_url": null}),
        json!({"avatar_url": "a".repeat(5000)}),
        json!({"content": "\u{0000}\u{FFFF}\u{1F600}", "message_type": "text\u{0000}"}),
        json!({"content": "\u{0000}", "client_message_id": "\u{0000}"}),
        json!({"user": {"email": "\u{0000}@x", "password": "\u{0000}".repeat(8), "username": "\u{0000}"}}),
        json!({"user": {"email": [], "password": {}, "username": null, "display_name": 1}}),
        json!({"user": null}),
    ];
    let mut routes = world.write_routes();
    let (c, m) = (world.conversation, world.message);
    let token = Some(world.rana.token.clone());
    routes.extend([
        (
            Method::GET,
            format!("/api/v1/conversations/{c}/messages?limit=&cursor=&after_seq="),
            token.clone(),
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{c}/messages?limit=5&limit=6"),
            token.clone(),
        ),
        (
            Method::GET,
            "/api/v1/users?search=%25%5F%5C%27%22%00".to_owned(),
            token.clone(),
        ),
        (
            Method::GET,
            format!("/api/v1/users?search={}", "a".repeat(5000)),
            token.clone(),
        ),
        (
            Method::DELETE,
            format!("/api/v1/conversations/{c}/messages/{m}?x=1"),
            Some(world.omar.token.clone()),
        ),
    ]);
    for (method, path, token) in &routes {
        for payload in &payloads {
            let resp = app
                .request(
                    method.clone(),
                    path,
                    token.as_deref(),
                    Body::Json(payload.clone()),
                )
                .await;
            assert!(
                resp.status.is_client_error() || resp.status.is_success(),
                "{} with {payload} answered {}: {}",
                resp.request,
                resp.status,
                resp.text
            );
            resp.json();
            if method == Method::GET {
                continue;
            }
            assert!(
                !resp.status.is_success() || path.contains("/users/"),
                "{} with {payload} succeeded: {}",
                resp.request,
                resp.text
            );
        }
    }
    // The only success above is clearing one's own profile fields (null is a
    // valid value); restore it and compare the rest.
    app.patch(
        &format!("/api/v1/users/{}", world.rana.id),
        Some(&world.rana.token),
        json!({"display_name": "Display rana_h", "avatar_url": null}),
    )
    .await
    .expect(200);
    assert_eq!(world.snapshot(&app).await, before, "nothing was written");
}

async fn nul_characters_are_refused_on_both_backends(backend: Backend) {
    // PostgreSQL cannot store U+0000 in text; SQLite can. Both must answer the
    // same 4xx rather than a 500 on one of them.
    let app = TestApp::start(backend).await;
    let world = World::new(&app).await;
    let before = world.snapshot(&app).await;
    let (c, m) = (world.conversation, world.message);
    let token = Some(world.rana.token.as_str());
    let cases: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/messages"),
            json!({"content": "a\u{0000}b"}),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{c}/messages"),
            json!({"content": "ok", "client_message_id": "k\u{0000}"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/conversations/{c}/messages/{m}"),
            json!({"content": "\u{0000}"}),
        ),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            json!({"name": "crew\u{0000}"}),
        ),
        (
            Method::POST,
            "/api/v1/conversations".into(),
            json!({"name": "crew", "description": "\u{0000}"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", world.rana.id),
            json!({"display_name": "r\u{0000}"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", world.rana.id),
            json!({"avatar_url": "\u{0000}"}),
        ),
        (
            Method::POST,
            "/api/v1/reactions".into(),
            json!({"message_id": m, "emoji": "\u{0000}"}),
        ),
        (
            Method::POST,
            "/auth/register".into(),
            json!({"user": {"email": "nul\u{0000}@example.test", "password": "s3cret-pass", "username": "nul_user"}}),
        ),
        (
            Method::POST,
            "/auth/register".into(),
            json!({"user": {"email": "nul@example.test", "password": "s3cret-pass", "username": "nul_user",
                            "display_name": "\u{0000}"}}),
        ),
    ];
    for (method, path, body) in cases {
        let resp = app
            .request(method.clone(), &path, token, Body::Json(body.clone()))
            .await;
        assert_eq!(
            resp.status.as_u16(),
            422,
            "{method} {path} {body}: {} {}",
            resp.status,
            resp.text
        );
        assert!(resp.json()["errors"].is_array());
    }
    // Looking things up with a NUL finds nothing rather than failing.
    let resp = app
        .post(
            "/auth/login",
            None,
            json!({"user": {"email": "rana_h\u{0000}@example.test", "password": "x"}}),
        )
        .await;
    assert!(resp.expect(401)["error"].is_string());
    let found = app
        .get("/api/v1/users?search=ra%00na", token)
        .await
        .expect(200);
    assert_eq!(found, json!([]));
    assert_eq!(world.snapshot(&app).await, before, "nothing was written");
}

conformance!(
    nul_characters_are_refused_on_both_backends,
    malformed_json_is_400_and_writes_nothing,
    wrong_types_are_422_with_errors_and_write_nothing,
    missing_fields_and_empty_bodies_are_4xx,
    unknown_and_huge_ids_are_404_json,
    unknown_routes_are_404_json,
    oversized_bodies_are_413_json_and_write_nothing,
    garbage_never_causes_a_5xx,
);
