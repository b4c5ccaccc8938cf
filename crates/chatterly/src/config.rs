//! Command line and environment configuration, parsed once into a typed
//! [`Config`] and validated before anything starts. A wrong setting stops
//! start-up with one line naming it ([`ConfigError`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chatterly",
    version,
    about = "Chatterly: a self-hosted real-time team chat server.",
    long_about = "Chatterly: a self-hosted real-time team chat server.\n\n\
        With no command, runs `serve` with the flags below (by default an embedded SQLite \
        database in ./data, listening on 127.0.0.1:3001). Every flag can also be set through the \
        environment variable named in its help.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of `serve`, which runs when no command is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, then serve the REST API, the WebSocket gateway and the web client.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(StorageArgs),
    /// Inspect the durable job queue: list pending or dead jobs, retry a dead one.
    Jobs(JobsArgs),
    /// Administer accounts: list, create, disable, enable, reset passwords,
    /// promote to site administrator.
    Users(UsersArgs),
    /// Copy the embedded SQLite database into a new file, consistently, while
    /// the server keeps serving. (PostgreSQL: use pg_dump or PITR; see the README.)
    Backup(BackupArgs),
    /// Restore a backup made by `backup` into an empty data directory.
    Restore(RestoreArgs),
    /// Check a deployment (the same flags as `serve`): configuration, database
    /// and migrations, Redis, PostgreSQL partitions, the job queue. Prints what
    /// to fix; exits non-zero when something is wrong.
    Doctor(Box<ServeArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The file to write; it must not exist.
    #[arg(long)]
    pub to: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup file (from `chatterly backup`).
    #[arg(long)]
    pub from: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// Where a new password comes from.
#[derive(Debug, Clone, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input (it never
    /// appears in the process list). Without it a random password is
    /// generated and printed once.
    #[arg(long)]
    pub password_stdin: bool,

    /// Memory cost of password hashing (argon2id), in KiB; as for `serve`.
    #[arg(long, env = "CHATTERLY_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UsersCommand {
    /// List accounts by username, with their role and status.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Create an account (the same rules as registering).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        /// Make it a site administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Disable an account: it cannot sign in, and its tokens and sockets stop
    /// working at once on every running instance.
    Disable {
        /// The user: id, email or username.
        user: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Enable a disabled account again.
    Enable {
        /// The user: id, email or username.
        user: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Set a new password (also clears failed logins and any lock).
    ResetPassword {
        /// The user: id, email or username.
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Make a user a site administrator.
    Promote {
        /// The user: id, email or username.
        user: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Make a site administrator an ordinary user again.
    Demote {
        /// The user: id, email or username.
        user: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

impl UsersCommand {
    pub fn storage(&self) -> &StorageArgs {
        match self {
            UsersCommand::List { storage, .. }
            | UsersCommand::Create { storage, .. }
            | UsersCommand::Disable { storage, .. }
            | UsersCommand::Enable { storage, .. }
            | UsersCommand::ResetPassword { storage, .. }
            | UsersCommand::Promote { storage, .. }
            | UsersCommand::Demote { storage, .. } => storage,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// List jobs, earliest due first.
    List {
        /// `pending`, `running`, `dead` or `all`.
        #[arg(long, default_value = "all")]
        status: JobStatusFilter,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Make a dead job pending again, due now, with its attempts reset.
    Retry {
        /// The job's id (from `chatterly jobs list`).
        id: i64,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

impl JobsCommand {
    pub fn storage(&self) -> &StorageArgs {
        match self {
            JobsCommand::List { storage, .. } | JobsCommand::Retry { storage, .. } => storage,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobStatusFilter {
    Pending,
    Running,
    Dead,
    All,
}

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory for the embedded database and generated secrets.
    #[arg(long, env = "CHATTERLY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// A postgres:// URL selects PostgreSQL (scale-out mode); absent means
    /// embedded SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Maximum PostgreSQL connections per instance.
    #[arg(long, env = "CHATTERLY_DB_POOL", default_value_t = 16)]
    pub db_pool: u32,

    /// PostgreSQL text search configuration for message search (`simple`:
    /// no stemming, so names and code search as typed; or e.g. `english`).
    /// A change re-indexes every message at start-up; every instance must
    /// use the same one. SQLite ignores it (FTS5 `unicode61`, no stemming).
    #[arg(long, env = "CHATTERLY_SEARCH_LANGUAGE", default_value = "simple")]
    pub search_language: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Address to listen on.
    #[arg(long, env = "CHATTERLY_LISTEN", default_value = "127.0.0.1:3001")]
    pub listen: String,

    /// Share the listening port with other processes (SO_REUSEPORT), to run
    /// several instances behind one port on one machine.
    #[arg(long, env = "CHATTERLY_REUSE_PORT")]
    pub reuse_port: bool,

    /// Redis URL for the cross-instance pieces (token denylist cache, presence,
    /// pub/sub). Needed when several instances share one PostgreSQL database.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every key and channel in Redis, so deployments can share one.
    #[arg(long, env = "CHATTERLY_REDIS_PREFIX", default_value = "chatterly")]
    pub redis_prefix: String,

    /// Seconds an instance may go silent before other instances count its
    /// sockets' users offline (scale-out presence).
    #[arg(long, env = "CHATTERLY_PRESENCE_TTL", default_value_t = 30)]
    pub presence_ttl: u64,

    /// Secret for signing tokens (HS256), at least 32 bytes. Embedded mode
    /// generates one and keeps it in the data directory; PostgreSQL mode requires
    /// it, since every instance must share it.
    #[arg(long, env = "CHATTERLY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Allowed browser origin for CORS and the WebSocket (repeatable; the
    /// environment variable takes a comma-separated list).
    #[arg(
        long = "cors-origin",
        env = "FRONTEND_URL",
        value_delimiter = ',',
        default_values_t = [String::from("http://localhost:3000"), String::from("http://127.0.0.1:3000")]
    )]
    pub cors_origins: Vec<String>,

    /// Rate limits on login/register and message sends: `on` or `off`
    /// (benchmarks turn them off).
    #[arg(long, env = "CHATTERLY_RATE_LIMITS", default_value = "on")]
    pub rate_limits: Switch,

    /// Login and register attempts allowed per client address per minute.
    #[arg(long, env = "CHATTERLY_AUTH_PER_MINUTE", default_value_t = 30)]
    pub auth_per_minute: u32,

    /// Message sends allowed per user per second (sustained).
    #[arg(long, env = "CHATTERLY_SENDS_PER_SECOND", default_value_t = 10)]
    pub sends_per_second: u32,

    /// Extra message sends a user may burst above the sustained rate.
    #[arg(long, env = "CHATTERLY_SEND_BURST", default_value_t = 30)]
    pub send_burst: u32,

    /// Maximum message length in characters.
    #[arg(long, env = "CHATTERLY_MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub max_message_chars: usize,

    /// Maximum request body in bytes (413 above it).
    #[arg(long, env = "CHATTERLY_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Largest history page a client may ask for (`limit` is clamped to it).
    #[arg(long, env = "CHATTERLY_MAX_PAGE", default_value_t = 100)]
    pub max_page: u32,

    /// Most users one search returns.
    #[arg(long, env = "CHATTERLY_USER_SEARCH_LIMIT", default_value_t = 100)]
    pub user_search_limit: u32,

    /// Message search ranks the newest this many matches a user may read
    /// (the cost of a query grows with it); 0 ranks every match.
    #[arg(long, env = "CHATTERLY_SEARCH_RANK_WINDOW", default_value_t = 2000)]
    pub search_rank_window: u32,

    /// Failed logins that lock an account.
    #[arg(long, env = "CHATTERLY_LOCK_AFTER", default_value_t = 10)]
    pub lock_after: i32,

    /// How long a locked account stays locked, in seconds.
    #[arg(long, env = "CHATTERLY_LOCK_SECONDS", default_value_t = 3600)]
    pub lock_seconds: u64,

    /// Token lifetime in seconds.
    #[arg(long, env = "CHATTERLY_TOKEN_TTL", default_value_t = 86_400)]
    pub token_ttl: u64,

    /// Memory cost of password hashing (argon2id), in KiB. The default follows
    /// OWASP's minimum; lowering it weakens stored passwords.
    #[arg(long, env = "CHATTERLY_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,

    /// Largest WebSocket frame a client may send, in bytes.
    #[arg(long, env = "CHATTERLY_CABLE_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub cable_max_frame_bytes: usize,

    /// Subscriptions one socket may hold.
    #[arg(long, env = "CHATTERLY_CABLE_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub cable_max_subscriptions: usize,

    /// Channel actions (typing, ping, call signaling) per second per socket;
    /// over it the action is dropped with a `rate_limit` frame.
    #[arg(long, env = "CHATTERLY_CABLE_ACTIONS_PER_SECOND", default_value_t = 20)]
    pub cable_actions_per_second: u32,

    /// Channel actions a socket may burst above the sustained rate.
    #[arg(long, env = "CHATTERLY_CABLE_ACTION_BURST", default_value_t = 40)]
    pub cable_action_burst: u32,

    /// Frames queued per socket before it counts as a slow consumer and is
    /// disconnected.
    #[arg(long, env = "CHATTERLY_CABLE_OUTBOX", default_value_t = 256)]
    pub cable_outbox: usize,

    /// Seconds a call may ring unanswered before it becomes `missed`.
    #[arg(long, env = "CHATTERLY_CALL_RING_TIMEOUT", default_value_t = 30)]
    pub call_ring_timeout: u64,

    /// ICE servers (STUN/TURN) for WebRTC calls, handed to signed-in clients
    /// by `GET /api/v1/client-config`: a JSON list of RTCIceServer objects,
    /// e.g. `[{"urls":"stun:stun.example.org:3478"},{"urls":"turn:turn.example.org:3478","username":"u","credential":"p"}]`.
    /// Default none: calls connect peers that reach each other directly (a LAN).
    #[arg(
        long,
        env = "CHATTERLY_ICE_SERVERS",
        default_value = "[]",
        hide_env_values = true
    )]
    pub ice_servers: String,

    /// Run the durable job worker in this instance (`off` for deployments
    /// with dedicated worker instances; jobs wait until some instance runs one).
    #[arg(long, env = "CHATTERLY_JOBS", default_value = "on")]
    pub jobs: Switch,

    /// Log format: `pretty` or `json`.
    #[arg(long, env = "CHATTERLY_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,

    /// A proxy (its IP address) whose X-Forwarded-For names the client, for
    /// per-address rate limits behind nginx (repeatable; the environment
    /// variable takes a comma-separated list).
    #[arg(
        long = "trusted-proxy",
        env = "CHATTERLY_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,

    /// Delete messages (with their reactions) older than this many days, by
    /// a recurring job; unset keeps everything forever. Set the same value on
    /// every instance.
    #[arg(long, env = "CHATTERLY_RETENTION_DAYS")]
    pub retention_days: Option<u32>,

    /// Serve Prometheus metrics at http://ADDR/metrics (off when unset). Keep
    /// it on a private address: it is not authenticated.
    #[arg(long, env = "CHATTERLY_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Directory for attachment files (default: `blobs` in the data
    /// directory). Several instances must share it (or use --s3-bucket).
    #[arg(long, env = "CHATTERLY_BLOB_DIR")]
    pub blob_dir: Option<PathBuf>,

    /// Keep attachment files in this S3-compatible bucket instead of a
    /// directory (AWS S3, MinIO, Ceph, ...).
    #[arg(long, env = "CHATTERLY_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// The S3 endpoint URL, e.g. http://127.0.0.1:9000 for MinIO (AWS when
    /// unset). Requests are path-style.
    #[arg(long, env = "CHATTERLY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// The bucket's region.
    #[arg(long, env = "CHATTERLY_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 access key id (with --s3-secret-access-key; prefer the environment).
    #[arg(long, env = "CHATTERLY_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key (prefer the environment variable: a flag shows in
    /// the process list).
    #[arg(long, env = "CHATTERLY_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Largest attachment in bytes (413 above it); 0 for no limit.
    #[arg(long, env = "CHATTERLY_MAX_UPLOAD_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Bytes of attachments each user may keep (deleted ones do not count);
    /// 0 for no quota.
    #[arg(long, env = "CHATTERLY_UPLOAD_QUOTA_BYTES", default_value_t = 0)]
    pub upload_quota_bytes: u64,

    /// Seconds an upload may wait to be attached to a message before the
    /// cleanup job deletes it.
    #[arg(
        long,
        env = "CHATTERLY_ATTACHMENT_GRACE_SECS",
        default_value_t = 86_400
    )]
    pub attachment_grace_secs: u64,

    /// Attachments one message may carry.
    #[arg(
        long,
        env = "CHATTERLY_MAX_ATTACHMENTS_PER_MESSAGE",
        default_value_t = 10
    )]
    pub max_attachments_per_message: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

/// Which database to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite {
        path: PathBuf,
    },
    Postgres {
        url: String,
        pool: u32,
        search_language: String,
    },
}

impl StorageArgs {
    pub fn database(&self) -> Result<Database, ConfigError> {
        match self.database_url.as_deref().map(str::trim) {
            None | Some("") => Ok(Database::Sqlite {
                path: self.data_dir.join("chatterly.sqlite3"),
            }),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                if self.db_pool == 0 {
                    return Err(invalid(
                        "--db-pool (CHATTERLY_DB_POOL)",
                        "must be at least 1",
                    ));
                }
                let language = self.search_language.trim();
                let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
                if language.is_empty() || language.len() > 127 || !language.chars().all(plain) {
                    return Err(invalid(
                        "--search-language (CHATTERLY_SEARCH_LANGUAGE)",
                        "must name a PostgreSQL text search configuration, e.g. simple or english",
                    ));
                }
                Ok(Database::Postgres {
                    url: url.to_owned(),
                    pool: self.db_pool,
                    search_language: language.to_owned(),
                })
            }
            Some(_) => Err(invalid(
                "--database-url (DATABASE_URL)",
                "must start with postgres:// (leave it unset for embedded SQLite)",
            )),
        }
    }
}

/// Limits a client cannot exceed. Every one is configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_chars: usize,
    pub max_body_bytes: usize,
    pub default_page: u32,
    pub max_page: u32,
    pub user_search_limit: u32,
    /// Message search ranks only the newest this many visible matches;
    /// `None` ranks every one.
    pub search_rank_window: Option<u32>,
    pub lock_after: i32,
    pub lock_duration: Duration,
    /// How long a call rings before it is missed.
    pub call_ring_timeout: chrono::TimeDelta,
    /// How long messages are kept; `None` keeps them forever.
    pub retention: Option<chrono::TimeDelta>,
    /// Largest attachment; `None`: no limit.
    pub max_upload_bytes: Option<u64>,
    /// Attachment bytes per user; `None`: no quota.
    pub upload_quota_bytes: Option<u64>,
    /// How long an upload may stay unattached.
    pub attachment_grace: chrono::TimeDelta,
    pub max_attachments_per_message: usize,
}

impl Limits {
    /// A client's page size: `default_page` when not given, clamped to
    /// `1..=max_page`.
    pub fn page_size(&self, requested: Option<i64>) -> u32 {
        requested
            .unwrap_or(i64::from(self.default_page))
            .clamp(1, i64::from(self.max_page)) as u32
    }
}

/// Where attachment files are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    Dir(PathBuf),
    S3(crate::blobs::S3Settings),
}

/// Rate limits; `None` when switched off.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub auth_per_minute: u32,
    pub sends_per_second: u32,
    pub send_burst: u32,
}

/// Gateway limits.
#[derive(Debug, Clone)]
pub struct CableLimits {
    pub max_frame_bytes: usize,
    pub max_subscriptions: usize,
    /// 0 when rate limits are off.
    pub actions_per_second: u32,
    pub action_burst: u32,
    pub outbox_capacity: usize,
}

/// The validated configuration of `serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub reuse_port: bool,
    pub data_dir: PathBuf,
    pub database: Database,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub presence_ttl: Duration,
    /// `None` in embedded mode without an explicit secret: generated and
    /// persisted in the data directory at start-up.
    pub jwt_secret: Option<Vec<u8>>,
    pub token_ttl: Duration,
    pub cors_origins: Vec<String>,
    pub rate_limits: Option<RateLimits>,
    pub limits: Limits,
    pub cable: CableLimits,
    pub argon2_memory_kib: u32,
    pub log_format: LogFormat,
    /// Whether this instance runs the job worker.
    pub jobs: bool,
    /// Validated RTCIceServer objects for WebRTC calls (a JSON array).
    pub ice_servers: serde_json::Value,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub blobs: BlobLocation,
}

pub const MIN_SECRET_BYTES: usize = 32;

impl ServeArgs {
    /// Defaults, as `chatterly serve` with no flags and no environment.
    pub fn defaults() -> ServeArgs {
        ServeArgs::from_flags::<&str>([]).unwrap_or_else(|e| unreachable!("defaults parse: {e}"))
    }

    /// Parses `serve` flags (without the program name or subcommand), with
    /// environment fallbacks. For tests and embedding.
    pub fn from_flags<S: AsRef<str>>(
        flags: impl IntoIterator<Item = S>,
    ) -> Result<ServeArgs, clap::Error> {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ServeArgs,
        }
        let argv = std::iter::once("chatterly".to_owned())
            .chain(flags.into_iter().map(|s| s.as_ref().to_owned()));
        Wrapper::try_parse_from(argv).map(|w| w.args)
    }

    pub fn validate(&self) -> Result<Config, ConfigError> {
        let listen: SocketAddr = self.listen.trim().parse().map_err(|_| {
            invalid(
                "--listen (CHATTERLY_LISTEN)",
                format!("{:?} is not an address like 127.0.0.1:3001", self.listen),
            )
        })?;
        let database = self.storage.database()?;
        let metrics_listen = match self.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "--metrics-listen (CHATTERLY_METRICS_LISTEN)",
                    format!("{addr:?} is not an address like 127.0.0.1:9090"),
                )
            })?),
        };
        let mut trusted_proxies = Vec::new();
        for proxy in self
            .trusted_proxies
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
        {
            trusted_proxies.push(proxy.parse::<std::net::IpAddr>().map_err(|_| {
                invalid(
                    "--trusted-proxy (CHATTERLY_TRUSTED_PROXIES)",
                    format!("{proxy:?} is not an IP address like 127.0.0.1"),
                )
            })?);
        }
        let jwt_secret = match self.jwt_secret.as_deref() {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                return Err(invalid(
                    "--jwt-secret (CHATTERLY_JWT_SECRET)",
                    format!(
                        "must be at least {MIN_SECRET_BYTES} bytes, got {}",
                        secret.len()
                    ),
                ))
            }
            Some(secret) => Some(secret.as_bytes().to_vec()),
            None if matches!(database, Database::Postgres { .. }) => {
                return Err(invalid(
                    "--jwt-secret (CHATTERLY_JWT_SECRET)",
                    "is required with PostgreSQL, since every instance must share it",
                ))
            }
            None => None,
        };
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    "--redis-url (REDIS_URL)",
                    "must start with redis://",
                ));
            }
        }
        if self.redis_prefix.trim().is_empty() || self.redis_prefix.chars().any(char::is_whitespace)
        {
            return Err(invalid(
                "--redis-prefix (CHATTERLY_REDIS_PREFIX)",
                "must be a non-empty word",
            ));
        }
        let mut cors_origins = Vec::new();
        for origin in &self.cors_origins {
            let origin = origin.trim().trim_end_matches('/');
            if origin.is_empty() {
                continue;
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || axum::http::HeaderValue::from_str(origin).is_err()
            {
                return Err(invalid(
                    "--cors-origin (FRONTEND_URL)",
                    format!("{origin:?} is not an origin like http://localhost:3000"),
                ));
            }
            cors_origins.push(origin.to_owned());
        }
        let positive = |value: u64, setting: &'static str| {
            if value == 0 {
                Err(invalid(setting, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive(self.max_message_chars as u64, "--max-message-chars")?;
        positive(self.max_body_bytes as u64, "--max-body-bytes")?;
        positive(self.max_page as u64, "--max-page")?;
        positive(self.user_search_limit as u64, "--user-search-limit")?;
        positive(self.lock_after as u64, "--lock-after")?;
        positive(self.token_ttl, "--token-ttl")?;
        if self.presence_ttl < 3 {
            return Err(invalid(
                "--presence-ttl (CHATTERLY_PRESENCE_TTL)",
                "must be at least 3 seconds",
            ));
        }
        if self.argon2_memory_kib < 8 {
            return Err(invalid("--argon2-memory-kib", "must be at least 8"));
        }
        let rate_limits = match self.rate_limits {
            Switch::Off => None,
            Switch::On => {
                positive(self.auth_per_minute as u64, "--auth-per-minute")?;
                positive(self.sends_per_second as u64, "--sends-per-second")?;
                Some(RateLimits {
                    auth_per_minute: self.auth_per_minute,
                    sends_per_second: self.sends_per_second,
                    send_burst: self.send_burst,
                })
            }
        };
        positive(self.cable_max_frame_bytes as u64, "--cable-max-frame-bytes")?;
        positive(
            self.cable_max_subscriptions as u64,
            "--cable-max-subscriptions",
        )?;
        positive(self.cable_outbox as u64, "--cable-outbox")?;
        positive(self.call_ring_timeout, "--call-ring-timeout")?;
        let call_ring_timeout = i64::try_from(self.call_ring_timeout)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(|| invalid("--call-ring-timeout", "is too large"))?;
        let ice_servers = parse_ice_servers(&self.ice_servers)?;
        let retention = match self.retention_days {
            None => None,
            Some(0) => {
                return Err(invalid(
                    "--retention-days (CHATTERLY_RETENTION_DAYS)",
                    "must be at least 1 (leave it unset to keep messages forever)",
                ))
            }
            Some(days) => Some(chrono::TimeDelta::try_days(i64::from(days)).ok_or_else(|| {
                invalid(
                    "--retention-days (CHATTERLY_RETENTION_DAYS)",
                    "is too large",
                )
            })?),
        };
        let blobs = self.blob_location()?;
        positive(self.attachment_grace_secs, "--attachment-grace-secs")?;
        positive(
            self.max_attachments_per_message as u64,
            "--max-attachments-per-message",
        )?;
        let attachment_grace = i64::try_from(self.attachment_grace_secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(|| invalid("--attachment-grace-secs", "is too large"))?;
        let cable = CableLimits {
            max_frame_bytes: self.cable_max_frame_bytes,
            max_subscriptions: self.cable_max_subscriptions,
            actions_per_second: if rate_limits.is_some() {
                self.cable_actions_per_second
            } else {
                0
            },
            action_burst: self.cable_action_burst.max(1),
            outbox_capacity: self.cable_outbox,
        };
        Ok(Config {
            listen,
            reuse_port: self.reuse_port,
            data_dir: self.storage.data_dir.clone(),
            database,
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            presence_ttl: Duration::from_secs(self.presence_ttl),
            jwt_secret,
            token_ttl: Duration::from_secs(self.token_ttl),
            cors_origins,
            rate_limits,
            limits: Limits {
                max_message_chars: self.max_message_chars,
                max_body_bytes: self.max_body_bytes,
                default_page: 50.min(self.max_page),
                max_page: self.max_page,
                user_search_limit: self.user_search_limit,
                search_rank_window: Some(self.search_rank_window).filter(|w| *w > 0),
                lock_after: self.lock_after,
                lock_duration: Duration::from_secs(self.lock_seconds),
                call_ring_timeout,
                retention,
                max_upload_bytes: (self.max_upload_bytes > 0).then_some(self.max_upload_bytes),
                upload_quota_bytes: (self.upload_quota_bytes > 0)
                    .then_some(self.upload_quota_bytes),
                attachment_grace,
                max_attachments_per_message: self.max_attachments_per_message,
            },
            blobs,
            jobs: self.jobs == Switch::On,
            ice_servers,
            metrics_listen,
            trusted_proxies,
            cable,
            argon2_memory_kib: self.argon2_memory_kib,
            log_format: self.log_format,
        })
    }
}

impl ServeArgs {
    /// `--blob-dir` or `--s3-*`, not both; the data directory's `blobs` by
    /// default.
    fn blob_location(&self) -> Result<BlobLocation, ConfigError> {
        let text = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let Some(bucket) = text(&self.s3_bucket) else {
            for (value, setting) in [
                (&self.s3_endpoint, "--s3-endpoint (CHATTERLY_S3_ENDPOINT)"),
                (
                    &self.s3_access_key_id,
                    "--s3-access-key-id (CHATTERLY_S3_ACCESS_KEY_ID)",
                ),
                (
                    &self.s3_secret_access_key,
                    "--s3-secret-access-key (CHATTERLY_S3_SECRET_ACCESS_KEY)",
                ),
            ] {
                if text(value).is_some() {
                    return Err(invalid(setting, "needs --s3-bucket (CHATTERLY_S3_BUCKET)"));
                }
            }
            return Ok(BlobLocation::Dir(
                self.blob_dir
                    .clone()
                    .unwrap_or_else(|| self.storage.data_dir.join("blobs")),
            ));
        };
        if self.blob_dir.is_some() {
            return Err(invalid(
                "--blob-dir (CHATTERLY_BLOB_DIR)",
                "cannot be combined with --s3-bucket: attachments go to one place",
            ));
        }
        let endpoint = text(&self.s3_endpoint);
        if let Some(url) = &endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "--s3-endpoint (CHATTERLY_S3_ENDPOINT)",
                    format!("{url:?} is not a URL like http://127.0.0.1:9000"),
                ));
            }
        }
        let region = self.s3_region.trim();
        if region.is_empty() {
            return Err(invalid(
                "--s3-region (CHATTERLY_S3_REGION)",
                "must not be empty",
            ));
        }
        let access_key_id = text(&self.s3_access_key_id);
        let secret_access_key = text(&self.s3_secret_access_key);
        if access_key_id.is_some() != secret_access_key.is_some() {
            return Err(invalid(
                "--s3-access-key-id (CHATTERLY_S3_ACCESS_KEY_ID)",
                "and --s3-secret-access-key (CHATTERLY_S3_SECRET_ACCESS_KEY) go together",
            ));
        }
        Ok(BlobLocation::S3(crate::blobs::S3Settings {
            bucket,
            endpoint,
            region: region.to_owned(),
            access_key_id,
            secret_access_key,
        }))
    }
}

/// Reads `--ice-servers`: a JSON list of RTCIceServer objects (`urls`, a
/// string or a list of `stun:`/`stuns:`/`turn:`/`turns:` URLs; `username` and
/// `credential`, which TURN needs). Browsers refuse a malformed list when a
/// call starts; here it stops start-up instead, naming the setting.
fn parse_ice_servers(text: &str) -> Result<serde_json::Value, ConfigError> {
    use serde_json::Value;
    let setting = "--ice-servers (CHATTERLY_ICE_SERVERS)";
    let text = text.trim();
    if text.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| invalid(setting, format!("is not JSON ({e})")))?;
    let Value::Array(servers) = &value else {
        return Err(invalid(
            setting,
            "must be a JSON list of {\"urls\": ...} objects",
        ));
    };
    for (n, server) in servers.iter().enumerate() {
        let at = |reason: &str| invalid(setting, format!("entry {n}: {reason}"));
        let Value::Object(fields) = server else {
            return Err(at("must be an object like {\"urls\": \"stun:host:3478\"}"));
        };
        if let Some(key) = fields
            .keys()
            .find(|k| !["urls", "username", "credential"].contains(&k.as_str()))
        {
            return Err(at(&format!(
                "unknown key {key:?} (urls, username, credential)"
            )));
        }
        let urls: Vec<&str> = match fields.get("urls") {
            Some(Value::String(url)) => vec![url.as_str()],
            Some(Value::Array(urls)) if !urls.is_empty() => urls
                .iter()
                .map(|u| u.as_str().ok_or_else(|| at("urls must be strings")))
                .collect::<Result<_, _>>()?,
            _ => return Err(at("needs \"urls\": a URL or a non-empty list of URLs")),
        };
        for key in ["username", "credential"] {
            if fields.get(key).is_some_and(|v| !v.is_string()) {
                return Err(at(&format!("{key} must be a string")));
            }
        }
        for url in urls {
            let scheme = url.split_once(':').map(|(s, _)| s);
            match scheme {
                Some("stun" | "stuns") => {}
                Some("turn" | "turns") => {
                    if !(fields.contains_key("username") && fields.contains_key("credential")) {
                        return Err(at(&format!("{url} needs a username and a credential")));
                    }
                }
                _ => {
                    return Err(at(&format!(
                        "{url:?} is not a stun:, stuns:, turn: or turns: URL"
                    )))
                }
            }
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Config, String> {
        ServeArgs::from_flags(flags.iter().copied())
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_embedded_on_port_3001() {
        let config = parse(&[]).expect("defaults valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:3001");
        assert!(matches!(config.database, Database::Sqlite { .. }));
        assert_eq!(config.limits.default_page, 50);
        assert_eq!(config.limits.max_message_chars, 4000);
        assert!(config.rate_limits.is_some());
        assert_eq!(
            config.cors_origins,
            ["http://localhost:3000", "http://127.0.0.1:3000"]
        );
    }

    #[test]
    fn postgres_requires_a_long_secret() {
        let err = parse(&["--database-url", "postgres://x@localhost/db"]).unwrap_err();
        assert!(err.contains("--jwt-secret"), "{err}");
        let err = parse(&[
            "--database-url",
            "postgres://x@localhost/db",
            "--jwt-secret",
            "short",
        ])
        .unwrap_err();
        assert!(err.contains("at least 32 bytes"), "{err}");
        let ok = parse(&[
            "--database-url",
            "postgres://x@localhost/db",
            "--jwt-secret",
            "0123456789abcdef0123456789abcdef",
        ])
        .expect("valid");
        assert!(matches!(ok.database, Database::Postgres { .. }));
    }

    #[test]
    fn the_search_language_is_a_plain_name() {
        let pg = |language: &str| {
            parse(&[
                "--database-url",
                "postgres://x@localhost/db",
                "--jwt-secret",
                "0123456789abcdef0123456789abcdef",
                "--search-language",
                language,
            ])
        };
        match pg(" english ").expect("valid").database {
            Database::Postgres {
                search_language, ..
            } => assert_eq!(search_language, "english"),
            other => panic!("{other:?}"),
        }
        assert!(pg("pg_catalog.german").is_ok());
        for bad in ["", "english'; drop table messages", "en glish", "ç"] {
            let err = pg(bad).unwrap_err();
            assert!(err.contains("--search-language"), "{bad:?}: {err}");
        }
        // SQLite has no use for it and ignores it.
        assert!(parse(&["--search-language", "klingon"]).is_ok());
    }

    #[test]
    fn bad_settings_name_the_setting() {
        assert!(parse(&["--listen", "nope"])
            .unwrap_err()
            .contains("--listen"));
        assert!(parse(&["--database-url", "mysql://x"])
            .unwrap_err()
            .contains("--database-url"));
        assert!(parse(&["--redis-url", "http://x"])
            .unwrap_err()
            .contains("--redis-url"));
        assert!(parse(&["--cors-origin", "localhost"])
            .unwrap_err()
            .contains("--cors-origin"));
        assert!(parse(&["--max-page", "0"])
            .unwrap_err()
            .contains("--max-page"));
        assert!(parse(&["--trusted-proxy", "nginx"])
            .unwrap_err()
            .contains("--trusted-proxy"));
        assert_eq!(
            parse(&["--trusted-proxy", "127.0.0.1"])
                .expect("valid")
                .trusted_proxies
                .len(),
            1
        );
        assert!(parse(&["--retention-days", "0"])
            .unwrap_err()
            .contains("--retention-days"));
        assert!(parse(&[]).expect("valid").limits.retention.is_none());
        assert!(parse(&["--metrics-listen", "9090"])
            .unwrap_err()
            .contains("--metrics-listen"));
        assert!(parse(&["--metrics-listen", "127.0.0.1:9090"])
            .expect("valid")
            .metrics_listen
            .is_some());
    }

    #[test]
    fn ice_servers_default_to_none_and_are_validated() {
        assert_eq!(
            parse(&[]).expect("valid").ice_servers,
            serde_json::json!([])
        );
        let servers = r#"[{"urls":"stun:stun.example.org:3478"},
            {"urls":["turn:turn.example.org:3478","turns:turn.example.org:5349"],"username":"u","credential":"p"}]"#;
        let config = parse(&["--ice-servers", servers]).expect("valid");
        assert_eq!(config.ice_servers.as_array().map(Vec::len), Some(2));
        for bad in [
            "nope",
            r#"{"urls":"stun:x"}"#,
            r#"["stun:x"]"#,
            r#"[{"url":"stun:x"}]"#,
            r#"[{"urls":[]}]"#,
            r#"[{"urls":"http://x"}]"#,
            r#"[{"urls":"turn:x:3478"}]"#,
            r#"[{"urls":"stun:x","username":5}]"#,
        ] {
            let err = parse(&["--ice-servers", bad]).unwrap_err();
            assert!(err.contains("--ice-servers"), "{bad}: {err}");
        }
    }

    #[test]
    fn attachment_settings_have_defaults_and_refuse_mixtures() {
        let config = parse(&["--data-dir", "/srv/chat"]).expect("valid");
        assert_eq!(config.blobs, BlobLocation::Dir("/srv/chat/blobs".into()));
        assert_eq!(config.limits.max_upload_bytes, Some(104_857_600));
        assert_eq!(config.limits.upload_quota_bytes, None);
        assert_eq!(config.limits.attachment_grace.num_seconds(), 86_400);
        assert_eq!(config.limits.max_attachments_per_message, 10);
        let unlimited =
            parse(&["--max-upload-bytes", "0", "--upload-quota-bytes", "5"]).expect("valid");
        assert_eq!(unlimited.limits.max_upload_bytes, None);
        assert_eq!(unlimited.limits.upload_quota_bytes, Some(5));
        let s3 = parse(&[
            "--s3-bucket",
            "files",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-access-key-id",
            "id",
            "--s3-secret-access-key",
            "secret",
        ])
        .expect("valid");
        match s3.blobs {
            BlobLocation::S3(settings) => {
                assert_eq!(settings.bucket, "files");
                assert_eq!(settings.region, "us-east-1");
                assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
            }
            other => panic!("{other:?}"),
        }
        for (flags, setting) in [
            (vec!["--s3-endpoint", "http://x"], "--s3-endpoint"),
            (
                vec!["--s3-bucket", "b", "--blob-dir", "/tmp/x"],
                "--blob-dir",
            ),
            (
                vec!["--s3-bucket", "b", "--s3-endpoint", "ftp://x"],
                "--s3-endpoint",
            ),
            (
                vec!["--s3-bucket", "b", "--s3-access-key-id", "id"],
                "--s3-access-key-id",
            ),
            (
                vec!["--attachment-grace-secs", "0"],
                "--attachment-grace-secs",
            ),
            (
                vec!["--max-attachments-per-message", "0"],
                "--max-attachments-per-message",
            ),
        ] {
            let err = parse(&flags).unwrap_err();
            assert!(err.contains(setting), "{flags:?}: {err}");
        }
    }

    #[test]
    fn rate_limits_switch_off() {
        assert!(parse(&["--rate-limits", "off"])
            .expect("valid")
            .rate_limits
            .is_none());
    }
}
