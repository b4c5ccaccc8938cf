//! `send`: message sends, then a read-back that checks nothing acknowledged
//! was lost or duplicated and that `seq` runs 1..N without gaps.
//!
//! Setup: one user per sender (`--concurrency`), `--conversations` group
//! conversations each holding every user. Sender `s` posts to conversation
//! `s mod K`, each message with a unique `client_message_id`
//! (`<run>-<sender>-<n>`).
//!
//! Closed loop (default): each sender sends its next message as soon as the
//! previous one is answered. Open loop (`--rate R`): the k-th message overall
//! is due at `start + k/R`, sender `s` taking messages `s, s+C, s+2C, ...`.
//! A message that could not start on time because its sender was still
//! waiting for the previous answer is timed from its due time, so a server
//! that falls behind shows it in the percentiles instead of silently lowering
//! the offered load (no coordinated omission); the service time alone is
//! reported as a second line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use super::{create_group, register_users, run_id, run_workers, Budget, Ctx};
use crate::api::{Api, Session};
use crate::cli::SendArgs;
use crate::progress::Progress;
use crate::report::{per_second, Operation, Report, Setup, Verification};
use crate::stats::{Live, Recorder};
use crate::verify::check_conversation;

/// Open-loop pacing: when message `k` (overall) is due.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    pub start: tokio::time::Instant,
    pub interval: Duration,
    pub senders: u64,
}

impl Schedule {
    pub fn due(&self, sender: u64, k: u64) -> tokio::time::Instant {
        let index = sender + k * self.senders;
        self.start + self.interval.mul_f64(index as f64)
    }
}

/// What one sender brings back.
struct SenderResult {
    conversation: usize,
    /// Latency from the due time (open loop) or from sending (closed loop).
    latency: Recorder,
    /// Service time (open loop only).
    service: Option<Recorder>,
    acked: Vec<String>,
    /// Open loop: sends that started after their due time.
    late: u64,
}

/// `load <run> s<sender> #<n> xxxx…` cut or padded to exactly `len` bytes.
fn content(run: &str, sender: usize, n: u64, len: usize) -> String {
    let mut text = format!("load {run} s{sender} #{n} ");
    if text.len() >= len {
        text.truncate(len);
    } else {
        text.extend(std::iter::repeat_n('x', len - text.len()));
    }
    text
}

pub async fn run(ctx: &Ctx, args: &SendArgs) -> Result<Report> {
    let senders = args.run.workers();
    let k = args.conversations as usize;
    if k > senders {
        bail!("--conversations ({k}) must not exceed --concurrency ({senders}): every conversation needs a sender");
    }
    let api = &ctx.api;
    let setup_start = Instant::now();
    let run = run_id();
    let users = register_users(ctx, senders, &run).await?;
    ctx.say(format!(
        "setup: creating {k} group conversation(s) with {senders} members"
    ));
    let conversations: Vec<i64> = futures::stream::iter(0..k)
        .map(|i| {
            let users = &users;
            let name = format!("load send {run} #{i}");
            async move { create_group(ctx, users, &name).await }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let setup = Setup {
        users: users.len(),
        conversation_ids: conversations.clone(),
        seeded_messages: 0,
        seconds: setup_start.elapsed().as_secs_f64(),
    };
    let urls = Arc::new(api.messages_urls(&conversations));
    let users = Arc::new(users);
    let run = Arc::<str>::from(run);

    let live = Arc::new(Live::default());
    let date = crate::now_rfc3339();
    let budget = Budget::new(args.run.duration(), args.run.requests, ctx.stop.clone());
    let schedule = args.rate.map(|rate| Schedule {
        start: tokio::time::Instant::now(),
        interval: Duration::from_secs_f64(1.0 / rate),
        senders: senders as u64,
    });
    let progress = Progress::start("send", live.clone(), args.run.duration(), ctx.chatty);
    let cpu = crate::report::CpuMeter::start(args.cpu.server_pid);
    let start = Instant::now();
    let content_len = args.content_bytes as usize;
    let results = run_workers(senders, |s| {
        let sender = Sender {
            api: api.clone(),
            session: users[s].clone(),
            index: s,
            conversation: s % k,
            url: urls.clone(),
            run: run.clone(),
            content_len,
            schedule,
        };
        sender.run(budget.clone(), live.clone())
    })
    .await?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    progress.finish().await;

    let mut latency = Recorder::default();
    let mut service = Recorder::default();
    let mut acked_by_conversation: HashMap<usize, Vec<String>> = HashMap::new();
    let late: u64 = results.iter().map(|r| r.late).sum();
    for r in results {
        latency.merge(&r.latency);
        if let Some(s) = &r.service {
            service.merge(s);
        }
        acked_by_conversation
            .entry(r.conversation)
            .or_default()
            .extend(r.acked);
    }
    let mut operations = Vec::new();
    if schedule.is_some() {
        operations.push(Operation::new("send (from due time)", &latency, elapsed));
        operations.push(Operation::new("send (service time)", &service, elapsed));
    } else {
        operations.push(Operation::new("send", &latency, elapsed));
    }
    let mut report = Report::new(
        "send",
        date,
        api.target().as_str(),
        args.parameters(),
        setup,
        elapsed,
        "message",
        &latency,
        operations,
    );
    if let Some(rate) = args.rate {
        report.notes.push(format!(
            "open loop: a send that starts late because the previous one is still waiting \
             is timed from its due time ({late} of {} started late); \
             the service-time line excludes that wait",
            latency.total()
        ));
        let achieved = per_second(latency.total(), elapsed);
        if achieved < rate * 0.95
            && !ctx.stop.load(std::sync::atomic::Ordering::Relaxed)
            && args.run.requests.is_none()
        {
            report.notes.push(format!(
                "offered {rate} msgs/s but completed only {achieved:.1} msgs/s: the server (or the client) fell behind"
            ));
        }
    }

    if !args.no_verify {
        ctx.say(format!(
            "verify: reading back {} conversation(s)",
            conversations.len()
        ));
        let prefix = format!("{run}-");
        let reader = &users[0];
        let checks = futures::stream::iter(conversations.iter().enumerate())
            .map(|(i, &id)| {
                let acked = acked_by_conversation.remove(&i).unwrap_or_default();
                let prefix = prefix.as_str();
                async move { check_conversation(api, reader, id, &acked, prefix).await }
            })
            .buffered(4)
            .try_collect()
            .await?;
        report.verification = Some(Verification::new(checks));
    }
    report.cpu = cpu.map(|c| c.per_request(report.requests));
    Ok(report)
}

struct Sender {
    api: Api,
    session: Session,
    index: usize,
    conversation: usize,
    url: Arc<Vec<String>>,
    run: Arc<str>,
    content_len: usize,
    schedule: Option<Schedule>,
}

impl Sender {
    async fn run(self, budget: Arc<Budget>, live: Arc<Live>) -> SenderResult {
        let url = &self.url[self.conversation];
        let mut latency = Recorder::default();
        let mut service = self.schedule.map(|_| Recorder::default());
        let mut acked = Vec::new();
        let mut late = 0u64;
        let mut n = 0u64;
        while budget.take() {
            // Open loop: the reference point of the latency is the due time
            // when the sender is behind (the wait is the server's doing), the
            // actual start when it had to sleep (the timer wakes up to a
            // millisecond late, which is not the server's doing).
            let mut behind_since = None;
            if let Some(schedule) = self.schedule {
                let due = schedule.due(self.index as u64, n);
                if due >= budget.deadline() {
                    break;
                }
                if tokio::time::Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                } else {
                    behind_since = Some(due);
                    late += 1;
                }
            }
            let client_message_id = format!("{}-{}-{n}", self.run, self.index);
            let body = json!({
                "content": content(&self.run, self.index, n, self.content_len),
                "client_message_id": client_message_id,
            });
            let (outcome, service_time) =
                Api::timed(self.api.post_json(url, &self.session, &body)).await;
            live.count(outcome.is_success());
            if let Some(service) = service.as_mut() {
                service.record(outcome, service_time);
                latency.record(
                    outcome,
                    behind_since.map_or(service_time, |due| due.elapsed()),
                );
            } else {
                latency.record(outcome, service_time);
            }
            if outcome.is_success() {
                acked.push(client_message_id);
            }
            n += 1;
        }
        SenderResult {
            conversation: self.conversation,
            latency,
            service,
            acked,
            late,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_has_exactly_the_requested_length() {
        for len in [1, 5, 20, 64, 4000] {
            let c = content("abcdefghij", 12, 345, len);
            assert_eq!(c.len(), len);
        }
        assert_eq!(content("r", 1, 2, 12), "load r s1 #2");
        assert_eq!(content("r", 1, 2, 16), "load r s1 #2 xxx");
    }

    #[test]
    fn schedule_interleaves_senders_evenly() {
        let start = tokio::time::Instant::now();
        let s = Schedule {
            start,
            interval: Duration::from_millis(10),
            senders: 4,
        };
        assert_eq!(s.due(0, 0), start);
        assert_eq!(s.due(3, 0) - start, Duration::from_millis(30));
        assert_eq!(s.due(0, 1) - start, Duration::from_millis(40));
        assert_eq!(s.due(2, 5) - start, Duration::from_millis(220));
    }
}
