//! Operations, black-box on the real binary: `chatterly users …` against the
//! database of running servers (SQLite, and PostgreSQL + Redis with two
//! instances).

mod common;
mod ops;

use chrono::Datelike;
use common::PgDatabase;
use ops::*;
use serde_json::json;

/// Everything `users` does, on SQLite, while a server runs on the same data
/// directory: a disabled user's live socket closes, the token stops working
/// and logins are refused; enabling, resetting the password and promoting
/// take effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_commands_administer_accounts_of_a_running_sqlite_server() {
    let dir = temp_dir();
    let place = Place::Sqlite(dir.path());
    let server = Instance::start(&place, &[]).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = group(&server, &alice, "crew", &[&bob]).await;

    let mut socket = Socket::open(&server, &alice.token).await;
    socket
        .subscribe(json!({ "channel": "ConversationChannel", "conversation_id": room }))
        .await;
    let mut bob_socket = Socket::open(&server, &bob.token).await;

    let out = run_ok(&place, &["users", "disable", "alice"], None);
    assert!(
        out.contains(&format!("disabled user {}", alice.id)),
        "{out}"
    );
    socket.expect_disconnect("unauthorized").await;
    assert_eq!(me(&server, &alice.token).await, 401);
    let (status, body, _) = login(&server, &alice.email, PASSWORD).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "Your account is disabled.", "{body}");
    assert_eq!(me(&server, &bob.token).await, 200, "others are untouched");
    let list = run_ok(&place, &["users", "list"], None);
    let alice_line = list
        .lines()
        .find(|l| l.contains("alice@example.test"))
        .expect("alice listed");
    assert!(alice_line.contains("disabled"), "{list}");
    assert!(
        list.lines()
            .find(|l| l.contains("bob@example.test"))
            .is_some_and(|l| l.contains("active")),
        "{list}"
    );

    run_ok(&place, &["users", "enable", &alice.id.to_string()], None);
    let (status, _, token) = login(&server, &alice.email, PASSWORD).await;
    assert_eq!(status, 200);
    let token = token.expect("token");
    assert_eq!(me(&server, &token).await, 200);
    let mut alice_socket = Socket::open(&server, &token).await;

    // A reset ends every earlier session. Tokens carry their issue time in
    // whole seconds, and one issued in the second of the reset survives it:
    // let that second pass first.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run_ok(
        &place,
        &[
            "users",
            "reset-password",
            "alice@example.test",
            "--password-stdin",
            "--argon2-memory-kib",
            "64",
        ],
        Some("n3w-passw0rd\n"),
    );
    alice_socket.expect_disconnect("unauthorized").await;
    assert_eq!(me(&server, &token).await, 401, "the old session ended");
    assert_eq!(login(&server, &alice.email, PASSWORD).await.0, 401);
    let (status, _, fresh) = login(&server, &alice.email, "n3w-passw0rd").await;
    assert_eq!(status, 200);
    assert_eq!(
        me(&server, &fresh.expect("token")).await,
        200,
        "a new session works"
    );

    run_ok(&place, &["users", "promote", "bob"], None);
    let list = run_ok(&place, &["users", "list"], None);
    assert!(
        list.lines()
            .find(|l| l.contains("bob@example.test"))
            .is_some_and(|l| l.contains("admin")),
        "{list}"
    );

    // Create, with a generated password that is printed once.
    let out = run_ok(
        &place,
        &[
            "users",
            "create",
            "--email",
            "Carol@Example.test",
            "--username",
            "carol",
            "--admin",
            "--argon2-memory-kib",
            "64",
        ],
        None,
    );
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("generated password printed")
        .to_owned();
    assert!(password.len() >= 16, "{out}");
    assert_eq!(login(&server, "carol@example.test", &password).await.0, 200);
    // The API's rules apply.
    let refused = run_command(
        &place,
        &[
            "users",
            "create",
            "--email",
            "x@example.test",
            "--username",
            "carol",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("Username has already been taken"),
        "{}",
        text(&refused.stderr)
    );
    let missing = run_command(&place, &["users", "disable", "nobody"], None);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no user with username nobody"));
    // Bob's socket was never touched.
    bob_socket
        .subscribe(json!({ "channel": "ConversationChannel", "conversation_id": room }))
        .await;
}

/// On PostgreSQL with two instances and Redis: disabling through the CLI
/// closes the user's sockets on both instances and both refuse the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_closes_their_sockets_on_every_instance() {
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let dir = temp_dir();
    let place = Place::Postgres {
        db: &db,
        prefix: &prefix,
        data_dir: dir.path(),
    };
    let one = Instance::start(&place, &[]).await;
    // The second instance runs no job worker: it can only learn over the bus.
    let two = Instance::start(&place, &["--jobs", "off"]).await;
    let alice = register(&one, "alice").await;
    let bob = register(&one, "bob").await;
    // Both instances have checked (and cached) alice's token.
    assert_eq!(me(&one, &alice.token).await, 200);
    assert_eq!(me(&two, &alice.token).await, 200);
    let mut on_one = Socket::open(&one, &alice.token).await;
    let mut on_two = Socket::open(&two, &alice.token).await;

    run_ok(&place, &["users", "disable", "alice"], None);
    on_one.expect_disconnect("unauthorized").await;
    on_two.expect_disconnect("unauthorized").await;
    assert_eq!(me(&one, &alice.token).await, 401);
    assert_eq!(me(&two, &alice.token).await, 401);
    assert_eq!(login(&two, &alice.email, PASSWORD).await.0, 401);
    assert_eq!(me(&two, &bob.token).await, 200);

    run_ok(&place, &["users", "enable", "alice"], None);
    assert_eq!(
        me(&two, &alice.token).await,
        200,
        "the old token works again"
    );

    run_ok(&place, &["users", "promote", "bob"], None);
    // Let the second of bob's token pass (see the SQLite test).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run_ok(
        &place,
        &[
            "users",
            "reset-password",
            "bob",
            "--password-stdin",
            "--argon2-memory-kib",
            "64",
        ],
        Some("an0ther-pass\n"),
    );
    // Instance two had bob's token cached as valid; it learns over the bus.
    let deadline = tokio::time::Instant::now() + WAIT;
    while me(&two, &bob.token).await != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's old token still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(login(&one, &bob.email, PASSWORD).await.0, 401);
    assert_eq!(login(&one, &bob.email, "an0ther-pass").await.0, 200);
    let list = run_ok(&place, &["users", "list"], None);
    let bob_line = list
        .lines()
        .find(|l| l.contains("bob@example.test"))
        .expect("bob listed");
    assert!(
        bob_line.contains("admin") && bob_line.contains("active"),
        "{list}"
    );
}

/// Every message of a conversation, oldest first.
async fn all_messages(
    instance: &Instance,
    token: &str,
    conversation: i64,
) -> Vec<serde_json::Value> {
    let mut all: Vec<serde_json::Value> = Vec::new();
    let mut query = "limit=100".to_owned();
    loop {
        let (status, body) = call(
            reqwest::Method::GET,
            instance.url(&format!(
                "/api/v1/conversations/{conversation}/messages?{query}"
            )),
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let mut page = body["data"]["messages"]
            .as_array()
            .expect("messages")
            .clone();
        page.extend(all);
        all = page;
        match body["data"]["next_cursor"].as_i64() {
            Some(cursor) => query = format!("limit=100&cursor={cursor}"),
            None => return all,
        }
    }
}

/// A backup taken on SQLite while messages, thread replies and reactions are
/// being written restores into an empty data directory to a consistent
/// state: seqs gap-free from 1 in each conversation, every reply's parent
/// present, every reaction made before the last restored message present;
/// and restore refuses a data directory that is not empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_writes_restores_to_a_consistent_state() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = temp_dir();
    let place = Place::Sqlite(dir.path());
    let server = Instance::start(&place, &[]).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let rooms = [
        group(&server, &alice, "one", &[&bob]).await,
        group(&server, &alice, "two", &[&bob]).await,
    ];
    let server = Arc::new(server);
    let alice = Arc::new(alice);
    let stop = Arc::new(AtomicBool::new(false));
    // (conversation, message id) of every acknowledged message, and the ids
    // reacted to (each right after it was sent, before the next send).
    let sent: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let reacted: Arc<Mutex<Vec<i64>>> = Arc::default();
    let mut writers = Vec::new();
    for room in rooms {
        let (server, alice, stop, sent, reacted) = (
            server.clone(),
            alice.clone(),
            stop.clone(),
            sent.clone(),
            reacted.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut last: Option<i64> = None;
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let body = match last {
                    Some(parent) if n % 3 == 0 => {
                        json!({ "content": format!("reply {n}"), "parent_message_id": parent })
                    }
                    _ => json!({ "content": format!("message {n}") }),
                };
                let message = send(&server, &alice, room, body).await;
                let id = message["id"].as_i64().expect("id");
                sent.lock().expect("lock").push((room, id));
                if n % 2 == 0 {
                    let (status, reply) = call(
                        reqwest::Method::POST,
                        server.url("/api/v1/reactions"),
                        Some(&alice.token),
                        Some(json!({ "message_id": id, "emoji": "👍" })),
                    )
                    .await;
                    assert_eq!(status, 201, "{reply}");
                    reacted.lock().expect("lock").push(id);
                }
                if message["parent_message_id"].is_null() {
                    last = Some(id);
                }
            }
        }));
    }
    // Let some writes land, back up mid-stream, let more land after.
    while sent.lock().expect("lock").len() < 60 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = sent.lock().expect("lock").len();
    let file = dir.path().join("snapshot.sqlite3");
    let file_arg = path_string(&file);
    let backup_place = Place::Sqlite(dir.path());
    let out =
        tokio::task::block_in_place(|| run_ok(&backup_place, &["backup", "--to", &file_arg], None));
    assert!(out.contains("backup written"), "{out}");
    let after = sent.lock().expect("lock").len();
    while sent.lock().expect("lock").len() < after + 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    for writer in writers {
        writer.await.expect("writer");
    }
    // A second backup to the same file is refused.
    let again = run_command(&place, &["backup", "--to", &file_arg], None);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"));

    // Restore refuses a data directory in use, then restores into a new one.
    let refused = run_command(&place, &["restore", "--from", &file_arg], None);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("is not empty"),
        "{}",
        text(&refused.stderr)
    );
    let restored_dir = temp_dir();
    let target = Place::Sqlite(restored_dir.path());
    let out = run_ok(&target, &["restore", "--from", &file_arg], None);
    assert!(out.contains("restored"), "{out}");
    let copy = Instance::start(&target, &[]).await;
    let (status, _, token) = login(&copy, &alice.email, PASSWORD).await;
    assert_eq!(status, 200);
    let token = token.expect("token");
    let reacted = reacted.lock().expect("lock").clone();
    let mut restored = 0;
    for room in rooms {
        let messages = all_messages(&copy, &token, room).await;
        let ids: std::collections::HashSet<i64> = messages
            .iter()
            .map(|m| m["id"].as_i64().expect("id"))
            .collect();
        for (i, message) in messages.iter().enumerate() {
            assert_eq!(message["seq"].as_i64(), Some(i as i64 + 1), "seqs gap-free");
            if let Some(parent) = message["parent_message_id"].as_i64() {
                assert!(ids.contains(&parent), "reply {message} lost its parent");
            }
            let id = message["id"].as_i64().expect("id");
            // The reaction to a message was made before the next message was
            // sent: if a later message is in the backup, so is the reaction.
            if reacted.contains(&id) && i + 1 < messages.len() {
                assert_eq!(
                    message["reactions"].as_array().map(Vec::len),
                    Some(1),
                    "reaction of {id} missing"
                );
            }
        }
        restored += messages.len();
    }
    assert!(
        (before..=after + rooms.len()).contains(&restored),
        "the backup holds {restored} messages: at least the {before} sent before it began, \
         at most the {after} acknowledged when it ended plus one in flight per writer"
    );
}

/// On PostgreSQL `backup` refuses and points at pg_dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_on_postgres_points_at_pg_dump() {
    let db = PgDatabase::create();
    let dir = temp_dir();
    let place = Place::Postgres {
        db: &db,
        prefix: "unused",
        data_dir: dir.path(),
    };
    let file = dir.path().join("x.sqlite3");
    let output = run_command(&place, &["backup", "--to", &path_string(&file)], None);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("pg_dump"),
        "{}",
        text(&output.stderr)
    );
    assert!(!file.exists());
}

/// `doctor` on SQLite: a missing database and a bad setting fail with what
/// to fix and a non-zero exit; a migrated one passes.
#[test]
fn doctor_checks_a_sqlite_deployment() {
    let dir = temp_dir();
    let place = Place::Sqlite(dir.path());
    let output = run_command(&place, &["doctor"], None);
    let out = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  database: there is no database"),
        "{out}"
    );
    assert!(out.contains("chatterly migrate"), "{out}");
    assert!(
        !dir.path().join("chatterly.sqlite3").exists(),
        "doctor created nothing"
    );

    run_ok(&place, &["migrate"], None);
    let out = run_ok(&place, &["doctor"], None);
    assert!(out.contains("ok    migrations"), "{out}");
    assert!(out.contains("ok    database"), "{out}");
    assert!(
        out.contains("note  blobs: no attachment directory"),
        "{out}"
    );
    assert!(out.contains("all checks passed"), "{out}");
    assert!(!dir.path().join("blobs").exists(), "doctor created nothing");

    let not_a_dir = dir.path().join("blobs-file");
    std::fs::write(&not_a_dir, b"x").expect("a file");
    let not_a_dir = not_a_dir.display().to_string();
    let output = run_command(&place, &["doctor", "--blob-dir", &not_a_dir], None);
    let out = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  blobs") && out.contains("is not a directory"),
        "{out}"
    );

    let output = run_command(&place, &["doctor", "--listen", "nope"], None);
    let out = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  config") && out.contains("--listen"),
        "{out}"
    );
}

/// `doctor` on PostgreSQL: passes on a served deployment, then names a
/// missing partition, a dead job and an unreachable Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_a_postgres_deployment() {
    use sqlx::Connection;
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let dir = temp_dir();
    let place = Place::Postgres {
        db: &db,
        prefix: &prefix,
        data_dir: dir.path(),
    };
    let redis = redis_url();
    let secret = common::PG_JWT_SECRET;
    let doctor = |redis: &str| {
        run_command(
            &place,
            &["doctor", "--jwt-secret", secret, "--redis-url", redis],
            None,
        )
    };
    let mut server = Instance::start(&place, &[]).await;
    let output = doctor(&redis);
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("ok    partitions"), "{out}");
    assert!(out.contains("ok    redis"), "{out}");
    assert!(
        out.contains("ok    blobs: attachments are stored under"),
        "{out}"
    );
    server.terminate();

    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let next = chrono::Utc::now()
        .date_naive()
        .with_day(1)
        .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
        .expect("next month");
    let partition = format!("messages_{}", next.format("%Y_%m"));
    sqlx::query(&format!("DROP TABLE {partition}"))
        .execute(&mut conn)
        .await
        .expect("drop next month's partition");
    sqlx::query(
        "INSERT INTO jobs (kind, payload, status, run_at, attempts, max_attempts, last_error, \
         created_at, updated_at) VALUES ('call.missed', '{}', 2, now(), 10, 10, 'boom', now(), now())",
    )
    .execute(&mut conn)
    .await
    .expect("a dead job");
    let output = doctor("redis://127.0.0.1:1");
    let out = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  partitions") && out.contains(&partition),
        "{out}"
    );
    assert!(
        out.contains("FAIL  jobs: 1 dead job(s)") && out.contains("boom"),
        "{out}"
    );
    assert!(out.contains("FAIL  redis"), "{out}");
    assert!(out.contains("ok    migrations"), "{out}");
}

/// The value of the sample whose line starts with `series` (name and
/// labels exactly).
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `--metrics-listen` serves Prometheus text on its own address: requests
/// by matched route and status with a latency histogram, sockets,
/// subscriptions, deliveries, presence and the job queue; the API port does
/// not serve it. Every response carries a request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_after_traffic() {
    let dir = temp_dir();
    let place = Place::Sqlite(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Instance::start(
        &place,
        &["--metrics-listen", &listen, "--retention-days", "3650"],
    )
    .await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = group(&server, &alice, "crew", &[&bob]).await;
    let mut socket = Socket::open(&server, &bob.token).await;
    socket
        .subscribe(json!({ "channel": "ConversationChannel", "conversation_id": room }))
        .await;
    // Presence counts PresenceChannel subscribers.
    socket
        .subscribe(json!({ "channel": "PresenceChannel" }))
        .await;
    for n in 0..3 {
        send(&server, &alice, room, json!({ "content": format!("m{n}") })).await;
    }
    let mut delivered = 0;
    while delivered < 3 {
        let frame = socket.next_frame().await.expect("delivered");
        if frame["message"]["type"] == "new_message" {
            delivered += 1;
        }
    }
    assert_eq!(me(&server, "not-a-token").await, 401);
    let resp = reqwest::get(server.url("/up")).await.expect("up");
    assert!(
        resp.headers().get("x-request-id").is_some(),
        "request id echoed"
    );

    let scrape = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let sends = r#"chatterly_http_requests_total{method="POST",route="/api/v1/conversations/{conversation_id}/messages",status="201"}"#;
    assert_eq!(sample(&scrape, sends), Some(3.0), "{scrape}");
    let refused =
        r#"chatterly_http_requests_total{method="GET",route="/api/v1/users/me",status="401"}"#;
    assert_eq!(sample(&scrape, refused), Some(1.0), "{scrape}");
    assert!(
        !scrape.contains(&format!("/conversations/{room}/")),
        "routes are labelled by pattern, never by raw URI"
    );
    assert!(
        scrape.contains(r#"chatterly_http_request_duration_seconds_bucket{method="POST",route="/api/v1/conversations/{conversation_id}/messages",status="201",le="0.005"}"#),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "chatterly_open_sockets"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "chatterly_subscriptions"),
        Some(2.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "chatterly_presence_online_users"),
        Some(1.0),
        "{scrape}"
    );
    assert!(
        sample(&scrape, "chatterly_deliveries_total").is_some_and(|n| n >= 3.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "chatterly_slow_consumer_disconnects_total"),
        Some(0.0)
    );
    assert!(
        sample(&scrape, r#"chatterly_jobs{status="pending"}"#).is_some_and(|n| n >= 1.0),
        "the maintenance job is queued: {scrape}"
    );
    // The retention job, due at start-up, shows in the job runs.
    let runs = r#"chatterly_job_runs_total{kind="messages.retention",outcome="ok"}"#;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut scrape = scrape;
    while sample(&scrape, runs).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "{scrape}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        scrape = reqwest::get(format!("http://{listen}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
    }
    let api = reqwest::get(server.url("/metrics"))
        .await
        .expect("api port");
    assert_eq!(
        api.status().as_u16(),
        404,
        "metrics are not on the API port"
    );
}

/// A full session with debug logging: the logs carry request ids and
/// connection ids, and never the password, a token or a message's content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_password_token_or_message_content() {
    let dir = temp_dir();
    let place = Place::Sqlite(dir.path());
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut server = Instance::start_env(&place, &[], &[("RUST_LOG", "debug")], Some(&log)).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let (status, _, second) = login(&server, &alice.email, PASSWORD).await;
    assert_eq!(status, 200);
    let second = second.expect("token");
    assert_eq!(
        login(&server, &alice.email, "wrong-password-xyz").await.0,
        401
    );
    let room = group(&server, &alice, "crew", &[&bob]).await;
    let mut socket = Socket::open(&server, &bob.token).await;
    socket
        .subscribe(json!({ "channel": "ConversationChannel", "conversation_id": room }))
        .await;
    let secret_content = "the-launch-code-is-4242";
    send(&server, &alice, room, json!({ "content": secret_content })).await;
    socket.next_frame().await.expect("delivered");
    let mut second_socket = Socket::open(&server, &second).await;
    let (status, _) = call(
        reqwest::Method::DELETE,
        server.url("/auth/logout"),
        Some(&second),
        None,
    )
    .await;
    assert_eq!(status, 200);
    second_socket.expect_disconnect("unauthorized").await;
    drop(socket);
    server.terminate();
    let logs = std::fs::read_to_string(&log_path).expect("logs");
    assert!(
        logs.contains("request_id="),
        "requests are logged with their id:\n{logs}"
    );
    assert!(
        logs.contains("connection_id="),
        "sockets are logged with their id:\n{logs}"
    );
    for (what, secret) in [
        ("password", PASSWORD),
        ("wrong password", "wrong-password-xyz"),
        ("alice's token", alice.token.as_str()),
        ("bob's token", bob.token.as_str()),
        ("second token", second.as_str()),
        ("message content", secret_content),
    ] {
        assert!(!logs.contains(secret), "the logs hold the {what}");
        // A token's signature alone is a secret too.
        if let Some(signature) = secret.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(
                !logs.contains(signature),
                "the logs hold the signature of the {what}"
            );
        }
    }
}

/// Ids of a conversation's messages, and the messages, via the API.
async fn history_ids(
    instance: &Instance,
    token: &str,
    conversation: i64,
) -> (Vec<i64>, Vec<serde_json::Value>) {
    let messages = all_messages(instance, token, conversation).await;
    let ids = messages
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    (ids, messages)
}

async fn react(instance: &Instance, user: &User, message: i64) {
    let (status, body) = call(
        reqwest::Method::POST,
        instance.url("/api/v1/reactions"),
        Some(&user.token),
        Some(json!({ "message_id": message, "emoji": "👍" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Sends six messages (the second a reply to the first), reacts to the
/// first, third and fifth; returns their ids.
async fn retention_fixture(server: &Instance, alice: &User, room: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in 0..6 {
        let body = match n {
            1 => json!({ "content": "reply", "parent_message_id": ids[0] }),
            _ => json!({ "content": format!("m{n}") }),
        };
        ids.push(
            send(server, alice, room, body).await["id"]
                .as_i64()
                .expect("id"),
        );
    }
    for i in [0, 2, 4] {
        react(server, alice, ids[i]).await;
    }
    ids
}

/// The conversation as `user` sees it (`GET /api/v1/conversations/:id`).
async fn conversation_seen_by(
    instance: &Instance,
    user: &User,
    conversation: i64,
) -> serde_json::Value {
    let (status, body) = call(
        reqwest::Method::GET,
        instance.url(&format!("/api/v1/conversations/{conversation}")),
        Some(&user.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// `unread_count` of the conversation as `user` sees it.
async fn unread_count(instance: &Instance, user: &User, conversation: i64) -> i64 {
    conversation_seen_by(instance, user, conversation).await["unread_count"]
        .as_i64()
        .expect("unread_count")
}

/// `last_message` of the conversation as `user` sees it.
async fn last_message(instance: &Instance, user: &User, conversation: i64) -> serde_json::Value {
    conversation_seen_by(instance, user, conversation).await["last_message"].clone()
}

/// Polls the history until `gone` are no longer in it.
async fn wait_until_gone(
    server: &Instance,
    token: &str,
    room: i64,
    gone: &[i64],
) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (ids, messages) = history_ids(server, token, room).await;
        if !gone.iter().any(|g| ids.contains(g)) {
            return messages;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not remove {gone:?}; history has {ids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `--retention-days` on SQLite: the retention job, due at start-up, deletes
/// messages older than the horizon with their reactions; newer ones stay,
/// and a reply whose parent went loses its parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_messages_on_sqlite() {
    let dir = temp_dir();
    let place = Place::Sqlite(dir.path());
    let mut server = Instance::start(&place, &[]).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = group(&server, &alice, "crew", &[&bob]).await;
    let ids = retention_fixture(&server, &alice, room).await;
    assert_eq!(unread_count(&server, &bob, room).await, 6);
    server.terminate();

    let db = dir.path().join("chatterly.sqlite3");
    let old = chrono::Utc::now().timestamp_millis() - 400 * 86_400_000;
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        let aged = conn
            .execute(
                "UPDATE messages SET created_at = ?1 WHERE id IN (?2, ?3)",
                rusqlite::params![old, ids[0], ids[2]],
            )
            .expect("age two messages");
        assert_eq!(aged, 2);
    }
    let server = Instance::start(&place, &["--retention-days", "30"]).await;
    let messages = wait_until_gone(&server, &alice.token, room, &[ids[0], ids[2]]).await;
    let left: Vec<i64> = messages
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(left, vec![ids[1], ids[3], ids[4], ids[5]]);
    // Removed counts as read: bob's position moved past the newest removed
    // message (seq 3; a real history is removed oldest first, so nothing
    // kept lies before it — here seq 2 was kept by ageing out of order).
    assert_eq!(unread_count(&server, &bob, room).await, 3);
    assert!(
        messages[0]["parent_message_id"].is_null(),
        "{}",
        messages[0]
    );
    assert_eq!(messages[2]["reactions"].as_array().map(Vec::len), Some(1));
    let conn = rusqlite::Connection::open(&db).expect("open");
    let orphans: i64 = conn
        .query_row(
            "SELECT count(*) FROM reactions WHERE message_id NOT IN (SELECT id FROM messages)",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(orphans, 0, "reactions went with their messages");
    let reactions: i64 = conn
        .query_row("SELECT count(*) FROM reactions", [], |row| row.get(0))
        .expect("count");
    assert_eq!(reactions, 1);
}

/// `--retention-days` on PostgreSQL: a monthly partition entirely past the
/// horizon is dropped whole, old rows in the default partition are deleted,
/// reactions go with both; recent messages stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_partitions_on_postgres() {
    use sqlx::Connection;
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let dir = temp_dir();
    let place = Place::Postgres {
        db: &db,
        prefix: &prefix,
        data_dir: dir.path(),
    };
    let mut server = Instance::start(&place, &[]).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = group(&server, &alice, "crew", &[&bob]).await;
    let ids = retention_fixture(&server, &alice, room).await;
    assert_eq!(unread_count(&server, &bob, room).await, 6);
    // Two conversations whose every message will be too old: one in the
    // dropped partition, one in the default partition's batch.
    let dropped_room = group(&server, &alice, "old", &[&bob]).await;
    let dropped_id = send(&server, &alice, dropped_room, json!({ "content": "old" })).await["id"]
        .as_i64()
        .expect("id");
    let default_room = group(&server, &alice, "older", &[&bob]).await;
    let default_id = send(&server, &alice, default_room, json!({ "content": "older" })).await["id"]
        .as_i64()
        .expect("id");
    server.terminate();

    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    for statement in [
        "CREATE TABLE messages_2025_01 PARTITION OF messages \
         FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2025-02-01 00:00:00+00')"
            .to_owned(),
        format!(
            "UPDATE messages SET created_at = '2025-01-15 00:00:00+00' WHERE id IN ({}, {}, {})",
            ids[0], ids[1], dropped_id
        ),
        format!(
            "UPDATE reactions SET message_created_at = '2025-01-15 00:00:00+00' WHERE message_id = {}",
            ids[0]
        ),
        // Before any partition: lands in the default one.
        format!(
            "UPDATE messages SET created_at = '2020-06-01 00:00:00+00' WHERE id IN ({}, {})",
            ids[2], default_id
        ),
        format!(
            "UPDATE reactions SET message_created_at = '2020-06-01 00:00:00+00' WHERE message_id = {}",
            ids[2]
        ),
    ] {
        sqlx::query(&statement).execute(&mut conn).await.expect(&statement);
    }
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM messages_default")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(in_default, 2);

    let server = Instance::start(&place, &["--retention-days", "30"]).await;
    let messages = wait_until_gone(&server, &alice.token, room, &[ids[0], ids[1], ids[2]]).await;
    // The conversations left without messages show none as their newest
    // (not a copy of one that is gone); the other still shows its newest.
    for (gone_room, gone) in [(dropped_room, dropped_id), (default_room, default_id)] {
        wait_until_gone(&server, &alice.token, gone_room, &[gone]).await;
        assert!(
            last_message(&server, &bob, gone_room).await.is_null(),
            "conversation {gone_room}"
        );
    }
    assert_eq!(
        last_message(&server, &bob, room).await["id"].as_i64(),
        Some(ids[5])
    );
    let left: Vec<i64> = messages
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(left, vec![ids[3], ids[4], ids[5]]);
    // Removed counts as read: seqs 1-3 went (a dropped partition and the
    // default one's batch), so bob has the three left unread.
    assert_eq!(unread_count(&server, &bob, room).await, 3);
    assert_eq!(messages[1]["reactions"].as_array().map(Vec::len), Some(1));
    let partition: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('messages_2025_01')::text")
            .fetch_one(&mut conn)
            .await
            .expect("lookup");
    assert_eq!(partition, None, "the old month's partition was dropped");
    let reactions: Vec<i64> = sqlx::query_scalar("SELECT message_id FROM reactions")
        .fetch_all(&mut conn)
        .await
        .expect("reactions");
    assert_eq!(
        reactions,
        vec![ids[4]],
        "reactions went with their messages"
    );
    let current: Option<String> = sqlx::query_scalar(&format!(
        "SELECT to_regclass('messages_{}')::text",
        chrono::Utc::now().format("%Y_%m")
    ))
    .fetch_one(&mut conn)
    .await
    .expect("lookup");
    assert!(current.is_some(), "this month's partition stays");
}

/// nginx (from the distribution's package, which `scripts/test` installs)
/// in front of the given instances, on a private prefix; stopped on drop.
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(upstreams: &[u16]) -> Nginx {
        let dir = temp_dir();
        let port = free_port();
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| text(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let servers: String = upstreams
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let d = dir.path().display();
        // The layout the README documents, on loopback.
        let config = format!(
            r#"{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream chatterly {{
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /cable {{
            proxy_pass http://chatterly;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
        location / {{
            proxy_pass http://chatterly;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"#,
            user = if root { "user root;" } else { "" },
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).expect("nginx.conf");
        let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nginx");
        let child = std::process::Command::new(binary)
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log")])
            .args(["-c", &conf.display().to_string(), "-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nginx ({binary}: {e}); scripts/test installs it (apt-get install nginx-light)")
            });
        let nginx = Nginx {
            child,
            port,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(resp) = reqwest::get(nginx.url("/up")).await {
                if resp.status().is_success() {
                    return nginx;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not come up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// nginx as an `Instance`-shaped target for the helpers.
    fn as_target(&self) -> Instance {
        Instance {
            child: std::process::Command::new("true")
                .spawn()
                .expect("a placeholder process"),
            port: self.port,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The production layout on loopback: two instances on PostgreSQL and Redis
/// behind nginx. REST and WebSockets go through nginx; one instance is
/// stopped while clients stay connected to the other and messages keep
/// flowing; its clients reconnect through nginx and catch up with
/// `since_seq`, and every socket ends with every message exactly once, in
/// order; the instance comes back and serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_nginx_survive_a_restart() {
    let db = PgDatabase::create();
    let prefix = format!("chatterly_test_{}", uuid::Uuid::new_v4().simple());
    let dir = temp_dir();
    let place = Place::Postgres {
        db: &db,
        prefix: &prefix,
        data_dir: dir.path(),
    };
    let metrics = format!("127.0.0.1:{}", free_port());
    let one = Instance::start(&place, &["--metrics-listen", &metrics]).await;
    let mut two = Instance::start(&place, &[]).await;
    let two_port = two.port;
    let nginx = Nginx::start(&[one.port, two.port]).await;
    let front = nginx.as_target();

    let alice = register(&front, "alice").await;
    let bob = register(&front, "bob").await;
    let room = group(&front, &alice, "crew", &[&bob]).await;
    let identifier = json!({ "channel": "ConversationChannel", "conversation_id": room });
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let mut socket = Socket::open(&front, &bob.token).await;
        socket.subscribe(identifier.clone()).await;
        sockets.push(socket);
    }
    // seqs each socket has seen, in order.
    let mut seen: Vec<Vec<i64>> = vec![Vec::new(); sockets.len()];
    let first = send(&front, &alice, room, json!({ "content": "m1" })).await;
    for (i, socket) in sockets.iter_mut().enumerate() {
        let frame = socket.next_frame().await.expect("m1 through nginx");
        assert_eq!(frame["message"]["message"]["id"], first["id"], "{frame}");
        seen[i].push(frame["message"]["message"]["seq"].as_i64().expect("seq"));
    }

    // Stop instance two: its sockets are told to reconnect; sends go on.
    two.terminate();
    let mut moved = Vec::new();
    for _ in 0..3 {
        send(
            &front,
            &alice,
            room,
            json!({ "content": "during the outage" }),
        )
        .await;
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        // Each socket either gets the three messages (instance one) or a
        // disconnect asking it to reconnect (instance two).
        let mut got = 0;
        while got < 3 {
            match socket.next_frame().await {
                Some(frame) if frame["type"] == "disconnect" => {
                    assert_eq!(frame["reason"], "server_restart", "{frame}");
                    assert_eq!(frame["reconnect"], true, "{frame}");
                    moved.push(i);
                    break;
                }
                Some(frame) if frame["message"]["type"] == "new_message" => {
                    seen[i].push(frame["message"]["message"]["seq"].as_i64().expect("seq"));
                    got += 1;
                }
                Some(_) => {}
                None => {
                    moved.push(i);
                    break;
                }
            }
        }
    }
    assert!(
        !moved.is_empty() && moved.len() < sockets.len(),
        "nginx spread the sockets over both instances (moved: {moved:?})"
    );
    // Reconnect through nginx (instance one answers) and catch up.
    for &i in &moved {
        let last = *seen[i].last().expect("saw m1");
        let mut socket = Socket::open(&front, &bob.token).await;
        let catch_up = json!({
            "channel": "ConversationChannel", "conversation_id": room, "since_seq": last
        });
        socket.subscribe(catch_up).await;
        while seen[i].len() < 4 {
            let frame = socket.next_frame().await.expect("catch-up");
            if frame["message"]["type"] == "new_message" {
                seen[i].push(frame["message"]["message"]["seq"].as_i64().expect("seq"));
            }
        }
        sockets[i] = socket;
    }

    // Instance two comes back on its port; nginx serves through both again.
    let back = Instance::start_on(&place, two_port, &[]).await;
    let last = send(&front, &alice, room, json!({ "content": "after" })).await;
    for (i, socket) in sockets.iter_mut().enumerate() {
        loop {
            let frame = socket.next_frame().await.expect("the last message");
            if frame["message"]["type"] == "new_message" {
                seen[i].push(frame["message"]["message"]["seq"].as_i64().expect("seq"));
                break;
            }
        }
        assert_eq!(
            seen[i],
            vec![1, 2, 3, 4, 5],
            "socket {i}: every message once, in order"
        );
    }
    assert_eq!(last["seq"], 5);
    let (status, _) = call(
        reqwest::Method::GET,
        format!("http://127.0.0.1:{}/up", back.port),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "instance two serves again");

    // Instance one's metrics show the bus and the PostgreSQL pool.
    let scrape = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(
        sample(&scrape, "chatterly_bus_published_total").is_some_and(|n| n >= 1.0),
        "{scrape}"
    );
    assert!(
        sample(&scrape, r#"chatterly_db_pool_connections{state="open"}"#).is_some_and(|n| n >= 1.0),
        "{scrape}"
    );
    assert!(
        sample(&scrape, "chatterly_bus_lag_seconds_count").is_some_and(|n| n >= 1.0),
        "instance one received from instance two: {scrape}"
    );
}
