//! `chatterly backup` and `chatterly restore`. SQLite only: on PostgreSQL the
//! database's own tools (pg_dump/pg_restore, base backups with WAL archiving
//! for point-in-time recovery) are the way, and these commands say so instead
//! of pretending.

use anyhow::{anyhow, bail, Context};
use chatterly_store_sqlite::backup;

use crate::config::{BackupArgs, Database, RestoreArgs};
use crate::server;

const POSTGRES_BACKUP: &str = "`chatterly backup` copies the embedded SQLite database only; \
    on PostgreSQL use pg_dump (logical) or a base backup with WAL archiving (point-in-time \
    recovery): see the README's Operations section";
const POSTGRES_RESTORE: &str = "`chatterly restore` restores SQLite backups only; on \
    PostgreSQL use pg_restore or your point-in-time recovery: see the README's Operations section";

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let path = match args.storage.database()? {
        Database::Sqlite { path } => path,
        Database::Postgres { .. } => bail!(POSTGRES_BACKUP),
    };
    let to = args.to.clone();
    let summary = tokio::task::spawn_blocking(move || backup::backup(&path, &to))
        .await
        .context("backup task")?
        .map_err(|e| anyhow!("backup failed: {e}"))?;
    println!(
        "backup written to {} ({} bytes, schema version {}); keep the data directory's \
         jwt_secret too (or set --jwt-secret) so that tokens survive a restore",
        args.to.display(),
        summary.bytes,
        summary.schema_version
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let database = args.storage.database()?;
    let path = match &database {
        Database::Sqlite { path } => path.clone(),
        Database::Postgres { .. } => bail!(POSTGRES_RESTORE),
    };
    let dir = &args.storage.data_dir;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "the data directory {} is not empty; restore only into an empty or new \
                     one (--data-dir), then point the server at it",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the data directory {}", dir.display()))
        }
    }
    let from = args.from.clone();
    let target = path.clone();
    let summary = tokio::task::spawn_blocking(move || backup::restore(&from, &target))
        .await
        .context("restore task")?
        .map_err(|e| anyhow!("restore failed: {e}"))?;
    // Brings an older backup up to this build's schema.
    server::open_store(&database, dir).await?;
    println!(
        "restored {} into {} (schema version {} when backed up)",
        args.from.display(),
        path.display(),
        summary.schema_version
    );
    Ok(())
}
