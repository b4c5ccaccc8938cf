//! The store's half of the conversation list on PostgreSQL: `Store::inbox`
//! for a reader in 1,000 conversations (`CONVERSATIONS` to change it), timed
//! one call after the other: `cargo run --release -p chatterly-store-postgres
//! --example pg_inbox_bench`. Creates a scratch database (dropped at the end)
//! on the server of `CHATTERLY_BENCH_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), with `PARTITIONS` (default
//! 24) extra monthly partitions of `messages` holding the conversations'
//! history, as a server two years old would have. The end-to-end figure
//! (HTTP, rendering, JSON) comes from `chatterly-load conversation-list`; see
//! BENCHMARKS.md.

use chatterly_store::{testkit, Store};
use chatterly_store_postgres::PgStore;
use sqlx::{Connection, Executor, PgConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bench(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let conversations: usize = env_or("CONVERSATIONS", 1000);
    let partitions: u32 = env_or("PARTITIONS", 24);
    let store = PgStore::connect(url, 4).await?;
    store.migrate().await?;
    let mut raw = PgConnection::connect(url).await?;
    // Older months, so the newest-message lookup has partitions to choose
    // from (and the history is spread over them, below).
    for back in 1..=partitions {
        raw.execute(
            format!(
                "DO $$ DECLARE m date := (date_trunc('month', now()) - interval '{back} months')::date;
                 BEGIN EXECUTE format('CREATE TABLE IF NOT EXISTS messages_%s PARTITION OF messages \
                 FOR VALUES FROM (%L) TO (%L)', to_char(m, 'YYYY_MM'), m, \
                 (m + interval '1 month')::date); END $$"
            )
            .as_str(),
        )
        .await?;
    }
    let reader = testkit::seed_inbox(&store, conversations, 3).await;
    // Spread the history over the months (each conversation's messages in
    // one month, its last_activity_at following), as time would have.
    raw.execute(
        format!(
            "WITH shifted AS (
                 UPDATE messages SET created_at = created_at
                     - ((conversation_id % {partitions}) + 1) * interval '1 month'
                 RETURNING conversation_id, created_at)
             UPDATE conversations c SET last_activity_at = s.latest
             FROM (SELECT conversation_id, max(created_at) AS latest FROM shifted
                   GROUP BY conversation_id) s
             WHERE c.id = s.conversation_id"
        )
        .as_str(),
    )
    .await?;
    raw.execute("UPDATE mentions x SET message_created_at = m.created_at FROM messages m WHERE m.id = x.message_id")
        .await?;
    raw.execute(
        "UPDATE latest_messages l SET created_at = m.created_at FROM messages m WHERE m.id = l.id",
    )
    .await?;
    raw.execute("ANALYZE").await?;

    let (timings, _) = testkit::time_calls(
        20,
        300,
        || store.inbox(reader),
        |inbox| {
            assert_eq!(inbox.len(), conversations);
            assert!(inbox.iter().all(|e| e.latest.is_some()));
        },
    )
    .await?;
    println!(
        "postgres inbox of {conversations} conversations over {} partitions: {timings}",
        partitions + 3
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin = std::env::var("CHATTERLY_BENCH_PG_URL").unwrap_or(DEFAULT_ADMIN_URL.into());
    let name = format!("chatterly_inbox_bench_{}", std::process::id());
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    let url = if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    };
    let mut conn = PgConnection::connect(&admin).await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let outcome = bench(&url).await;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    conn.close().await?;
    outcome
}
