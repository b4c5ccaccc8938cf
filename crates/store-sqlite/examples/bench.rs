//! A rough throughput check of the store alone (no HTTP):
//! `cargo run --release -p chatterly-store-sqlite --example bench`.
//!
//! Measures durable message sends (concurrent senders over many
//! conversations) and history reads (newest page of 50) per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatterly_store::{ConversationKind, HistoryPage, MessageKind, NewConversation, NewMessage, NewUser, Store};
use chatterly_store_sqlite::SqliteStore;

const CONVERSATIONS: i64 = 100;
fn tasks() -> usize { std::env::var("TASKS").ok().and_then(|t| t.parse().ok()).unwrap_or(64) }
const RUN: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).await?);
    store.migrate().await?;
    let user = store
        .create_user(NewUser {
            email: "bench@example.com".into(),
            username: "bench".into(),
            display_name: None,
            password_hash: "x".into(),
        })
        .await?;
    let mut conversations = Vec::new();
    for _ in 0..CONVERSATIONS {
        let (c, _) = store
            .create_conversation(NewConversation {
                kind: ConversationKind::Channel,
                name: Some("bench".into()),
                description: None,
                created_by_id: user.id,
                member_ids: vec![],
            })
            .await?;
        conversations.push(c.id);
    }
    let conversations = Arc::new(conversations);

    // Sends.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..tasks() {
        let store = store.clone();
        let conversations = conversations.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < RUN {
                let conversation_id = conversations[(n as usize * tasks() + t) % conversations.len()];
                store
                    .insert_message(NewMessage {
                        conversation_id,
                        user_id: user.id,
                        content: "the quick brown fox jumps over the lazy dog".into(),
                        kind: MessageKind::Text,
                        parent_message_id: None,
                        call_session_id: None,
                        client_message_id: Some(format!("{t}-{n}")),
                    })
                    .await
                    .expect("insert");
                n += 1;
            }
            n
        }));
    }
    let mut sends = 0;
    for task in tasks {
        sends += task.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("sends:   {:>8.0}/s ({sends} in {secs:.1}s, {tasks()} tasks)", sends as f64 / secs);

    // Reads.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..tasks() {
        let store = store.clone();
        let conversations = conversations.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < RUN {
                let conversation_id = conversations[(n as usize + t) % conversations.len()];
                let page = store
                    .history(conversation_id, HistoryPage::Before { before_id: None, limit: 50 })
                    .await
                    .expect("history");
                assert_eq!(page.len(), 50);
                n += 1;
            }
            n
        }));
    }
    let mut reads = 0;
    for task in tasks {
        reads += task.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("history: {:>8.0}/s ({reads} pages of 50 in {secs:.1}s, {tasks()} tasks)", reads as f64 / secs);

    // Single-row reads.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..tasks() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < RUN {
                store.membership(1, user.id).await.expect("membership");
                n += 1;
            }
            n
        }));
    }
    let mut reads = 0;
    for task in tasks {
        reads += task.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("point:   {:>8.0}/s ({reads} membership reads in {secs:.1}s)", reads as f64 / secs);
    Ok(())
}
