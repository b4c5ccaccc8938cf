//! Measurement: per-worker recorders (no sharing on the hot path) merged at the
//! end, HDR histograms at microsecond resolution, and the pure summary and
//! formatting used by the report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::api::Outcome;

/// Highest latency the histograms track exactly: 10 minutes, in µs. Longer
/// values are clamped to it (no request lives that long: `--timeout` is
/// capped well below).
const MAX_TRACKABLE_US: u64 = 600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("valid histogram bounds")
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Counters read by the progress line while workers run.
#[derive(Default)]
pub struct Live {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn count(&self, success: bool) {
        let counter = if success { &self.ok } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn total(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// What one worker saw for one kind of request.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latency of successful (2xx) requests only: a fast 429 or a refused
    /// connection would otherwise flatter the percentiles.
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    /// Every outcome, successes included (`"201"`, `"500"`, `"timeout"`, ...).
    pub by_status: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            latency: new_histogram(),
            ok: 0,
            errors: 0,
            by_status: BTreeMap::new(),
        }
    }
}

impl Recorder {
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        if outcome.is_success() {
            self.ok += 1;
            self.latency.saturating_record(micros(latency));
        } else {
            self.errors += 1;
        }
        *self.by_status.entry(outcome.key()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        self.ok += other.ok;
        self.errors += other.errors;
        for (k, v) in &other.by_status {
            *self.by_status.entry(k.clone()).or_default() += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.ok + self.errors
    }

    /// Counts of the non-2xx outcomes only.
    pub fn errors_by_status(&self) -> BTreeMap<String, u64> {
        self.by_status
            .iter()
            .filter(|(k, _)| (!k.starts_with('2') || k.len() != 3) && *k != "ok")
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// A latency for people: `850µs`, `1.23ms`, `12.3ms`, `150ms`, `2.50s`.
pub fn format_micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 10_000 {
        format!("{:.2}ms", us as f64 / 1_000.0)
    } else if us < 100_000 {
        format!("{:.1}ms", us as f64 / 1_000.0)
    } else if us < 1_000_000 {
        format!("{}ms", (us + 500) / 1_000)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

/// A rate for people: `51234/s`, `812.5/s`, `3.20/s`.
pub fn format_rate(per_second: f64) -> String {
    if per_second >= 1_000.0 {
        format!("{per_second:.0}/s")
    } else if per_second >= 100.0 {
        format!("{per_second:.1}/s")
    } else {
        format!("{per_second:.2}/s")
    }
}

/// Header of the latency table; [`latency_row`] lines up under it.
pub fn latency_header() -> String {
    format!(
        "{:<22} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "operation", "ok", "p50", "p90", "p99", "p99.9", "max", "errors"
    )
}

/// One line of the latency table.
pub fn latency_row(label: &str, summary: &LatencySummary, errors: u64) -> String {
    format!(
        "{:<22} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        label,
        summary.count,
        format_micros(summary.p50_us),
        format_micros(summary.p90_us),
        format_micros(summary.p99_us),
        format_micros(summary.p999_us),
        format_micros(summary.max_us),
        errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_micros_at_every_scale() {
        assert_eq!(format_micros(0), "0µs");
        assert_eq!(format_micros(850), "850µs");
        assert_eq!(format_micros(999), "999µs");
        assert_eq!(format_micros(1_000), "1.00ms");
        assert_eq!(format_micros(1_234), "1.23ms");
        assert_eq!(format_micros(12_345), "12.3ms");
        assert_eq!(format_micros(150_400), "150ms");
        assert_eq!(format_micros(999_600), "1000ms");
        assert_eq!(format_micros(2_500_000), "2.50s");
    }

    #[test]
    fn formats_rates() {
        assert_eq!(format_rate(51_234.4), "51234/s");
        assert_eq!(format_rate(812.54), "812.5/s");
        assert_eq!(format_rate(3.2), "3.20/s");
    }

    #[test]
    fn summary_of_a_known_distribution() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_us, 1);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.p999_us, 999);
        assert_eq!(s.max_us, 1000);
        assert_eq!(s.mean_us, 500.5);
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn rows_line_up_with_the_header() {
        let s = LatencySummary {
            count: 123_456,
            min_us: 80,
            mean_us: 900.0,
            p50_us: 850,
            p90_us: 1_500,
            p99_us: 4_200,
            p999_us: 12_000,
            max_us: 250_000,
        };
        let row = latency_row("history", &s, 3);
        assert_eq!(
            row,
            "history                    123456     850µs    1.50ms    4.20ms    12.0ms     250ms         3"
        );
        assert_eq!(row.chars().count(), latency_header().chars().count());
    }

    #[test]
    fn recorder_counts_and_merges() {
        let mut a = Recorder::default();
        a.record(Outcome::Status(200), Duration::from_micros(100));
        a.record(Outcome::Status(500), Duration::from_micros(5));
        let mut b = Recorder::default();
        b.record(Outcome::Status(200), Duration::from_micros(300));
        b.record(Outcome::Timeout, Duration::from_secs(10));
        a.merge(&b);
        assert_eq!(a.ok, 2);
        assert_eq!(a.errors, 2);
        assert_eq!(a.total(), 4);
        assert_eq!(a.latency.len(), 2, "only successes are timed");
        assert_eq!(a.by_status.get("200"), Some(&2));
        let errors = a.errors_by_status();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors.get("500"), Some(&1));
        assert_eq!(errors.get("timeout"), Some(&1));
    }
}
