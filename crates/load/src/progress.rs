//! The progress line on stderr while a scenario runs: rewritten in place about
//! once a second on a terminal, a plain line every few seconds otherwise (so
//! logs stay readable). Stdout is left to the summary.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::stats::{format_rate, Live};

pub struct Progress {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting `live` under `label`; `planned` is the run's duration.
    /// With `enabled` false nothing is printed.
    pub fn start(label: &str, live: Arc<Live>, planned: Duration, enabled: bool) -> Progress {
        let label = label.to_owned();
        let mut last = (Instant::now(), 0u64);
        Progress::with_line(enabled, move |elapsed| {
            let (ok, errors) = live.total();
            let now = Instant::now();
            let window = now.duration_since(last.0).as_secs_f64().max(1e-9);
            let rate = (ok + errors).saturating_sub(last.1) as f64 / window;
            last = (now, ok + errors);
            progress_line(&label, elapsed, planned, ok, errors, rate)
        })
    }

    /// Prints whatever `line` returns (given the time since the start) about
    /// once a second on a terminal, every 5 s otherwise.
    pub fn with_line<F>(enabled: bool, mut line: F) -> Progress
    where
        F: FnMut(Duration) -> String + Send + 'static,
    {
        let (stop, mut stopped) = watch::channel(false);
        if !enabled {
            return Progress { stop, task: None };
        }
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                let line = line(start.elapsed());
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r\x1b[2K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
            if tty {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K");
                let _ = err.flush();
            }
        });
        Progress {
            stop,
            task: Some(task),
        }
    }

    /// Stops the line and clears it.
    pub async fn finish(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// `send  4.0s/10s  [########------------]  41234 ok  0 err  10311/s`
pub fn progress_line(
    label: &str,
    elapsed: Duration,
    planned: Duration,
    ok: u64,
    errors: u64,
    rate: f64,
) -> String {
    const WIDTH: usize = 20;
    let fraction = if planned.is_zero() {
        1.0
    } else {
        (elapsed.as_secs_f64() / planned.as_secs_f64()).clamp(0.0, 1.0)
    };
    let filled = (fraction * WIDTH as f64).round() as usize;
    format!(
        "{label}  {:.1}s/{}s  [{}{}]  {ok} ok  {errors} err  {}",
        elapsed.as_secs_f64(),
        trim_float(planned.as_secs_f64()),
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        format_rate(rate)
    )
}

pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_time_bar_counts_and_rate() {
        let line = progress_line(
            "send",
            Duration::from_secs(4),
            Duration::from_secs(10),
            41_234,
            0,
            10_311.2,
        );
        assert_eq!(
            line,
            "send  4.0s/10s  [########------------]  41234 ok  0 err  10311/s"
        );
        let over = progress_line(
            "x",
            Duration::from_secs(12),
            Duration::from_millis(2500),
            1,
            2,
            0.5,
        );
        assert_eq!(
            over,
            "x  12.0s/2.5s  [####################]  1 ok  2 err  0.50/s"
        );
    }
}
