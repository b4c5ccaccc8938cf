//! The Prometheus endpoint (`--metrics-listen`, off by default), on its own
//! listener so it is never exposed with the API.
//!
//! Request counts and latencies are recorded by the HTTP layer
//! (`http::track`) through the `metrics` facade; everything else is read when
//! scraped: the gateway's counters and gauges from the hub, presence from the
//! presence view, the job queue from the store. Nothing is recorded on the
//! delivery path but one relaxed atomic add per subscriber group.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chatterly_store::{JobStatus, Store};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::bus::BUS_STATS;
use crate::cable::hub::{Hub, STATS};
use crate::ephemeral::Presence;

/// The latency buckets of `chatterly_http_request_duration_seconds`.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls share it).
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("chatterly_http_request_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .context("metrics buckets")?
        .set_buckets_for_metric(
            Matcher::Full("chatterly_bus_lag_seconds".into()),
            LATENCY_BUCKETS,
        )
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

#[derive(Clone)]
struct Sources {
    handle: PrometheusHandle,
    hub: Arc<Hub>,
    presence: Arc<Presence>,
    store: Arc<dyn Store>,
}

/// Serves `GET /metrics` on `addr` until `stop` turns true; returns the bound
/// address.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    hub: Arc<Hub>,
    presence: Arc<Presence>,
    store: Arc<dyn Store>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Sources {
            handle,
            hub,
            presence,
            store,
        });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

async fn scrape(State(sources): State<Sources>) -> String {
    metrics::gauge!("chatterly_open_sockets").set(sources.hub.connection_count() as f64);
    metrics::gauge!("chatterly_subscriptions").set(sources.hub.subscription_count() as f64);
    metrics::gauge!("chatterly_presence_online_users").set(sources.presence.online_count() as f64);
    metrics::counter!("chatterly_deliveries_total")
        .absolute(STATS.deliveries.load(Ordering::Relaxed));
    metrics::counter!("chatterly_outbox_drops_total")
        .absolute(STATS.outbox_drops.load(Ordering::Relaxed));
    metrics::counter!("chatterly_slow_consumer_disconnects_total")
        .absolute(STATS.slow_consumers.load(Ordering::Relaxed));
    metrics::counter!("chatterly_bus_published_total")
        .absolute(BUS_STATS.published.load(Ordering::Relaxed));
    metrics::counter!("chatterly_bus_received_total")
        .absolute(BUS_STATS.received.load(Ordering::Relaxed));
    metrics::counter!("chatterly_bus_dropped_total")
        .absolute(BUS_STATS.dropped.load(Ordering::Relaxed));
    if let Some((in_use, open)) = sources.store.pool_usage() {
        metrics::gauge!("chatterly_db_pool_connections", "state" => "in_use")
            .set(f64::from(in_use));
        metrics::gauge!("chatterly_db_pool_connections", "state" => "open").set(f64::from(open));
    }
    job_gauges(&*sources.store).await;
    sources.handle.render()
}

/// Queue depth (pending), dead jobs and the age of the oldest due job.
async fn job_gauges(store: &dyn Store) {
    let now = chatterly_store::now();
    match store.list_jobs(None, 10_000).await {
        Ok(jobs) => {
            let count = |status: JobStatus| jobs.iter().filter(|j| j.status == status).count();
            metrics::gauge!("chatterly_jobs", "status" => "pending")
                .set(count(JobStatus::Pending) as f64);
            metrics::gauge!("chatterly_jobs", "status" => "running")
                .set(count(JobStatus::Running) as f64);
            metrics::gauge!("chatterly_jobs", "status" => "dead")
                .set(count(JobStatus::Dead) as f64);
            let oldest = jobs
                .iter()
                .filter(|j| j.status == JobStatus::Pending && j.run_at <= now)
                .map(|j| (now - j.run_at).num_milliseconds())
                .max()
                .unwrap_or(0);
            metrics::gauge!("chatterly_jobs_oldest_due_seconds").set(oldest as f64 / 1000.0);
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot read the job queue"),
    }
}
