//! `fanout`: messages sent over REST, delivered over WebSocket to every
//! subscribed member socket; send→delivery latency, deliveries per second,
//! and an exact account of every delivery.
//!
//! Setup: `--users` users, `--conversations` group conversations each
//! holding all of them, and `--members` sockets per conversation (socket
//! `s` subscribes to conversation `s mod C`, as user `(s / C) mod U`).
//! Measured: open-loop sends at `--rate` messages/s in total; message `k`
//! goes to conversation `k mod C`, written by user `(k / C) mod U`, with
//! content `fo <run> <k> xxx…` and `client_message_id` `<run>-<k>`. Its send
//! time is stamped just before the request goes out; every socket notes each
//! `new_message` it receives (one bit per message per socket) and the time
//! since that stamp. After the last send the run waits up to `--drain`
//! seconds for missing deliveries, then compares what arrived with what was
//! acknowledged: lost, duplicated, misrouted (another conversation's message)
//! must all be 0.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::dial::{dial, DialLive, DialPlan, SocketSpec};
use super::idle_sockets::{disconnect_reason, is_disconnect, sockets_per_address};
use super::send::Schedule;
use super::{create_group, register_users, run_id, run_workers, Budget, Ctx};
use crate::api::{Api, Session};
use crate::cli::FanoutArgs;
use crate::procfs;
use crate::progress::{trim_float, Progress};
use crate::report::{per_second, ClientMemory, FanoutReport, Operation, Report, Setup};
use crate::stats::{format_rate, micros, new_histogram, LatencySummary, Recorder};
use crate::ws::{self, Endpoint, Frames};

/// Client read buffer per socket: a burst of frames should take one read.
const READ_BUFFER: usize = 16 * 1024;
/// Most messages one run may send (their send stamps are kept in memory).
const MAX_MESSAGES: u64 = 20_000_000;
/// Most (message, socket) pairs one run may track (one bit each).
const MAX_DELIVERIES: u64 = 4_000_000_000;

/// When each message was sent, for the delivery side.
struct Clock {
    epoch: Instant,
    /// Nanoseconds since `epoch` plus one; 0: not sent.
    sent_at: Vec<AtomicU64>,
}

impl Clock {
    fn new(messages: usize) -> Clock {
        Clock {
            epoch: Instant::now(),
            sent_at: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn stamp(&self, k: usize) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.sent_at[k].store(nanos + 1, Ordering::Release);
    }

    fn sent(&self, k: usize) -> Option<Instant> {
        match self.sent_at.get(k)?.load(Ordering::Acquire) {
            0 => None,
            v => Some(self.epoch + Duration::from_nanos(v - 1)),
        }
    }
}

/// Counters for the progress line and the drain.
#[derive(Default)]
struct FanoutLive {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    deliveries: AtomicU64,
}

/// `fo <run> <k> xxx…` of exactly `len` bytes (`len` ≥ 32 leaves room for
/// the marker).
fn content(run: &str, k: usize, len: usize) -> String {
    let mut text = format!("fo {run} {k} ");
    if text.len() < len {
        text.extend(std::iter::repeat_n('x', len - text.len()));
    }
    text
}

/// The message number of a frame carrying this run's content marker.
fn message_number(text: &str, marker: &str) -> Option<usize> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

struct SocketState {
    conversation: usize,
    /// Bit `k / C` is set once message `k` arrived.
    seen: Vec<u64>,
}

/// One reader's sockets and what they received.
struct Deliveries {
    readers: usize,
    conversations: usize,
    marker: String,
    clock: Arc<Clock>,
    live: Arc<FanoutLive>,
    sockets: Vec<Option<SocketState>>,
    latency: Histogram<u64>,
    received: u64,
    duplicated: u64,
    misrouted: u64,
    foreign: u64,
    untimed: u64,
    last_delivery: Option<Instant>,
    closed_by: BTreeMap<String, u64>,
    disconnects: BTreeMap<String, u64>,
}

impl Deliveries {
    fn new(
        readers: usize,
        conversations: usize,
        marker: String,
        clock: Arc<Clock>,
        live: Arc<FanoutLive>,
    ) -> Self {
        Deliveries {
            readers,
            conversations,
            marker,
            clock,
            live,
            sockets: Vec::new(),
            latency: new_histogram(),
            received: 0,
            duplicated: 0,
            misrouted: 0,
            foreign: 0,
            untimed: 0,
            last_delivery: None,
            closed_by: BTreeMap::new(),
            disconnects: BTreeMap::new(),
        }
    }
}

impl Frames for Deliveries {
    fn opened(&mut self, slot: usize, _at: Instant) {
        let i = slot / self.readers;
        if i >= self.sockets.len() {
            self.sockets.resize_with(i + 1, || None);
        }
        self.sockets[i] = Some(SocketState {
            conversation: slot % self.conversations,
            seen: Vec::new(),
        });
    }

    fn text(&mut self, slot: usize, text: &str, at: Instant) {
        if text.starts_with(r#"{"type":"ping""#) {
            return;
        }
        let Some(k) = message_number(text, &self.marker).filter(|&k| k < self.clock.sent_at.len())
        else {
            if is_disconnect(text) {
                *self.disconnects.entry(disconnect_reason(text)).or_default() += 1;
            } else if text.contains(r#""new_message""#) {
                self.foreign += 1;
            }
            return;
        };
        let Some(Some(socket)) = self.sockets.get_mut(slot / self.readers) else {
            return;
        };
        if k % self.conversations != socket.conversation {
            self.misrouted += 1;
            return;
        }
        let bit = k / self.conversations;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if word >= socket.seen.len() {
            socket.seen.resize(word + 1, 0);
        }
        if socket.seen[word] & mask != 0 {
            self.duplicated += 1;
            return;
        }
        socket.seen[word] |= mask;
        self.received += 1;
        self.live.deliveries.fetch_add(1, Ordering::Relaxed);
        self.last_delivery = Some(self.last_delivery.map_or(at, |t| t.max(at)));
        match self.clock.sent(k) {
            Some(sent) => self
                .latency
                .saturating_record(micros(at.saturating_duration_since(sent))),
            None => self.untimed += 1,
        }
    }

    fn closed(&mut self, _slot: usize, how: &'static str, _at: Instant) {
        *self.closed_by.entry(how.to_owned()).or_default() += 1;
    }
}

struct Spec {
    conversations: usize,
    tokens: Vec<String>,
    identifiers: Vec<Vec<String>>,
}

impl SocketSpec for Spec {
    fn token(&self, slot: usize) -> &str {
        &self.tokens[(slot / self.conversations) % self.tokens.len()]
    }

    fn identifiers(&self, slot: usize) -> &[String] {
        &self.identifiers[slot % self.conversations]
    }
}

/// Lost and without-ack deliveries of one socket: acknowledged messages it
/// did not see, and messages it saw that were never acknowledged.
fn account(acked: &[u64], seen: &[u64]) -> (u64, u64) {
    let words = acked.len().max(seen.len());
    let mut lost = 0;
    let mut unacked = 0;
    for w in 0..words {
        let a = acked.get(w).copied().unwrap_or(0);
        let s = seen.get(w).copied().unwrap_or(0);
        lost += u64::from((a & !s).count_ones());
        unacked += u64::from((s & !a).count_ones());
    }
    (lost, unacked)
}

const CONNECTING: u8 = 0;
const SENDING: u8 = 1;
const DRAINING: u8 = 2;

pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> Result<Report> {
    let c = args.conversations as usize;
    let m = args.members as usize;
    let sockets = args.sockets();
    let senders = args.run.workers();
    ctx.check_nofile(
        (sockets + senders) as u64 + 64,
        &format!("{c} conversations x {m} members"),
    )?;
    let planned = (args.rate * args.run.duration).ceil() as u64;
    let messages = planned.min(args.run.requests.unwrap_or(u64::MAX)).max(1);
    if messages > MAX_MESSAGES {
        bail!("--rate x --duration is {messages} messages; at most {MAX_MESSAGES} per run");
    }
    if messages.saturating_mul(m as u64) > MAX_DELIVERIES {
        bail!(
            "{messages} messages x {m} members is more deliveries than one run tracks ({MAX_DELIVERIES}); \
             lower --rate, --duration or --members"
        );
    }
    let messages = messages as usize;
    if let Some(pid) = args.server_pid {
        procfs::memory(Some(pid)).with_context(|| {
            format!("--server-pid {pid}: cannot read /proc/{pid}/status (is it the server's PID, on this machine?)")
        })?;
    }
    let api = &ctx.api;
    let endpoint = Endpoint::of(api.target()).await?;
    let per_address = sockets_per_address();
    let sources = ws::source_addresses(endpoint.addr, sockets, args.dial.source_addrs, per_address);

    let setup_start = Instant::now();
    let run = run_id();
    let users = register_users(ctx, args.users as usize, &run).await?;
    ctx.say(format!(
        "setup: creating {c} group conversation(s) with {} members",
        users.len()
    ));
    let conversations: Vec<i64> = futures::stream::iter(0..c)
        .map(|i| {
            let users = &users;
            let name = format!("load fanout {run} #{i}");
            async move { create_group(ctx, users, &name).await }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let spec = Arc::new(Spec {
        conversations: c,
        tokens: users.iter().map(|u| u.token().to_owned()).collect(),
        identifiers: conversations
            .iter()
            .map(|&id| vec![ws::conversation_identifier(id)])
            .collect(),
    });

    // Readers, then the sockets.
    let readers = ctx.threads.max(1);
    let clock = Arc::new(Clock::new(messages));
    let live = Arc::new(FanoutLive::default());
    let marker = format!("fo {run} ");
    let (stop_readers, stop_rx) = watch::channel(false);
    let mut channels = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let (tx, rx) = mpsc::unbounded_channel();
        channels.push(tx);
        let frames = Deliveries::new(readers, c, marker.clone(), clock.clone(), live.clone());
        tasks.push(tokio::spawn(ws::read_sockets(rx, stop_rx.clone(), frames)));
    }
    let plan = DialPlan {
        endpoint,
        sources: sources.clone(),
        concurrency: args.dial.connect_concurrency as usize,
        timeout: ctx.timeout,
        within: args.dial.connect_within(),
        config: ws::config(READ_BUFFER),
    };
    let dial_live = Arc::new(DialLive::default());
    let phase = Arc::new(AtomicU8::new(CONNECTING));
    let duration = args.run.duration();
    let progress = {
        let (dial_live, live, phase) = (dial_live.clone(), live.clone(), phase.clone());
        let mut last = (Instant::now(), 0u64);
        let mut sending_since = None;
        Progress::with_line(ctx.chatty, move |_| {
            let deliveries = live.deliveries.load(Ordering::Relaxed);
            let now = Instant::now();
            let window = now.duration_since(last.0).as_secs_f64().max(1e-9);
            let rate = deliveries.saturating_sub(last.1) as f64 / window;
            last = (now, deliveries);
            match phase.load(Ordering::Relaxed) {
                CONNECTING => format!(
                    "fanout  connecting  {}/{sockets} subscribed  {} failed",
                    dial_live.subscribed.load(Ordering::Relaxed),
                    dial_live.failed.load(Ordering::Relaxed)
                ),
                SENDING => {
                    let since = *sending_since.get_or_insert(now);
                    let sent = live.sent.load(Ordering::Relaxed);
                    let errors = live.errors.load(Ordering::Relaxed);
                    format!(
                        "fanout  {:.1}s/{}s  {sent} sent  {errors} err  {deliveries} deliveries  {}",
                        now.duration_since(since).as_secs_f64(),
                        trim_float(duration.as_secs_f64()),
                        format_rate(rate)
                    )
                }
                _ => format!(
                    "fanout  draining  {deliveries}/{} deliveries",
                    live.acked.load(Ordering::Relaxed) * m as u64
                ),
            }
        })
    };
    ctx.say(format!(
        "connect: opening {sockets} sockets ({c} conversations x {m}), at most {} at a time",
        plan.concurrency
    ));
    let dialed = dial(&plan, sockets, spec, &channels, &dial_live, &ctx.stop).await;
    drop(channels);
    let subscribed = dialed.subscribed.ok;
    if subscribed < sockets as u64 {
        let _ = stop_readers.send(true);
        progress.finish().await;
        bail!(
            "only {subscribed} of {sockets} sockets subscribed ({} failed; e.g. {}); \
             if the server stopped accepting sockets, its RLIMIT_NOFILE is the likely cause",
            dialed.subscribed.errors,
            dialed.failure_examples.first().cloned().unwrap_or_default()
        );
    }
    let setup = Setup {
        users: users.len(),
        conversation_ids: conversations.clone(),
        seeded_messages: 0,
        seconds: setup_start.elapsed().as_secs_f64(),
    };

    // Sends.
    let urls = Arc::new(api.messages_urls(&conversations));
    let users = Arc::new(users);
    let run: Arc<str> = Arc::from(run);
    let date = crate::now_rfc3339();
    phase.store(SENDING, Ordering::Relaxed);
    let budget = Budget::new(duration, args.run.requests, ctx.stop.clone());
    let schedule = Schedule {
        start: tokio::time::Instant::now(),
        interval: Duration::from_secs_f64(1.0 / args.rate),
        senders: senders as u64,
    };
    let pid = args.server_pid;
    let (server_cpu_0, client_cpu_0) = (
        pid.and_then(|p| procfs::cpu_seconds(Some(p))),
        procfs::cpu_seconds(None),
    );
    let start = Instant::now();
    let results = run_workers(senders, |s| {
        let sender = Sender {
            api: api.clone(),
            users: users.clone(),
            urls: urls.clone(),
            index: s,
            conversations: c,
            run: run.clone(),
            content_len: args.content_bytes as usize,
            schedule,
            clock: clock.clone(),
            live: live.clone(),
        };
        sender.run(budget.clone())
    })
    .await?;
    let elapsed = start.elapsed().as_secs_f64();

    // Drain: wait for what is still on its way.
    phase.store(DRAINING, Ordering::Relaxed);
    let expected_now = live.acked.load(Ordering::Relaxed) * m as u64;
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain);
    while !ctx.stopped()
        && Instant::now() < drain_until
        && live.deliveries.load(Ordering::Relaxed) < expected_now
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop_readers.send(true);
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.context("a reader task panicked")?);
    }
    progress.finish().await;
    let client = procfs::memory(None).unwrap_or_default();
    let (server_cpu_1, client_cpu_1) = (
        pid.and_then(|p| procfs::cpu_seconds(Some(p))),
        procfs::cpu_seconds(None),
    );
    let server_memory = pid.and_then(|p| procfs::memory(Some(p)).ok());

    // Account for every delivery.
    let mut latency = Recorder::default();
    let mut service = Recorder::default();
    let mut acked_bits = vec![Vec::<u64>::new(); c];
    let mut acked_per_conversation = vec![0u64; c];
    let mut late = 0;
    for r in &results {
        latency.merge(&r.latency);
        service.merge(&r.service);
        late += r.late;
        for &k in &r.acked {
            let (conversation, bit) = (k % c, k / c);
            let bits = &mut acked_bits[conversation];
            if bit / 64 >= bits.len() {
                bits.resize(bit / 64 + 1, 0);
            }
            bits[bit / 64] |= 1 << (bit % 64);
            acked_per_conversation[conversation] += 1;
        }
    }
    let mut delivery = new_histogram();
    let mut fanout = FanoutReport {
        conversations: c,
        members: m,
        sockets,
        connect_seconds: (dialed.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        messages_sent: live.sent.load(Ordering::Relaxed),
        messages_acked: live.acked.load(Ordering::Relaxed),
        client: ClientMemory {
            vm_rss_kib: client.vm_rss_kib,
            vm_hwm_kib: client.vm_hwm_kib,
            nofile_soft: ctx.nofile.soft,
            nofile_hard: ctx.nofile.hard,
            cpu_s: procfs::cpu_spent(client_cpu_0, client_cpu_1),
        },
        server_pid: pid,
        server_cpu_s: procfs::cpu_spent(server_cpu_0, server_cpu_1),
        server_vm_rss_kib: server_memory.map(|m| m.vm_rss_kib),
        server_vm_hwm_kib: server_memory.map(|m| m.vm_hwm_kib),
        ..FanoutReport::default()
    };
    let mut last_delivery: Option<Instant> = None;
    let mut untimed = 0;
    let mut sockets_seen = vec![0u64; c];
    for d in &all {
        delivery.add(&d.latency).expect("histograms share bounds");
        fanout.received_deliveries += d.received;
        fanout.duplicated += d.duplicated;
        fanout.misrouted += d.misrouted;
        fanout.foreign += d.foreign;
        untimed += d.untimed;
        last_delivery = last_delivery.max(d.last_delivery);
        for (k, v) in &d.closed_by {
            *fanout.closed_by.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &d.disconnects {
            *fanout.disconnects.entry(k.clone()).or_insert(0) += v;
        }
        for socket in d.sockets.iter().flatten() {
            sockets_seen[socket.conversation] += 1;
            let (lost, unacked) = account(&acked_bits[socket.conversation], &socket.seen);
            fanout.lost += lost;
            fanout.delivered_without_ack += unacked;
        }
    }
    fanout.expected_deliveries = acked_per_conversation
        .iter()
        .zip(&sockets_seen)
        .map(|(acked, sockets)| acked * sockets)
        .sum();
    fanout.sockets_closed = fanout.closed_by.values().sum();
    let window = last_delivery.map_or(0.0, |t| t.duration_since(start).as_secs_f64());
    fanout.delivery_window_s = (window * 1000.0).round() / 1000.0;
    fanout.deliveries_per_s =
        (per_second(fanout.received_deliveries, window) * 10.0).round() / 10.0;
    fanout.delivery_latency_us = LatencySummary::of(&delivery);
    fanout.passed = fanout.lost == 0 && fanout.duplicated == 0 && fanout.misrouted == 0;

    let delivery_op = Operation {
        name: "delivery (send->socket)".to_owned(),
        ok: fanout.received_deliveries,
        errors: fanout.lost,
        rate_per_s: fanout.deliveries_per_s,
        latency_us: fanout.delivery_latency_us,
        errors_by_status: [("lost".to_owned(), fanout.lost)]
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect(),
    };
    let operations = vec![
        Operation::new("send (from due time)", &latency, elapsed),
        Operation::new("send (service time)", &service, elapsed),
        delivery_op,
    ];
    let mut report = Report::new(
        "fanout",
        date,
        api.target().as_str(),
        args.parameters(),
        setup,
        elapsed,
        "message",
        &latency,
        operations,
    );
    report.notes.push(format!(
        "delivery latency runs from just before a send's request goes out to the frame's arrival at \
         the socket's reader (client scheduling included); open-loop sends: {late} of {} started late \
         and are timed from their due time on the first send line",
        latency.total()
    ));
    let achieved = per_second(latency.total(), elapsed);
    if achieved < args.rate * 0.95 && !ctx.stopped() && args.run.requests.is_none() {
        report.notes.push(format!(
            "offered {} msgs/s but sent only {achieved:.1} msgs/s: the server (or the client) fell behind; \
             more senders (-c) may help",
            args.rate
        ));
    }
    if untimed > 0 {
        report
            .notes
            .push(format!("{untimed} deliveries arrived without a send stamp"));
    }
    if !fanout.passed && fanout.lost > 0 && !ctx.stopped() {
        report.notes.push(format!(
            "deliveries were still missing {}s after the last send (--drain)",
            args.drain
        ));
    }
    report.fanout = Some(fanout);
    Ok(report)
}

struct Sender {
    api: Api,
    users: Arc<Vec<Session>>,
    urls: Arc<Vec<String>>,
    index: usize,
    conversations: usize,
    run: Arc<str>,
    content_len: usize,
    schedule: Schedule,
    clock: Arc<Clock>,
    live: Arc<FanoutLive>,
}

struct SenderResult {
    /// From the due time when the send started late, else from its start.
    latency: Recorder,
    service: Recorder,
    acked: Vec<usize>,
    late: u64,
}

impl Sender {
    async fn run(self, budget: Arc<Budget>) -> SenderResult {
        let mut result = SenderResult {
            latency: Recorder::default(),
            service: Recorder::default(),
            acked: Vec::new(),
            late: 0,
        };
        let mut n = 0u64;
        while budget.take() {
            let k = self.index as u64 + n * self.schedule.senders;
            if k >= self.clock.sent_at.len() as u64 {
                break;
            }
            let due = self.schedule.due(self.index as u64, n);
            if due >= budget.deadline() {
                break;
            }
            let mut behind_since = None;
            if tokio::time::Instant::now() < due {
                tokio::time::sleep_until(due).await;
            } else {
                behind_since = Some(due);
                result.late += 1;
            }
            let k = k as usize;
            let conversation = k % self.conversations;
            let author = &self.users[(k / self.conversations) % self.users.len()];
            let body = json!({
                "content": content(&self.run, k, self.content_len),
                "client_message_id": format!("{}-{k}", self.run),
            });
            let request = self.api.post_json(&self.urls[conversation], author, &body);
            self.clock.stamp(k);
            let (outcome, service_time) = Api::timed(request).await;
            self.live.sent.fetch_add(1, Ordering::Relaxed);
            result.service.record(outcome, service_time);
            result.latency.record(
                outcome,
                behind_since.map_or(service_time, |due| due.elapsed()),
            );
            if outcome.is_success() {
                self.live.acked.fetch_add(1, Ordering::Relaxed);
                result.acked.push(k);
            } else {
                self.live.errors.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_carries_the_message_number() {
        let c = content("abcdefghij", 12_345, 64);
        assert_eq!(c.len(), 64);
        assert!(c.starts_with("fo abcdefghij 12345 x"));
        let frame = format!(
            r#"{{"identifier":"x","message":{{"type":"new_message","message":{{"id":1,"content":"{c}","seq":3}}}}}}"#
        );
        assert_eq!(message_number(&frame, "fo abcdefghij "), Some(12_345));
        assert_eq!(message_number(&frame, "fo otherrun00 "), None);
        assert_eq!(message_number("fo r 7", "fo r "), Some(7));
        assert_eq!(message_number("fo r x", "fo r "), None);
    }

    fn deliveries(readers: usize, conversations: usize, messages: usize) -> Deliveries {
        Deliveries::new(
            readers,
            conversations,
            "fo run ".into(),
            Arc::new(Clock::new(messages)),
            Arc::default(),
        )
    }

    fn frame(k: usize) -> String {
        format!(
            r#"{{"identifier":"i","message":{{"type":"new_message","message":{{"content":"fo run {k} xx"}}}}}}"#
        )
    }

    #[test]
    fn counts_deliveries_duplicates_and_misroutes() {
        // 2 readers, 3 conversations: slot 4 is entry 2 of reader 0 and
        // belongs to conversation 1.
        let mut d = deliveries(2, 3, 100);
        let now = Instant::now();
        d.opened(4, now);
        d.clock.stamp(1);
        d.clock.stamp(4);
        d.text(4, &frame(1), Instant::now());
        d.text(4, &frame(4), Instant::now());
        d.text(4, &frame(4), Instant::now());
        d.text(4, &frame(2), Instant::now());
        d.text(4, r#"{"type":"ping","message":1}"#, Instant::now());
        d.text(
            4,
            r#"{"identifier":"i","message":{"type":"new_message","message":{"content":"hello"}}}"#,
            Instant::now(),
        );
        d.text(
            4,
            r#"{"reason":"slow_consumer","reconnect":true,"type":"disconnect"}"#,
            Instant::now(),
        );
        assert_eq!(d.received, 2);
        assert_eq!(d.duplicated, 1);
        assert_eq!(d.misrouted, 1);
        assert_eq!(d.foreign, 1);
        assert_eq!(d.untimed, 0);
        assert_eq!(d.latency.len(), 2);
        assert_eq!(d.disconnects.get("slow_consumer"), Some(&1));
        assert_eq!(d.live.deliveries.load(Ordering::Relaxed), 2);
        let socket = d.sockets[2].as_ref().unwrap();
        assert_eq!(socket.conversation, 1);
        // Messages 1 and 4 are bits 0 and 1 of conversation 1.
        assert_eq!(socket.seen, vec![0b11]);
    }

    #[test]
    fn accounting_of_lost_and_unacknowledged() {
        assert_eq!(account(&[0b1011], &[0b0011]), (1, 0));
        assert_eq!(account(&[0b0011], &[0b0111]), (0, 1));
        assert_eq!(account(&[0b1, 0b1], &[0b1]), (1, 0));
        assert_eq!(account(&[], &[0, 0b1]), (0, 1));
    }

    #[test]
    fn sockets_map_to_conversations_and_users() {
        let spec = Spec {
            conversations: 3,
            tokens: vec!["a".into(), "b".into()],
            identifiers: (0..3).map(|i| vec![format!("c{i}")]).collect(),
        };
        assert_eq!(spec.identifiers(4), ["c1".to_owned()]);
        assert_eq!(spec.token(0), "a");
        assert_eq!(spec.token(2), "a");
        assert_eq!(spec.token(3), "b");
        assert_eq!(spec.token(6), "a");
    }
}
