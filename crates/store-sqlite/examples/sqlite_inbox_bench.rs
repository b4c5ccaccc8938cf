//! The store's half of the conversation list: `Store::inbox` for a reader in
//! 1,000 conversations (`CONVERSATIONS` to change it), timed one call after
//! the other: `cargo run --release -p chatterly-store-sqlite --example
//! sqlite_inbox_bench`. The end-to-end figure (HTTP, rendering, JSON) comes from
//! `chatterly-load conversation-list`; see BENCHMARKS.md.

use std::time::{Duration, Instant};

use chatterly_store::{testkit, Store};
use chatterly_store_sqlite::SqliteStore;

const CALLS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conversations: usize = std::env::var("CONVERSATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("inbox.db")).await?;
    store.migrate().await?;
    let reader = testkit::seed_inbox(&store, conversations, 3).await;
    store.maintain(chatterly_store::now()).await?;

    for _ in 0..20 {
        store.inbox(reader).await?;
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let inbox = store.inbox(reader).await?;
        times.push(started.elapsed());
        assert_eq!(inbox.len(), conversations);
    }
    times.sort_unstable();
    println!(
        "sqlite inbox of {conversations} conversations: p50 {:?}, p99 {:?}, max {:?} ({CALLS} calls)",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    Ok(())
}
