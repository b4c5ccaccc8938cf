//! Full-text search over a large history on PostgreSQL:
//! `Store::search_messages` for a one-word query over `MESSAGES` (default
//! 1,000,000) messages in 1,000 conversations spread over 13 monthly
//! partitions, the searcher a member of two in three, timed one call after
//! the other: `cargo run --release -p chatterly-store-postgres --example
//! pg_search_bench`. Creates a scratch database (dropped at the end) on the
//! server of `CHATTERLY_BENCH_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `KEEP=1` keeps it, to
//! look at plans). The corpus is
//! `testkit::search_corpus_message` (as the SQLite bench), inserted in
//! batches with its `search_vector` computed as a send computes it. See
//! BENCHMARKS.md.

use std::time::Instant;

use chatterly_store::testkit;
use chatterly_store_postgres::PgStore;
use sqlx::{Connection, Executor, PgConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const MONTHS: i64 = 12;

async fn bench(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let messages: i64 = std::env::var("MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let store = PgStore::connect(url, 4).await?;
    store.migrate().await?;
    let mut raw = PgConnection::connect(url).await?;
    for back in 1..=MONTHS {
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
    let (reader, rooms) = testkit::seed_search_rooms(&store, 1000).await;

    let loading = Instant::now();
    let now = chatterly_store::now();
    let span = chrono::TimeDelta::days(MONTHS * 30);
    let batch = 10_000i64;
    let mut i = 0i64;
    while i < messages {
        let end = (i + batch).min(messages);
        let (mut conv, mut author, mut seq, mut content, mut at) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for n in i..end {
            let (c, a) = rooms[(n % rooms.len() as i64) as usize];
            conv.push(c);
            author.push(a);
            seq.push(n / rooms.len() as i64 + 1);
            content.push(testkit::search_corpus_message(n as u64));
            at.push(now - span + span * (n as i32) / (messages as i32));
        }
        sqlx::query(
            "INSERT INTO messages (conversation_id, user_id, seq, content, kind, created_at,
                                   updated_at, search_vector)
             SELECT c, u, s, t, 0, a, a, to_tsvector(chatterly_search_language(), t)
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                         $5::timestamptz[]) AS n (c, u, s, t, a)",
        )
        .bind(&conv)
        .bind(&author)
        .bind(&seq)
        .bind(&content)
        .bind(&at)
        .execute(&mut raw)
        .await?;
        i = end;
    }
    raw.execute(
        "UPDATE conversations c SET last_seq = s.n FROM
         (SELECT conversation_id, count(*) AS n FROM messages GROUP BY conversation_id) s
         WHERE c.id = s.conversation_id",
    )
    .await?;
    raw.execute("VACUUM ANALYZE").await?;
    println!("loaded {messages} messages in {:?}", loading.elapsed());

    // The server's default window (`--search-rank-window`).
    testkit::time_searches(&store, "postgres", reader, 2000).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin = std::env::var("CHATTERLY_BENCH_PG_URL").unwrap_or(DEFAULT_ADMIN_URL.into());
    let name = format!("chatterly_search_bench_{}", std::process::id());
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
    if std::env::var_os("KEEP").is_some() {
        println!("kept the database {name} (KEEP is set)");
    } else {
        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await?;
    }
    conn.close().await?;
    outcome
}
