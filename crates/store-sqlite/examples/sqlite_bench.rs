//! A rough throughput check of the store alone (no HTTP):
//! `cargo run --release -p chatterly-store-sqlite --example sqlite_bench`.
//!
//! Measures durable message sends (concurrent senders, each send with a client
//! message id) into one conversation (`sends1`: every send contends for the
//! same `last_seq`) and spread over 16 (`sends16`), history reads (the newest
//! page of 50, `history`) and point reads (a membership check, `point`), as
//! operations per second of wall time and as CPU time per operation (the
//! steadier number on a shared machine). `TASKS` (default 64) sets the
//! concurrency; `ONLY=sends1|sends16|history|point` runs one of them (after
//! the setup).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatterly_store::{
    ConversationKind, HistoryPage, Id, MessageKind, NewConversation, NewMessage, NewUser, Store,
};
use chatterly_store_sqlite::SqliteStore;

const CONVERSATIONS: usize = 100;
const RUN: Duration = Duration::from_secs(3);

/// This process's user + system CPU time, from /proc (Linux only).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Runs `op(task, n)` in `tasks` concurrent loops for `RUN`, then prints the
/// rate.
async fn measure<F, Fut>(name: &str, tasks: usize, op: F)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    if std::env::var("ONLY").is_ok_and(|only| only != name) {
        return;
    }
    let op = Arc::new(op);
    let started = Instant::now();
    let cpu_started = cpu_time();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < RUN {
                    op(t, n).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.await.unwrap_or(0);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu_started).as_secs_f64();
    println!(
        "{name:<8} {:>8.0}/s  {:>6.1} µs CPU/op  ({total} in {secs:.1}s, {tasks} tasks)",
        total as f64 / secs,
        cpu * 1e6 / total.max(1) as f64
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks: usize = std::env::var("TASKS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(64);
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
        .await?
        .id;
    let mut conversations: Vec<Id> = Vec::new();
    for _ in 0..CONVERSATIONS {
        let (c, _) = store
            .create_conversation(NewConversation {
                kind: ConversationKind::Channel,
                name: Some("bench".into()),
                description: None,
                created_by_id: user,
                member_ids: vec![],
            })
            .await?;
        conversations.push(c.id);
        // Enough for a full page of history whatever runs.
        for _ in 0..50 {
            store
                .insert_message(NewMessage {
                    attachment_ids: Vec::new(),
                    conversation_id: c.id,
                    user_id: user,
                    content: "the quick brown fox jumps over the lazy dog".into(),
                    kind: MessageKind::Text,
                    parent_message_id: None,
                    call_session_id: None,
                    client_message_id: None,
                    mentions: Default::default(),
                })
                .await?;
        }
    }
    let conversations = Arc::new(conversations);

    for (name, spread) in [("sends1", 1), ("sends16", 16)] {
        let (s, c) = (store.clone(), conversations.clone());
        measure(name, tasks, move |t, n| {
            let s = s.clone();
            let conversation_id = c[(n as usize * 7 + t) % spread];
            async move {
                s.insert_message(NewMessage {
                    attachment_ids: Vec::new(),
                    conversation_id,
                    user_id: user,
                    content: "the quick brown fox jumps over the lazy dog".into(),
                    kind: MessageKind::Text,
                    parent_message_id: None,
                    call_session_id: None,
                    client_message_id: Some(format!("{name}-{t}-{n}")),
                    mentions: Default::default(),
                })
                .await
                .expect("insert");
            }
        })
        .await;
    }
    // The writer's counters: commands / batches is the mean group-commit
    // batch size (setup included).
    println!("{store:?}");

    let (s, c) = (store.clone(), conversations.clone());
    measure("history", tasks, move |t, n| {
        let s = s.clone();
        let conversation_id = c[(n as usize + t) % c.len()];
        async move {
            let page = s
                .history(
                    conversation_id,
                    HistoryPage::Before {
                        before_id: None,
                        limit: 50,
                    },
                )
                .await
                .expect("history");
            assert_eq!(page.len(), 50);
        }
    })
    .await;

    let (s, c) = (store.clone(), conversations.clone());
    measure("point", tasks, move |t, n| {
        let s = s.clone();
        let conversation_id = c[(n as usize + t) % c.len()];
        async move {
            let role = s
                .membership(conversation_id, user)
                .await
                .expect("membership");
            assert!(role.is_some());
        }
    })
    .await;
    Ok(())
}
