//! CORS (contract 1.9), health (4.1), the OpenAPI document, and the rate
//! limits (9.1).

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

const ORIGIN: &str = "http://localhost:3000";

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type, accept",
        )
        .send()
        .await
        .expect("preflight")
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn preflights_allow_the_configured_origin_on_every_api_path(backend: Backend) {
    let app = TestApp::start(backend).await;
    let paths = [
        ("/api/v1/users/me", "GET"),
        ("/api/v1/users?search=ra", "GET"),
        ("/api/v1/users/7", "PATCH"),
        ("/api/v1/users/7", "PUT"),
        ("/api/v1/conversations", "POST"),
        ("/api/v1/conversations/3", "DELETE"),
        ("/api/v1/conversations/3/memberships", "POST"),
        ("/api/v1/conversations/3/memberships/4", "DELETE"),
        ("/api/v1/conversations/3/messages?cursor=9", "GET"),
        ("/api/v1/conversations/3/messages/9", "PATCH"),
        ("/api/v1/conversations/3/messages/9", "PUT"),
        ("/api/v1/reactions", "POST"),
        ("/api/v1/reactions/5", "DELETE"),
        ("/api/v1/conversations/3/calls", "POST"),
        ("/api/v1/conversations/3/calls/4/accept", "PUT"),
    ];
    for (path, method) in paths {
        let resp = preflight(&app, path, ORIGIN, method).await;
        assert!(
            resp.status().is_success(),
            "OPTIONS {path}: {}",
            resp.status()
        );
        assert_eq!(
            header(&resp, "access-control-allow-origin"),
            Some(ORIGIN),
            "{path}: echo, never *"
        );
        assert_eq!(
            header(&resp, "access-control-allow-credentials"),
            Some("true"),
            "{path}"
        );
        let methods = list(header(&resp, "access-control-allow-methods"));
        for m in ["get", "post", "put", "patch", "delete", "options", "head"] {
            assert!(
                methods.contains(&m.to_owned()),
                "{path}: {m} not in {methods:?}"
            );
        }
        let headers = list(header(&resp, "access-control-allow-headers"));
        for h in ["authorization", "content-type", "accept"] {
            assert!(
                headers.contains(&h.to_owned()),
                "{path}: {h} not in {headers:?}"
            );
        }
        assert_eq!(
            header(&resp, "access-control-max-age"),
            Some("7200"),
            "{path}"
        );
    }
    // The other default origin too.
    let resp = preflight(
        &app,
        "/api/v1/conversations",
        "http://127.0.0.1:3000",
        "POST",
    )
    .await;
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        Some("http://127.0.0.1:3000")
    );
}

async fn cors_refuses_other_origins_and_exposes_authorization(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana_h").await;
    for origin in [
        "http://evil.example",
        "http://localhost:3001",
        "https://localhost:3000",
        "null",
    ] {
        let resp = preflight(&app, "/api/v1/conversations", origin, "POST").await;
        assert!(
            header(&resp, "access-control-allow-origin").is_none(),
            "{origin} must not be allowed: {:?}",
            resp.headers()
        );
    }
    // A real cross-origin request: origin echoed, Authorization exposed.
    let resp = app
        .client
        .get(app.url("/api/v1/conversations"))
        .header("origin", ORIGIN)
        .bearer_auth(&rana.token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        header(&resp, "access-control-allow-credentials"),
        Some("true")
    );
    let exposed = list(header(&resp, "access-control-expose-headers"));
    assert!(exposed.contains(&"authorization".to_owned()), "{exposed:?}");
    // Errors carry the CORS headers too, so the browser can read them.
    let resp = app
        .client
        .get(app.url("/api/v1/conversations"))
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(header(&resp, "access-control-allow-origin"), Some(ORIGIN));
}

async fn cors_origins_are_configurable(backend: Backend) {
    let app = TestApp::start_with(
        backend,
        &[
            "--cors-origin",
            "https://chat.example.test",
            "--cors-origin",
            "https://other.example.test/",
        ],
    )
    .await;
    for origin in ["https://chat.example.test", "https://other.example.test"] {
        let resp = preflight(&app, "/api/v1/users/me", origin, "GET").await;
        assert_eq!(header(&resp, "access-control-allow-origin"), Some(origin));
    }
    let resp = preflight(&app, "/api/v1/users/me", ORIGIN, "GET").await;
    assert!(
        header(&resp, "access-control-allow-origin").is_none(),
        "the default is replaced"
    );
}

async fn up_answers_json_and_html(backend: Backend) {
    let app = TestApp::start(backend).await;
    let resp = app
        .client
        .get(app.url("/up"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["status"], "up");
    let ts = body["timestamp"].as_str().expect("timestamp");
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "YYYY-MM-DDTHH:MM:SSZ: {ts}"
    );
    let resp = app
        .client
        .get(app.url("/up"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = header(&resp, "content-type").unwrap_or("").to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = resp.text().await.expect("text");
    assert!(page.contains("green"), "{page}");
    // No auth needed, and a token does no harm.
    let rana = app.register("rana_h").await;
    app.get("/up", Some(&rana.token)).await;
}

async fn openapi_document_covers_every_route(backend: Backend) {
    let app = TestApp::start(backend).await;
    let doc = app.get("/api/openapi.json", None).await.expect(200);
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "OpenAPI 3: {version}");
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    let expected: &[(&str, &[&str])] = &[
        ("/up", &["get"]),
        ("/auth/register", &["post"]),
        ("/auth/login", &["post"]),
        ("/auth/logout", &["delete"]),
        ("/api/v1/users", &["get"]),
        ("/api/v1/users/me", &["get"]),
        ("/api/v1/users/{id}", &["get", "patch", "put"]),
        ("/api/v1/conversations", &["get", "post"]),
        ("/api/v1/conversations/{id}", &["get", "delete"]),
        (
            "/api/v1/conversations/{conversation_id}/memberships",
            &["post"],
        ),
        (
            "/api/v1/conversations/{conversation_id}/memberships/{user_id}",
            &["delete"],
        ),
        (
            "/api/v1/conversations/{conversation_id}/messages",
            &["get", "post"],
        ),
        (
            "/api/v1/conversations/{conversation_id}/messages/{id}",
            &["patch", "put", "delete"],
        ),
        ("/api/v1/reactions", &["post"]),
        ("/api/v1/reactions/{id}", &["delete"]),
        ("/api/v1/conversations/{conversation_id}/calls", &["post"]),
        (
            "/api/v1/conversations/{conversation_id}/calls/active",
            &["get"],
        ),
        (
            "/api/v1/conversations/{conversation_id}/calls/{id}",
            &["delete"],
        ),
        (
            "/api/v1/conversations/{conversation_id}/calls/{id}/accept",
            &["put"],
        ),
        (
            "/api/v1/conversations/{conversation_id}/calls/{id}/decline",
            &["put"],
        ),
        (
            "/api/v1/conversations/{conversation_id}/calls/{id}/join",
            &["post"],
        ),
        ("/api/v1/attachments", &["post"]),
        ("/api/v1/attachments/{id}/content", &["get"]),
        ("/api/v1/attachments/{id}/thumbnail", &["get"]),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not documented: {:?}", paths.keys()));
        for method in *methods {
            let op = item
                .get(*method)
                .unwrap_or_else(|| panic!("{method} {path} is not documented"));
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                !responses.is_empty(),
                "{method} {path} documents no response"
            );
        }
    }
    // Every documented operation exists on the server (no 404 route-miss).
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            let concrete = path
                .replace("{id}", "1")
                .replace("{conversation_id}", "1")
                .replace("{user_id}", "1");
            let resp = app
                .request(method.clone(), &concrete, None, Body::None)
                .await;
            let route_miss = resp.status.as_u16() == 404
                && serde_json::from_str::<Value>(&resp.text).ok()
                    == Some(json!({"status": 404, "error": "Not Found"}));
            assert!(!route_miss, "{method} {path} is documented but not routed");
            assert_ne!(
                resp.status.as_u16(),
                405,
                "{method} {path} is documented but not routed"
            );
        }
    }
    // The message schema documents the fields beyond the reference.
    let text = doc.to_string();
    for field in ["client_message_id", "after_seq", "seq"] {
        assert!(text.contains(field), "{field} is documented");
    }
}

async fn rate_limits_answer_429_json_on_login_and_register(backend: Backend) {
    let app =
        TestApp::start_with(backend, &["--rate-limits", "on", "--auth-per-minute", "3"]).await;
    let rana = app.register("rana_h").await; // 1
    app.login(&rana.email, &rana.password).await.expect(200); // 2
    app.login(&rana.email, "wrong-password").await.expect(401); // 3
    let limited = app.login(&rana.email, &rana.password).await;
    let body = limited.expect(429);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(limited.header("authorization").is_none());
    let resp = app
        .register_raw(
            json!({"email": "omar@example.test", "password": "s3cret-pass", "username": "omar"}),
        )
        .await;
    assert!(resp.expect(429)["error"].is_string());
    // Nothing was written, and the limit is on auth only.
    let users = app
        .get("/api/v1/users", Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(
        users.as_array().map(Vec::len),
        Some(1),
        "omar was not registered"
    );
    app.get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect(200);
}

async fn rate_limits_answer_429_json_on_send(backend: Backend) {
    let app = Arc::new(
        TestApp::start_with(
            backend,
            &[
                "--rate-limits",
                "on",
                "--sends-per-second",
                "1",
                "--send-burst",
                "2",
            ],
        )
        .await,
    );
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let app = Arc::clone(&app);
            let rana = rana.clone();
            tokio::spawn(async move {
                app.send_raw(&rana, id, json!({"content": format!("m{i}")}))
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    let mut limited = 0;
    for handle in handles {
        let resp = handle.await.expect("task");
        match resp.status.as_u16() {
            201 => accepted += 1,
            429 => {
                limited += 1;
                assert!(
                    resp.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{}",
                    resp.text
                );
            }
            other => panic!("unexpected {other}: {}", resp.text),
        }
    }
    assert!(
        limited >= 5,
        "a burst of 10 against 1/s + 2 is mostly refused ({accepted} accepted)"
    );
    assert!(
        accepted >= 3,
        "the burst allowance is honoured ({accepted} accepted)"
    );
    let history = app.all_messages(&rana, id).await;
    assert_eq!(history.len(), accepted, "refused sends wrote nothing");
    let seqs: Vec<i64> = history
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=accepted as i64).collect::<Vec<_>>(),
        "no seq burned by refusals"
    );
    // Per user: omar is not limited by rana's burst.
    app.send(&omar, id, "my turn").await;
}

async fn limits_are_configurable(backend: Backend) {
    let app = TestApp::start_with(
        backend,
        &[
            "--max-message-chars",
            "10",
            "--max-page",
            "3",
            "--user-search-limit",
            "2",
            "--token-ttl",
            "2",
        ],
    )
    .await;
    let rana = app.register("rana_h").await;
    let claims = claims(&rana.token);
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        2,
        "--token-ttl sets the lifetime"
    );
    app.register("rana_b").await;
    app.register("rana_c").await;
    let id = app.group(&rana, "Crew", &[]).await;
    app.send(&rana, id, &"x".repeat(10)).await;
    assert_422(
        &app.send_raw(&rana, id, json!({"content": "x".repeat(11)}))
            .await,
        "Content is too long (maximum is 10 characters)",
    );
    for i in 0..4 {
        app.send(&rana, id, &format!("m{i}")).await;
    }
    let (page, next) = app.history(&rana, id, "limit=50").await;
    assert_eq!(page.len(), 3, "--max-page clamps limit");
    assert!(next.is_i64());
    let (page, _) = app.history(&rana, id, "").await;
    assert_eq!(page.len(), 3, "the default page never exceeds --max-page");
    let found = app
        .get("/api/v1/users?search=rana", Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(2),
        "--user-search-limit caps search"
    );
    // The token expires with its lifetime (no leeway).
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    app.get("/api/v1/users/me", Some(&rana.token))
        .await
        .expect_body(401, json!({"error": "Signature has expired"}));
}

conformance!(
    limits_are_configurable,
    preflights_allow_the_configured_origin_on_every_api_path,
    cors_refuses_other_origins_and_exposes_authorization,
    cors_origins_are_configurable,
    up_answers_json_and_html,
    openapi_document_covers_every_route,
    rate_limits_answer_429_json_on_login_and_register,
    rate_limits_answer_429_json_on_send,
);

/// Only PostgreSQL can be taken away from under a running server.
mod postgres_only {
    use std::time::Duration;

    use serde_json::Value;

    use crate::common::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn up_is_500_down_when_the_database_is_gone() {
        let app = TestApp::start(Backend::Postgres).await;
        let rana = app.register("rana_h").await;
        let name = app.pg.as_ref().expect("postgres").name.clone();
        // Drop the database under the server (terminating its connections).
        let admin = pg_admin_url();
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("admin");
                    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await
                        .expect("drop");
                })
        })
        .await
        .expect("dropped");
        let resp = tokio::time::timeout(
            Duration::from_secs(40),
            app.client
                .get(app.url("/up"))
                .header("accept", "application/json")
                .send(),
        )
        .await
        .expect("/up answers while the database is gone")
        .expect("request");
        assert_eq!(resp.status().as_u16(), 500);
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["status"], "down");
        let resp = app
            .client
            .get(app.url("/up"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 500);
        assert!(resp.text().await.expect("text").contains("red"));
        // Data routes fail cleanly too: a JSON 500, never a hang or a panic.
        let resp = app.get("/api/v1/conversations", Some(&rana.token)).await;
        assert_eq!(resp.status.as_u16(), 500, "{}", resp.text);
        assert_eq!(
            resp.json(),
            serde_json::json!({"status": 500, "error": "Internal Server Error"})
        );
    }
}
