//! `chatterly doctor`: checks a deployment from its `serve` flags and says
//! what to fix. It never migrates, and creates no database that is missing.

use std::time::Duration;

use chatterly_store::{JobStatus, Store};
use chatterly_store_postgres::PgStore;
use chatterly_store_sqlite::SqliteStore;

use crate::blobs::Blobs;
use crate::config::{BlobLocation, Database, ServeArgs};
use crate::domain::jobs::MAINTENANCE;

/// How long a due job may wait before the queue counts as stuck.
const STUCK_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
const TIMEOUT: Duration = Duration::from_secs(5);

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    /// Worth knowing; not wrong.
    Note(String),
    /// Wrong, with what to do about it.
    Fail {
        what: String,
        fix: String,
    },
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding::Fail {
        what: what.into(),
        fix: fix.into(),
    }
}

/// Runs every check, prints the findings; true when nothing is wrong.
pub async fn run(args: ServeArgs) -> bool {
    let findings = check(&args).await;
    let mut healthy = true;
    for (area, finding) in &findings {
        match finding {
            Finding::Ok(text) => println!("ok    {area}: {text}"),
            Finding::Note(text) => println!("note  {area}: {text}"),
            Finding::Fail { what, fix } => {
                healthy = false;
                println!("FAIL  {area}: {what}\n      fix: {fix}");
            }
        }
    }
    if healthy {
        println!("all checks passed");
    } else {
        println!("some checks failed (see the fixes above)");
    }
    healthy
}

/// The findings, by area.
pub async fn check(args: &ServeArgs) -> Vec<(&'static str, Finding)> {
    let mut findings = Vec::new();
    let config = args.validate();
    match &config {
        Ok(_) => findings.push(("config", Finding::Ok("every setting is valid".into()))),
        Err(e) => findings.push((
            "config",
            fail(e.to_string(), "correct that flag or environment variable"),
        )),
    }
    if let Ok(config) = &config {
        findings.push(("blobs", check_blobs(&config.blobs).await));
    }
    let database = match args.storage.database() {
        Ok(database) => database,
        Err(_) => return findings,
    };
    let store: Option<std::sync::Arc<dyn Store>> = match &database {
        Database::Sqlite { path } => check_sqlite(path, &mut findings).await,
        Database::Postgres { url, .. } => check_postgres(url, &mut findings).await,
    };
    if let Some(url) = &args.redis_url {
        findings.push(("redis", check_redis(url).await));
    }
    if let Some(store) = store {
        check_jobs(&*store, &mut findings).await;
    }
    findings
}

async fn check_sqlite(
    path: &std::path::Path,
    findings: &mut Vec<(&'static str, Finding)>,
) -> Option<std::sync::Arc<dyn Store>> {
    if !path.is_file() {
        findings.push((
            "database",
            fail(
                format!("there is no database at {}", path.display()),
                "check --data-dir, or create it with `chatterly migrate` (serve does too)",
            ),
        ));
        return None;
    }
    let version = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || chatterly_store_sqlite::backup::schema_version(&path))
            .await
    };
    match version {
        Ok(Ok((current, latest))) if current == latest => findings.push((
            "migrations",
            Finding::Ok(format!("schema at version {current}, this build's latest")),
        )),
        Ok(Ok((current, latest))) if current < latest => findings.push((
            "migrations",
            fail(
                format!("schema at version {current}, this build has {latest}"),
                "run `chatterly migrate` (serve migrates on start)",
            ),
        )),
        Ok(Ok((current, latest))) => findings.push((
            "migrations",
            fail(
                format!("schema at version {current}, newer than this build's {latest}"),
                "run the newer chatterly build that migrated it",
            ),
        )),
        Ok(Err(e)) => findings.push((
            "database",
            fail(
                format!("cannot read {}: {e}", path.display()),
                "check the file",
            ),
        )),
        Err(e) => findings.push(("database", fail(e.to_string(), "retry"))),
    }
    match SqliteStore::open(path).await {
        Ok(store) => match store.ping().await {
            Ok(()) => {
                findings.push((
                    "database",
                    Finding::Ok(format!("SQLite at {} answers", path.display())),
                ));
                Some(std::sync::Arc::new(store))
            }
            Err(e) => {
                findings.push(("database", fail(e.to_string(), "check the file")));
                None
            }
        },
        Err(e) => {
            findings.push((
                "database",
                fail(
                    format!("cannot open {}: {e}", path.display()),
                    "check the file's permissions and the disk",
                ),
            ));
            None
        }
    }
}

async fn check_postgres(
    url: &str,
    findings: &mut Vec<(&'static str, Finding)>,
) -> Option<std::sync::Arc<dyn Store>> {
    let store = match tokio::time::timeout(TIMEOUT, PgStore::connect(url, 2)).await {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            findings.push((
                "database",
                fail(
                    format!("cannot connect to PostgreSQL: {e}"),
                    "check --database-url (DATABASE_URL), that the server runs and accepts this user",
                ),
            ));
            return None;
        }
        Err(_) => {
            findings.push((
                "database",
                fail(
                    "connecting to PostgreSQL timed out",
                    "check --database-url (DATABASE_URL) and the network",
                ),
            ));
            return None;
        }
    };
    findings.push(("database", Finding::Ok("PostgreSQL answers".into())));
    match store.pending_migrations().await {
        Ok(pending) if pending.is_empty() => findings.push((
            "migrations",
            Finding::Ok("every migration of this build is applied".into()),
        )),
        Ok(pending) => findings.push((
            "migrations",
            fail(
                format!("not applied: {}", pending.join(", ")),
                "run `chatterly migrate` (serve migrates on start)",
            ),
        )),
        Err(e) => findings.push(("migrations", fail(e.to_string(), "check the database"))),
    }
    match store.missing_partitions(chatterly_store::now()).await {
        Ok(missing) if missing.is_empty() => findings.push((
            "partitions",
            Finding::Ok("message partitions exist for this month and the next".into()),
        )),
        Ok(missing) => findings.push((
            "partitions",
            fail(
                format!("missing message partitions: {}", missing.join(", ")),
                "run `chatterly migrate`, and keep an instance with --jobs on (its hourly \
                 store.maintain job creates them ahead)",
            ),
        )),
        Err(e) => findings.push(("partitions", fail(e.to_string(), "check the database"))),
    }
    Some(std::sync::Arc::new(store))
}

/// Where attachments go. A directory is only looked at (serve creates it);
/// a bucket is listed under a prefix nothing is written to.
async fn check_blobs(location: &BlobLocation) -> Finding {
    let settings = match location {
        BlobLocation::Dir(dir) if dir.is_dir() => {
            return Finding::Ok(format!("attachments are stored under {}", dir.display()))
        }
        BlobLocation::Dir(dir) if dir.exists() => {
            return fail(
                format!("{} is not a directory", dir.display()),
                "point --blob-dir (CHATTERLY_BLOB_DIR) at a directory",
            )
        }
        BlobLocation::Dir(dir) => {
            return Finding::Note(format!(
                "no attachment directory at {} yet; serve creates it",
                dir.display()
            ))
        }
        BlobLocation::S3(settings) => settings,
    };
    let bucket = &settings.bucket;
    let fix = "check --s3-bucket, --s3-endpoint, --s3-region and the credentials \
               (CHATTERLY_S3_*), and that the bucket exists";
    let blobs = match Blobs::s3(settings) {
        Ok(blobs) => blobs,
        Err(e) => return fail(format!("cannot set up the S3 bucket {bucket}: {e}"), fix),
    };
    // The client retries with backoff for minutes; doctor answers sooner.
    match tokio::time::timeout(TIMEOUT, blobs.probe()).await {
        Ok(Ok(())) => Finding::Ok(format!("the S3 bucket {bucket} answers")),
        Ok(Err(e)) => fail(format!("cannot list the S3 bucket {bucket}: {e}"), fix),
        Err(_) => fail(format!("reaching the S3 bucket {bucket} timed out"), fix),
    }
}

async fn check_redis(url: &str) -> Finding {
    let ping = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(TIMEOUT, ping).await {
        Ok(Ok(_)) => Finding::Ok("Redis answers".into()),
        Ok(Err(e)) => fail(
            format!("cannot reach Redis: {e}"),
            "check --redis-url (REDIS_URL) and that Redis runs",
        ),
        Err(_) => fail(
            "reaching Redis timed out",
            "check --redis-url (REDIS_URL) and the network",
        ),
    }
}

async fn check_jobs(store: &dyn Store, findings: &mut Vec<(&'static str, Finding)>) {
    let now = chatterly_store::now();
    match store.list_jobs(Some(JobStatus::Dead), 1000).await {
        Ok(dead) if dead.is_empty() => findings.push(("jobs", Finding::Ok("no dead jobs".into()))),
        Ok(dead) => findings.push((
            "jobs",
            fail(
                format!(
                    "{} dead job(s), the first {} ({}): {}",
                    dead.len(),
                    dead[0].id,
                    dead[0].kind,
                    dead[0].last_error.as_deref().unwrap_or("no error recorded")
                ),
                "see `chatterly jobs list --status dead`, fix the cause, then \
                 `chatterly jobs retry ID`",
            ),
        )),
        Err(e) => findings.push(("jobs", fail(e.to_string(), "check the database"))),
    }
    match store.list_jobs(None, 10_000).await {
        Ok(jobs) => {
            let due: Vec<_> = jobs
                .iter()
                .filter(|j| j.status != JobStatus::Dead && j.run_at <= now)
                .filter(|j| {
                    j.status == JobStatus::Pending || j.locked_until.is_some_and(|l| l <= now)
                })
                .collect();
            let oldest = due.iter().map(|j| now - j.run_at).max();
            match oldest {
                Some(age) if age > STUCK_AFTER => findings.push((
                    "jobs",
                    fail(
                        format!(
                            "{} due job(s) waiting, the oldest for {} s",
                            due.len(),
                            age.num_seconds()
                        ),
                        "make sure some instance runs the worker (`serve` without --jobs off)",
                    ),
                )),
                Some(age) => findings.push((
                    "jobs",
                    Finding::Ok(format!(
                        "{} due job(s), the oldest waiting {} s",
                        due.len(),
                        age.num_seconds()
                    )),
                )),
                None => findings.push(("jobs", Finding::Ok("no job is overdue".into()))),
            }
            if !jobs
                .iter()
                .any(|j| j.kind == MAINTENANCE && j.status != JobStatus::Dead)
            {
                findings.push((
                    "jobs",
                    Finding::Note(
                        "no store.maintain job is queued yet; the first `serve` queues it".into(),
                    ),
                ));
            }
        }
        Err(e) => findings.push(("jobs", fail(e.to_string(), "check the database"))),
    }
}
