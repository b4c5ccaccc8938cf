//! The jobs the domain schedules in the durable queue, and what running each
//! one means. The worker (`crate::jobs`) claims, retries and buries them; it
//! knows nothing of what they do.

use std::time::Duration;

use chatterly_store::{Id, Job, NewJob, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Domain, DomainError, DomainResult};
use crate::bus::BusMessage;

/// A ringing call that nobody answered becomes missed.
pub const MISSED_CALL: &str = "call.missed";
/// Store upkeep (PostgreSQL partitions ahead, expired revocations), hourly.
pub const MAINTENANCE: &str = "store.maintain";

/// An administrator disabled a user or reset their password: tell every
/// instance (over the bus) to close the user's sockets and re-read the user.
pub const SESSIONS_ENDED: &str = "user.sessions_ended";
/// The first release's name of `SESSIONS_ENDED`, still run if queued.
const USER_DISABLED: &str = "user.disabled";

/// Retention: delete messages older than `--retention-days`, hourly.
pub const RETENTION: &str = "messages.retention";
/// Messages deleted per batch (one short write each on SQLite).
pub const RETENTION_BATCH: u32 = 1000;

/// Attachments: remove the blobs and rows of hidden attachments (deleted
/// messages, uploads never attached within `--attachment-grace-secs`).
pub const ATTACHMENTS_CLEANUP: &str = "attachments.cleanup";

/// How often maintenance runs.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);
/// Failed runs before a job is dead.
pub const MAX_ATTEMPTS: i32 = 10;

#[derive(Serialize, Deserialize)]
struct CallArgs {
    call_id: Id,
}

/// The missed-call timeout of a call, due at `run_at`.
pub fn missed_call(call_id: Id, run_at: Timestamp) -> NewJob {
    NewJob {
        kind: MISSED_CALL.to_owned(),
        payload: serde_json::json!({ "call_id": call_id }).to_string(),
        run_at,
        max_attempts: MAX_ATTEMPTS,
        unique_key: None,
    }
}

#[derive(Serialize, Deserialize)]
struct UserArgs {
    user_id: Id,
}

/// The job that spreads a disabling or password reset, due at once.
pub fn sessions_ended(user_id: Id, now: Timestamp) -> NewJob {
    NewJob {
        kind: SESSIONS_ENDED.to_owned(),
        payload: serde_json::json!({ "user_id": user_id }).to_string(),
        run_at: now,
        max_attempts: MAX_ATTEMPTS,
        unique_key: None,
    }
}

/// The next retention run. One per deployment, like maintenance.
pub fn retention(run_at: Timestamp) -> NewJob {
    NewJob {
        kind: RETENTION.to_owned(),
        payload: "{}".to_owned(),
        run_at,
        max_attempts: MAX_ATTEMPTS,
        unique_key: Some(RETENTION.to_owned()),
    }
}

/// The next attachments cleanup. One per deployment, like maintenance.
pub fn attachments_cleanup(run_at: Timestamp) -> NewJob {
    NewJob {
        kind: ATTACHMENTS_CLEANUP.to_owned(),
        payload: "{}".to_owned(),
        run_at,
        max_attempts: MAX_ATTEMPTS,
        unique_key: Some(ATTACHMENTS_CLEANUP.to_owned()),
    }
}

/// The next maintenance run. One per deployment: every instance enqueues it
/// at start, the unique key keeps it one job.
pub fn maintenance(run_at: Timestamp) -> NewJob {
    NewJob {
        kind: MAINTENANCE.to_owned(),
        payload: "{}".to_owned(),
        run_at,
        max_attempts: MAX_ATTEMPTS,
        unique_key: Some(MAINTENANCE.to_owned()),
    }
}

impl Domain {
    /// How often the attachments cleanup runs: as often as maintenance, or
    /// every grace period when that is shorter (at least every second), so
    /// an upload never outlives its grace by much more than the grace.
    fn cleanup_every(&self) -> chrono::TimeDelta {
        let hourly =
            chrono::TimeDelta::from_std(MAINTENANCE_EVERY).unwrap_or(chrono::TimeDelta::MAX);
        self.limits
            .attachment_grace
            .min(hourly)
            .max(chrono::TimeDelta::seconds(1))
    }

    /// Runs one claimed job. Returns the job to enqueue when it completes (a
    /// recurring job's next run), or why it failed.
    pub async fn run_job(&self, job: &Job) -> DomainResult<Option<NewJob>> {
        match job.kind.as_str() {
            MISSED_CALL => {
                let args: CallArgs = serde_json::from_str(&job.payload).map_err(|e| {
                    DomainError::Internal(format!("bad {MISSED_CALL} payload: {e}"))
                })?;
                self.miss_call(args.call_id).await?;
                Ok(None)
            }
            MAINTENANCE => {
                self.maintain().await?;
                Ok(Some(maintenance(
                    chatterly_store::now() + MAINTENANCE_EVERY,
                )))
            }
            SESSIONS_ENDED | USER_DISABLED => {
                let args: UserArgs = serde_json::from_str(&job.payload).map_err(|e| {
                    DomainError::Internal(format!("bad {SESSIONS_ENDED} payload: {e}"))
                })?;
                // Idempotent: every instance re-reads the user on its next
                // check, whatever changed.
                let user = self.store.user_by_id(args.user_id).await?;
                if user.is_some() {
                    self.bus.publish(BusMessage::SessionsEnded {
                        user_id: args.user_id,
                    });
                }
                Ok(None)
            }
            RETENTION => {
                // The policy is this instance's flag: an instance without
                // one deletes nothing (and keeps the job going for those with).
                if let Some(keep) = self.limits.retention {
                    let horizon = chatterly_store::now() - keep;
                    let purged = self
                        .store
                        .purge_messages_before(horizon, RETENTION_BATCH)
                        .await?;
                    tracing::info!(
                        messages = purged.messages,
                        partitions = ?purged.partitions,
                        horizon = %horizon,
                        "retention removed old messages"
                    );
                }
                Ok(Some(retention(chatterly_store::now() + MAINTENANCE_EVERY)))
            }
            ATTACHMENTS_CLEANUP => {
                let removed = self.clean_attachments().await?;
                if removed > 0 {
                    tracing::info!(removed, "cleanup removed hidden attachments");
                }
                Ok(Some(attachments_cleanup(
                    chatterly_store::now() + self.cleanup_every(),
                )))
            }
            other => Err(DomainError::Internal(format!("unknown job kind {other:?}"))),
        }
    }

    /// Makes sure the recurring jobs are queued (idempotent; every instance
    /// calls it at start).
    pub async fn schedule_recurring_jobs(&self) -> DomainResult<()> {
        self.store
            .enqueue_job(maintenance(chatterly_store::now() + MAINTENANCE_EVERY))
            .await?;
        self.store
            .enqueue_job(attachments_cleanup(
                chatterly_store::now() + self.cleanup_every(),
            ))
            .await?;
        if self.limits.retention.is_some() {
            // The first run is due at once: a policy applies from start-up.
            self.store
                .enqueue_job(retention(chatterly_store::now()))
                .await?;
        }
        Ok(())
    }
}
