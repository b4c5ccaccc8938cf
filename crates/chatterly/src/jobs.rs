//! The durable job worker: runs inside `chatterly serve` (switch it off with
//! `--jobs off`). It claims due jobs from the store under a lease, runs them
//! through the domain, and completes, retries (with exponential backoff) or
//! buries each one. The queue lives in the database, so a job enqueued with
//! its change survives any crash; a job claimed by a worker that died is
//! claimed again when its lease lapses. Running a job twice is therefore
//! possible, and every job is written to be idempotent (the missed-call job is
//! a compare-and-set on the call's status).

use std::sync::Arc;
use std::time::Duration;

use chatterly_store::{Job, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::domain::Domain;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How often the queue is polled when it was found empty.
    pub poll: Duration,
    /// How long a claim holds before another worker may take the job.
    pub lease: Duration,
    /// Jobs claimed (and run concurrently) at once.
    pub batch: u32,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            poll: Duration::from_millis(250),
            lease: Duration::from_secs(60),
            batch: 32,
        }
    }
}

/// The wait before retry `attempt` (1-based): 2, 4, 8 … seconds, at most
/// ten minutes.
pub fn backoff(attempt: i32) -> Duration {
    let exponent = attempt.clamp(1, 16) as u32;
    Duration::from_secs((1u64 << exponent).min(600))
}

fn after(now: Timestamp, wait: Duration) -> Timestamp {
    now + chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX)
}

/// Runs until `stop` turns true.
pub async fn run(domain: Arc<Domain>, options: WorkerOptions, mut stop: watch::Receiver<bool>) {
    tracing::info!("job worker started");
    loop {
        let claimed = run_due(&domain, &options, chatterly_store::now()).await;
        if claimed < options.batch as usize {
            tokio::select! {
                _ = tokio::time::sleep(options.poll) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        } else if *stop.borrow() {
            break;
        }
    }
    tracing::info!("job worker stopped");
}

/// Claims one batch of the jobs due at `now` and runs them all; returns how
/// many it claimed.
pub async fn run_due(domain: &Arc<Domain>, options: &WorkerOptions, now: Timestamp) -> usize {
    let claimed = match domain
        .store()
        .claim_jobs(now, options.lease, options.batch)
        .await
    {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, "claiming jobs failed; will retry");
            return 0;
        }
    };
    let count = claimed.len();
    let mut running = JoinSet::new();
    for job in claimed {
        let domain = Arc::clone(domain);
        running.spawn(async move { run_one(&domain, job, now).await });
    }
    while running.join_next().await.is_some() {}
    count
}

async fn run_one(domain: &Domain, job: Job, now: Timestamp) {
    let store = domain.store();
    let outcome = domain.run_job(&job).await;
    let result = match &outcome {
        Ok(_) => "ok",
        Err(_) if job.attempts < job.max_attempts => "retry",
        Err(_) => "dead",
    };
    metrics::counter!("chatterly_job_runs_total", "kind" => job.kind.clone(), "outcome" => result)
        .increment(1);
    let recorded = match outcome {
        Ok(next) => store.complete_job(job.id, job.attempts, next).await,
        Err(error) => {
            let error = error.to_string();
            let retry_at =
                (job.attempts < job.max_attempts).then(|| after(now, backoff(job.attempts)));
            match retry_at {
                Some(at) => tracing::warn!(
                    job_id = job.id, kind = %job.kind, attempt = job.attempts, %error, retry_at = %at,
                    "job failed; will retry"
                ),
                None => tracing::error!(
                    job_id = job.id, kind = %job.kind, attempts = job.attempts, %error,
                    "job failed for the last time; it is dead (see `chatterly jobs list --status dead`)"
                ),
            }
            store
                .fail_job(job.id, job.attempts, &error, retry_at, now)
                .await
        }
    };
    match recorded {
        Ok(true) => {}
        // The lease lapsed and another worker holds the job now.
        Ok(false) => tracing::warn!(job_id = job.id, "job outlived its lease"),
        Err(error) => tracing::warn!(job_id = job.id, %error, "recording a job's outcome failed"),
    }
}

/// The jobs as a text table for `chatterly jobs list`.
pub fn table(jobs: &[Job]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:<8}  {:<16}  {:<24}  {:>8}  LAST ERROR / PAYLOAD",
        "ID", "STATUS", "KIND", "RUN AT", "ATTEMPTS"
    );
    for job in jobs {
        let detail = job.last_error.as_deref().unwrap_or(&job.payload);
        let _ = writeln!(
            out,
            "{:>8}  {:<8}  {:<16}  {:<24}  {:>3}/{:<4}  {}",
            job.id,
            job.status.as_str(),
            job.kind,
            crate::views::format_timestamp(&job.run_at),
            job.attempts,
            job.max_attempts,
            detail.replace('\n', " ")
        );
    }
    let _ = writeln!(out, "{} job(s)", jobs.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_job_with_its_error() {
        let now = chatterly_store::now();
        let job = Job {
            id: 7,
            kind: "call.missed".into(),
            payload: r#"{"call_id":31}"#.into(),
            status: chatterly_store::JobStatus::Dead,
            run_at: now,
            attempts: 10,
            max_attempts: 10,
            unique_key: None,
            last_error: Some("database error: gone\naway".into()),
            locked_until: None,
            created_at: now,
            updated_at: now,
        };
        let table = table(&[job]);
        assert!(table.contains("call.missed"), "{table}");
        assert!(table.contains("dead"), "{table}");
        assert!(table.contains("10/10"), "{table}");
        assert!(table.contains("database error: gone away"), "{table}");
        assert!(table.ends_with("1 job(s)\n"), "{table}");
    }

    /// A job that keeps failing is retried after the backoff, then buried
    /// after its last attempt; one that succeeds is gone.
    #[tokio::test]
    async fn failures_back_off_then_bury_and_successes_complete() {
        use chatterly_store::{JobStatus, NewJob, Store};
        let world = crate::domain::testing::world().await;
        let options = WorkerOptions::default();
        let now = chatterly_store::now();
        let failing = world
            .store
            .enqueue_job(NewJob {
                kind: "no.such.kind".into(),
                payload: "{}".into(),
                run_at: now,
                max_attempts: 2,
                unique_key: None,
            })
            .await
            .expect("enqueue")
            .expect("queued");
        let maintenance = world
            .store
            .enqueue_job(crate::domain::jobs::maintenance(now))
            .await
            .expect("enqueue")
            .expect("queued");

        assert_eq!(run_due(&world.domain, &options, now).await, 2);
        let jobs = world.store.list_jobs(None, 10).await.expect("list");
        let first = jobs.iter().find(|j| j.id == failing).expect("still queued");
        assert_eq!(first.status, JobStatus::Pending);
        assert_eq!(first.attempts, 1);
        assert_eq!(first.run_at, after(now, backoff(1)));
        assert!(
            first
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("unknown job kind")),
            "{first:?}"
        );
        // Maintenance completed and queued its next run an interval later.
        assert!(jobs.iter().all(|j| j.id != maintenance));
        let next = jobs
            .iter()
            .find(|j| j.kind == crate::domain::jobs::MAINTENANCE)
            .expect("next maintenance");
        assert!(
            next.run_at > now + chrono::TimeDelta::minutes(59),
            "{next:?}"
        );

        // Not due before its backoff.
        assert_eq!(run_due(&world.domain, &options, now).await, 0);
        let later = after(now, backoff(1) + Duration::from_millis(1));
        assert_eq!(run_due(&world.domain, &options, later).await, 1);
        let dead = world
            .store
            .list_jobs(Some(JobStatus::Dead), 10)
            .await
            .expect("list");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, failing);
        assert_eq!(dead[0].attempts, 2);
        // Dead jobs are never claimed again.
        let much_later = after(now, Duration::from_secs(7200));
        let claimed = run_due(&world.domain, &options, much_later).await;
        assert_eq!(claimed, 1, "only the next maintenance run is due");
        assert!(world
            .store
            .list_jobs(Some(JobStatus::Dead), 10)
            .await
            .expect("list")
            .iter()
            .any(|j| j.id == failing));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(10), Duration::from_secs(600));
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(i32::MAX), Duration::from_secs(600));
    }
}
