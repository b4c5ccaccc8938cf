//! Scenarios, one module each, and what they share: the run context, the
//! time/count budget, worker spawning, and the setup steps (users, a group
//! conversation, seed messages).
//!
//! A scenario is `async fn run(&Ctx, &Args) -> Result<Report>`: it prepares
//! its data (not measured), runs its workers against a [`Budget`], merges the
//! per-worker [`crate::stats::Recorder`]s and returns a
//! [`crate::report::Report`]. Adding one means a module here, an args struct
//! and a variant in [`crate::cli::ScenarioCommand`], and a line in `main`.

pub mod conversation_list;
pub mod dial;
pub mod fanout;
pub mod idle_sockets;
pub mod rest_read;
pub mod search;
pub mod send;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use tokio::time::Instant;

use crate::api::{Api, Session};
use crate::procfs::NofileLimit;

/// Password of every generated user (they live only on a test server).
const PASSWORD: &str = "load-test-password";

/// Setup requests in flight at once (registration hashes a password, which is
/// deliberately slow; more parallelism only queues on the server's CPU).
const SETUP_PARALLELISM: usize = 8;

/// What every scenario gets from `main`.
pub struct Ctx {
    pub api: Api,
    /// Show the progress line and setup notes on stderr.
    pub chatty: bool,
    /// Set by Ctrl-C: workers stop early and the run still reports.
    pub stop: Arc<AtomicBool>,
    /// Worker threads of the client's runtime (socket scenarios run one
    /// reader task per thread).
    pub threads: usize,
    /// This process's open-file limit (already raised to the hard limit).
    pub nofile: NofileLimit,
    /// `--timeout`: per request, and per socket from connect to subscribed.
    pub timeout: Duration,
}

impl Ctx {
    /// A setup note on stderr (not with `--quiet`).
    pub fn say(&self, line: impl AsRef<str>) {
        if self.chatty {
            eprintln!("{}", line.as_ref());
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps for `duration`, or less when Ctrl-C stops the run.
    pub async fn sleep(&self, duration: Duration) {
        let until = Instant::now() + duration;
        while !self.stopped() && Instant::now() < until {
            tokio::time::sleep_until(until.min(Instant::now() + Duration::from_millis(100))).await;
        }
    }

    /// Fails early when this process may not open `needed` descriptors.
    pub fn check_nofile(&self, needed: u64, what: &str) -> Result<()> {
        if needed > self.nofile.soft {
            anyhow::bail!(
                "{what} needs about {needed} file descriptors but this process may open only {} \
                 (RLIMIT_NOFILE, hard limit {}): raise the hard limit (`ulimit -Hn`) or ask for fewer sockets",
                self.nofile.soft,
                self.nofile.hard
            );
        }
        Ok(())
    }
}

/// When the workers stop: at the deadline, after `max` requests in total, or
/// on Ctrl-C, whichever comes first.
pub struct Budget {
    deadline: Instant,
    max: Option<u64>,
    issued: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl Budget {
    pub fn new(duration: Duration, max: Option<u64>, stop: Arc<AtomicBool>) -> Arc<Budget> {
        Arc::new(Budget {
            deadline: Instant::now() + duration,
            max,
            issued: AtomicU64::new(0),
            stop,
        })
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Claims the right to issue one more request.
    pub fn take(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return false;
        }
        match self.max {
            Some(max) => self.issued.fetch_add(1, Ordering::Relaxed) < max,
            None => true,
        }
    }
}

/// Spawns `n` workers on the runtime (so they spread over its threads) and
/// collects what each returns.
pub async fn run_workers<T, F, Fut>(n: usize, make: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|w| tokio::spawn(make(w))).collect();
    let mut results = Vec::with_capacity(n);
    for handle in handles {
        results.push(handle.await.context("a worker panicked")?);
    }
    Ok(results)
}

/// `workers` loops, each GETting `url` as `reader` for as long as the budget
/// lasts; their recorders merged into one.
pub async fn get_repeatedly(
    api: &Api,
    reader: &Session,
    url: &Arc<String>,
    workers: usize,
    budget: &Arc<Budget>,
    live: &Arc<crate::stats::Live>,
) -> Result<crate::stats::Recorder> {
    let results = run_workers(workers, |_| {
        let (api, reader, url) = (api.clone(), reader.clone(), url.clone());
        let (budget, live) = (budget.clone(), live.clone());
        async move {
            let mut recorder = crate::stats::Recorder::default();
            while budget.take() {
                let (outcome, latency) = Api::timed(api.get(&url, &reader)).await;
                live.count(outcome.is_success());
                recorder.record(outcome, latency);
            }
            recorder
        }
    })
    .await?;
    let mut all = crate::stats::Recorder::default();
    for recorder in &results {
        all.merge(recorder);
    }
    Ok(all)
}

/// A short random tag for this run (usernames, conversation names, client
/// message ids), so runs never collide on a server that keeps its data.
pub fn run_id() -> String {
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| char::from_digit(rng.gen_range(0..36), 36).unwrap_or('0'))
        .collect()
}

/// Registers `n` users named `lt_<run>_<i>` (valid usernames: lowercase,
/// digits and underscores, at most 30 characters).
pub async fn register_users(ctx: &Ctx, n: usize, run: &str) -> Result<Vec<Session>> {
    ctx.say(format!("setup: registering {n} users"));
    let api = &ctx.api;
    futures::stream::iter(0..n)
        .map(|i| async move { api.register(&format!("lt_{run}_{i}"), PASSWORD).await })
        .buffered(SETUP_PARALLELISM)
        .try_collect()
        .await
}

/// Creates a group conversation owned by `users[0]` with every user a member.
pub async fn create_group(ctx: &Ctx, users: &[Session], name: &str) -> Result<i64> {
    let (owner, others) = users
        .split_first()
        .context("a conversation needs at least one user")?;
    let member_ids: Vec<i64> = others.iter().map(|u| u.id).collect();
    ctx.api.create_group(owner, name, &member_ids).await
}

/// Posts `count` messages to a conversation, authors taken round-robin.
pub async fn seed_messages(
    ctx: &Ctx,
    users: &[Session],
    conversation_id: i64,
    count: usize,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    ctx.say(format!(
        "setup: seeding {count} messages into conversation {conversation_id}"
    ));
    let api = &ctx.api;
    futures::stream::iter(0..count)
        .map(|i| {
            let author = &users[i % users.len()];
            async move {
                api.send_message(author, conversation_id, &format!("seed message {i}"))
                    .await
            }
        })
        .buffered(SETUP_PARALLELISM * 2)
        .try_for_each(|_| async { Ok(()) })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_make_valid_usernames() {
        let run = run_id();
        assert_eq!(run.len(), 10);
        let username = format!("lt_{run}_99999");
        assert!(username.len() <= 30);
        assert!(username
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_ne!(run_id(), run);
    }

    #[tokio::test]
    async fn budget_stops_on_count_and_on_stop() {
        let stop = Arc::new(AtomicBool::new(false));
        let budget = Budget::new(Duration::from_secs(60), Some(3), stop.clone());
        assert!(budget.take() && budget.take() && budget.take());
        assert!(!budget.take());
        let budget = Budget::new(Duration::from_secs(60), None, stop.clone());
        assert!(budget.take());
        stop.store(true, Ordering::Relaxed);
        assert!(!budget.take());
    }

    #[tokio::test]
    async fn budget_stops_at_the_deadline() {
        let budget = Budget::new(Duration::from_millis(20), None, Arc::default());
        assert!(budget.take());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!budget.take());
    }
}
