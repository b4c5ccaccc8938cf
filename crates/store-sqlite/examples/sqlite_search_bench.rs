//! Full-text search over a large history: `Store::search_messages` for a
//! one-word query over `MESSAGES` (default 1,000,000) messages in 1,000
//! conversations, the searcher a member of two in three, timed one call
//! after the other: `cargo run --release -p chatterly-store-sqlite --example
//! sqlite_search_bench`. The corpus is `testkit::search_corpus_message`
//! (Zipf-like filler, a word in 1 % of messages and one in 0.01 %), written
//! straight into the table in one transaction (the FTS5 triggers index it as
//! a send would). `KEEP=1` keeps the database file, to look at plans.
//! See BENCHMARKS.md.

use std::time::{Duration, Instant};

use chatterly_store::testkit;
use chatterly_store_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let messages: u64 = std::env::var("MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("search.db");
    let store = SqliteStore::open(&path).await?;
    store.migrate().await?;
    let (reader, rooms) = testkit::seed_search_rooms(&store, 1000).await;

    let loading = Instant::now();
    let mut raw = rusqlite::Connection::open(&path)?;
    raw.busy_timeout(Duration::from_secs(30))?;
    let year_ms: i64 = 365 * 24 * 3600 * 1000;
    let now_ms = chatterly_store::now().timestamp_millis();
    {
        let tx = raw.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO messages (conversation_id, user_id, seq, content, kind, \
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
            )?;
            for i in 0..messages {
                let (conversation, author) = rooms[(i % rooms.len() as u64) as usize];
                let seq = (i / rooms.len() as u64 + 1) as i64;
                // Spread over the last year, oldest first.
                let at = now_ms - year_ms + (year_ms * i as i64) / messages as i64;
                insert.execute(rusqlite::params![
                    conversation,
                    author,
                    seq,
                    testkit::search_corpus_message(i),
                    at
                ])?;
            }
        }
        tx.execute(
            "UPDATE conversations SET last_seq = \
             (SELECT count(*) FROM messages m WHERE m.conversation_id = conversations.id)",
            [],
        )?;
        tx.commit()?;
    }
    raw.execute_batch("ANALYZE")?;
    drop(raw);
    println!(
        "loaded {messages} messages in {:?} ({} MB on disk with the WAL)",
        loading.elapsed(),
        (std::fs::metadata(&path)?.len()
            + std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len()))
            / 1_000_000
    );

    // The server's default window (`--search-rank-window`).
    testkit::time_searches(&store, "sqlite", reader, 2000).await?;
    if std::env::var_os("KEEP").is_some() {
        println!("kept {} (KEEP is set)", dir.keep().display());
    }
    Ok(())
}
