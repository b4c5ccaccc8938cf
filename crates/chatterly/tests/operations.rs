//! Operations, black-box on the real binary: `chatterly users …` against the
//! database of running servers (SQLite, and PostgreSQL + Redis with two
//! instances).

mod common;
mod ops;

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
    assert_eq!(me(&server, &token.expect("token")).await, 200);

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
    assert_eq!(login(&server, &alice.email, PASSWORD).await.0, 401);
    assert_eq!(login(&server, &alice.email, "n3w-passw0rd").await.0, 200);

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
