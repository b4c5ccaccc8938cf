//! The durable job queue (`jobs`).
//!
//! A job is pending (waiting for `run_at`), running (claimed, with a lease
//! until `locked_until`) or dead; done jobs are deleted. Claiming sets
//! `attempts + 1`, which then names the claim: `complete` and `fail` act only
//! while the job is still running under that claim, so a worker whose lease
//! lapsed and whose job went to another worker changes nothing.
//!
//! Workers claim with `FOR UPDATE SKIP LOCKED`: concurrent claimers lock
//! disjoint rows without waiting for each other, and under READ COMMITTED a
//! row another claimer changed and committed since the statement began is
//! re-checked against the claim predicate before it is locked, so no job goes
//! to two callers.

use std::time::Duration;

use chatterly_store::{
    millis, now, Id, Job, JobStatus, NewJob, StoreError, StoreResult, Timestamp, CONFLICT_JOB,
};
use sqlx::{PgExecutor, PgPool};

use crate::error::{backend, violation, Violation};
use crate::rows::{convert_all, job_columns, JobRow};

/// Inserts the job pending, unless a pending or running job holds its
/// `unique_key` (then `None`, nothing written). On `executor`: the pool, or a
/// transaction the job must commit with.
pub(crate) async fn insert<'e, E: PgExecutor<'e>>(
    executor: E,
    job: &NewJob,
    now: Timestamp,
) -> StoreResult<Option<Id>> {
    // The conflict target names the partial index jobs_unique_key_key by its
    // columns and predicate. A job without key never conflicts (NULLs are
    // distinct).
    sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, status, run_at, attempts, max_attempts, unique_key,
                           created_at, updated_at)
         VALUES ($1, $2, 0, $3, 0, $4, $5, $6, $6)
         ON CONFLICT (unique_key) WHERE status IN (0, 1) DO NOTHING
         RETURNING id",
    )
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(millis(job.run_at))
    .bind(job.max_attempts)
    .bind(&job.unique_key)
    .bind(now)
    .fetch_optional(executor)
    .await
    .map_err(backend)
}

pub(crate) async fn enqueue(pool: &PgPool, job: NewJob) -> StoreResult<Option<Id>> {
    insert(pool, &job, now()).await
}

pub(crate) async fn claim(
    pool: &PgPool,
    now: Timestamp,
    lease: Duration,
    limit: u32,
) -> StoreResult<Vec<Job>> {
    let now = millis(now);
    let locked_until = chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .map(millis)
        .ok_or_else(|| StoreError::Backend(format!("job lease out of range: {lease:?}")))?;
    // `due`: pending and due, or running with a lapsed lease. Written with
    // `run_at <= $1` up front so it is a range of jobs_due_idx in (run_at,
    // id) order; for running jobs that is implied by the lapsed lease
    // (jobs_lease_after_run_at_check). MATERIALIZED: the locked set is
    // computed once, and the UPDATE re-checks the predicate on the row it
    // writes (which, locked, is the row that was checked).
    let rows: Vec<JobRow> = sqlx::query_as(concat!(
        "WITH due AS MATERIALIZED (
             SELECT id FROM jobs
             WHERE status IN (0, 1) AND run_at <= $1 AND (status = 0 OR locked_until <= $1)
             ORDER BY run_at, id
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         ), claimed AS (
             UPDATE jobs j
             SET status = 1, attempts = j.attempts + 1, locked_until = $2, updated_at = $1
             FROM due
             WHERE j.id = due.id
               AND ((j.status = 0 AND j.run_at <= $1) OR (j.status = 1 AND j.locked_until <= $1))
             RETURNING j.*
         )
         SELECT ",
        job_columns!(),
        " FROM claimed ORDER BY run_at, id"
    ))
    .bind(now)
    .bind(locked_until)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    convert_all(rows)
}

pub(crate) async fn complete(
    pool: &PgPool,
    id: Id,
    attempt: i32,
    next: Option<NewJob>,
) -> StoreResult<bool> {
    const DELETE: &str = "DELETE FROM jobs WHERE id = $1 AND status = 1 AND attempts = $2";
    let Some(next) = next else {
        let done = sqlx::query(DELETE)
            .bind(id)
            .bind(attempt)
            .execute(pool)
            .await
            .map_err(backend)?;
        return Ok(done.rows_affected() > 0);
    };
    let mut tx = pool.begin().await.map_err(backend)?;
    let done = sqlx::query(DELETE)
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    if done.rows_affected() == 0 {
        tx.rollback().await.map_err(backend)?;
        return Ok(false);
    }
    // A separate statement after the DELETE, so the deleted job's
    // unique_key (a recurring job's next run usually has the same) is free
    // for `next`.
    insert(&mut *tx, &next, now()).await?;
    tx.commit().await.map_err(backend)?;
    Ok(true)
}

pub(crate) async fn fail(
    pool: &PgPool,
    id: Id,
    attempt: i32,
    error: &str,
    retry_at: Option<Timestamp>,
    now: Timestamp,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE jobs
         SET status = CASE WHEN $3::timestamptz IS NULL THEN 2 ELSE 0 END,
             run_at = COALESCE($3, run_at),
             locked_until = NULL,
             last_error = $4,
             updated_at = $5
         WHERE id = $1 AND status = 1 AND attempts = $2",
    )
    .bind(id)
    .bind(attempt)
    .bind(retry_at.map(millis))
    .bind(error)
    .bind(millis(now))
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn list(
    pool: &PgPool,
    status: Option<JobStatus>,
    limit: u32,
) -> StoreResult<Vec<Job>> {
    let rows: Vec<JobRow> = match status {
        Some(status) => {
            sqlx::query_as(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE status = $1 ORDER BY run_at, id LIMIT $2"
            ))
            .bind(status.as_i16())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query_as(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs ORDER BY run_at, id LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        }
    }
    .map_err(backend)?;
    convert_all(rows)
}

pub(crate) async fn retry(pool: &PgPool, id: Id, now: Timestamp) -> StoreResult<bool> {
    let now = millis(now);
    let done = sqlx::query(
        "UPDATE jobs
         SET status = 0, run_at = $2, attempts = 0, locked_until = NULL, updated_at = $2
         WHERE id = $1 AND status = 2",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await
    .map_err(|e| match violation(&e) {
        // Back among the live jobs, its unique_key would be held twice.
        Some(Violation::Unique(Some("jobs_unique_key_key"))) => StoreError::Conflict(CONFLICT_JOB),
        _ => backend(e),
    })?;
    Ok(done.rows_affected() > 0)
}
