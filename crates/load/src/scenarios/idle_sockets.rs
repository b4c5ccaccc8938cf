//! `idle-sockets`: how many WebSockets the server holds, how fast it accepts
//! them, and what each costs it in memory.
//!
//! Setup: `--users` users and one group conversation with all of them.
//! Measured: `--sockets` sockets opened at most `--connect-concurrency` at a
//! time (spread over local addresses 127.0.0.x when many), each subscribed
//! to the conversation (and PresenceChannel / UserChannel on request); then,
//! after `--settle` seconds, they are held for `--hold` seconds reading
//! heartbeats and answering nothing. With `--server-pid` the server's VmRSS
//! is read before the first connect, during connecting, after settling, at
//! the end of the hold and after closing: memory per socket is
//! (after − before) / sockets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::{mpsc, watch};

use super::dial::{dial, DialLive, DialPlan, SocketSpec};
use super::{create_group, register_users, run_id, Ctx};
use crate::cli::IdleSocketsArgs;
use crate::procfs;
use crate::progress::{trim_float, Progress};
use crate::report::{
    format_kib, Checkpoint, ClientMemory, Operation, Report, ServerMemory, Setup, SocketsReport,
};
use crate::stats::format_rate;
use crate::ws::{self, Endpoint, Frames};

/// Client read buffer per socket: idle sockets only see small frames.
const READ_BUFFER: usize = 1024;
/// An Action Cable client reconnects after this long without a frame.
const STALE_AFTER_MS: u32 = 6_000;
/// Sockets per local address before spreading over more of them.
const SOCKETS_PER_ADDRESS: usize = 8_000;

/// Sockets one local address may hold: half the ephemeral port range, at most
/// [`SOCKETS_PER_ADDRESS`].
pub fn sockets_per_address() -> usize {
    procfs::ephemeral_port_range().map_or(SOCKETS_PER_ADDRESS, |(lo, hi)| {
        (usize::from(hi.saturating_sub(lo)) / 2).clamp(1, SOCKETS_PER_ADDRESS)
    })
}
/// Descriptors the process needs besides the sockets.
const SPARE_FDS: u64 = 64;

struct Spec {
    tokens: Vec<String>,
    identifiers: Vec<String>,
}

impl SocketSpec for Spec {
    fn token(&self, slot: usize) -> &str {
        &self.tokens[slot % self.tokens.len()]
    }

    fn identifiers(&self, _slot: usize) -> &[String] {
        &self.identifiers
    }
}

/// Per-socket bookkeeping of one reader: when a frame last arrived and the
/// longest silence during the hold. Socket `slot` is entry `slot / readers`.
struct Idle {
    readers: usize,
    epoch: Instant,
    /// Milliseconds since `epoch` when the hold started, plus one; 0 before.
    hold_from: Arc<AtomicU64>,
    last_ms: Vec<u32>,
    max_gap_ms: Vec<u32>,
    open: Vec<bool>,
    frames_during_hold: u64,
    closed_by: BTreeMap<String, u64>,
    disconnects: BTreeMap<String, u64>,
    closed: Arc<AtomicU64>,
}

impl Idle {
    fn ms(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u32::MAX)
    }

    fn hold_from(&self) -> Option<u32> {
        match self.hold_from.load(Ordering::Relaxed) {
            0 => None,
            v => Some(u32::try_from(v - 1).unwrap_or(u32::MAX)),
        }
    }

    /// Records the silence of socket `i` up to `now_ms` (during the hold only).
    fn gap(&mut self, i: usize, now_ms: u32) {
        if let Some(hold) = self.hold_from() {
            if now_ms >= hold {
                // Saturating: the readers may still process a frame or two
                // stamped after the end of the hold.
                let gap = now_ms.saturating_sub(self.last_ms[i].max(hold));
                self.max_gap_ms[i] = self.max_gap_ms[i].max(gap);
            }
        }
    }

    /// At the end of the hold: the silence of every socket still open until
    /// `end`.
    fn finish(&mut self, end: Instant) {
        let end_ms = self.ms(end);
        for i in 0..self.open.len() {
            if self.open[i] {
                self.gap(i, end_ms);
            }
        }
    }
}

impl Frames for Idle {
    fn opened(&mut self, slot: usize, at: Instant) {
        let i = slot / self.readers;
        if i >= self.open.len() {
            self.last_ms.resize(i + 1, 0);
            self.max_gap_ms.resize(i + 1, 0);
            self.open.resize(i + 1, false);
        }
        self.last_ms[i] = self.ms(at);
        self.open[i] = true;
    }

    fn text(&mut self, slot: usize, text: &str, at: Instant) {
        let i = slot / self.readers;
        let now = self.ms(at);
        self.gap(i, now);
        self.last_ms[i] = now;
        if self.hold_from().is_some_and(|hold| now >= hold) {
            self.frames_during_hold += 1;
        }
        if is_disconnect(text) {
            *self.disconnects.entry(disconnect_reason(text)).or_default() += 1;
        }
    }

    fn closed(&mut self, slot: usize, how: &'static str, _at: Instant) {
        let i = slot / self.readers;
        self.open[i] = false;
        *self.closed_by.entry(how.to_owned()).or_default() += 1;
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A `disconnect` control frame (not channel data that mentions one).
pub fn is_disconnect(text: &str) -> bool {
    !text.starts_with(r#"{"identifier""#) && text.contains(r#""type":"disconnect""#)
}

/// The `reason` of a `disconnect` frame.
pub fn disconnect_reason(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

const CONNECTING: u8 = 0;
const SETTLING: u8 = 1;
const HOLDING: u8 = 2;
const CLOSING: u8 = 3;

/// RSS of the server over the connects, for the marginal cost per socket.
fn marginal_per_socket(checkpoints: &[Checkpoint], end: Checkpoint) -> Option<f64> {
    let half = checkpoints
        .iter()
        .find(|c| c.sockets >= end.sockets / 2 && c.sockets > 0)?;
    let sockets = end.sockets.checked_sub(half.sockets)?;
    if sockets < end.sockets / 4 || sockets == 0 {
        return None;
    }
    let kib = end.vm_rss_kib as f64 - half.vm_rss_kib as f64;
    Some(round2(kib / sockets as f64))
}

/// The server's memory once setup has left no trace: registration hashes a
/// password with Argon2 on a blocking thread, whose allocator arena keeps
/// those MiB until the thread exits (tokio: after 10 s idle). Waits until the
/// thread count drops below what it was after setup, then for a steady RSS;
/// at most `limit`.
async fn quiet_memory(ctx: &Ctx, pid: u32, limit: Duration) -> Result<procfs::Memory> {
    let read = || procfs::memory(Some(pid)).with_context(|| format!("reading /proc/{pid}/status"));
    let start = Instant::now();
    let threads = read()?.threads;
    ctx.say(format!(
        "memory: waiting up to {}s for the server to return setup memory (its {threads} threads to shrink)",
        trim_float(limit.as_secs_f64())
    ));
    while start.elapsed() < limit && !ctx.stopped() {
        if read()?.threads < threads {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    steady_memory(pid).await
}

/// The server's memory once its RSS stops moving (two readings 100 ms apart
/// within 64 KiB; at most 3 s): right after setup it may still be returning
/// the password hashes' memory.
async fn steady_memory(pid: u32) -> Result<procfs::Memory> {
    let read = || procfs::memory(Some(pid)).with_context(|| format!("reading /proc/{pid}/status"));
    let mut last = read()?;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = read()?;
        if now.vm_rss_kib.abs_diff(last.vm_rss_kib) <= 64 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

pub async fn run(ctx: &Ctx, args: &IdleSocketsArgs) -> Result<Report> {
    let n = args.sockets as usize;
    ctx.check_nofile(n as u64 + SPARE_FDS, &format!("--sockets {n}"))?;
    let pid = args.server_pid;
    let mut notes = Vec::new();
    if let Some(pid) = pid {
        procfs::memory(Some(pid)).with_context(|| {
            format!("--server-pid {pid}: cannot read /proc/{pid}/status (is it the server's PID, on this machine?)")
        })?;
        if let Some((soft, _)) = procfs::nofile_limit_of(pid) {
            if soft < n as u64 + SPARE_FDS {
                let note = format!(
                    "the server's open-file limit (RLIMIT_NOFILE soft {soft}) is below --sockets {n} plus \
                     its own descriptors: it will stop accepting sockets near {soft}; start it from a shell \
                     with a raised `ulimit -n`"
                );
                ctx.say(format!("warning: {note}"));
                notes.push(note);
            }
        }
    }
    let api = &ctx.api;
    let endpoint = Endpoint::of(api.target()).await?;
    let per_address = sockets_per_address();
    let sources = ws::source_addresses(endpoint.addr, n, args.dial.source_addrs, per_address);

    let setup_start = Instant::now();
    let run = run_id();
    let users = register_users(ctx, args.users as usize, &run).await?;
    let conversation = create_group(ctx, &users, &format!("load idle-sockets {run}")).await?;
    let mut identifiers = vec![ws::conversation_identifier(conversation)];
    let mut channels = vec!["ConversationChannel".to_owned()];
    if args.presence {
        identifiers.push(ws::PRESENCE_IDENTIFIER.to_owned());
        channels.push("PresenceChannel".to_owned());
    }
    if args.user_channel {
        identifiers.push(ws::USER_IDENTIFIER.to_owned());
        channels.push("UserChannel".to_owned());
    }
    let spec = Arc::new(Spec {
        tokens: users.iter().map(|u| u.token().to_owned()).collect(),
        identifiers,
    });
    let setup = Setup {
        users: users.len(),
        conversation_ids: vec![conversation],
        seeded_messages: 0,
        seconds: setup_start.elapsed().as_secs_f64(),
    };
    drop(users);

    // Readers: one per runtime thread, each multiplexing its share of sockets.
    let readers = ctx.threads.max(1);
    let epoch = Instant::now();
    let hold_from = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let (stop_readers, stop_rx) = watch::channel(false);
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let idle = Idle {
            readers,
            epoch,
            hold_from: hold_from.clone(),
            last_ms: Vec::new(),
            max_gap_ms: Vec::new(),
            open: Vec::new(),
            frames_during_hold: 0,
            closed_by: BTreeMap::new(),
            disconnects: BTreeMap::new(),
            closed: closed.clone(),
        };
        tasks.push(tokio::spawn(ws::read_sockets(rx, stop_rx.clone(), idle)));
    }

    let plan = DialPlan {
        endpoint,
        sources: sources.clone(),
        concurrency: args.dial.connect_concurrency as usize,
        timeout: ctx.timeout,
        within: args.dial.connect_within(),
        config: ws::config(READ_BUFFER),
    };
    if !sources.is_empty() {
        ctx.say(format!(
            "connect: spreading {n} sockets over {} local addresses ({} ..)",
            sources.len(),
            sources[0]
        ));
    }
    let live = Arc::new(DialLive::default());
    let phase = Arc::new(AtomicU8::new(CONNECTING));
    let checkpoints = Arc::new(Mutex::new(Vec::<Checkpoint>::new()));
    let hold = Duration::from_secs_f64(args.hold);

    let before = match pid {
        Some(p) => Some(quiet_memory(ctx, p, Duration::from_secs_f64(args.baseline_wait)).await?),
        None => None,
    };
    let fds_before = pid.and_then(|p| procfs::open_fds(Some(p)));
    let sampler = pid.map(|pid| {
        let (live, checkpoints, phase) = (live.clone(), checkpoints.clone(), phase.clone());
        tokio::spawn(async move {
            while phase.load(Ordering::Relaxed) == CONNECTING {
                let sockets = live.subscribed.load(Ordering::Relaxed);
                if let Ok(m) = procfs::memory(Some(pid)) {
                    let cp = Checkpoint {
                        sockets,
                        vm_rss_kib: m.vm_rss_kib,
                    };
                    let mut checkpoints = checkpoints.lock().unwrap_or_else(|e| e.into_inner());
                    if checkpoints
                        .last()
                        .is_none_or(|last| last.sockets != sockets)
                    {
                        checkpoints.push(cp);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let progress = {
        let (live, phase, closed, hold_from) = (
            live.clone(),
            phase.clone(),
            closed.clone(),
            hold_from.clone(),
        );
        let mut last = (Instant::now(), 0u64);
        Progress::with_line(ctx.chatty, move |elapsed| {
            let subscribed = live.subscribed.load(Ordering::Relaxed);
            let failed = live.failed.load(Ordering::Relaxed);
            let server = pid
                .and_then(|p| procfs::memory(Some(p)).ok())
                .map(|m| format!("  server RSS {}", format_kib(m.vm_rss_kib)))
                .unwrap_or_default();
            match phase.load(Ordering::Relaxed) {
                CONNECTING => {
                    let now = Instant::now();
                    let window = now.duration_since(last.0).as_secs_f64().max(1e-9);
                    let rate = subscribed.saturating_sub(last.1) as f64 / window;
                    last = (now, subscribed);
                    format!(
                        "idle-sockets  connecting {:.1}s  {subscribed}/{n} subscribed  {failed} failed  {}{server}",
                        elapsed.as_secs_f64(),
                        format_rate(rate)
                    )
                }
                SETTLING => format!(
                    "idle-sockets  settling  {subscribed} subscribed  {failed} failed{server}"
                ),
                HOLDING => {
                    let now = epoch.elapsed().as_millis() as u64 + 1;
                    let held = now.saturating_sub(hold_from.load(Ordering::Relaxed));
                    let closed = closed.load(Ordering::Relaxed);
                    format!(
                        "idle-sockets  holding {:.1}s/{}s  {} open  {closed} closed{server}",
                        held as f64 / 1000.0,
                        trim_float(hold.as_secs_f64()),
                        subscribed.saturating_sub(closed)
                    )
                }
                _ => "idle-sockets  closing".to_owned(),
            }
        })
    };

    let date = crate::now_rfc3339();
    ctx.say(format!(
        "connect: opening {n} sockets, at most {} at a time",
        plan.concurrency
    ));
    let overflows_before = procfs::listen_overflows();
    let cpu = |pid: Option<u32>| procfs::cpu_seconds(pid);
    let (server_cpu_0, client_cpu_0) = (pid.and_then(|p| cpu(Some(p))), cpu(None));
    let dialed = dial(&plan, n, spec, &senders, &live, &ctx.stop).await;
    let server_cpu_1 = pid.and_then(|p| cpu(Some(p)));
    drop(senders);
    let listen_overflows = overflows_before
        .zip(procfs::listen_overflows())
        .map(|(before, after)| after.saturating_sub(before));
    phase.store(SETTLING, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }
    let subscribed = dialed.subscribed.ok;
    let failed = dialed.subscribed.errors;
    let connect_seconds = dialed.elapsed.as_secs_f64();

    ctx.sleep(Duration::from_secs_f64(args.settle)).await;
    let after = match pid {
        Some(p) => Some(steady_memory(p).await?),
        None => None,
    };
    let fds_after = pid.and_then(|p| procfs::open_fds(Some(p)));
    let client_after = procfs::memory(None).unwrap_or_default();

    phase.store(HOLDING, Ordering::Relaxed);
    let hold_start = Instant::now();
    let server_cpu_2 = pid.and_then(|p| cpu(Some(p)));
    hold_from.store(
        hold_start.duration_since(epoch).as_millis() as u64 + 1,
        Ordering::Relaxed,
    );
    ctx.sleep(hold).await;
    let hold_end = Instant::now();
    let (server_cpu_3, client_cpu_1) = (pid.and_then(|p| cpu(Some(p))), cpu(None));
    let end = pid.map(|p| procfs::memory(Some(p))).transpose()?;
    let client_end = procfs::memory(None).unwrap_or_default();
    phase.store(CLOSING, Ordering::Relaxed);
    let _ = stop_readers.send(true);
    let mut idles = Vec::new();
    for task in tasks {
        idles.push(task.await.context("a reader task panicked")?);
    }
    progress.finish().await;
    // Closing the sockets happened as the readers returned; give the server a
    // moment to run its disconnect hooks and free what it frees.
    let after_close = match pid {
        Some(p) => {
            ctx.say("closed every socket; reading the server's memory again in 3 s");
            tokio::time::sleep(Duration::from_secs(3)).await;
            procfs::memory(Some(p)).ok().map(|m| m.vm_rss_kib)
        }
        None => None,
    };

    let mut closed_by = BTreeMap::new();
    let mut disconnects = BTreeMap::new();
    let mut frames_during_hold = 0;
    let mut max_gap = 0u32;
    let mut stale = 0u64;
    for idle in &mut idles {
        idle.finish(hold_end);
        frames_during_hold += idle.frames_during_hold;
        for (k, v) in &idle.closed_by {
            *closed_by.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &idle.disconnects {
            *disconnects.entry(k.clone()).or_insert(0) += v;
        }
        for &gap in &idle.max_gap_ms {
            max_gap = max_gap.max(gap);
            stale += u64::from(gap > STALE_AFTER_MS);
        }
    }
    let closed_early: u64 = closed_by.values().sum();

    let server = match (pid, before, after, end) {
        (Some(pid), Some(before), Some(after), Some(end)) => {
            let delta = after.vm_rss_kib as f64 - before.vm_rss_kib as f64;
            let end_point = Checkpoint {
                sockets: subscribed,
                vm_rss_kib: after.vm_rss_kib,
            };
            let checkpoints = checkpoints
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let (nofile_soft, nofile_hard) = procfs::nofile_limit_of(pid).unzip();
            Some(ServerMemory {
                pid,
                command: procfs::command_name(pid),
                vm_rss_before_kib: before.vm_rss_kib,
                vm_rss_after_kib: after.vm_rss_kib,
                vm_rss_end_kib: end.vm_rss_kib,
                vm_hwm_kib: end.vm_hwm_kib,
                per_socket_kib: round2(delta / subscribed.max(1) as f64),
                marginal_per_socket_kib: marginal_per_socket(&checkpoints, end_point),
                vm_rss_after_close_kib: after_close,
                fds_before,
                fds_after,
                nofile_soft,
                nofile_hard,
                cpu_connect_s: procfs::cpu_spent(server_cpu_0, server_cpu_1),
                cpu_hold_s: procfs::cpu_spent(server_cpu_2, server_cpu_3),
            })
        }
        _ => None,
    };

    let operations = vec![
        Operation::new("upgrade (101)", &dialed.upgrade, connect_seconds),
        Operation::new("welcome", &dialed.welcome, connect_seconds),
        Operation::new("subscribed", &dialed.subscribed, connect_seconds),
    ];
    let mut report = Report::new(
        "idle-sockets",
        date,
        api.target().as_str(),
        args.parameters(),
        setup,
        connect_seconds,
        "socket",
        &dialed.subscribed,
        operations,
    );
    report.notes = notes;
    report.notes.push(
        "latencies are from the start of each attempt (TCP connect) to the 101 response, the \
         welcome frame and the last confirm_subscription"
            .to_owned(),
    );
    let errors = dialed.subscribed.errors_by_status();
    if errors.contains_key("client_nofile") {
        report.notes.push(format!(
            "the load tool ran out of file descriptors (RLIMIT_NOFILE {}): raise `ulimit -Hn`",
            ctx.nofile.soft
        ));
    }
    if errors.contains_key("no_local_port") {
        report.notes.push(
            "ran out of local ports: spread the sockets over more source addresses (--source-addrs)"
                .to_owned(),
        );
    }
    if failed > 0 {
        let limit = server.as_ref().and_then(|s| s.nofile_soft);
        report.notes.push(format!(
            "{failed} sockets failed; when a server stops accepting sockets at some count (timeouts or \
             resets at the upgrade step) the likely cause is its RLIMIT_NOFILE{}: start it from a shell \
             with `ulimit -n` raised",
            limit.map(|l| format!(" (soft limit {l})")).unwrap_or_default()
        ));
    }
    if listen_overflows.is_some_and(|n| n > 0) {
        report.notes.push(
            "the kernel dropped SYNs because a listen queue was full (those connects wait ~1 s for \
             the retransmit): the server's accept backlog is smaller than --connect-concurrency, or \
             it accepts too slowly (tokio's TcpListener::bind listens with a backlog of 128)"
                .to_owned(),
        );
    }
    if let Some(m) = &server {
        if let (Some(fds), Some(soft)) = (m.fds_after, m.nofile_soft) {
            if fds as u64 + 8 >= soft {
                report.notes.push(format!(
                    "the server holds {fds} descriptors, at its RLIMIT_NOFILE ({soft}): it cannot accept \
                     more sockets; restart it from a shell with a higher `ulimit -n`"
                ));
            }
        }
        if subscribed > 0 && m.per_socket_kib < 0.5 {
            report.notes.push(
                "the server's RSS barely grew or shrank while sockets were added: it was still \
                 returning memory from before (setup, an earlier run); measure on a freshly started \
                 server and keep --baseline-wait above its blocking threads' 10 s keep-alive"
                    .to_owned(),
            );
        }
    }
    if pid.is_none() {
        report
            .notes
            .push("no --server-pid: the server's memory per socket was not measured".to_owned());
    }
    if dialed.not_attempted > 0 && !ctx.stopped() {
        report.notes.push(format!(
            "{} sockets were not attempted: --connect-within {}s passed",
            dialed.not_attempted, args.dial.connect_within
        ));
    }
    report.sockets = Some(SocketsReport {
        requested: n,
        subscribed,
        failed,
        not_attempted: dialed.not_attempted,
        connect_seconds: (connect_seconds * 1000.0).round() / 1000.0,
        connect_rate_per_s: (subscribed as f64 / connect_seconds.max(1e-9) * 10.0).round() / 10.0,
        channels,
        source_addrs: sources.iter().map(|a| a.to_string()).collect(),
        held_s: (hold_end.duration_since(hold_start).as_secs_f64() * 10.0).round() / 10.0,
        closed_early,
        closed_by,
        disconnects,
        frames_during_hold,
        max_frame_gap_ms: u64::from(max_gap),
        stale_sockets: stale,
        failure_examples: dialed.failure_examples,
        listen_overflows,
        server,
        client: ClientMemory {
            vm_rss_kib: client_after.vm_rss_kib,
            vm_hwm_kib: client_end.vm_hwm_kib,
            nofile_soft: ctx.nofile.soft,
            nofile_hard: ctx.nofile.hard,
            cpu_s: procfs::cpu_spent(client_cpu_0, client_cpu_1),
        },
        checkpoints: checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    });
    if subscribed == 0 && !ctx.stopped() {
        bail!(
            "no socket could be opened (e.g. {})",
            report
                .sockets
                .as_ref()
                .and_then(|s| s.failure_examples.first().cloned())
                .unwrap_or_default()
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Idle {
        Idle {
            readers: 2,
            epoch: Instant::now(),
            hold_from: Arc::default(),
            last_ms: Vec::new(),
            max_gap_ms: Vec::new(),
            open: Vec::new(),
            frames_during_hold: 0,
            closed_by: BTreeMap::new(),
            disconnects: BTreeMap::new(),
            closed: Arc::default(),
        }
    }

    #[test]
    fn gaps_count_only_during_the_hold() {
        let mut idle = idle();
        let t = |ms| idle_epoch_plus(&idle, ms);
        let (t0, t5, t10, t13, t20, t20_005) =
            (t(0), t(5_000), t(10_000), t(13_000), t(20_000), t(20_005));
        idle.opened(1, t0); // slot 1 -> entry 0 of this reader
        idle.opened(3, t0); // entry 1
        idle.text(1, r#"{"type":"ping","message":1}"#, t5);
        // Before the hold: a 5 s gap is not recorded.
        assert_eq!(idle.max_gap_ms, vec![0, 0]);
        idle.hold_from.store(10_000 + 1, Ordering::Relaxed);
        idle.text(1, r#"{"type":"ping","message":2}"#, t13);
        assert_eq!(idle.max_gap_ms[0], 3_000);
        assert_eq!(idle.frames_during_hold, 1);
        idle.text(
            3,
            r#"{"type":"disconnect","reason":"slow_consumer","reconnect":true}"#,
            t10,
        );
        idle.closed(3, "eof", t10);
        idle.finish(t20);
        assert_eq!(idle.max_gap_ms, vec![7_000, 0]);
        // A frame read just after the end of the hold was taken: no wrap.
        idle.text(1, r#"{"type":"ping","message":3}"#, t20_005);
        idle.finish(t20);
        assert_eq!(idle.max_gap_ms, vec![7_005, 0]);
        assert_eq!(idle.disconnects.get("slow_consumer"), Some(&1));
        assert_eq!(idle.closed_by.get("eof"), Some(&1));
        assert_eq!(idle.closed.load(Ordering::Relaxed), 1);
    }

    fn idle_epoch_plus(idle: &Idle, ms: u64) -> Instant {
        idle.epoch + Duration::from_millis(ms)
    }

    #[test]
    fn marginal_cost_uses_the_second_half() {
        let cps = [
            Checkpoint {
                sockets: 0,
                vm_rss_kib: 50_000,
            },
            Checkpoint {
                sockets: 400,
                vm_rss_kib: 52_000,
            },
            Checkpoint {
                sockets: 500,
                vm_rss_kib: 54_000,
            },
        ];
        let end = Checkpoint {
            sockets: 1000,
            vm_rss_kib: 58_000,
        };
        assert_eq!(marginal_per_socket(&cps, end), Some(8.0));
        assert_eq!(marginal_per_socket(&cps[..1], end), None);
    }
}
