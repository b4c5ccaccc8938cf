//! Builds the pieces from a validated [`Config`] and runs them. Used by
//! `main` and by the black-box tests, which start the real server on a random
//! port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chatterly_store::Store;
use chatterly_store_postgres::PgStore;
use chatterly_store_sqlite::SqliteStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::blobs::Blobs;
use crate::bus::{Bus, Deliver, LocalBus, Receivers, RedisBus};
use crate::cable::hub::{CloseReason, Hub};
use crate::cable::{Cable, CableOptions};
use crate::config::{BlobLocation, Config, Database, MIN_SECRET_BYTES};
use crate::domain::auth::{KnownUsers, Passwords, Revocations, Tokens};
use crate::domain::{Domain, DomainParts, MembershipCache, RateLimiter, RosterCache};
use crate::ephemeral::Presence;
use crate::http::{self, AppState, HttpOptions};
use crate::jobs::{self, WorkerOptions};
use crate::redis_keys::RedisKeys;

/// Opens the configured database and applies its migrations.
pub async fn open_store(database: &Database, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    match database {
        Database::Sqlite { path } => {
            std::fs::create_dir_all(data_dir).with_context(|| {
                format!(
                    "cannot create the data directory {} (--data-dir)",
                    data_dir.display()
                )
            })?;
            let store = SqliteStore::open(path)
                .await
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            store
                .migrate()
                .await
                .context("cannot migrate the SQLite database")?;
            Ok(Arc::new(store))
        }
        Database::Postgres {
            url,
            pool,
            search_language,
        } => {
            let store = PgStore::connect(url, *pool)
                .await
                .context("cannot connect to PostgreSQL (--database-url)")?;
            store
                .migrate()
                .await
                .context("cannot migrate the PostgreSQL database")?;
            let reindexed = store
                .set_search_language(search_language)
                .await
                .context("cannot set the search language (--search-language)")?;
            if reindexed {
                tracing::info!(%search_language, "search language changed: messages re-indexed");
            }
            Ok(Arc::new(store))
        }
    }
}

/// The blob store for attachments, as configured.
pub fn open_blobs(location: &BlobLocation) -> anyhow::Result<Blobs> {
    match location {
        BlobLocation::Dir(dir) => Blobs::local(dir)
            .with_context(|| format!("cannot use {} for attachments (--blob-dir)", dir.display())),
        BlobLocation::S3(settings) => {
            Blobs::s3(settings).context("cannot set up the S3 bucket for attachments (--s3-bucket)")
        }
    }
}

/// The signing secret: configured, or (embedded mode) generated once and kept
/// in the data directory so tokens survive restarts.
fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    let path = config.data_dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(secret) => {
            let secret = secret.trim();
            if secret.len() < MIN_SECRET_BYTES {
                bail!(
                    "the secret in {} is shorter than {MIN_SECRET_BYTES} bytes",
                    path.display()
                );
            }
            Ok(secret.as_bytes().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use rand::RngCore;
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&path, &secret)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

async fn redis(url: &str) -> anyhow::Result<(redis::Client, redis::aio::ConnectionManager)> {
    let client = redis::Client::open(url).context("invalid --redis-url (REDIS_URL)")?;
    let connect = redis::aio::ConnectionManager::new(client.clone());
    let manager = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .context("cannot reach Redis (--redis-url): timed out")?
        .context("cannot reach Redis (--redis-url)")?;
    Ok((client, manager))
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    domain: Arc<Domain>,
    hub: Arc<Hub>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the metrics endpoint listens, when `--metrics-listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn domain(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// Tells every socket to reconnect elsewhere (`disconnect`
    /// `server_restart`), stops accepting, finishes in-flight requests, and
    /// returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.hub.close_all(CloseReason::ServerRestart);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.hub.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.shutdown.send(true);
        self.task.await.context("server task")?.context("server")?;
        Ok(())
    }

    /// Runs until the process is asked to stop (SIGTERM or ctrl-c).
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Opens the store, migrates, and starts serving on `config.listen`.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    // Installed before anything records.
    let metrics_handle = match config.metrics_listen {
        Some(_) => Some(crate::metrics::recorder()?),
        None => None,
    };
    let store = open_store(&config.database, &config.data_dir).await?;
    let blobs = Arc::new(open_blobs(&config.blobs)?);
    let metrics_store = Arc::clone(&store);
    let secret = jwt_secret(&config)?;
    let redis = match &config.redis_url {
        Some(url) => Some(redis(url).await?),
        None => None,
    };
    let shared = matches!(config.database, Database::Postgres { .. });
    // Names this process on the bus and in shared presence.
    let instance_id = uuid::Uuid::new_v4().to_string();
    let keys = RedisKeys::new(&config.redis_prefix);
    let hub = Arc::new(Hub::default());
    let presence = Arc::new(match &redis {
        Some((_, manager)) => Presence::shared(
            manager.clone(),
            &instance_id,
            keys.clone(),
            config.presence_ttl,
        )
        .await
        .context("cannot set up presence in Redis (--redis-url)")?,
        None => Presence::default(),
    });
    let memberships = Arc::new(MembershipCache::default());
    let calls = Arc::new(RosterCache::default());
    let known_users = Arc::new(KnownUsers::default());
    let receivers: Arc<dyn Deliver> = Arc::new(Receivers::new(vec![
        hub.clone(),
        presence.clone(),
        memberships.clone(),
        calls.clone(),
        known_users.clone(),
    ]));
    let bus: Arc<dyn Bus> = match &redis {
        Some((client, manager)) => Arc::new(
            RedisBus::start(
                client.clone(),
                manager.clone(),
                &instance_id,
                &keys,
                receivers,
            )
            .await
            .context("cannot subscribe to the Redis bus (--redis-url)")?,
        ),
        None => Arc::new(LocalBus::new(receivers)),
    };
    let revocations = Revocations::load(
        &*store,
        shared,
        redis.as_ref().map(|(_, m)| (m.clone(), keys.clone())),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot load token revocations: {e}"))?;
    let passwords = Passwords::new(config.argon2_memory_kib).map_err(|e| anyhow::anyhow!("{e}"))?;
    let domain = Arc::new(Domain::new(DomainParts {
        store,
        bus,
        presence: Arc::clone(&presence),
        tokens: Tokens::new(&secret, config.token_ttl),
        passwords,
        revocations,
        known_users,
        memberships,
        calls,
        limits: config.limits.clone(),
        rate: config.rate_limits.map(RateLimiter::new),
        blobs,
    }));
    domain
        .maintain()
        .await
        .map_err(|e| anyhow::anyhow!("start-up maintenance failed: {e}"))?;
    // Maintenance then recurs as a job in the durable queue.
    domain
        .schedule_recurring_jobs()
        .await
        .map_err(|e| anyhow::anyhow!("cannot schedule the recurring jobs: {e}"))?;
    if redis.is_some() {
        spawn_presence_upkeep(Arc::clone(&domain), config.presence_ttl / 3);
    }

    let cable = Arc::new(Cable {
        domain: Arc::clone(&domain),
        hub: Arc::clone(&hub),
        options: CableOptions {
            allowed_origins: config.cors_origins.clone(),
            ping_interval: Duration::from_secs(3),
            max_frame_bytes: config.cable.max_frame_bytes,
            max_subscriptions: config.cable.max_subscriptions,
            actions_per_second: config.cable.actions_per_second,
            action_burst: config.cable.action_burst,
            outbox_capacity: config.cable.outbox_capacity,
            max_garbage_frames: 10,
        },
    });
    let app = http::router(
        AppState {
            domain: Arc::clone(&domain),
            cable,
            client: Arc::new(http::ClientSettings {
                ice_servers: config.ice_servers.clone(),
            }),
        },
        &HttpOptions {
            cors_origins: config.cors_origins.clone(),
            max_body_bytes: config.limits.max_body_bytes,
            metrics: config.metrics_listen.is_some(),
            trusted_proxies: config.trusted_proxies.clone(),
        },
    );
    let listener = listen(config.listen, config.reuse_port)
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let local_addr = listener.local_addr()?;
    // Small frames must not wait for Nagle and the peer's delayed ACK: without
    // this, fan-out delivery p99 was ~40 ms instead of ~10 ms.
    let listener =
        axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
            let _ = stream.set_nodelay(true);
        });
    let (shutdown, mut stop) = watch::channel(false);
    let metrics_addr = match config.metrics_listen {
        Some(addr) => Some(
            crate::metrics::serve(
                addr,
                metrics_handle.clone().context("metrics recorder")?,
                Arc::clone(&hub),
                Arc::clone(&presence),
                Arc::clone(&metrics_store),
                shutdown.subscribe(),
            )
            .await?,
        ),
        None => None,
    };
    if config.jobs {
        tokio::spawn(jobs::run(
            Arc::clone(&domain),
            WorkerOptions::default(),
            shutdown.subscribe(),
        ));
    }
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
    });
    Ok(Server {
        local_addr,
        metrics_addr,
        shutdown,
        task,
        domain,
        hub,
    })
}

/// Binds with a deep accept backlog (tokio's default of 128 dropped connects in
/// bursts of a few hundred) and, when asked, SO_REUSEPORT so several instances
/// on one machine can share a port (the kernel spreads connections).
fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(reuse_port)?;
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Beats (and looks for dead instances) three times per presence TTL.
fn spawn_presence_upkeep(domain: Arc<Domain>, every: Duration) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(every);
        loop {
            every.tick().await;
            domain.presence_tick().await;
        }
    });
}
