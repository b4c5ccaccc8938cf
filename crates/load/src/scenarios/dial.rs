//! Opening many sockets at once, for the socket scenarios: at most
//! `concurrency` attempts in flight (each a short-lived task), spread over
//! the source addresses, each socket handed on success to reader task
//! `slot mod readers`. Timings and failures go to three recorders, one per
//! step ([`crate::ws::Step`]); the last one holds one outcome per attempt.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::api::Outcome;
use crate::stats::Recorder;
use crate::ws::{self, Endpoint, Step, Ws};

/// How to open the sockets of a run.
#[derive(Clone)]
pub struct DialPlan {
    pub endpoint: Endpoint,
    /// Local addresses to bind, round-robin; empty: the kernel chooses.
    pub sources: Vec<IpAddr>,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Per attempt, from TCP connect to the last confirmation.
    pub timeout: Duration,
    /// No new attempt starts after this long (the run stays bounded even
    /// when the server stops answering).
    pub within: Duration,
    pub config: WebSocketConfig,
}

/// Counters the progress line reads while sockets open.
#[derive(Default)]
pub struct DialLive {
    pub started: AtomicU64,
    pub subscribed: AtomicU64,
    pub failed: AtomicU64,
}

/// What opening the sockets gave.
pub struct Dialed {
    /// TCP connect + HTTP upgrade, from the start of the attempt.
    pub upgrade: Recorder,
    /// Until `welcome`, from the start of the attempt.
    pub welcome: Recorder,
    /// Until every subscription is confirmed, from the start of the attempt;
    /// one outcome per attempt, whatever step it failed at.
    pub subscribed: Recorder,
    /// Sockets never attempted (`within` passed, or Ctrl-C).
    pub not_attempted: usize,
    /// From the first attempt to the last one's end.
    pub elapsed: Duration,
    /// The first few failures, as `step: detail`.
    pub failure_examples: Vec<String>,
}

#[derive(Default)]
struct Shared {
    upgrade: Recorder,
    welcome: Recorder,
    subscribed: Recorder,
    failure_examples: Vec<String>,
}

/// What socket `slot` presents: its token and the identifiers to subscribe.
pub trait SocketSpec: Send + Sync + 'static {
    fn token(&self, slot: usize) -> &str;
    fn identifiers(&self, slot: usize) -> &[String];
}

/// Opens `n` sockets; socket `slot` goes to `readers[slot % readers.len()]`.
pub async fn dial<S: SocketSpec>(
    plan: &DialPlan,
    n: usize,
    spec: Arc<S>,
    readers: &[mpsc::UnboundedSender<(usize, Ws)>],
    live: &Arc<DialLive>,
    stop: &AtomicBool,
) -> Dialed {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let permits = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let plan = Arc::new(plan.clone());
    let start = Instant::now();
    let give_up = tokio::time::Instant::now() + plan.within;
    let mut attempted = 0;
    for slot in 0..n {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let permit = match tokio::time::timeout_at(give_up, permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => break,
        };
        if tokio::time::Instant::now() >= give_up {
            break;
        }
        attempted += 1;
        live.started.fetch_add(1, Ordering::Relaxed);
        let (plan, spec, shared, live) = (plan.clone(), spec.clone(), shared.clone(), live.clone());
        let reader = readers[slot % readers.len()].clone();
        tokio::spawn(async move {
            let source =
                (!plan.sources.is_empty()).then(|| plan.sources[slot % plan.sources.len()]);
            let result = ws::open(
                &plan.endpoint,
                source,
                spec.token(slot),
                spec.identifiers(slot),
                plan.config,
                plan.timeout,
            )
            .await;
            let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(opened) => {
                    shared.upgrade.record(Outcome::Done, opened.upgraded);
                    shared.welcome.record(Outcome::Done, opened.welcomed);
                    shared.subscribed.record(Outcome::Done, opened.subscribed);
                    drop(shared);
                    live.subscribed.fetch_add(1, Ordering::Relaxed);
                    // A reader that is gone (the run is stopping) drops the socket.
                    let _ = reader.send((slot, opened.ws));
                }
                Err(failure) => {
                    // A failure is counted at its step; the steps before it
                    // succeeded and keep their times.
                    let zero = Duration::ZERO;
                    if let Some(t) = failure.upgraded {
                        shared.upgrade.record(Outcome::Done, t);
                    }
                    if let Some(t) = failure.welcomed {
                        shared.welcome.record(Outcome::Done, t);
                    }
                    match failure.step {
                        Step::Upgrade => shared.upgrade.record(failure.outcome, zero),
                        Step::Welcome => shared.welcome.record(failure.outcome, zero),
                        Step::Subscribe => {}
                    }
                    shared.subscribed.record(failure.outcome, zero);
                    if shared.failure_examples.len() < 5 {
                        let example = format!("{:?}: {}", failure.step, failure.detail);
                        shared.failure_examples.push(example);
                    }
                    drop(shared);
                    live.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Released only now: `dial` waits for every permit before it
            // reads the results.
            drop(permit);
        });
    }
    // Every attempt holds a permit until it ends.
    let all = u32::try_from(plan.concurrency.max(1)).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    let elapsed = start.elapsed();
    let shared = std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner()));
    Dialed {
        upgrade: shared.upgrade,
        welcome: shared.welcome,
        subscribed: shared.subscribed,
        not_attempted: n - attempted,
        elapsed,
        failure_examples: shared.failure_examples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::tests::{fake_cable, Collect};
    use tokio::sync::watch;

    struct Spec(Vec<String>, Vec<String>);

    impl SocketSpec for Spec {
        fn token(&self, _slot: usize) -> &str {
            &self.0[0]
        }
        fn identifiers(&self, slot: usize) -> &[String] {
            // Every fifth socket asks for a channel the fake cable rejects.
            if slot % 5 == 4 {
                &self.1[1..]
            } else {
                &self.1[..1]
            }
        }
    }

    #[tokio::test]
    async fn dials_every_socket_and_accounts_for_each() {
        let addr = fake_cable().await;
        let plan = DialPlan {
            endpoint: Endpoint {
                addr,
                url: format!("ws://{addr}/cable"),
            },
            sources: Vec::new(),
            concurrency: 7,
            timeout: Duration::from_secs(5),
            within: Duration::from_secs(30),
            config: ws::config(1024),
        };
        let spec = Arc::new(Spec(
            vec!["tok".into()],
            vec![
                ws::conversation_identifier(1),
                ws::PRESENCE_IDENTIFIER.into(),
            ],
        ));
        let mut readers = Vec::new();
        let mut tasks = Vec::new();
        let (stop, stop_rx) = watch::channel(false);
        for _ in 0..2 {
            let (tx, rx) = mpsc::unbounded_channel();
            readers.push(tx);
            tasks.push(tokio::spawn(ws::read_sockets(
                rx,
                stop_rx.clone(),
                Collect::default(),
            )));
        }
        let live = Arc::new(DialLive::default());
        let dialed = dial(&plan, 50, spec, &readers, &live, &AtomicBool::new(false)).await;
        assert_eq!(dialed.subscribed.ok, 40);
        assert_eq!(dialed.subscribed.errors, 10);
        assert_eq!(dialed.subscribed.by_status.get("rejected"), Some(&10));
        assert_eq!(dialed.upgrade.ok, 50);
        assert_eq!(dialed.welcome.ok, 50);
        assert_eq!(dialed.not_attempted, 0);
        assert_eq!(live.subscribed.load(Ordering::Relaxed), 40);
        assert_eq!(dialed.failure_examples.len(), 5);
        drop(readers);
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(true).unwrap();
        let mut opened: Vec<usize> = Vec::new();
        for (reader, task) in tasks.into_iter().enumerate() {
            let seen = task.await.unwrap();
            assert!(seen.opened.iter().all(|slot| slot % 2 == reader));
            opened.extend(seen.opened);
        }
        opened.sort_unstable();
        let expected: Vec<usize> = (0..50).filter(|s| s % 5 != 4).collect();
        assert_eq!(opened, expected);
    }
}
