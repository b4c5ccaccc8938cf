//! The result of a run: a human summary table (stdout) and the same data as
//! JSON (`--json FILE`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::stats::{format_rate, latency_header, latency_row, LatencySummary, Recorder};
use crate::verify::{ConversationCheck, DeliveryCheck};

/// One kind of request within a scenario (e.g. `history`, `me`, `send`).
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub name: String,
    pub ok: u64,
    pub errors: u64,
    /// Completed requests of this kind per second of the measured window.
    pub rate_per_s: f64,
    /// Latency of the successful requests.
    pub latency_us: LatencySummary,
    pub errors_by_status: BTreeMap<String, u64>,
}

impl Operation {
    pub fn new(name: &str, recorder: &Recorder, elapsed_s: f64) -> Operation {
        Operation {
            name: name.to_owned(),
            ok: recorder.ok,
            errors: recorder.errors,
            rate_per_s: round1(per_second(recorder.total(), elapsed_s)),
            latency_us: LatencySummary::of(&recorder.latency),
            errors_by_status: recorder.errors_by_status(),
        }
    }
}

/// What the scenario prepared before measuring.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Setup {
    pub users: usize,
    pub conversation_ids: Vec<i64>,
    pub seeded_messages: usize,
    pub seconds: f64,
}

/// The post-run read-back of a write scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub passed: bool,
    pub seq_gap_free: bool,
    pub total: DeliveryCheck,
    pub conversations: Vec<ConversationCheck>,
}

impl Verification {
    pub fn new(conversations: Vec<ConversationCheck>) -> Verification {
        let mut total = DeliveryCheck::default();
        for c in &conversations {
            total.add(&c.delivery);
        }
        let seq_gap_free = conversations.iter().all(|c| c.seq.ok());
        Verification {
            passed: total.ok() && seq_gap_free,
            seq_gap_free,
            total,
            conversations,
        }
    }
}

/// Server memory around the idle-sockets run, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerMemory {
    pub pid: u32,
    /// `/proc/<pid>/comm`, to show which process was measured.
    pub command: Option<String>,
    /// Before the first connect.
    pub vm_rss_before_kib: u64,
    /// After every socket was subscribed and the settle time passed.
    pub vm_rss_after_kib: u64,
    /// At the end of the hold.
    pub vm_rss_end_kib: u64,
    /// Peak RSS of the server's life, read at the end of the hold.
    pub vm_hwm_kib: u64,
    /// (after − before) / subscribed sockets.
    pub per_socket_kib: f64,
    /// Slope of RSS over the second half of the connects (less sensitive to
    /// memory the server had freed before the run and reuses).
    pub marginal_per_socket_kib: Option<f64>,
    /// A few seconds after the sockets were closed.
    pub vm_rss_after_close_kib: Option<u64>,
    pub fds_before: Option<usize>,
    pub fds_after: Option<usize>,
    /// The server's RLIMIT_NOFILE (soft, hard): the most sockets it can hold.
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
    /// Server CPU time (user + system) while the sockets were opened, and
    /// over the hold.
    pub cpu_connect_s: Option<f64>,
    pub cpu_hold_s: Option<f64>,
}

/// The load tool's own cost, to show it was not the bottleneck.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientMemory {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    /// CPU time of the load tool over the measured part (connect and hold,
    /// or sending and draining).
    pub cpu_s: Option<f64>,
}

/// RSS of the server after `sockets` subscriptions.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Checkpoint {
    pub sockets: u64,
    pub vm_rss_kib: u64,
}

/// The idle-sockets scenario's own results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SocketsReport {
    pub requested: usize,
    pub subscribed: u64,
    pub failed: u64,
    pub not_attempted: usize,
    /// From the first connect to the last attempt's end.
    pub connect_seconds: f64,
    /// Subscribed sockets per second of connecting.
    pub connect_rate_per_s: f64,
    pub channels: Vec<String>,
    /// Local addresses the sockets were spread over (empty: kernel's choice).
    pub source_addrs: Vec<String>,
    pub held_s: f64,
    /// Sockets that ended before the run closed them, by how they ended.
    pub closed_early: u64,
    pub closed_by: BTreeMap<String, u64>,
    /// `disconnect` frames the server sent, by reason.
    pub disconnects: BTreeMap<String, u64>,
    /// Frames received during the hold (heartbeats, mostly).
    pub frames_during_hold: u64,
    /// Longest time a socket went without a frame during the hold.
    pub max_frame_gap_ms: u64,
    /// Sockets that went more than 6 s without a frame during the hold (an
    /// Action Cable client would reconnect).
    pub stale_sockets: u64,
    pub failure_examples: Vec<String>,
    /// Connections dropped by full accept queues while connecting (kernel
    /// counter `ListenOverflows`, whole machine); each costs the client a SYN
    /// retransmit, about 1 s.
    pub listen_overflows: Option<u64>,
    pub server: Option<ServerMemory>,
    pub client: ClientMemory,
    pub checkpoints: Vec<Checkpoint>,
}

/// The fanout scenario's own results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FanoutReport {
    /// No delivery lost, duplicated or misrouted.
    pub passed: bool,
    pub conversations: usize,
    pub members: usize,
    pub sockets: usize,
    pub connect_seconds: f64,
    /// Sends attempted and acknowledged (2xx).
    pub messages_sent: u64,
    pub messages_acked: u64,
    /// Acknowledged messages × sockets of their conversation.
    pub expected_deliveries: u64,
    /// `new_message` frames of this run's messages that reached a socket of
    /// the right conversation (duplicates included).
    pub received_deliveries: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Repeated deliveries of a message to the same socket.
    pub duplicated: u64,
    /// Deliveries to a socket of another conversation.
    pub misrouted: u64,
    /// Deliveries of messages whose send got no 2xx (e.g. timed out after the
    /// commit): not counted as lost or expected.
    pub delivered_without_ack: u64,
    /// `new_message` frames not from this run.
    pub foreign: u64,
    /// From the first send to the last delivery.
    pub delivery_window_s: f64,
    pub deliveries_per_s: f64,
    /// Send start to arrival at the socket, over all deliveries.
    pub delivery_latency_us: LatencySummary,
    pub sockets_closed: u64,
    pub closed_by: BTreeMap<String, u64>,
    pub disconnects: BTreeMap<String, u64>,
    /// With --server-pid: the server's CPU time from the first send to the
    /// end of the drain, and its memory at the end.
    pub server_pid: Option<u32>,
    pub server_cpu_s: Option<f64>,
    pub server_vm_rss_kib: Option<u64>,
    pub server_vm_hwm_kib: Option<u64>,
    pub client: ClientMemory,
}

/// The load tool's own side of the run, for comparing results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientInfo {
    /// CPUs the client could see.
    pub cpus: usize,
    /// Runtime worker threads.
    pub threads: usize,
    pub timeout_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub scenario: String,
    /// Start of the measured window, RFC 3339 UTC.
    pub date: String,
    pub server_url: String,
    /// The flags of the run, as given or defaulted.
    pub parameters: Value,
    pub client: ClientInfo,
    pub setup: Setup,
    /// Length of the measured window (until the last request completed).
    pub elapsed_s: f64,
    /// What a request is here: `request` or `message`.
    pub unit: String,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Completed requests (any outcome) per second.
    pub rate_per_s: f64,
    /// Successful requests per second.
    pub ok_rate_per_s: f64,
    /// Latency of all successful requests.
    pub latency_us: LatencySummary,
    /// Every outcome, successes included.
    pub by_status: BTreeMap<String, u64>,
    pub errors_by_status: BTreeMap<String, u64>,
    pub operations: Vec<Operation>,
    pub verification: Option<Verification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sockets: Option<SocketsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutReport>,
    /// With --server-pid: CPU time over the measured window (setup excluded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
    pub notes: Vec<String>,
}

/// CPU time the server and the load tool spent over the measured window, and
/// per completed request: what a request costs, whatever the other process
/// sharing the cores took.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    pub server_pid: u32,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    pub server_us_per_request: Option<f64>,
    pub client_us_per_request: Option<f64>,
}

/// CPU readings at the start of a measured window.
pub struct CpuMeter {
    pid: Option<u32>,
    server: Option<f64>,
    client: Option<f64>,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            server: pid.and_then(|p| crate::procfs::cpu_seconds(Some(p))),
            client: crate::procfs::cpu_seconds(None),
        }
    }

    /// What was spent since `start` (per request: [`CpuUse::per_request`]);
    /// `None` without a server pid.
    pub fn finish(&self) -> Option<CpuUse> {
        let pid = self.pid?;
        let spent = crate::procfs::cpu_spent;
        Some(CpuUse::new(
            pid,
            spent(self.server, crate::procfs::cpu_seconds(Some(pid))),
            spent(self.client, crate::procfs::cpu_seconds(None)),
            0,
        ))
    }
}

impl CpuUse {
    pub fn new(
        server_pid: u32,
        server_cpu_s: Option<f64>,
        client_cpu_s: Option<f64>,
        requests: u64,
    ) -> CpuUse {
        let per = |cpu: Option<f64>| {
            cpu.filter(|_| requests > 0)
                .map(|s| round1(s * 1e6 / requests as f64))
        };
        CpuUse {
            server_pid,
            server_cpu_s,
            client_cpu_s,
            server_us_per_request: per(server_cpu_s),
            client_us_per_request: per(client_cpu_s),
        }
    }

    pub fn per_request(self, requests: u64) -> CpuUse {
        CpuUse::new(
            self.server_pid,
            self.server_cpu_s,
            self.client_cpu_s,
            requests,
        )
    }
}

pub fn per_second(count: u64, elapsed_s: f64) -> f64 {
    if elapsed_s <= 0.0 {
        0.0
    } else {
        count as f64 / elapsed_s
    }
}

impl Report {
    /// Fills the totals from the merged recorder of all operations.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &str,
        date: String,
        server_url: &str,
        parameters: Value,
        setup: Setup,
        elapsed_s: f64,
        unit: &str,
        all: &Recorder,
        operations: Vec<Operation>,
    ) -> Report {
        Report {
            tool: concat!("chatterly-load ", env!("CARGO_PKG_VERSION")).to_owned(),
            scenario: scenario.to_owned(),
            date,
            server_url: server_url.to_owned(),
            parameters,
            client: ClientInfo::default(),
            setup: Setup {
                seconds: (setup.seconds * 1000.0).round() / 1000.0,
                ..setup
            },
            elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
            unit: unit.to_owned(),
            requests: all.total(),
            ok: all.ok,
            errors: all.errors,
            rate_per_s: round1(per_second(all.total(), elapsed_s)),
            ok_rate_per_s: round1(per_second(all.ok, elapsed_s)),
            latency_us: LatencySummary::of(&all.latency),
            by_status: all.by_status.clone(),
            errors_by_status: all.errors_by_status(),
            operations,
            verification: None,
            sockets: None,
            fanout: None,
            cpu: None,
            notes: Vec::new(),
        }
    }

    /// `false` when a check of the run failed (read-back or deliveries): the
    /// process then exits with status 1.
    pub fn passed(&self) -> bool {
        self.verification.as_ref().is_none_or(|v| v.passed)
            && self.fanout.as_ref().is_none_or(|f| f.passed)
    }

    /// Adds the notes any scenario's counts call for.
    pub fn annotate(&mut self) {
        if let Some(n) = self.by_status.get("429") {
            self.notes.push(format!(
                "{n} requests were refused with 429: the server's rate limits are on; \
                 restart it with `--rate-limits off` for load tests"
            ));
        }
    }

    /// The human summary printed on stdout.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let unit = &self.unit;
        let _ = writeln!(out, "scenario     {}", self.scenario);
        let _ = writeln!(out, "server       {}", self.server_url);
        let _ = writeln!(out, "started      {}", self.date);
        let _ = writeln!(out, "parameters   {}", compact_parameters(&self.parameters));
        if self.client.threads > 0 {
            let _ = writeln!(
                out,
                "client       {} threads on {} CPUs, timeout {}s",
                self.client.threads, self.client.cpus, self.client.timeout_s
            );
        }
        let _ = writeln!(
            out,
            "setup        {} users, conversations {:?}, {} seeded messages ({:.1}s)",
            self.setup.users,
            self.setup.conversation_ids,
            self.setup.seeded_messages,
            self.setup.seconds
        );
        let _ = writeln!(out, "elapsed      {:.2}s", self.elapsed_s);
        let _ = writeln!(
            out,
            "{:<13}{} ({} ok, {} errors)",
            format!("{unit}s"),
            self.requests,
            self.ok,
            self.errors
        );
        let _ = writeln!(
            out,
            "throughput   {} {unit}s ({} ok)",
            format_rate(self.rate_per_s),
            format_rate(self.ok_rate_per_s)
        );
        if !self.errors_by_status.is_empty() {
            let _ = writeln!(
                out,
                "errors       {}",
                format_counts(&self.errors_by_status)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", latency_header());
        for op in &self.operations {
            let _ = writeln!(out, "{}", latency_row(&op.name, &op.latency_us, op.errors));
        }
        // A total line only when the operations partition the requests.
        let parts: u64 = self.operations.iter().map(|o| o.ok + o.errors).sum();
        if self.operations.len() > 1 && parts == self.requests {
            let _ = writeln!(out, "{}", latency_row("all", &self.latency_us, self.errors));
        }
        if let Some(v) = &self.verification {
            let t = &v.total;
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "verification {}: {} acknowledged, {} stored, {} lost, {} duplicated, \
                 {} stored without ack, {} foreign; seq {}",
                if v.passed { "PASSED" } else { "FAILED" },
                t.acknowledged,
                t.stored,
                t.lost,
                t.duplicated,
                t.stored_unacknowledged,
                t.foreign,
                if v.seq_gap_free {
                    "1..N without gaps"
                } else {
                    "NOT contiguous"
                }
            );
            // Every conversation when there are few, otherwise the failing ones.
            let few = v.conversations.len() <= 10;
            let shown = v
                .conversations
                .iter()
                .filter(|c| few || !(c.seq.ok() && c.delivery.ok()))
                .take(20);
            for c in shown {
                let s = &c.seq;
                let _ = write!(
                    out,
                    "  conversation {}: {} stored, max seq {}, {} missing, {} duplicated",
                    c.conversation_id, c.delivery.stored, s.max_seq, s.missing, s.duplicated
                );
                if s.without_seq > 0 {
                    let _ = write!(out, ", {} without seq", s.without_seq);
                }
                if !s.missing_examples.is_empty() {
                    let _ = write!(out, " (missing e.g. {:?})", s.missing_examples);
                }
                if !s.duplicated_examples.is_empty() {
                    let _ = write!(out, " (duplicated e.g. {:?})", s.duplicated_examples);
                }
                let _ = writeln!(out);
            }
        }
        if let Some(sockets) = &self.sockets {
            let _ = writeln!(out);
            render_sockets(&mut out, sockets);
        }
        if let Some(fanout) = &self.fanout {
            let _ = writeln!(out);
            render_fanout(&mut out, fanout);
        }
        if let Some(cpu) = &self.cpu {
            let _ = writeln!(out, "{}", render_cpu_line(cpu));
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("serializing the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing --json {}", path.display()))
    }
}

fn render_cpu_line(cpu: &CpuUse) -> String {
    let show = |s: Option<f64>, per: Option<f64>| match (s, per) {
        (Some(s), Some(per)) => format!("{s:.2}s ({per:.1} µs per request)"),
        (Some(s), None) => format!("{s:.2}s"),
        _ => "?".to_owned(),
    };
    format!(
        "cpu          server pid {} {}, client {}",
        cpu.server_pid,
        show(cpu.server_cpu_s, cpu.server_us_per_request),
        show(cpu.client_cpu_s, cpu.client_us_per_request)
    )
}

/// `123.4 MiB` from KiB.
pub fn format_kib(kib: u64) -> String {
    if kib >= 10 * 1024 {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    } else {
        format!("{kib} KiB")
    }
}

fn render_sockets(out: &mut String, s: &SocketsReport) {
    let _ = writeln!(
        out,
        "sockets      {} subscribed of {} ({} failed, {} not attempted) in {:.2}s: {}",
        s.subscribed,
        s.requested,
        s.failed,
        s.not_attempted,
        s.connect_seconds,
        format_rate(s.connect_rate_per_s)
    );
    let _ = writeln!(out, "channels     {}", s.channels.join(", "));
    if !s.source_addrs.is_empty() {
        let _ = writeln!(out, "sources      {}", s.source_addrs.join(" "));
    }
    let _ = write!(
        out,
        "hold         {}s: {} closed early, {} frames, longest gap between frames {}, {} stale (> 6 s)",
        crate::progress::trim_float(s.held_s),
        s.closed_early,
        s.frames_during_hold,
        crate::stats::format_micros(s.max_frame_gap_ms * 1000),
        s.stale_sockets
    );
    if !s.closed_by.is_empty() {
        let _ = write!(out, " (closed by {})", format_counts(&s.closed_by));
    }
    if !s.disconnects.is_empty() {
        let _ = write!(out, " (disconnect {})", format_counts(&s.disconnects));
    }
    let _ = writeln!(out);
    if let Some(m) = &s.server {
        let _ = writeln!(
            out,
            "server       pid {}{}: VmRSS {} before, {} after (+{}), {} at the end; VmHWM {}",
            m.pid,
            m.command
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            format_kib(m.vm_rss_before_kib),
            format_kib(m.vm_rss_after_kib),
            format_kib(m.vm_rss_after_kib.saturating_sub(m.vm_rss_before_kib)),
            format_kib(m.vm_rss_end_kib),
            format_kib(m.vm_hwm_kib)
        );
        let _ = write!(
            out,
            "memory       {:.2} KiB per socket ((after - before) / {})",
            m.per_socket_kib, s.subscribed
        );
        if let Some(marginal) = m.marginal_per_socket_kib {
            let _ = write!(out, ", {marginal:.2} KiB marginal (second half)");
        }
        if let Some(closed) = m.vm_rss_after_close_kib {
            let _ = write!(out, "; {} after closing", format_kib(closed));
        }
        let _ = writeln!(out);
        let fds = |v: Option<usize>| v.map_or("?".to_owned(), |n| n.to_string());
        let limit = |v: Option<u64>| match v {
            Some(u64::MAX) => "unlimited".to_owned(),
            Some(n) => n.to_string(),
            None => "?".to_owned(),
        };
        let _ = writeln!(
            out,
            "server fds   {} before, {} after; RLIMIT_NOFILE soft {} hard {}",
            fds(m.fds_before),
            fds(m.fds_after),
            limit(m.nofile_soft),
            limit(m.nofile_hard)
        );
        if let (Some(connect), Some(hold)) = (m.cpu_connect_s, m.cpu_hold_s) {
            let _ = writeln!(
                out,
                "server CPU   {connect:.2}s opening the sockets ({:.0}µs each), {hold:.2}s over the hold ({:.1}% of a CPU)",
                connect * 1e6 / s.subscribed.max(1) as f64,
                hold * 100.0 / s.held_s.max(1e-9)
            );
        }
    }
    let c = &s.client;
    let _ = writeln!(
        out,
        "client       VmRSS {} ({:.2} KiB per socket), VmHWM {}, RLIMIT_NOFILE {}{}",
        format_kib(c.vm_rss_kib),
        c.vm_rss_kib as f64 / (s.subscribed.max(1)) as f64,
        format_kib(c.vm_hwm_kib),
        c.nofile_soft,
        c.cpu_s
            .map(|cpu| format!(", CPU {cpu:.2}s"))
            .unwrap_or_default()
    );
    if let Some(overflows) = s.listen_overflows.filter(|&n| n > 0) {
        let _ = writeln!(
            out,
            "kernel       {overflows} SYNs dropped by a full listen queue while connecting (ListenOverflows)"
        );
    }
    for example in &s.failure_examples {
        let _ = writeln!(out, "failure      {example}");
    }
}

fn render_fanout(out: &mut String, f: &FanoutReport) {
    let _ = writeln!(
        out,
        "fanout       {} conversations x {} sockets = {} sockets (opened in {:.2}s)",
        f.conversations, f.members, f.sockets, f.connect_seconds
    );
    let _ = writeln!(
        out,
        "messages     {} sent, {} acknowledged",
        f.messages_sent, f.messages_acked
    );
    let _ = writeln!(
        out,
        "deliveries   {} expected, {} received: {} over {:.2}s",
        f.expected_deliveries,
        f.received_deliveries,
        format_rate(f.deliveries_per_s),
        f.delivery_window_s
    );
    let _ = write!(
        out,
        "delivery {}: {} lost, {} duplicated, {} misrouted; {} delivered without ack, {} foreign",
        if f.passed { "PASSED" } else { "FAILED" },
        f.lost,
        f.duplicated,
        f.misrouted,
        f.delivered_without_ack,
        f.foreign
    );
    if f.sockets_closed > 0 {
        let _ = write!(
            out,
            "; {} sockets closed ({})",
            f.sockets_closed,
            format_counts(&f.closed_by)
        );
    }
    if !f.disconnects.is_empty() {
        let _ = write!(out, "; disconnect {}", format_counts(&f.disconnects));
    }
    let _ = writeln!(out);
    let window = f.delivery_window_s.max(1e-9);
    if let Some(pid) = f.server_pid {
        let _ = writeln!(
            out,
            "server       pid {pid}: CPU {} ({}), VmRSS {}, VmHWM {}",
            f.server_cpu_s
                .map_or("?".to_owned(), |cpu| format!("{cpu:.2}s")),
            f.server_cpu_s.map_or("?".to_owned(), |cpu| format!(
                "{:.0}% of a CPU",
                cpu * 100.0 / window
            )),
            f.server_vm_rss_kib.map_or("?".to_owned(), format_kib),
            f.server_vm_hwm_kib.map_or("?".to_owned(), format_kib)
        );
    }
    let c = &f.client;
    let _ = writeln!(
        out,
        "client       VmRSS {}, VmHWM {}{}",
        format_kib(c.vm_rss_kib),
        format_kib(c.vm_hwm_kib),
        c.cpu_s
            .map(|cpu| format!(", CPU {cpu:.2}s ({:.0}% of a CPU)", cpu * 100.0 / window))
            .unwrap_or_default()
    );
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// `404=3 500=1 timeout=2`
pub fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `concurrency=64 duration_s=10 requests=-` from a flat JSON object.
fn compact_parameters(parameters: &Value) -> String {
    match parameters {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::Null => format!("{k}=-"),
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Outcome;
    use crate::verify::{check_delivery, check_seqs};
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn cpu_use_is_spread_over_the_completed_requests() {
        let cpu = CpuUse::new(7, Some(2.5), Some(1.0), 0);
        assert_eq!(cpu.server_us_per_request, None, "no requests, no rate");
        let cpu = cpu.per_request(50_000);
        assert_eq!(cpu.server_us_per_request, Some(50.0));
        assert_eq!(cpu.client_us_per_request, Some(20.0));
        let unknown = CpuUse::new(7, None, Some(1.0), 10).per_request(10);
        assert_eq!(unknown.server_us_per_request, None);
        assert!(render_cpu_line(&unknown).contains("server pid 7 ?"));
    }

    fn sample() -> Report {
        let mut rec = Recorder::default();
        for us in [800u64, 900, 1_000, 1_200] {
            rec.record(Outcome::Status(200), Duration::from_micros(us));
        }
        rec.record(Outcome::Status(500), Duration::from_micros(50));
        let op = Operation::new("history", &rec, 2.0);
        Report::new(
            "rest-read",
            "2026-04-03T09:20:11.734Z".into(),
            "http://127.0.0.1:3001",
            json!({"concurrency": 4, "duration_s": 2.0, "requests": null}),
            Setup {
                users: 2,
                conversation_ids: vec![7],
                seeded_messages: 200,
                seconds: 0.5,
            },
            2.0,
            "request",
            &rec,
            vec![op],
        )
    }

    #[test]
    fn totals_and_rates() {
        let r = sample();
        assert_eq!(r.requests, 5);
        assert_eq!(r.ok, 4);
        assert_eq!(r.errors, 1);
        assert_eq!(r.rate_per_s, 2.5);
        assert_eq!(r.ok_rate_per_s, 2.0);
        assert_eq!(r.errors_by_status.get("500"), Some(&1));
        assert_eq!(r.latency_us.max_us, 1_200);
    }

    #[test]
    fn text_summary_has_the_essentials() {
        let text = sample().render_text();
        assert!(text.contains("scenario     rest-read"), "{text}");
        assert!(text.contains("requests     5 (4 ok, 1 errors)"), "{text}");
        assert!(
            text.contains("throughput   2.50/s requests (2.00/s ok)"),
            "{text}"
        );
        assert!(text.contains("errors       500=1"), "{text}");
        assert!(
            text.contains("parameters   concurrency=4 duration_s=2.0 requests=-"),
            "{text}"
        );
        assert!(text.contains("history"), "{text}");
        assert!(!text.contains("verification"), "{text}");
    }

    #[test]
    fn json_has_scenario_parameters_and_percentiles() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["scenario"], "rest-read");
        assert_eq!(v["server_url"], "http://127.0.0.1:3001");
        assert_eq!(v["parameters"]["concurrency"], 4);
        assert_eq!(v["latency_us"]["p50_us"], 900);
        assert_eq!(v["operations"][0]["name"], "history");
        assert!(v["verification"].is_null());
    }

    #[test]
    fn verification_summary() {
        let mut r = sample();
        let good = ConversationCheck {
            conversation_id: 7,
            delivery: check_delivery(&["r-1".into()], &[Some("r-1".into())], "r-"),
            seq: check_seqs(&[Some(1)]),
            pages: 1,
        };
        let bad = ConversationCheck {
            conversation_id: 8,
            delivery: check_delivery(&["r-2".into()], &[], "r-"),
            seq: check_seqs(&[Some(2)]),
            pages: 1,
        };
        r.verification = Some(Verification::new(vec![good.clone()]));
        assert!(r.verification.as_ref().unwrap().passed);
        assert!(r.render_text().contains("verification PASSED"));
        r.verification = Some(Verification::new(vec![good, bad]));
        let text = r.render_text();
        assert!(
            text.contains("verification FAILED: 2 acknowledged, 1 stored, 1 lost"),
            "{text}"
        );
        assert!(text.contains("seq NOT contiguous"), "{text}");
        assert!(text.contains("(missing e.g. [1])"), "{text}");
    }

    #[test]
    fn sockets_section() {
        let mut r = sample();
        r.sockets = Some(SocketsReport {
            requested: 1000,
            subscribed: 1000,
            connect_seconds: 2.0,
            connect_rate_per_s: 500.0,
            channels: vec!["ConversationChannel".into()],
            held_s: 10.0,
            max_frame_gap_ms: 3010,
            server: Some(ServerMemory {
                pid: 42,
                command: Some("chatterly".into()),
                vm_rss_before_kib: 20_480,
                vm_rss_after_kib: 28_672,
                vm_rss_end_kib: 28_700,
                vm_hwm_kib: 30_000,
                per_socket_kib: 8.192,
                nofile_soft: Some(20_000),
                ..ServerMemory::default()
            }),
            ..SocketsReport::default()
        });
        assert!(r.passed());
        let text = r.render_text();
        assert!(
            text.contains("sockets      1000 subscribed of 1000 (0 failed, 0 not attempted) in 2.00s: 500.0/s"),
            "{text}"
        );
        assert!(
            text.contains("VmRSS 20.0 MiB before, 28.0 MiB after (+8192 KiB)"),
            "{text}"
        );
        assert!(text.contains("memory       8.19 KiB per socket"), "{text}");
        assert!(text.contains("longest gap between frames 3.01s"), "{text}");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["sockets"]["server"]["per_socket_kib"], 8.192);
        assert!(v.get("fanout").is_none());
    }

    #[test]
    fn fanout_section_and_status() {
        let mut r = sample();
        r.fanout = Some(FanoutReport {
            passed: false,
            conversations: 10,
            members: 100,
            sockets: 1000,
            expected_deliveries: 100,
            received_deliveries: 99,
            lost: 1,
            ..FanoutReport::default()
        });
        assert!(!r.passed());
        let text = r.render_text();
        assert!(
            text.contains("10 conversations x 100 sockets = 1000 sockets"),
            "{text}"
        );
        assert!(
            text.contains("delivery FAILED: 1 lost, 0 duplicated"),
            "{text}"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["fanout"]["lost"], 1);
    }

    #[test]
    fn counts_format() {
        let mut m = BTreeMap::new();
        m.insert("404".to_owned(), 3);
        m.insert("timeout".to_owned(), 2);
        assert_eq!(format_counts(&m), "404=3 timeout=2");
    }
}
