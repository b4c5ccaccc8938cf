//! The durable job queue: unique keys, claiming (due jobs only, each to one
//! caller, lapsed leases), completing and failing under a claim, listing and
//! retrying dead jobs.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chatterly_store::{Id, Job, JobStatus, NewJob, Store, StoreError, Timestamp};
use chatterly_store_postgres::PgStore;
use common::*;
use tokio::sync::Barrier;

const LEASE: Duration = Duration::from_secs(30);

fn t0() -> Timestamp {
    ts("2030-03-01T12:00:00Z")
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn job(kind: &str, run_at: Timestamp, unique_key: Option<&str>) -> NewJob {
    NewJob {
        kind: kind.to_string(),
        payload: format!("{{\"kind\":\"{kind}\"}}"),
        run_at,
        max_attempts: 3,
        unique_key: unique_key.map(str::to_string),
    }
}

async fn enqueue(store: &PgStore, new: NewJob) -> Id {
    store
        .enqueue_job(new)
        .await
        .expect("enqueue")
        .expect("a new job")
}

async fn the_job(store: &PgStore, id: Id) -> Option<Job> {
    store
        .list_jobs(None, 1000)
        .await
        .expect("list")
        .into_iter()
        .find(|j| j.id == id)
}

fn ids(jobs: &[Job]) -> Vec<Id> {
    jobs.iter().map(|j| j.id).collect()
}

#[tokio::test]
async fn a_unique_key_is_held_once_until_the_job_is_done_or_dead() {
    let (_db, store) = TestDb::migrated().await;
    let first = enqueue(&store, job("sweep", t0(), Some("sweep"))).await;
    assert_eq!(
        store
            .enqueue_job(job("sweep", t0() + secs(5), Some("sweep")))
            .await
            .expect("enqueue"),
        None,
        "held by the pending job"
    );
    // Jobs without key are never deduplicated.
    let a = enqueue(&store, job("mail", t0(), None)).await;
    let b = enqueue(&store, job("mail", t0(), None)).await;
    assert_ne!(a, b);
    assert_eq!(store.list_jobs(None, 100).await.expect("list").len(), 3);

    // Held while running too.
    let claimed = store.claim_jobs(t0(), LEASE, 10).await.expect("claim");
    assert_eq!(ids(&claimed), vec![first, a, b]);
    assert_eq!(
        store
            .enqueue_job(job("sweep", t0(), Some("sweep")))
            .await
            .expect("enqueue"),
        None,
        "held by the running job"
    );
    // Free once done.
    assert!(store.complete_job(first, 1, None).await.expect("complete"));
    let second = enqueue(&store, job("sweep", t0(), Some("sweep"))).await;
    assert!(second > first);

    // Free once dead (the dead job keeps its key, outside the live ones).
    let claimed = store
        .claim_jobs(t0() + secs(1), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(ids(&claimed), vec![second]);
    assert!(store
        .fail_job(second, 1, "boom", None, t0() + secs(2))
        .await
        .expect("fail"));
    let third = enqueue(&store, job("sweep", t0(), Some("sweep"))).await;
    let dead = the_job(&store, second).await.expect("kept");
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(dead.unique_key.as_deref(), Some("sweep"));
    assert_ne!(third, second);
}

#[tokio::test]
async fn only_due_jobs_are_claimed_earliest_first() {
    let (_db, store) = TestDb::migrated().await;
    let later = enqueue(&store, job("later", t0() + secs(60), None)).await;
    let second = enqueue(&store, job("second", t0() - secs(5), None)).await;
    let first = enqueue(&store, job("first", t0() - secs(10), None)).await;
    let exactly_now = enqueue(&store, job("now", t0(), None)).await;

    let claimed = store.claim_jobs(t0(), LEASE, 2).await.expect("claim");
    assert_eq!(ids(&claimed), vec![first, second], "limit, by run_at");
    for j in &claimed {
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.attempts, 1);
        assert_eq!(j.locked_until, Some(t0() + secs(30)));
        assert_eq!(j.updated_at, t0());
        assert_eq!(the_job(&store, j.id).await.as_ref(), Some(j));
    }
    let claimed = store.claim_jobs(t0(), LEASE, 10).await.expect("claim");
    assert_eq!(ids(&claimed), vec![exactly_now], "run_at <= now is due");
    assert_eq!(
        store.claim_jobs(t0(), LEASE, 10).await.expect("claim"),
        vec![],
        "the running ones are leased, the later one is not due"
    );
    assert_eq!(
        store
            .claim_jobs(t0() + secs(60), LEASE, 0)
            .await
            .expect("claim"),
        vec![]
    );
    let pending = the_job(&store, later).await.expect("there");
    assert_eq!(
        (pending.status, pending.attempts, pending.locked_until),
        (JobStatus::Pending, 0, None)
    );
    let claimed = store
        .claim_jobs(t0() + secs(29), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(claimed, vec![], "leases not lapsed yet, later not due");
    let claimed = store
        .claim_jobs(t0() + secs(60), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(
        ids(&claimed),
        vec![first, second, exactly_now, later],
        "lapsed leases and the now due job, by run_at"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_job_and_together_get_all() {
    let (db, store) = TestDb::migrated().await;
    const JOBS: usize = 200;
    const CLAIMERS: usize = 8;
    for i in 0..JOBS {
        enqueue(
            &store,
            job(&format!("j{i}"), t0() - secs((i % 17) as i64), None),
        )
        .await;
    }
    // Each claimer its own store (own pool), all claiming at once.
    let barrier = Arc::new(Barrier::new(CLAIMERS));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLAIMERS {
        let store = db.connect().await;
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            barrier.wait().await;
            loop {
                let claimed = store.claim_jobs(t0(), LEASE, 9).await.expect("claim");
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed);
            }
        });
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    while let Some(mine) = tasks.join_next().await {
        for j in mine.expect("claimer") {
            assert_eq!(j.attempts, 1, "claimed once: {j:?}");
            assert!(seen.insert(j.id), "job {} claimed twice", j.id);
            total += 1;
        }
    }
    assert_eq!(total, JOBS);
    let all = store.list_jobs(None, 1000).await.expect("list");
    assert_eq!(all.len(), JOBS);
    assert!(all
        .iter()
        .all(|j| j.status == JobStatus::Running && j.attempts == 1));
    assert_eq!(seen, all.iter().map(|j| j.id).collect::<HashSet<_>>());
}

#[tokio::test]
async fn a_lapsed_lease_is_reclaimed_and_the_stale_claim_changes_nothing() {
    let (_db, store) = TestDb::migrated().await;
    let id = enqueue(&store, job("work", t0(), None)).await;
    let lease = Duration::from_secs(10);
    let first = store.claim_jobs(t0(), lease, 10).await.expect("claim");
    assert_eq!(ids(&first), vec![id]);
    assert_eq!(first[0].attempts, 1);
    assert_eq!(
        store
            .claim_jobs(t0() + secs(9), lease, 10)
            .await
            .expect("claim"),
        vec![]
    );
    // The worker died: after the lease another worker takes the job.
    let second = store
        .claim_jobs(t0() + secs(10), lease, 10)
        .await
        .expect("claim");
    assert_eq!(ids(&second), vec![id]);
    assert_eq!(second[0].attempts, 2);
    assert_eq!(second[0].locked_until, Some(t0() + secs(20)));

    // The first worker comes back: its claim is void.
    assert!(!store.complete_job(id, 1, None).await.expect("complete"));
    assert!(!store
        .complete_job(id, 1, Some(job("next", t0(), None)))
        .await
        .expect("complete"));
    assert!(!store
        .fail_job(id, 1, "late", Some(t0()), t0() + secs(11))
        .await
        .expect("fail"));
    let still = the_job(&store, id).await.expect("there");
    assert_eq!(still, second[0], "untouched by the stale claim");
    assert_eq!(store.list_jobs(None, 10).await.expect("list").len(), 1);
    // The current claim works, once.
    assert!(store.complete_job(id, 2, None).await.expect("complete"));
    assert!(!store.complete_job(id, 2, None).await.expect("complete"));
    assert_eq!(store.list_jobs(None, 10).await.expect("list"), vec![]);
}

#[tokio::test]
async fn complete_with_next_enqueues_it_with_the_same_key() {
    let (_db, store) = TestDb::migrated().await;
    let id = enqueue(&store, job("sweep", t0(), Some("sweep"))).await;
    let claimed = store.claim_jobs(t0(), LEASE, 10).await.expect("claim");
    assert_eq!(ids(&claimed), vec![id]);
    let next = job("sweep", t0() + secs(3600), Some("sweep"));
    assert!(store
        .complete_job(id, 1, Some(next.clone()))
        .await
        .expect("complete"));
    let jobs = store.list_jobs(None, 10).await.expect("list");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let j = &jobs[0];
    assert_ne!(j.id, id);
    assert_eq!(
        (
            j.kind.as_str(),
            j.status,
            j.run_at,
            j.attempts,
            j.unique_key.as_deref()
        ),
        ("sweep", JobStatus::Pending, next.run_at, 0, Some("sweep"))
    );
    // A next whose key another live job holds is not enqueued twice.
    let other = enqueue(&store, job("other", t0(), None)).await;
    store.claim_jobs(t0(), LEASE, 10).await.expect("claim");
    assert!(store
        .complete_job(other, 1, Some(next))
        .await
        .expect("complete"));
    assert_eq!(
        ids(&store.list_jobs(None, 10).await.expect("list")),
        vec![j.id]
    );
}

#[tokio::test]
async fn a_failed_run_is_retried_later_or_the_job_dies() {
    let (_db, store) = TestDb::migrated().await;
    let id = enqueue(&store, job("flaky", t0(), None)).await;
    store.claim_jobs(t0(), LEASE, 10).await.expect("claim");
    let failed_at = t0() + secs(1);
    assert!(store
        .fail_job(id, 1, "timeout", Some(t0() + secs(60)), failed_at)
        .await
        .expect("fail"));
    let j = the_job(&store, id).await.expect("there");
    assert_eq!(j.status, JobStatus::Pending);
    assert_eq!(j.run_at, t0() + secs(60));
    assert_eq!(j.attempts, 1);
    assert_eq!(j.last_error.as_deref(), Some("timeout"));
    assert_eq!(j.locked_until, None);
    assert_eq!(j.updated_at, failed_at);
    // Failing it again under the same claim: it is no longer running.
    assert!(!store
        .fail_job(id, 1, "again", None, failed_at)
        .await
        .expect("fail"));

    assert_eq!(
        store
            .claim_jobs(t0() + secs(59), LEASE, 10)
            .await
            .expect("claim"),
        vec![],
        "not before retry_at"
    );
    let claimed = store
        .claim_jobs(t0() + secs(60), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 2);
    assert!(store
        .fail_job(id, 2, "gave up", None, t0() + secs(61))
        .await
        .expect("fail"));
    let j = the_job(&store, id).await.expect("kept");
    assert_eq!(j.status, JobStatus::Dead);
    assert_eq!(j.last_error.as_deref(), Some("gave up"));
    assert_eq!((j.attempts, j.locked_until), (2, None));
    assert_eq!(
        store
            .claim_jobs(t0() + secs(100_000), LEASE, 10)
            .await
            .expect("claim"),
        vec![],
        "dead jobs are never claimed"
    );
    assert!(!store.complete_job(id, 2, None).await.expect("complete"));
}

#[tokio::test]
async fn list_jobs_by_status_in_run_at_order() {
    let (_db, store) = TestDb::migrated().await;
    let p2 = enqueue(&store, job("p2", t0() + secs(20), None)).await;
    let r = enqueue(&store, job("r", t0() - secs(30), None)).await;
    let d = enqueue(&store, job("d", t0() - secs(20), None)).await;
    let claimed = store.claim_jobs(t0(), LEASE, 2).await.expect("claim");
    assert_eq!(ids(&claimed), vec![r, d]);
    assert!(store.fail_job(d, 1, "x", None, t0()).await.expect("fail"));
    let p1 = enqueue(&store, job("p1", t0() + secs(10), None)).await;
    let p3 = enqueue(&store, job("p3", t0() + secs(20), None)).await;

    let list = |status| {
        let store = store.clone();
        async move { ids(&store.list_jobs(status, 100).await.expect("list")) }
    };
    assert_eq!(list(Some(JobStatus::Pending)).await, vec![p1, p2, p3]);
    assert_eq!(list(Some(JobStatus::Running)).await, vec![r]);
    assert_eq!(list(Some(JobStatus::Dead)).await, vec![d]);
    assert_eq!(list(None).await, vec![r, d, p1, p2, p3]);
    assert_eq!(
        ids(&store
            .list_jobs(Some(JobStatus::Pending), 2)
            .await
            .expect("list")),
        vec![p1, p2],
        "limit; ties on run_at by id"
    );
}

#[tokio::test]
async fn only_a_dead_job_can_be_retried() {
    let (_db, store) = TestDb::migrated().await;
    let id = enqueue(&store, job("work", t0(), Some("work"))).await;
    assert!(!store.retry_job(id, t0()).await.expect("retry"), "pending");
    store.claim_jobs(t0(), LEASE, 10).await.expect("claim");
    assert!(!store.retry_job(id, t0()).await.expect("retry"), "running");
    assert_eq!(
        the_job(&store, id).await.expect("there").status,
        JobStatus::Running
    );
    assert!(store
        .fail_job(id, 1, "boom", None, t0())
        .await
        .expect("fail"));
    assert!(
        !store.retry_job(id + 1000, t0()).await.expect("retry"),
        "missing"
    );

    let later = t0() + secs(3600);
    assert!(store.retry_job(id, later).await.expect("retry"));
    let j = the_job(&store, id).await.expect("there");
    assert_eq!(
        (j.status, j.run_at, j.attempts, j.locked_until, j.updated_at),
        (JobStatus::Pending, later, 0, None, later)
    );
    assert!(
        !store.retry_job(id, later).await.expect("retry"),
        "pending again"
    );
    assert_eq!(
        ids(&store.claim_jobs(later, LEASE, 10).await.expect("claim")),
        vec![id]
    );

    // A dead job whose key another live job took meanwhile stays dead.
    assert!(store
        .fail_job(id, 1, "boom again", None, later)
        .await
        .expect("fail"));
    let replacement = enqueue(&store, job("work", later, Some("work"))).await;
    let outcome = store.retry_job(id, later).await;
    assert!(
        matches!(outcome, Err(StoreError::Conflict("job"))),
        "{outcome:?}"
    );
    assert_eq!(
        the_job(&store, id).await.expect("there").status,
        JobStatus::Dead
    );
    assert_eq!(
        the_job(&store, replacement).await.expect("there").status,
        JobStatus::Pending
    );
}
