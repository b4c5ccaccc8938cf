//! `chatterly`: reads configuration, builds the pieces, starts them.

use std::process::ExitCode;

use clap::Parser;

use chatterly::config::{Cli, Command, LogFormat, ServeArgs};
use chatterly::server;

// glibc malloc showed as ~12% of server CPU under load (many small, short-lived
// allocations across threads); mimalloc handles that pattern far better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
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
