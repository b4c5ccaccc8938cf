//! The store's half of the conversation list: `Store::inbox` for a reader in
//! 1,000 conversations (`CONVERSATIONS` to change it), timed one call after
//! the other: `cargo run --release -p chatterly-store-sqlite --example
//! sqlite_inbox_bench`. The end-to-end figure (HTTP, rendering, JSON) comes from
//! `chatterly-load conversation-list`; see BENCHMARKS.md.

use chatterly_store::{testkit, Store};
use chatterly_store_sqlite::SqliteStore;

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

    let (timings, _) = testkit::time_calls(
        20,
        300,
        || store.inbox(reader),
        |inbox| assert_eq!(inbox.len(), conversations),
    )
    .await?;
    println!("sqlite inbox of {conversations} conversations: {timings}");
    Ok(())
}
