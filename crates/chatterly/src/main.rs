//! `chatterly`: reads configuration, builds the pieces, starts them.

use std::process::ExitCode;

use clap::Parser;

use chatterly::config::{
    Cli, Command, JobStatusFilter, JobsArgs, JobsCommand, LogFormat, ServeArgs,
};
use chatterly::server;

// glibc malloc showed as ~12% of server CPU under load (many small, short-lived
// allocations across threads); mimalloc handles that pattern far better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::Migrate(storage)) => migrate(storage).await,
        Some(Command::Jobs(args)) => jobs(args).await,
        Some(Command::Users(args)) => {
            init_logging(LogFormat::Pretty);
            chatterly::ops::users::run(args).await
        }
        Some(Command::Doctor(args)) => {
            return if chatterly::ops::doctor::run(*args).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        Some(Command::Backup(args)) => chatterly::ops::backup::backup(args).await,
        Some(Command::Restore(args)) => {
            init_logging(LogFormat::Pretty);
            chatterly::ops::backup::restore(args).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line naming what is wrong, never a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.validate()?;
    init_logging(config.log_format);
    let backend = match &config.database {
        chatterly::config::Database::Sqlite { path } => format!("SQLite at {}", path.display()),
        chatterly::config::Database::Postgres { .. } => "PostgreSQL".to_owned(),
    };
    let server = server::start(config).await?;
    let addr = server.local_addr();
    println!("Chatterly is listening on http://{addr}/ ({backend})");
    if let Some(metrics) = server.metrics_addr() {
        println!("Metrics at http://{metrics}/metrics");
    }
    tracing::info!(%addr, "listening");
    server.run_until_signal().await
}

async fn migrate(storage: chatterly::config::StorageArgs) -> anyhow::Result<()> {
    init_logging(LogFormat::Pretty);
    let database = storage.database()?;
    server::open_store(&database, &storage.data_dir).await?;
    println!("migrations applied");
    Ok(())
}

async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    use chatterly_store::JobStatus;
    init_logging(LogFormat::Pretty);
    let storage = args.command.storage();
    let database = storage.database()?;
    let store = server::open_store(&database, &storage.data_dir).await?;
    match args.command {
        JobsCommand::List { status, limit, .. } => {
            let status = match status {
                JobStatusFilter::Pending => Some(JobStatus::Pending),
                JobStatusFilter::Running => Some(JobStatus::Running),
                JobStatusFilter::Dead => Some(JobStatus::Dead),
                JobStatusFilter::All => None,
            };
            let jobs = store
                .list_jobs(status, limit)
                .await
                .map_err(|e| anyhow::anyhow!("cannot list jobs: {e}"))?;
            print!("{}", chatterly::jobs::table(&jobs));
        }
        JobsCommand::Retry { id, .. } => {
            let retried = store
                .retry_job(id, chatterly_store::now())
                .await
                .map_err(|e| anyhow::anyhow!("cannot retry job {id}: {e}"))?;
            if !retried {
                anyhow::bail!("job {id} is not a dead job (it does not exist, or it is pending or running; only dead jobs can be retried, see `chatterly jobs list --status dead`)");
            }
            println!("job {id} is pending again and due now");
        }
    }
    Ok(())
}
