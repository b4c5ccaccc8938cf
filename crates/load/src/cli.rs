//! Command line. Every run is bounded: `--duration` always applies (at most an
//! hour), `--requests` optionally caps the count as well.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

const LONG_ABOUT: &str = "\
Load generator for Chatterly: drives a running server over real HTTP and WebSockets and \
reports throughput, latency percentiles (HDR histogram, microsecond resolution) and errors by status.

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
    chatterly-load send --rate 2000 --duration 30 --url http://127.0.0.1:3999
    chatterly-load idle-sockets --sockets 10000 --server-pid $SERVER_PID --hold 30
    chatterly-load fanout --conversations 10 --members 100 --rate 1000 --duration 10";

#[derive(Debug, Parser)]
#[command(
    name = "chatterly-load",
    version,
    about = "Load generator for Chatterly (REST and WebSocket scenarios). Run the server with `--rate-limits off`.",
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
    /// `timeout` error); for sockets, from TCP connect to the last
    /// subscription confirmation.
    #[arg(long, global = true, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub timeout: f64,

    /// Worker threads of the client's runtime [default: one per CPU; for the
    /// request scenarios at most one per worker]. When the server runs on
    /// the same machine, fewer leaves it more CPU.
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
    /// Idle WebSockets: opens --sockets sockets to /cable at a bounded rate,
    /// subscribes each to a conversation, and holds them for --hold seconds
    /// answering nothing; reports the connect rate and latency, failures and,
    /// with --server-pid, the server's memory per socket.
    ///
    /// Setup registers --users users (sockets share their tokens) and creates
    /// one group conversation with all of them. The server should run with
    /// `--rate-limits off` and, for thousands of sockets, a raised `ulimit -n`
    /// (every socket is a file descriptor on both sides).
    IdleSockets(IdleSocketsArgs),
    /// Fan-out: --conversations conversations with --members subscribed
    /// sockets each; senders post over REST at --rate messages/s in total
    /// and every socket timestamps every `new_message`. Reports deliveries/s,
    /// send-to-delivery latency, expected vs received deliveries, lost and
    /// duplicated ones.
    ///
    /// Exits with status 1 when a delivery is lost, duplicated or reaches a
    /// socket of another conversation. The server should run with
    /// `--rate-limits off`.
    Fanout(FanoutArgs),
    /// The conversation list at its biggest: one reader in --conversations
    /// conversations (a few members and messages each, some mentioning the
    /// reader, half of them read); workers `GET /api/v1/conversations` as the
    /// reader, whose rows carry unread and mention counts and the newest
    /// message.
    ///
    /// Afterwards one parsed list must hold every conversation with the
    /// counts the setup implies (else the run fails). The server should run
    /// with `--rate-limits off`.
    ConversationList(ConversationListArgs),
    /// Full-text search over a big history: --messages messages in
    /// --conversations conversations (the reader a member of two in three),
    /// every --match-every-th containing --word; workers
    /// `GET /api/v1/search?q=<word>` as the reader.
    ///
    /// Before and after, one walk of every page must find exactly the
    /// matches the reader may see (else the run fails). The server should
    /// run with `--rate-limits off`.
    Search(SearchArgs),
}

impl Cli {
    /// The client runtime's worker threads: `--threads`, else one per CPU.
    /// A request scenario keeps at most `--concurrency` requests in flight,
    /// so it gets no more threads than that: an idle worker thread still
    /// wakes to steal work, and with one request in flight a second thread
    /// doubled the tool's CPU per list (0.5 → 1.1 ms), CPU taken from a
    /// server on the same cores. The socket scenarios read many sockets per
    /// worker and keep one thread per CPU.
    pub fn threads(&self, cpus: usize) -> usize {
        if let Some(threads) = self.threads {
            return threads.into();
        }
        match &self.scenario {
            ScenarioCommand::IdleSockets(_) | ScenarioCommand::Fanout(_) => cpus,
            request => cpus.min(request.workers()).max(1),
        }
    }
}

impl ScenarioCommand {
    /// Requests the scenario keeps in flight at once (the idle-socket
    /// scenario's setup requests: 8).
    pub fn workers(&self) -> usize {
        match self {
            ScenarioCommand::RestRead(a) => a.run.workers(),
            ScenarioCommand::Send(a) => a.run.workers(),
            ScenarioCommand::IdleSockets(_) => 8,
            ScenarioCommand::Fanout(a) => a.run.workers(),
            ScenarioCommand::ConversationList(a) => a.run.workers(),
            ScenarioCommand::Search(a) => a.run.workers(),
        }
    }
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

/// CPU accounting for the request scenarios.
#[derive(Debug, Clone, Args)]
pub struct CpuArgs {
    /// PID of the server process: report its CPU time (and the load tool's)
    /// over the measured window, in all and per request.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct RestReadArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub cpu: CpuArgs,

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
            "server_pid": self.cpu.server_pid,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct ConversationListArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub cpu: CpuArgs,

    /// Conversations the reader belongs to.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conversations: u32,

    /// Other users, spread over the conversations (1 to 3 per conversation).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub peers: u32,

    /// Messages seeded into each conversation (by its peers).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub messages: u32,

    /// Every N-th seeded message mentions the reader.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub mention_every: u32,

    /// Ask for the first page of this many (`?limit=`) instead of the whole
    /// list (the server clamps it to its `--max-page`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page: Option<u32>,
}

impl ConversationListArgs {
    pub fn parameters(&self) -> Value {
        json!({
            "concurrency": self.run.concurrency,
            "duration_s": self.run.duration,
            "requests": self.run.requests,
            "conversations": self.conversations,
            "peers": self.peers,
            "messages": self.messages,
            "mention_every": self.mention_every,
            "page": self.page,
            "server_pid": self.cpu.server_pid,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub cpu: CpuArgs,

    /// Conversations the history is spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conversations: u32,

    /// Other users (the conversations' authors).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub peers: u32,

    /// Messages seeded in all.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub messages: u32,

    /// Every N-th seeded message contains --word.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub match_every: u32,

    /// The word searched for.
    #[arg(long, default_value = "kumquat")]
    pub word: String,

    /// The order asked for: `relevance` (ranked among the newest matches,
    /// the server's default) or `recent` (newest first, unranked).
    #[arg(long, default_value = "relevance", value_parser = ["relevance", "recent"])]
    pub sort: String,
}

impl SearchArgs {
    pub fn parameters(&self) -> Value {
        json!({
            "concurrency": self.run.concurrency,
            "duration_s": self.run.duration,
            "requests": self.run.requests,
            "conversations": self.conversations,
            "peers": self.peers,
            "messages": self.messages,
            "match_every": self.match_every,
            "word": self.word,
            "sort": self.sort,
            "server_pid": self.cpu.server_pid,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub cpu: CpuArgs,

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
            "server_pid": self.cpu.server_pid,
        })
    }
}

/// How the socket scenarios open their sockets.
#[derive(Debug, Clone, Args)]
pub struct DialArgs {
    /// Socket attempts in flight at once (TCP connect, upgrade, welcome,
    /// subscribe).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connect_concurrency: u32,

    /// Start no new socket after this many seconds of connecting (the run
    /// stays bounded when the server stops answering).
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_seconds)]
    pub connect_within: f64,

    /// Spread sockets over this many local addresses 127.0.0.2, 127.0.0.3, ...
    /// (each has its own ephemeral ports) [default: one per 8000 sockets; none
    /// below that, the kernel picks 127.0.0.1].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u8).range(1..=250))]
    pub source_addrs: Option<u8>,
}

impl DialArgs {
    pub fn connect_within(&self) -> Duration {
        Duration::from_secs_f64(self.connect_within)
    }
}

#[derive(Debug, Clone, Args)]
pub struct IdleSocketsArgs {
    /// Sockets to open and hold (the load tool's own open-file limit must
    /// allow them; it raises its soft limit to the hard one at start).
    #[arg(long, short = 'n', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sockets: u32,

    /// PID of the server process, to read its memory from /proc/PID/status
    /// before the first connect and after all sockets are subscribed.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Seconds to hold the sockets open once all are subscribed (and settled).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub hold: f64,

    /// Seconds to wait after the last socket is subscribed before measuring
    /// the server's memory (a heartbeat period, so every socket has sent a
    /// ping).
    #[arg(long, value_name = "SECONDS", default_value = "3.5", value_parser = parse_seconds)]
    pub settle: f64,

    /// With --server-pid: before the first connect, wait up to this long for
    /// the server to return the memory setup used (password hashing runs on
    /// blocking threads that keep their memory until they exit, after 10 s
    /// idle in tokio).
    #[arg(long, value_name = "SECONDS", default_value = "12", value_parser = parse_seconds)]
    pub baseline_wait: f64,

    /// Users to register; socket i uses user i mod U's token. One by default:
    /// each registration hashes a password with Argon2 (19 MiB by default)
    /// and the server's allocator may keep that memory, which the sockets
    /// then reuse unseen, so more users blur the memory per socket.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub users: u32,

    /// Also subscribe every socket to PresenceChannel. Every presence
    /// subscribe is announced to every presence subscriber, so N sockets cost
    /// N²/2 frames.
    #[arg(long)]
    pub presence: bool,

    /// Also subscribe every socket to UserChannel.
    #[arg(long)]
    pub user_channel: bool,

    #[command(flatten)]
    pub dial: DialArgs,
}

impl IdleSocketsArgs {
    pub fn parameters(&self) -> Value {
        json!({
            "sockets": self.sockets,
            "server_pid": self.server_pid,
            "hold_s": self.hold,
            "settle_s": self.settle,
            "baseline_wait_s": self.baseline_wait,
            "users": self.users,
            "presence": self.presence,
            "user_channel": self.user_channel,
            "connect_concurrency": self.dial.connect_concurrency,
            "connect_within_s": self.dial.connect_within,
            "source_addrs": self.dial.source_addrs,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Senders (-c, each one request in flight), --duration and --requests
    /// bound the sending.
    #[command(flatten)]
    pub run: RunArgs,

    /// Conversations; message k goes to conversation k mod C.
    #[arg(long, short = 'k', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub conversations: u32,

    /// Subscribed sockets per conversation (every message is delivered to
    /// this many sockets).
    #[arg(long, short = 'm', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub members: u32,

    /// Users to register, members of every conversation; sockets and messages
    /// take them round-robin.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: u32,

    /// Total send rate in messages per second, open loop (paced whatever the
    /// responses do).
    #[arg(long, value_name = "MSGS_PER_S", default_value = "1000", value_parser = parse_rate)]
    pub rate: f64,

    /// Length of each message's content in bytes (it starts with a marker
    /// naming the message).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(32..=4000))]
    pub content_bytes: u32,

    /// PID of the server process, to report its CPU time and memory.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// After the last send, wait at most this long for missing deliveries.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub drain: f64,

    #[command(flatten)]
    pub dial: DialArgs,
}

impl FanoutArgs {
    pub fn parameters(&self) -> Value {
        json!({
            "senders": self.run.concurrency,
            "duration_s": self.run.duration,
            "requests": self.run.requests,
            "conversations": self.conversations,
            "members": self.members,
            "users": self.users,
            "rate": self.rate,
            "content_bytes": self.content_bytes,
            "drain_s": self.drain,
            "server_pid": self.server_pid,
            "connect_concurrency": self.dial.connect_concurrency,
            "source_addrs": self.dial.source_addrs,
        })
    }

    pub fn sockets(&self) -> usize {
        self.conversations as usize * self.members as usize
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
    fn socket_scenarios_parse() {
        let cli = Cli::try_parse_from([
            "chatterly-load",
            "idle-sockets",
            "--sockets",
            "18000",
            "--server-pid",
            "42",
            "--hold",
            "30",
            "--presence",
        ])
        .unwrap();
        let ScenarioCommand::IdleSockets(args) = cli.scenario else {
            panic!("idle-sockets")
        };
        assert_eq!(args.sockets, 18_000);
        assert_eq!(args.server_pid, Some(42));
        assert_eq!(args.hold, 30.0);
        assert!(args.presence && !args.user_channel);
        assert_eq!(args.dial.connect_concurrency, 200);
        assert_eq!(args.dial.source_addrs, None);

        let cli = Cli::try_parse_from([
            "chatterly-load",
            "fanout",
            "--conversations",
            "10",
            "--members",
            "100",
            "--rate",
            "1000",
            "--duration",
            "10",
        ])
        .unwrap();
        let ScenarioCommand::Fanout(args) = cli.scenario else {
            panic!("fanout")
        };
        assert_eq!(args.sockets(), 1000);
        assert_eq!(args.rate, 1000.0);
        assert_eq!(args.run.duration, 10.0);
        assert!(Cli::try_parse_from(["chatterly-load", "fanout", "--content-bytes", "8"]).is_err());
        assert!(Cli::try_parse_from(["chatterly-load", "idle-sockets", "--sockets", "0"]).is_err());
    }

    #[test]
    fn conversation_list_parses() {
        let cli = Cli::try_parse_from(["chatterly-load", "conversation-list", "-c", "1"]).unwrap();
        let ScenarioCommand::ConversationList(args) = cli.scenario else {
            panic!("conversation-list")
        };
        assert_eq!(
            (
                args.conversations,
                args.peers,
                args.messages,
                args.mention_every
            ),
            (1000, 50, 3, 4)
        );
        assert_eq!(args.run.concurrency, 1);
        assert!(Cli::try_parse_from([
            "chatterly-load",
            "conversation-list",
            "--conversations",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn threads_default_to_cpus_but_not_above_the_requests_in_flight() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["chatterly-load"], args].concat()).expect("parses")
        };
        assert_eq!(parse(&["conversation-list", "-c", "1"]).threads(2), 1);
        assert_eq!(parse(&["rest-read", "-c", "64"]).threads(2), 2);
        assert_eq!(parse(&["search", "-c", "3"]).threads(8), 3);
        assert_eq!(parse(&["send", "-c", "1", "--threads", "4"]).threads(2), 4);
        // Socket scenarios read many sockets per worker.
        assert_eq!(parse(&["fanout", "-c", "1"]).threads(2), 2);
        assert_eq!(parse(&["idle-sockets"]).threads(4), 4);
    }

    #[test]
    fn help_mentions_rate_limits_off() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--rate-limits off"), "{help}");
    }
}
