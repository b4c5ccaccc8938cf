//! Durable message sends against a real PostgreSQL, store alone (no HTTP):
//! `cargo run --release -p chatterly-store-postgres --example pg_bench`.
//!
//! Creates a scratch database (dropped at the end) on the server of
//! `CHATTERLY_BENCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! then measures, for `SECS` seconds each (default 5):
//!
//! - `serial`: one sender, one conversation (the cost of a lone send);
//! - `sends1`: `TASKS` senders (default 64), all into one conversation (every
//!   send contends for the same `last_seq`);
//! - `sends16`: `TASKS` senders spread over 16 conversations.
//!
//! Every send carries a client message id and is awaited (so acknowledged,
//! committed) before the sender's next one. Printed per run: sends per second
//! of wall time, latency p50/p99/max, this process's CPU per send, and the
//! whole machine's CPU use and load average over the run (the machine is
//! shared, so read the rates next to them). After each run the conversations
//! are checked: `seq` exactly 1..last_seq, no gap, no duplicate. `POOL`
//! (default 16, the server's default) sizes the store's pool; `ONLY=<name>`
//! runs one scenario. Also printed: the batches the store wrote (its group
//! commit) and their mean size.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatterly_store::{
    ConversationKind, Id, MessageKind, NewConversation, NewMessage, NewUser, Store,
};
use chatterly_store_postgres::PgStore;
use sqlx::{Connection, Executor, PgConnection, PgPool};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's user + system CPU time, from /proc (Linux only).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // utime and stime are the 14th and 15th fields, in clock ticks (100/s).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The machine's (busy, total) CPU ticks over all cores, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle and iowait are the 4th and 5th.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `op(task, n)` in `tasks` concurrent loops for `run`, timing each
/// call, then prints the rate, the latencies and the CPU use.
async fn measure<F, Fut>(name: &str, tasks: usize, run: Duration, op: F)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let cpu_started = process_cpu();
    let machine_started = machine_ticks();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while started.elapsed() < run {
                    let sent = Instant::now();
                    op(t, n).await;
                    latencies.push(sent.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("sender task"));
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu_started).as_secs_f64();
    let machine_ended = machine_ticks();
    let busy = (machine_ended.0 - machine_started.0) as f64
        / (machine_ended.1 - machine_started.1).max(1) as f64;
    latencies.sort_unstable();
    let total = latencies.len();
    println!(
        "{name:<8} {:>7.0} sends/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  \
         {:>5.0} µs CPU/send  machine CPU {:>3.0}%  load {}  ({total} in {secs:.1}s, {tasks} tasks)",
        total as f64 / secs,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
        cpu * 1e6 / total.max(1) as f64,
        busy * 100.0,
        load_average(),
    );
}

/// Every conversation's messages are numbered exactly 1..last_seq.
async fn check_gap_free(raw: &PgPool) -> Result<(), Box<dyn std::error::Error>> {
    let bad: Vec<(Id, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT c.id, c.last_seq, count(m.seq), count(DISTINCT m.seq), coalesce(max(m.seq), 0)
         FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
         GROUP BY c.id, c.last_seq
         HAVING NOT (c.last_seq = count(m.seq) AND count(m.seq) = count(DISTINCT m.seq)
                     AND coalesce(max(m.seq), 0) = c.last_seq AND coalesce(min(m.seq), 1) = 1)",
    )
    .fetch_all(raw)
    .await?;
    if !bad.is_empty() {
        return Err(
            format!("seq not gap-free (id, last_seq, rows, distinct, max): {bad:?}").into(),
        );
    }
    Ok(())
}

async fn bench(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let tasks: usize = env_or("TASKS", 64);
    let run = Duration::from_secs_f64(env_or("SECS", 5.0));
    let pool: u32 = env_or("POOL", 16);
    let only = std::env::var("ONLY").ok();

    let store = Arc::new(PgStore::connect(url, pool).await?);
    store.migrate().await?;
    let raw = PgPool::connect(url).await?;
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
    for _ in 0..16 {
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
    }
    let conversations = Arc::new(conversations);
    println!(
        "pool {pool}, {} cores, load before: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );

    for (name, senders, spread) in [
        ("serial", 1, 1),
        ("sends1", tasks, 1),
        ("sends16", tasks, 16),
    ] {
        if only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let stats_before = store.send_stats();
        let (s, c) = (store.clone(), conversations.clone());
        measure(name, senders, run, move |t, n| {
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
                .expect("send");
            }
        })
        .await;
        let stats = store.send_stats();
        let (batches, sends) = (
            stats.batches - stats_before.batches,
            stats.sends - stats_before.sends,
        );
        println!(
            "{:<8} {batches} batches, {:.1} sends per batch",
            "",
            sends as f64 / batches.max(1) as f64
        );
        check_gap_free(&raw).await?;
    }
    raw.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin = std::env::var("CHATTERLY_BENCH_PG_URL").unwrap_or(DEFAULT_ADMIN_URL.into());
    let name = format!("chatterly_bench_{}", std::process::id());
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
