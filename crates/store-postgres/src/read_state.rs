//! Read state (members' read and delivered positions) and mentions.
//!
//! # Counting without scanning history
//!
//! A send moves its sender's own read position to the new message, in the
//! sending statement (`sends.rs`), so no message after a member's
//! `last_read_seq` is their own. The unread count is therefore
//! `last_seq - last_read_seq` minus the deleted messages after the position,
//! and those are counted in `message_deletions` (a small unpartitioned table
//! of (conversation, seq), written by the soft delete in the same statement):
//! a range that is nearly always empty. Mentions after the position are a
//! range of `mentions (user_id, conversation_id, seq)`. Both are skipped when
//! nothing lies after the position. Positions, `last_seq` and counts come
//! from one statement, so one snapshot.
//!
//! The whole inbox is two statements run at once on two connections: the
//! rows, and every (conversation, member) pair of the reader's conversations
//! as one join returning two arrays. An array subquery per row (still used
//! for one conversation) cost PostgreSQL ~4 ms per 1,000 rows; the join costs
//! ~1.5 ms, beside the rows rather than after them. The two snapshots may
//! differ: a conversation joined between them has no pairs yet, and its
//! members are read again (every conversation has at least its reader).
//!
//! The newest live message comes from `latest_messages`, a copy of each
//! conversation's newest message kept by the statements that send, edit and
//! delete (migration 0008): one probe of a small table's key per row.
//! Looking it up in the partitioned `messages` cost run-time partition
//! pruning per row, 2 ms per 1,000 rows at 3 monthly partitions and 5 ms at
//! 27, growing with the database's age (see BENCHMARKS.md). The copy is
//! used only when it is the message at `last_seq`; otherwise (the newest
//! message was deleted, which removes its copy, or was written by an
//! instance of an earlier version that does not keep copies) a second query
//! walks back in `messages`. So the list never shows a stale copy, and a
//! copy never has to be rebuilt from what came before it.
//!
//! # Marking
//!
//! One transaction: the membership row is locked first (`FOR UPDATE`), then
//! a second statement, with a snapshot taken after the lock was granted,
//! checks the target against `last_seq`, moves the positions forward and
//! counts. Concurrent sends by the same member (which move the same row in
//! their statement) are ordered by that lock; the second statement sees
//! whatever they committed, so the counts it returns are exact.

use chatterly_store::{
    millis, ConversationKind, Id, InboxCursor, InboxEntry, MarkKind, Marked, Mentions, Message,
    ReadState, Receipt, StoreError, StoreResult, Timestamp,
};
use std::collections::HashMap;

use sqlx::PgPool;

use crate::error::backend;
use crate::rows::{convert_all, message_columns, InboxRow, MessageRow, ReceiptRow};

/// The inbox columns and joins; a `WHERE` follows. `$members` is the
/// expression for the `member_ids` column.
macro_rules! inbox_select {
    ($($members:tt)+) => {
        concat!(
            "SELECT c.id, c.kind, c.name, c.description, c.created_by_id, c.created_at,
                c.last_seq, c.last_activity_at,
                m.user_id, m.last_read_seq, m.read_at, m.last_delivered_seq,
                CASE WHEN c.last_seq > m.last_read_seq THEN
                    (SELECT count(*) FROM message_deletions d
                     WHERE d.conversation_id = c.id AND d.seq > m.last_read_seq)
                ELSE 0 END AS deleted_after,
                CASE WHEN c.last_seq > m.last_read_seq THEN
                    (SELECT count(*) FROM mentions x
                     WHERE x.user_id = m.user_id AND x.conversation_id = c.id
                       AND x.seq > m.last_read_seq)
                ELSE 0 END AS mentions_after,
                l.id AS l_id, l.conversation_id AS l_conversation_id, l.user_id AS l_user_id,
                l.seq AS l_seq, l.content AS l_content, l.kind AS l_kind,
                l.parent_message_id AS l_parent_message_id,
                l.call_session_id AS l_call_session_id,
                l.client_message_id AS l_client_message_id, l.created_at AS l_created_at,
                l.edited_at AS l_edited_at, NULL::timestamptz AS l_deleted_at,
                l.mentions AS l_mentions, l.broadcast AS l_broadcast, ",
            $($members)+,
            " AS member_ids
         FROM conversation_members m
         JOIN conversations c ON c.id = m.conversation_id
         LEFT JOIN latest_messages l ON l.conversation_id = c.id AND l.seq = c.last_seq"
        )
    };
}

/// Each row's members as an array subquery: for a page or one row (the
/// whole inbox reads them beside the rows, see the module's doc).
macro_rules! member_array {
    () => {
        "ARRAY(SELECT o.user_id FROM conversation_members o WHERE o.conversation_id = c.id)"
    };
}

/// The newest live message of each conversation whose newest message is
/// deleted (rare): a walk back per conversation.
async fn fill_latest(pool: &PgPool, entries: &mut [InboxEntry]) -> StoreResult<()> {
    let missing: Vec<Id> = entries
        .iter()
        .filter(|e| e.latest.is_none() && e.conversation.last_seq > 0)
        .map(|e| e.conversation.id)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT l.* FROM unnest($1::bigint[]) AS t (id)
         CROSS JOIN LATERAL (
             SELECT ",
        message_columns!(),
        " FROM messages
             WHERE conversation_id = t.id AND deleted_at IS NULL
             ORDER BY seq DESC LIMIT 1
         ) l"
    ))
    .bind(&missing)
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    let found: Vec<Message> = convert_all(rows)?;
    for message in found {
        if let Some(entry) = entries
            .iter_mut()
            .find(|e| e.conversation.id == message.conversation_id)
        {
            entry.latest = Some(message);
        }
    }
    Ok(())
}

/// A member's whole inbox (`$1` the user id), newest activity first, without
/// the members (read beside it; see the module's doc). Public for the tests
/// that check its plan.
pub const INBOX_QUERY: &str = concat!(
    inbox_select!("'{}'::bigint[]"),
    " WHERE m.user_id = $1 ORDER BY c.last_activity_at DESC, c.id DESC"
);

/// Every (conversation, member) pair of `$1`'s conversations, as two
/// parallel arrays in one row: sqlx spends ~1 µs of the server's CPU per row
/// it receives, more than decoding the pairs costs.
const INBOX_MEMBERS_QUERY: &str = "SELECT
         coalesce(array_agg(o.conversation_id), '{}'), coalesce(array_agg(o.user_id), '{}')
     FROM conversation_members m
     JOIN conversation_members o ON o.conversation_id = m.conversation_id
     WHERE m.user_id = $1";

/// The (conversation, member) pairs of `conversation_ids`, in order.
pub(crate) async fn member_ids_of(
    pool: &PgPool,
    conversation_ids: &[Id],
) -> StoreResult<Vec<(Id, Id)>> {
    if conversation_ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT conversation_id, user_id FROM conversation_members
         WHERE conversation_id = ANY($1)
         ORDER BY conversation_id, user_id",
    )
    .bind(conversation_ids)
    .fetch_all(pool)
    .await
    .map_err(backend)
}

pub(crate) async fn inbox(pool: &PgPool, user_id: Id) -> StoreResult<Vec<InboxEntry>> {
    let (rows, (conversation_ids, member_ids)) = tokio::try_join!(
        sqlx::query_as::<_, InboxRow>(INBOX_QUERY)
            .bind(user_id)
            .fetch_all(pool),
        sqlx::query_as::<_, (Vec<Id>, Vec<Id>)>(INBOX_MEMBERS_QUERY)
            .bind(user_id)
            .fetch_one(pool),
    )
    .map_err(backend)?;
    let mut entries: Vec<InboxEntry> = convert_all(rows)?;
    let mut members: Vec<(Id, Id)> = conversation_ids.into_iter().zip(member_ids).collect();
    members.sort_unstable();
    let position: HashMap<Id, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.conversation.id, i))
        .collect();
    let add_members = |entries: &mut [InboxEntry], pairs: Vec<(Id, Id)>| {
        for (conversation_id, member_id) in pairs {
            // Pairs of a conversation the reader joined after the rows were
            // read have no row: skipped.
            if let Some(&i) = position.get(&conversation_id) {
                entries[i].member_ids.push(member_id);
            }
        }
    };
    add_members(&mut entries, members);
    let unseen: Vec<Id> = entries
        .iter()
        .filter(|e| e.member_ids.is_empty())
        .map(|e| e.conversation.id)
        .collect();
    if !unseen.is_empty() {
        add_members(&mut entries, member_ids_of(pool, &unseen).await?);
    }
    fill_latest(pool, &mut entries).await?;
    Ok(entries)
}

/// A page of the inbox: the page's conversations are chosen first (`$2`,
/// `$3` the cursor's activity and id, NULL from the start; `$4` the limit),
/// so only they are counted; the members as an array per row (at most a
/// page of them).
const INBOX_PAGE_QUERY: &str = concat!(
    inbox_select!(member_array!()),
    " WHERE m.user_id = $1 AND m.conversation_id IN (
         SELECT p.conversation_id FROM conversation_members p
         JOIN conversations pc ON pc.id = p.conversation_id
         WHERE p.user_id = $1
           AND ($2::timestamptz IS NULL OR (pc.last_activity_at, pc.id) < ($2, $3))
         ORDER BY pc.last_activity_at DESC, pc.id DESC
         LIMIT $4
     )
     ORDER BY c.last_activity_at DESC, c.id DESC"
);

pub(crate) async fn inbox_page(
    pool: &PgPool,
    user_id: Id,
    after: Option<InboxCursor>,
    limit: u32,
) -> StoreResult<Vec<InboxEntry>> {
    let rows: Vec<InboxRow> = sqlx::query_as(INBOX_PAGE_QUERY)
        .bind(user_id)
        .bind(after.map(|a| a.last_activity_at))
        .bind(after.map(|a| a.conversation_id))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(backend)?;
    let mut entries: Vec<InboxEntry> = convert_all(rows)?;
    fill_latest(pool, &mut entries).await?;
    Ok(entries)
}

pub(crate) async fn inbox_entry(
    pool: &PgPool,
    conversation_id: Id,
    user_id: Id,
) -> StoreResult<Option<InboxEntry>> {
    let row: Option<InboxRow> = sqlx::query_as(concat!(
        inbox_select!(member_array!()),
        " WHERE m.user_id = $1 AND m.conversation_id = $2"
    ))
    .bind(user_id)
    .bind(conversation_id)
    .fetch_optional(pool)
    .await
    .map_err(backend)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut entries = [InboxEntry::try_from(row)?];
    fill_latest(pool, &mut entries).await?;
    let [entry] = entries;
    Ok(Some(entry))
}

/// The outcome row of a mark's second statement.
#[derive(sqlx::FromRow)]
struct MarkRow {
    kind: i16,
    last_seq: i64,
    target: i64,
    last_read_seq: i64,
    read_at: Option<Timestamp>,
    last_delivered_seq: i64,
    deleted_after: i64,
    mentions_after: i64,
}

pub(crate) async fn mark(
    pool: &PgPool,
    conversation_id: Id,
    user_id: Id,
    kind: MarkKind,
    seq: Option<i64>,
    now: Timestamp,
) -> StoreResult<Marked> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let before: Option<(i64, i64)> = sqlx::query_as(
        "SELECT last_read_seq, last_delivered_seq FROM conversation_members
         WHERE conversation_id = $1 AND user_id = $2
         FOR UPDATE",
    )
    .bind(conversation_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let Some((read_before, delivered_before)) = before else {
        return Err(StoreError::NotFound);
    };
    // A new snapshot, taken now that the row is ours: it sees every send
    // that moved this row before us, and the last_seq that goes with it.
    let row: Option<MarkRow> = sqlx::query_as(
        "WITH c AS (
             SELECT id, kind, last_seq, COALESCE($3, last_seq) AS target
             FROM conversations WHERE id = $1
         ), moved AS (
             UPDATE conversation_members m
             SET last_read_seq = CASE WHEN $4 THEN GREATEST(m.last_read_seq, c.target)
                                      ELSE m.last_read_seq END,
                 read_at = CASE WHEN $4 AND c.target > m.last_read_seq THEN $5
                                ELSE m.read_at END,
                 last_delivered_seq = GREATEST(m.last_delivered_seq, c.target)
             FROM c
             WHERE m.conversation_id = $1 AND m.user_id = $2 AND c.target <= c.last_seq
               AND (($4 AND c.target > m.last_read_seq) OR c.target > m.last_delivered_seq)
             RETURNING m.last_read_seq, m.read_at, m.last_delivered_seq
         ), now_ AS (
             SELECT COALESCE(moved.last_read_seq, m.last_read_seq) AS last_read_seq,
                    CASE WHEN moved.last_read_seq IS NULL THEN m.read_at
                         ELSE moved.read_at END AS read_at,
                    COALESCE(moved.last_delivered_seq, m.last_delivered_seq)
                        AS last_delivered_seq
             FROM conversation_members m LEFT JOIN moved ON true
             WHERE m.conversation_id = $1 AND m.user_id = $2
         )
         SELECT c.kind, c.last_seq, c.target, now_.last_read_seq, now_.read_at,
                now_.last_delivered_seq,
                (SELECT count(*) FROM message_deletions d
                 WHERE d.conversation_id = $1 AND d.seq > now_.last_read_seq) AS deleted_after,
                (SELECT count(*) FROM mentions x
                 WHERE x.user_id = $2 AND x.conversation_id = $1
                   AND x.seq > now_.last_read_seq) AS mentions_after
         FROM c, now_",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(seq)
    .bind(kind == MarkKind::Read)
    .bind(millis(now))
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let Some(row) = row else {
        // The conversation went away meanwhile.
        return Err(StoreError::NotFound);
    };
    if row.target > row.last_seq {
        return Ok(Marked::Beyond {
            last_seq: row.last_seq,
        });
    }
    tx.commit().await.map_err(backend)?;
    let conversation_kind = ConversationKind::from_i16(row.kind).ok_or_else(|| {
        StoreError::Backend(format!(
            "unknown conversation kind {} in the database",
            row.kind
        ))
    })?;
    Ok(Marked::Applied {
        state: ReadState {
            conversation_id,
            user_id,
            last_read_seq: row.last_read_seq,
            read_at: row.read_at.map(millis),
            last_delivered_seq: row.last_delivered_seq,
            last_seq: row.last_seq,
            unread_count: (row.last_seq - row.last_read_seq - row.deleted_after).max(0),
            mention_count: row.mentions_after,
        },
        kind: conversation_kind,
        read_moved: row.last_read_seq > read_before,
        delivered_moved: row.last_delivered_seq > delivered_before,
    })
}

pub(crate) async fn receipts(
    pool: &PgPool,
    conversation_id: Id,
    limit: Option<u32>,
) -> StoreResult<Vec<Receipt>> {
    let rows: Vec<ReceiptRow> = sqlx::query_as(
        "SELECT m.user_id, m.last_read_seq, m.read_at, m.last_delivered_seq, u.read_receipts
         FROM conversation_members m JOIN users u ON u.id = m.user_id
         WHERE m.conversation_id = $1
         ORDER BY m.user_id
         LIMIT $2",
    )
    .bind(conversation_id)
    .bind(limit.map(i64::from))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    Ok(rows.into_iter().map(Receipt::from).collect())
}

pub(crate) async fn members_named(
    pool: &PgPool,
    conversation_id: Id,
    usernames: &[String],
) -> StoreResult<Vec<(Id, String)>> {
    if usernames.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT u.id, u.username FROM users u
         JOIN conversation_members m ON m.user_id = u.id AND m.conversation_id = $1
         WHERE u.username = ANY($2)
         ORDER BY u.id",
    )
    .bind(conversation_id)
    .bind(usernames)
    .fetch_all(pool)
    .await
    .map_err(backend)
}

pub(crate) async fn mention_recipients(pool: &PgPool, message_id: Id) -> StoreResult<Vec<Id>> {
    sqlx::query_scalar("SELECT user_id FROM mentions WHERE message_id = $1 ORDER BY user_id")
        .bind(message_id)
        .fetch_all(pool)
        .await
        .map_err(backend)
}

pub(crate) async fn mentions_for(
    pool: &PgPool,
    user_id: Id,
    before_id: Option<Id>,
    limit: u32,
) -> StoreResult<Vec<Message>> {
    // Newest first along the primary key (user_id, message_id), skipping the
    // conversations the user left; each message found by its full key (one
    // partition).
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT msg.* FROM (
             SELECT x.message_id, x.message_created_at FROM mentions x
             JOIN conversation_members m
               ON m.conversation_id = x.conversation_id AND m.user_id = x.user_id
             WHERE x.user_id = $1 AND x.message_id < $2
             ORDER BY x.message_id DESC
             LIMIT $3
         ) x
         CROSS JOIN LATERAL (
             SELECT ",
        message_columns!(),
        " FROM messages
             WHERE id = x.message_id AND created_at = x.message_created_at
               AND deleted_at IS NULL
         ) msg
         ORDER BY msg.id DESC"
    ))
    .bind(user_id)
    .bind(before_id.unwrap_or(i64::MAX))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    convert_all(rows)
}

pub(crate) async fn edit_message(
    pool: &PgPool,
    id: Id,
    content: &str,
    mentions: &Mentions,
    now: Timestamp,
) -> StoreResult<Message> {
    // One statement. The rows that stay are left alone (deleting and
    // re-inserting one row in sibling CTEs would lose it: both see the
    // statement's snapshot). The copy of the newest message is updated if it
    // is this message (re-checked on its latest version if a send moves it
    // meanwhile).
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "WITH edited AS (
             UPDATE messages
             SET content = $2, edited_at = $3, updated_at = $3, mentions = $4, broadcast = $5,
                 search_vector = to_tsvector(chatterly_search_language(), $2)
             WHERE id = $1 AND deleted_at IS NULL
             RETURNING ",
        message_columns!(),
        "
         ), gone AS (
             DELETE FROM mentions
             WHERE message_id IN (SELECT id FROM edited) AND NOT (user_id = ANY($6))
         ), added AS (
             INSERT INTO mentions (user_id, message_id, message_created_at, conversation_id, seq)
             SELECT u.id, edited.id, edited.created_at, edited.conversation_id, edited.seq
             FROM edited, users u
             WHERE u.id = ANY($6)
             ON CONFLICT (user_id, message_id) DO NOTHING
         ), copied AS (
             UPDATE latest_messages l
             SET content = edited.content, edited_at = edited.edited_at,
                 mentions = edited.mentions, broadcast = edited.broadcast
             FROM edited
             WHERE l.conversation_id = edited.conversation_id AND l.id = edited.id
         )
         SELECT * FROM edited"
    ))
    .bind(id)
    .bind(content)
    .bind(millis(now))
    .bind((!mentions.user_ids.is_empty()).then_some(&mentions.user_ids))
    .bind(mentions.broadcast.map(|b| b.as_i16()))
    .bind(&mentions.notified)
    .fetch_optional(pool)
    .await
    .map_err(backend)?;
    row.ok_or(StoreError::NotFound)?.try_into()
}

pub(crate) async fn soft_delete_message(pool: &PgPool, id: Id, now: Timestamp) -> StoreResult<()> {
    // One statement: the deletion, its entry for the unread count, the end
    // of its mentions, its attachments hidden, and the copy of the newest
    // message gone if it is this one (the list then walks back).
    let deleted: i64 = sqlx::query_scalar(
        "WITH deleted AS (
             UPDATE messages SET deleted_at = $2, updated_at = $2, search_vector = NULL
             WHERE id = $1 AND deleted_at IS NULL
             RETURNING id, conversation_id, seq
         ), counted AS (
             INSERT INTO message_deletions (conversation_id, seq)
             SELECT conversation_id, seq FROM deleted
             ON CONFLICT DO NOTHING
         ), unmentioned AS (
             DELETE FROM mentions WHERE message_id IN (SELECT id FROM deleted)
         ), hidden AS (
             UPDATE attachments SET deleted_at = $2
             WHERE message_id IN (SELECT id FROM deleted) AND deleted_at IS NULL
         ), uncopied AS (
             DELETE FROM latest_messages l USING deleted
             WHERE l.conversation_id = deleted.conversation_id AND l.id = deleted.id
         )
         SELECT count(*) FROM deleted",
    )
    .bind(id)
    .bind(millis(now))
    .fetch_one(pool)
    .await
    .map_err(backend)?;
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
