//! `chatterly-load`: drives a running Chatterly server over real HTTP and
//! WebSockets and reports throughput, latency percentiles and errors. See
//! README.md.
//!
//! Exit status: 0 after a run, 1 when a write scenario's read-back found lost
//! or duplicated messages or `seq` gaps or a fan-out lost, duplicated or
//! misrouted a delivery, 2 on a setup or usage error.

mod api;
mod cli;
mod procfs;
mod progress;
mod report;
mod scenarios;
mod stats;
mod target;
mod verify;
mod ws;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::api::Api;
use crate::cli::{Cli, ScenarioCommand};
use crate::report::ClientInfo;
use crate::scenarios::Ctx;
use crate::target::Target;

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every socket is a descriptor: take all the kernel allows this process.
    let nofile = match procfs::raise_nofile_limit() {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("warning: reading RLIMIT_NOFILE: {e}");
            procfs::NofileLimit::default()
        }
    };
    // Refuse a non-loopback target before anything else happens.
    let target = match target::parse_loopback_url(&cli.url) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cli.threads(cpus);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().worker_threads(threads);
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(cli, target, nofile, cpus, threads));
    // Do not wait for requests still in flight after a Ctrl-C.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the chosen scenario; `Ok(false)` when its verification failed.
async fn run(
    cli: Cli,
    target: Target,
    nofile: procfs::NofileLimit,
    cpus: usize,
    threads: usize,
) -> Result<bool> {
    if let Some(path) = &cli.json {
        // Fail now rather than after the run.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            bail!(
                "--json {}: directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
    }
    target.check_resolution().await?;
    let concurrency = cli.scenario.workers();
    // Idle connections kept per host: at least one per worker, so no request
    // waits for a new handshake.
    let api = Api::new(
        target,
        concurrency + 16,
        Duration::from_secs_f64(cli.timeout),
    )?;
    api.check_up().await?;

    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(watch_ctrl_c(stop.clone()));
    let ctx = Ctx {
        api,
        chatty: !cli.quiet,
        stop,
        threads,
        nofile,
        timeout: Duration::from_secs_f64(cli.timeout),
    };
    let report = match &cli.scenario {
        ScenarioCommand::RestRead(args) => scenarios::rest_read::run(&ctx, args).await?,
        ScenarioCommand::Send(args) => scenarios::send::run(&ctx, args).await?,
        ScenarioCommand::IdleSockets(args) => scenarios::idle_sockets::run(&ctx, args).await?,
        ScenarioCommand::Fanout(args) => scenarios::fanout::run(&ctx, args).await?,
        ScenarioCommand::ConversationList(args) => {
            scenarios::conversation_list::run(&ctx, args).await?
        }
        ScenarioCommand::Search(args) => scenarios::search::run(&ctx, args).await?,
    };
    let mut report = report;
    report.client = ClientInfo {
        cpus,
        threads,
        timeout_s: cli.timeout,
    };
    report.annotate();
    print!("{}", report.render_text());
    if let Some(path) = &cli.json {
        report.write_json(path)?;
        ctx.say(format!("results written to {}", path.display()));
    }
    Ok(report.passed())
}

/// First Ctrl-C: stop the workers, still report. Second: exit at once.
async fn watch_ctrl_c(stop: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("\ninterrupted: stopping the run (Ctrl-C again to abort)");
    stop.store(true, Ordering::Relaxed);
    if tokio::signal::ctrl_c()
        .await
        .context("second Ctrl-C")
        .is_ok()
    {
        std::process::exit(130);
    }
}
