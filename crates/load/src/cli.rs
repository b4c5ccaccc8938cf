//! Command line. Every run is bounded: `--duration` always applies (at most an
//! hour), `--requests` optionally caps the count as well.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

const LONG_ABOUT: &str = "\
Load generator for Chatterly: drives a running server over real HTTP and reports \
throughput, latency percentiles (HDR histogram, microsecond resolution) and errors by status.

Each scenario prepares its own data first (registers fresh users with random names, creates \
a group conversation, seeds messages), then measures for --duration seconds (or until \
--requests is reached), prints a summary table on stdout and, with --json, writes the results.

Only a server on this machine can be targeted: --url must name a loopback host \
(127.0.0.0/8, localhost or [::1]).

Run the server with its rate limits off for benchmarks, otherwise registration and sends \
are throttled (HTTP 429):
    chatterly serve --listen 127.0.0.1:3001 --rate-limits off";

const AFTER_HELP: &str = "\
Examples:
    chatterly-load rest-read --concurrency 64 --duration 10
    chatterly-load send --concurrency 32 --conversations 4 --duration 10 --json send.json
    chatterly-load send --rate 2000 --duration 30 --url http://127.0.0.1:3999";

#[derive(Debug, Parser)]
#[command(
    name = "chatterly-load",
    version,
    about = "Load generator for Chatterly (REST scenarios). Run the server with `--rate-limits off`.",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Base URL of the server under test. Only loopback hosts are accepted:
    /// 127.0.0.0/8, localhost, [::1].
    #[arg(
        long,
        global = true,
        env = "CHATTERLY_LOAD_URL",
        default_value = "http://127.0.0.1:3001"
    )]
    pub url: String,

    /// Also write the results (scenario, parameters, counts, rates, percentiles
    /// in µs, date, server URL) as JSON to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Per-request timeout in seconds (a request that takes longer counts as a
    /// `timeout` error).
    #[arg(long, global = true, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub timeout: f64,

    /// Worker threads of the client's runtime [default: one per CPU]. When the
    /// server runs on the same machine, fewer leaves it more CPU.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// No progress line on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub scenario: ScenarioCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Read load: workers page through a seeded conversation's history
    /// (`GET .../messages`, sometimes with a `cursor`) and call `GET /users/me`.
    ///
    /// Setup registers --users users, creates one group conversation and seeds
    /// it with --seed-messages messages. The measured mix per worker: half
    /// first pages, a quarter older pages (with `cursor`), a quarter
    /// `GET /api/v1/users/me`. The server should run with `--rate-limits off`.
    RestRead(RestReadArgs),
    /// Write load: every sender (its own user) posts messages with a unique
    /// `client_message_id`, flat out or at a fixed total `--rate`; afterwards
    /// the history is read back to check for lost or duplicated messages and
    /// `seq` gaps.
    ///
    /// Setup registers one user per sender and creates --conversations group
    /// conversations holding all of them. Exits with status 1 when the
    /// read-back finds a lost or duplicated message or a `seq` gap. The server
    /// should run with `--rate-limits off` (its default allows 10 sends per
    /// user per second).
    Send(SendArgs),
}

/// Bounds and parallelism shared by all scenarios.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Concurrent workers (each keeps one request in flight).
    #[arg(long, short = 'c', default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Measured time in seconds (at most 3600); the run always stops by then.
    #[arg(long, short = 'd', value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub duration: f64,

    /// Stop after this many requests (or messages) in total, if that comes
    /// before --duration.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
}

impl RunArgs {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    pub fn workers(&self) -> usize {
        self.concurrency as usize
    }
}

#[derive(Debug, Clone, Args)]
pub struct RestReadArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Users to register; worker i reads as user i mod N.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: u32,

    /// Messages to seed the conversation with before measuring.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub seed_messages: u32,

    /// `limit` query parameter of history requests [default: none, i.e. the
    /// server's default page of 50].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_limit: Option<u32>,
}

impl RestReadArgs {
    pub fn parameters(&self) -> Value {
        json!({
            "concurrency": self.run.concurrency,
            "duration_s": self.run.duration,
            "requests": self.run.requests,
            "users": self.users,
            "seed_messages": self.seed_messages,
            "page_limit": self.page_limit,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Conversations to spread the senders over (sender i posts to
    /// conversation i mod K; every sender is a member of all of them).
    #[arg(long, short = 'k', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub conversations: u32,

    /// Fixed total rate in messages per second, open loop: sends are scheduled
    /// at even intervals whatever the responses do, and a send that starts late
    /// because the server is slow is timed from its scheduled time (no
    /// coordinated omission). Without it, every sender sends as fast as the
    /// server answers.
    #[arg(long, value_name = "MSGS_PER_S", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Length of each message's content in bytes (1..=4000).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4000))]
    pub content_bytes: u32,

    /// Skip reading the history back after the run.
    #[arg(long)]
    pub no_verify: bool,
}

impl SendArgs {
    pub fn parameters(&self) -> Value {
        json!({
            "concurrency": self.run.concurrency,
            "duration_s": self.run.duration,
            "requests": self.run.requests,
            "conversations": self.conversations,
            "rate": self.rate,
            "content_bytes": self.content_bytes,
            "verify": !self.no_verify,
        })
    }
}

/// Seconds as a positive decimal, at most one hour.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("{s:?} must be more than 0 seconds"));
    }
    if v > 3600.0 {
        return Err(format!("{s:?} is more than 3600 seconds"));
    }
    Ok(v)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a rate"))?;
    if !v.is_finite() || v <= 0.0 || v > 10_000_000.0 {
        return Err(format!(
            "{s:?} must be between 0 (excluded) and 10000000 messages/s"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["chatterly-load", "rest-read"]).unwrap();
        assert_eq!(cli.url, "http://127.0.0.1:3001");
        let ScenarioCommand::RestRead(args) = cli.scenario else {
            panic!("rest-read")
        };
        assert_eq!(args.run.concurrency, 64);
        assert_eq!(args.run.duration, 10.0);
        assert_eq!(args.run.requests, None);
        assert_eq!(args.seed_messages, 200);
        let cli = Cli::try_parse_from([
            "chatterly-load",
            "send",
            "--url",
            "http://localhost:9",
            "-k",
            "3",
        ])
        .unwrap();
        let ScenarioCommand::Send(args) = cli.scenario else {
            panic!("send")
        };
        assert_eq!(args.conversations, 3);
        assert_eq!(args.rate, None);
        assert_eq!(cli.url, "http://localhost:9");
    }

    #[test]
    fn bounds_are_enforced() {
        for bad in [
            vec!["chatterly-load", "send", "--duration", "0"],
            vec!["chatterly-load", "send", "--duration", "7200"],
            vec!["chatterly-load", "send", "--concurrency", "0"],
            vec!["chatterly-load", "send", "--rate", "-5"],
            vec!["chatterly-load", "send", "--requests", "0"],
            vec!["chatterly-load", "rest-read", "--timeout", "nan"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_seconds("2.5s"), Ok(2.5));
    }

    #[test]
    fn help_mentions_rate_limits_off() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--rate-limits off"), "{help}");
    }
}
