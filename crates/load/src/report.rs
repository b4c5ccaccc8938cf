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
    pub notes: Vec<String>,
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
            notes: Vec::new(),
        }
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
    fn counts_format() {
        let mut m = BTreeMap::new();
        m.insert("404".to_owned(), 3);
        m.insert("timeout".to_owned(), 2);
        assert_eq!(format_counts(&m), "404=3 timeout=2");
    }
}
