//! Migrations and the monthly partitions of `messages`.

mod common;

use chatterly_store::{now, HistoryPage, Store};
use common::*;

fn migration_files() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    std::fs::read_dir(dir)
        .expect("migrations dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sql"))
        .count() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_twice_and_concurrently_from_two_stores() {
    let db = TestDb::new().await;
    let a = db.connect().await;
    let b = db.connect().await;

    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.expect("first concurrent migrate");
    rb.expect("second concurrent migrate");
    a.migrate().await.expect("migrate again");
    b.migrate().await.expect("and again");

    let raw = db.raw().await;
    let applied = count(&raw, "SELECT count(*) FROM _sqlx_migrations WHERE success").await;
    assert_eq!(applied, migration_files());
    let n = now();
    let parts = partitions(&raw).await;
    assert_eq!(
        parts,
        {
            let mut expected = vec![
                "messages_default".to_string(),
                month_table(n),
                next_month_table(n),
            ];
            expected.sort();
            expected
        },
        "exactly the default, this month's and next month's partitions"
    );

    assert_eq!(a.backend(), "postgres");
    a.ping().await.expect("ping");
    // The schema works from either store.
    let alice = user(&a, "alice").await;
    assert_eq!(b.user_by_id(alice.id).await.expect("read"), Some(alice));
}

#[tokio::test]
async fn connect_to_a_missing_database_fails() {
    let db = TestDb::new().await;
    let url = db.url.replace(&db.name, &format!("{}_missing", db.name));
    assert!(chatterly_store_postgres::PgStore::connect(&url, 1)
        .await
        .is_err());
}

#[tokio::test]
async fn partition_bounds_are_whole_utc_months() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;

    store
        .maintain(ts("2031-12-15T10:00:00Z"))
        .await
        .expect("maintain december");
    let parts = partitions(&raw).await;
    assert!(parts.contains(&"messages_2031_12".to_string()), "{parts:?}");
    assert!(
        parts.contains(&"messages_2032_01".to_string()),
        "rolls over the year: {parts:?}"
    );

    // Rows at the edges land in the right month.
    let cases = [
        ("2031-12-01T00:00:00Z", "messages_2031_12"),
        ("2031-12-31T23:59:59.999Z", "messages_2031_12"),
        ("2032-01-01T00:00:00Z", "messages_2032_01"),
        ("2032-02-01T00:00:00Z", "messages_default"),
        ("2031-11-30T23:59:59.999Z", "messages_default"),
    ];
    for (i, (at, expected)) in cases.iter().enumerate() {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, user_id, seq, content, kind, created_at, updated_at)
             VALUES ($1, $2, $3, 'edge', 0, $4, $4) RETURNING id",
        )
        .bind(c.id)
        .bind(alice.id)
        .bind(100 + i as i64)
        .bind(ts(at))
        .fetch_one(&raw)
        .await
        .expect("raw insert");
        assert_eq!(partition_of(&raw, id).await, *expected, "row at {at}");
    }

    // Idempotent, also for months that already exist.
    store
        .maintain(ts("2031-12-15T10:00:00Z"))
        .await
        .expect("maintain again");
    store.maintain(now()).await.expect("maintain now");
    assert_eq!(partitions(&raw).await.len(), parts.len());
}

#[tokio::test]
async fn a_month_without_partition_uses_the_default_and_maintain_moves_it_out() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;

    // Take away this month's partition: sends must still succeed.
    let this_month = month_table(now());
    sqlx::query(&format!("DROP TABLE {this_month}"))
        .execute(&raw)
        .await
        .expect("drop partition");
    let first = send(&store, &c, &alice, "into the default").await;
    let second = send(&store, &c, &alice, "me too").await;
    assert_eq!(partition_of(&raw, first.id).await, "messages_default");
    assert_eq!((first.seq, second.seq), (1, 2));

    // A row of a far month also lands in the default partition.
    let other = group(&store, &alice, &[]).await;
    let future: i64 = sqlx::query_scalar(
        "INSERT INTO messages (conversation_id, user_id, seq, content, kind, created_at, updated_at)
         VALUES ($1, $2, 1, 'from the future', 0, $3, $3) RETURNING id",
    )
    .bind(other.id)
    .bind(alice.id)
    .bind(ts("2031-05-10T12:00:00Z"))
    .fetch_one(&raw)
    .await
    .expect("raw insert");
    assert_eq!(partition_of(&raw, future).await, "messages_default");

    // migrate() recreates this month's partition, moving the rows into it.
    store
        .migrate()
        .await
        .expect("migrate with rows in the default partition");
    assert_eq!(partition_of(&raw, first.id).await, this_month);
    assert_eq!(partition_of(&raw, second.id).await, this_month);
    assert_eq!(
        store.message_by_id(first.id).await.expect("read"),
        Some(first.clone())
    );
    let page = store
        .history(
            c.id,
            HistoryPage::Before {
                before_id: None,
                limit: 10,
            },
        )
        .await
        .expect("history");
    assert_eq!(page, vec![first.clone(), second.clone()]);
    // The future row stays where it was until its month is maintained.
    assert_eq!(partition_of(&raw, future).await, "messages_default");

    store
        .maintain(ts("2031-05-10T00:00:00Z"))
        .await
        .expect("maintain with rows in the default partition");
    assert_eq!(partition_of(&raw, future).await, "messages_2031_05");
    let moved = store
        .message_by_id(future)
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(moved.content, "from the future");
    // Every column made the move: the search index entry of a sent message
    // too.
    let indexed: bool =
        sqlx::query_scalar("SELECT search_vector IS NOT NULL FROM messages WHERE id = $1")
            .bind(first.id)
            .fetch_one(&raw)
            .await
            .expect("search vector");
    assert!(indexed, "the move lost the search vector");
    assert_eq!(
        count(&raw, "SELECT count(*) FROM messages_default").await,
        0
    );

    // Still idempotent, and new sends go to the monthly partition.
    store.maintain(now()).await.expect("maintain again");
    store
        .maintain(ts("2031-05-10T00:00:00Z"))
        .await
        .expect("maintain again");
    let third = send(&store, &c, &alice, "back to normal").await;
    assert_eq!(third.seq, 3);
    assert_eq!(partition_of(&raw, third.id).await, this_month);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_maintain_creates_each_partition_once() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let at = ts("2030-07-01T00:00:00Z");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move { store.maintain(at).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("maintain");
    }
    let parts = partitions(&raw).await;
    assert_eq!(
        parts
            .iter()
            .filter(|p| p.as_str() == "messages_2030_07")
            .count(),
        1
    );
    assert_eq!(
        parts
            .iter()
            .filter(|p| p.as_str() == "messages_2030_08")
            .count(),
        1
    );
}

#[tokio::test]
async fn idle_connections_killed_by_the_server_are_replaced() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let raw = db.raw().await;
    // Every pooled connection of the store dies while idle (as in a server
    // restart).
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&raw)
    .await
    .expect("terminate");
    assert!(!killed.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    // Checked before use, so callers never see the dead ones.
    for _ in 0..4 {
        store.ping().await.expect("ping on a fresh connection");
        assert_eq!(
            store.user_by_id(alice.id).await.expect("read"),
            Some(alice.clone())
        );
    }
}

#[tokio::test]
async fn calls_and_jobs_tables_have_their_keys_and_indexes() {
    let (db, _store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes
         WHERE tablename IN ('call_sessions', 'call_participants', 'jobs')
         ORDER BY indexname",
    )
    .fetch_all(&raw)
    .await
    .expect("list indexes");
    let def = |name: &str| {
        indexes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no index {name}: {indexes:?}"))
    };
    let current = def("call_sessions_current_key");
    assert!(current.starts_with("CREATE UNIQUE INDEX"), "{current}");
    assert!(current.contains("(conversation_id)"), "{current}");
    assert!(current.contains("WHERE"), "partial: {current}");
    def("call_sessions_conversation_id_idx");
    assert!(def("call_participants_pkey").contains("(call_session_id, user_id)"));
    let due = def("jobs_due_idx");
    assert!(
        due.contains("(run_at, id)") && due.contains("WHERE"),
        "{due}"
    );
    let unique = def("jobs_unique_key_key");
    assert!(
        unique.starts_with("CREATE UNIQUE INDEX") && unique.contains("WHERE"),
        "{unique}"
    );

    // Deleting a conversation cascades to its calls, and a call to its
    // participants.
    let cascades: Vec<String> = sqlx::query_scalar(
        "SELECT conrelid::regclass::text || '->' || confrelid::regclass::text
         FROM pg_constraint WHERE contype = 'f' AND confdeltype = 'c' ORDER BY 1",
    )
    .fetch_all(&raw)
    .await
    .expect("list foreign keys");
    assert_eq!(
        cascades,
        vec![
            "call_participants->call_sessions".to_string(),
            "call_sessions->conversations".to_string(),
        ]
    );

    // The claim's scan is an ordered range of jobs_due_idx (no sort), once
    // the table is big enough for an index to be worth it.
    sqlx::query(
        "INSERT INTO jobs (kind, payload, status, run_at, max_attempts, created_at, updated_at)
         SELECT 'k', '{}', 0, now() + (i || ' seconds')::interval, 3, now(), now()
         FROM generate_series(1, 5000) AS i",
    )
    .execute(&raw)
    .await
    .expect("fill jobs");
    sqlx::query("ANALYZE jobs")
        .execute(&raw)
        .await
        .expect("analyze");
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM jobs
         WHERE status IN (0, 1) AND run_at <= now() AND (status = 0 OR locked_until <= now())
         ORDER BY run_at, id LIMIT 10 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&raw)
    .await
    .expect("explain");
    let plan = plan.join("\n");
    assert!(plan.contains("jobs_due_idx"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
}

/// Moving rows between partitions names every column of `messages`: one
/// added by a later migration and left out of the list would be lost.
#[tokio::test]
async fn the_moved_columns_are_every_column_of_messages() {
    let (db, _store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute
         WHERE attrelid = 'messages'::regclass AND attnum > 0 AND NOT attisdropped
         ORDER BY attnum",
    )
    .fetch_all(&raw)
    .await
    .expect("columns");
    let listed: Vec<String> = chatterly_store_postgres::MESSAGE_TABLE_COLUMNS
        .split(',')
        .map(|c| c.trim().to_owned())
        .collect();
    assert_eq!(listed, columns);
}
