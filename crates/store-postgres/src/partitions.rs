//! Monthly partitions of `messages`.
//!
//! `messages_YYYY_MM` covers `[first of the month 00:00Z, first of the next
//! month 00:00Z)`. The migration creates a DEFAULT partition as a safety net,
//! so an insert never fails for a missing month; when the monthly partition is
//! created later, any rows the default partition holds for that month are
//! moved into it in the same transaction (PostgreSQL refuses to create a range
//! partition while the default partition holds rows of that range).
//!
//! Creation always goes `CREATE TABLE … (LIKE messages)`, move stray rows,
//! `ATTACH PARTITION`: attaching takes only a SHARE UPDATE EXCLUSIVE lock on
//! `messages` (inserts and reads carry on), whereas `CREATE TABLE … PARTITION
//! OF` would lock the whole table. The existence check up front means the usual
//! call (partition already there) takes no lock at all.

use chatterly_store::{Purged, StoreError, StoreResult, Timestamp};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::PgPool;

use crate::error::backend;

/// Serialises partition creation across sessions and instances (an arbitrary
/// constant; "chatterly partitions").
const PARTITION_LOCK_KEY: i64 = 0x6368_6174_7061_7274;

/// How long creation may wait for a table lock before giving up (it retries on
/// the next `maintain`; the default partition covers the meantime). Waiting
/// for an ACCESS EXCLUSIVE lock queues every later reader of the default
/// partition behind it, so this stays short.
const LOCK_TIMEOUT: &str = "3s";

/// One calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Month {
    year: i32,
    month: u32,
}

impl Month {
    pub(crate) fn of(ts: Timestamp) -> Month {
        Month {
            year: ts.year(),
            month: ts.month(),
        }
    }

    pub(crate) fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The month of a `messages_YYYY_MM` table; `None` for any other name.
    pub(crate) fn from_table_name(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("messages_")?;
        let (year, month) = rest.split_once('_')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let month = Month {
            year: year.parse().ok()?,
            month: month.parse().ok()?,
        };
        (1..=12).contains(&month.month).then_some(month)
    }

    /// `messages_YYYY_MM`.
    pub(crate) fn table_name(self) -> String {
        format!("messages_{:04}_{:02}", self.year, self.month)
    }

    /// First instant of the month.
    fn start(self) -> StoreResult<Timestamp> {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| DateTime::<Utc>::from_naive_utc_and_offset(dt, Utc))
            .ok_or_else(|| {
                StoreError::Backend(format!("month out of range: {}-{}", self.year, self.month))
            })
    }
}

/// A timestamp as a SQL literal (DDL takes no bind parameters).
fn literal(ts: Timestamp) -> String {
    format!("'{}'", ts.format("%Y-%m-%d %H:%M:%S+00"))
}

/// Ensures the partitions for the month of `now` and the next month exist.
pub(crate) async fn ensure_current_and_next(pool: &PgPool, now: Timestamp) -> StoreResult<()> {
    let month = Month::of(now);
    ensure_month(pool, month).await?;
    ensure_month(pool, month.next()).await
}

async fn partition_exists(executor: impl sqlx::PgExecutor<'_>, name: &str) -> StoreResult<bool> {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (
             SELECT 1 FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'messages'::regclass AND c.relname = $1
         )",
    )
    .bind(name)
    .fetch_one(executor)
    .await
    .map_err(backend)
}

/// Creates `messages_YYYY_MM` for `month` unless it exists, moving any rows
/// of that month out of the default partition. Safe to run concurrently.
pub(crate) async fn ensure_month(pool: &PgPool, month: Month) -> StoreResult<()> {
    let name = month.table_name();
    if partition_exists(pool, &name).await? {
        return Ok(());
    }

    let from = month.start()?;
    let to = month.next().start()?;

    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PARTITION_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    // Another session may have created it while we waited for the lock.
    if partition_exists(&mut *tx, &name).await? {
        return Ok(());
    }

    // Every step below is in this transaction, so a failure leaves no
    // half-made table behind for the next attempt to trip over.
    sqlx::query(&format!(
        "CREATE TABLE {name} (LIKE messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ))
    .execute(&mut *tx)
    .await
    .map_err(backend)?;

    // Block new rows from landing in the default partition until the new
    // partition is attached (reads carry on until ATTACH itself).
    sqlx::query("LOCK TABLE messages_default IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    let moved = sqlx::query(&format!(
        "WITH moved AS (
             DELETE FROM messages_default
             WHERE created_at >= $1 AND created_at < $2
             RETURNING {MESSAGE_TABLE_COLUMNS}
         )
         INSERT INTO {name} ({MESSAGE_TABLE_COLUMNS})
         SELECT {MESSAGE_TABLE_COLUMNS} FROM moved"
    ))
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await
    .map_err(backend)?
    .rows_affected();

    sqlx::query(&format!(
        "ALTER TABLE messages ATTACH PARTITION {name} FOR VALUES FROM ({}) TO ({})",
        literal(from),
        literal(to)
    ))
    .execute(&mut *tx)
    .await
    .map_err(backend)?;

    tx.commit().await.map_err(backend)?;
    if moved > 0 {
        tracing::warn!(partition = %name, moved, "created message partition; moved rows out of messages_default");
    } else {
        tracing::info!(partition = %name, "created message partition");
    }
    Ok(())
}

/// The partitions of this month and the next that do not exist.
pub(crate) async fn missing(pool: &PgPool, now: Timestamp) -> StoreResult<Vec<String>> {
    let this = Month::of(now);
    let mut missing = Vec::new();
    for month in [this, this.next()] {
        let name = month.table_name();
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&name)
            .fetch_one(pool)
            .await
            .map_err(backend)?;
        if found.is_none() {
            missing.push(name);
        }
    }
    Ok(missing)
}

/// Every column of `messages`, for moving rows between partitions (a column
/// left out would be lost on the way; the schema test checks the list).
pub const MESSAGE_TABLE_COLUMNS: &str = "id, conversation_id, user_id, seq, content, kind, \
    parent_message_id, call_session_id, client_message_id, created_at, updated_at, edited_at, \
    deleted_at, mentions, broadcast, search_vector";

/// Retention on PostgreSQL: drops every monthly partition that ends at or
/// before `horizon`, with the reactions and idempotency keys of its messages
/// (they have no foreign keys to cascade), each partition in one short
/// transaction under the creation lock; then deletes the default partition's
/// rows older than `horizon` in batches.
pub(crate) async fn purge_before(
    pool: &PgPool,
    horizon: Timestamp,
    batch: u32,
) -> StoreResult<Purged> {
    let batch = batch.max(1);
    let mut purged = Purged::default();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'messages'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    for name in names {
        let Some(month) = Month::from_table_name(&name) else {
            continue;
        };
        let start = month.start()?;
        let end = month.next().start()?;
        if end > horizon {
            continue;
        }
        let mut tx = pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // The copies of newest messages the partition holds go; the
        // conversation list walks back to what is left, if anything.
        sqlx::query(&format!(
            "DELETE FROM latest_messages WHERE id IN (SELECT id FROM {name})"
        ))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // Read state: members' positions move past the partition's newest
        // message of each conversation (unread is last_seq - last_read_seq
        // minus deletions, so a message removed unread would otherwise stay
        // counted), and the partition's mention and deletion rows go.
        sqlx::query(&format!(
            "UPDATE conversation_members m
             SET last_read_seq = GREATEST(m.last_read_seq, p.max_seq),
                 last_delivered_seq = GREATEST(m.last_delivered_seq, p.max_seq)
             FROM (SELECT conversation_id, max(seq) AS max_seq FROM {name}
                   GROUP BY conversation_id) p
             WHERE m.conversation_id = p.conversation_id AND m.last_read_seq < p.max_seq"
        ))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(&format!(
            "DELETE FROM mentions WHERE message_id IN (SELECT id FROM {name})"
        ))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(&format!(
            "DELETE FROM message_deletions d USING {name} x
             WHERE x.deleted_at IS NOT NULL
               AND d.conversation_id = x.conversation_id AND d.seq = x.seq"
        ))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // The partition's attachments are hidden; the cleanup job removes
        // their blobs and rows.
        sqlx::query(
            "UPDATE attachments SET deleted_at = now()
             WHERE message_created_at >= $1 AND message_created_at < $2 AND deleted_at IS NULL",
        )
        .bind(start)
        .bind(end)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for table in ["reactions", "message_client_ids"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE message_created_at >= $1 AND message_created_at < $2"
            ))
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {name}"))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(&format!("DROP TABLE {name}"))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(partition = %name, rows, "retention dropped a message partition");
        purged.messages += rows as u64;
        purged.partitions.push(name);
    }
    // Rows the default partition holds from before the horizon.
    loop {
        let mut tx = pool.begin().await.map_err(backend)?;
        let removed: Vec<(i64, i64, i64, bool)> = sqlx::query_as(
            "DELETE FROM messages_default WHERE (id, created_at) IN
               (SELECT id, created_at FROM messages_default WHERE created_at < $1 LIMIT $2)
             RETURNING id, conversation_id, seq, deleted_at IS NOT NULL",
        )
        .bind(horizon)
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let ids: Vec<i64> = removed.iter().map(|r| r.0).collect();
        if !ids.is_empty() {
            let conversations: Vec<i64> = removed.iter().map(|r| r.1).collect();
            let seqs: Vec<i64> = removed.iter().map(|r| r.2).collect();
            let deleted: Vec<bool> = removed.iter().map(|r| r.3).collect();
            // As for a dropped partition: removed is read.
            sqlx::query(
                "UPDATE conversation_members m
                 SET last_read_seq = GREATEST(m.last_read_seq, p.max_seq),
                     last_delivered_seq = GREATEST(m.last_delivered_seq, p.max_seq)
                 FROM (SELECT c AS conversation_id, max(s) AS max_seq
                       FROM unnest($1::bigint[], $2::bigint[]) AS t (c, s) GROUP BY c) p
                 WHERE m.conversation_id = p.conversation_id AND m.last_read_seq < p.max_seq",
            )
            .bind(&conversations)
            .bind(&seqs)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query(
                "DELETE FROM message_deletions d
                 USING unnest($1::bigint[], $2::bigint[], $3::bool[]) AS t (c, s, gone)
                 WHERE t.gone AND d.conversation_id = t.c AND d.seq = t.s",
            )
            .bind(&conversations)
            .bind(&seqs)
            .bind(&deleted)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query(
                "UPDATE attachments SET deleted_at = now()
                 WHERE message_id = ANY($1) AND deleted_at IS NULL",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query("DELETE FROM mentions WHERE message_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            // As for a dropped partition: their copies as newest messages go.
            sqlx::query("DELETE FROM latest_messages WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            for table in ["reactions", "message_client_ids"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE message_id = ANY($1)"))
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        tx.commit().await.map_err(backend)?;
        purged.messages += ids.len() as u64;
        if ids.len() < batch as usize {
            return Ok(purged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn months_roll_over_the_year() {
        let m = Month::of(ts("2025-12-31T23:59:59.999Z"));
        assert_eq!(m.table_name(), "messages_2025_12");
        assert_eq!(m.next().table_name(), "messages_2026_01");
        assert_eq!(m.next().start().ok(), Some(ts("2026-01-01T00:00:00Z")));
        assert_eq!(
            Month::of(ts("2026-02-01T00:00:00Z")).table_name(),
            "messages_2026_02"
        );
    }

    #[test]
    fn bounds_are_utc_literals() {
        assert_eq!(
            literal(ts("2026-03-01T00:00:00Z")),
            "'2026-03-01 00:00:00+00'"
        );
    }
}
