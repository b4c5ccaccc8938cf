//! Message sends, group-committed per conversation.
//!
//! # Why
//!
//! A send bumps its conversation's `last_seq` under the row lock, and the
//! lock is held until COMMIT has flushed the WAL. Sent one transaction each,
//! the sends of one conversation therefore go one flush at a time, whatever
//! the pool size: a busy conversation tops out at one send per (statement +
//! flush), and its senders queue on the row lock.
//!
//! # How
//!
//! Sends are queued per conversation, and at most one writer per
//! conversation (in this instance) is writing at a time:
//!
//! - a send to a conversation with nothing in flight is written at once by
//!   its caller, as a batch of one (no task, no timer);
//! - a send to a conversation being written to joins its queue and awaits
//!   its answer;
//! - when the writer is done, a *drainer* task takes over the queue, if
//!   anything queued meanwhile. It repeatedly takes everything queued (at
//!   most [`MAX_BATCH`]) and writes it as **one statement**, so one
//!   transaction and one WAL flush, then answers the batch's callers; it
//!   ends, removing the queue, as soon as the queue is empty.
//!
//! While a batch commits the next one queues, so the busier the
//! conversation, the bigger the batches. The batch statement:
//!
//! 1. `input`: the sends, numbered `i` = 1.. in queue order, each with the
//!    message its `(user_id, client_message_id)` already names, if any, and
//!    whether its sender exists;
//! 2. `new`: the sends to write (no original, sender exists), ranked 1..n;
//! 3. `conv`: `last_seq = last_seq + n` (one row lock for the whole batch;
//!    none at all when n = 0), returning the seq before the bump;
//! 4. `inserted`: one multi-row insert, the send of rank k getting seq
//!    `base + k`; the ids (one shared sequence) are drawn in that order, under
//!    the row lock, so they increase with seq across batches and instances;
//! 5. `claimed`: the client ids of the new messages;
//! 6. `read`: the senders' read positions move to their newest message;
//! 7. `latest`: the conversation's copy of its newest message (the
//!    conversation list reads it there; see `read_state.rs`);
//!
//! and it returns the inserted rows and the originals, each with its `i`.
//! A batch of one runs a plainer statement with the same steps and result
//! (no arrays, no numbering), so a lone send costs the database what it did
//! before batching.
//!
//! PostgreSQL commits the statement before answering, and only then are the
//! callers answered: an acknowledged send is durable.
//!
//! # Guarantees
//!
//! - **seq gap-free, commit order = seq order.** A batch numbers exactly the
//!   messages it inserts, in the statement that bumps `last_seq`; the row lock
//!   is held until commit, so batches (of this instance, or of other
//!   instances) commit in seq order.
//! - **Idempotency.** Repeats of one `(user_id, client_message_id)` within a
//!   batch are collapsed before writing: the first is written, the others get
//!   its outcome as `Existing`. Against the table, step 1 sees every claim
//!   committed before the statement started; a claim committed while the
//!   statement waited on the row lock makes step 5 violate the key, which
//!   aborts the whole statement (so no seq is used), and it is run again (the
//!   claim is then visible to step 1). A repeat never writes anything.
//! - **Failure isolation.** The batch is one conversation's, so a missing
//!   conversation fails the whole batch, all with `NotFound`, rightly; an
//!   unknown sender fails only its send (step 2). If PostgreSQL refuses the
//!   statement (something in one message it cannot store, say), nothing was
//!   written and each send is retried alone, so only the culprit fails. Any
//!   other failure (connection lost) fails every send of the batch: none is
//!   acknowledged.
//! - **Cancellation.** A queued caller only waits for its answer; the write
//!   belongs to the drainer. Dropped before its batch formed, its send is
//!   skipped; dropped later, its send is written whole with the batch and the
//!   answer is discarded. A caller writing alone and dropped mid-write leaves
//!   its one statement to commit whole or not at all, as any cancelled query,
//!   and the sends queued behind it still go to a drainer. Nothing is ever
//!   half written, and no send waits on a caller that went away.
//!
//! Batches of different conversations run concurrently (one pool connection
//! each). Across instances, each instance batches its own sends and the row
//! lock orders the batches.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chatterly_store::{
    now, Id, Inserted, Message, NewMessage, StoreError, StoreResult, Timestamp, CONFLICT_ATTACHMENT,
};
use sqlx::{PgExecutor, PgPool};
use tokio::sync::oneshot;

use crate::error::{backend, violation, Violation};
use crate::rows::{copy_latest, latest_columns, message_columns, MessageRow};

/// The most sends written in one statement. Bounds the statement's size and
/// the time the row lock is held for one batch.
const MAX_BATCH: usize = 256;

/// How many times a batch is run when it loses a race (a client id claimed
/// concurrently, a deadlock) before its sends fail.
const ATTEMPTS: usize = 4;

/// Counters of the send path, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Batches written, lone sends included (each one statement, so one
    /// transaction; retries not counted).
    pub batches: u64,
    /// Sends in those batches (repeats of a client id within a batch
    /// included); `sends / batches` is the mean batch size.
    pub sends: u64,
    /// Conversations being written to right now (by a caller writing alone,
    /// or by a drainer).
    pub active_conversations: usize,
    /// Sends queued right now, not yet taken into a batch.
    pub waiting: usize,
}

type Reply = oneshot::Sender<StoreResult<Inserted>>;

/// A send waiting for its batch.
struct Pending {
    new: NewMessage,
    reply: Reply,
}

/// The send path: per-conversation queues and their drainers.
pub(crate) struct Sends {
    pool: PgPool,
    /// A conversation has an entry exactly while a writer is responsible for
    /// it: a caller writing alone, then the drainer it hands over to.
    queues: Mutex<HashMap<Id, VecDeque<Pending>>>,
    batches: AtomicU64,
    sends: AtomicU64,
}

impl Sends {
    pub(crate) fn new(pool: PgPool) -> Sends {
        Sends {
            pool,
            queues: Mutex::new(HashMap::new()),
            batches: AtomicU64::new(0),
            sends: AtomicU64::new(0),
        }
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<Id, VecDeque<Pending>>> {
        // Nothing panics while holding the lock; if something did, the map
        // is still consistent.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> SendStats {
        let queues = self.queues();
        SendStats {
            batches: self.batches.load(Ordering::Relaxed),
            sends: self.sends.load(Ordering::Relaxed),
            active_conversations: queues.len(),
            waiting: queues.values().map(VecDeque::len).sum(),
        }
    }

    /// Writes the send, alone or in its conversation's next batch, and
    /// returns its outcome (see the module documentation).
    pub(crate) async fn send(self: &Arc<Self>, new: NewMessage) -> StoreResult<Inserted> {
        if !new.mentions.is_empty() || !new.attachment_ids.is_empty() {
            return self.send_mentioning(&new).await;
        }
        let conversation_id = new.conversation_id;
        // No await until queued, so a cancelled caller either queued nothing
        // or queued a complete send.
        let turn = match self.queues().entry(conversation_id) {
            Entry::Occupied(mut queue) => {
                let (reply, answer) = oneshot::channel();
                queue.get_mut().push_back(Pending { new, reply });
                Turn::Queued(answer)
            }
            Entry::Vacant(slot) => {
                slot.insert(VecDeque::new());
                Turn::Alone(new)
            }
        };
        match turn {
            Turn::Queued(answer) => answer.await.unwrap_or_else(|_| {
                Err(StoreError::Backend(
                    "the send was abandoned (its writer stopped)".into(),
                ))
            }),
            Turn::Alone(new) => {
                // Whatever queues meanwhile goes to a drainer afterwards, also
                // if this caller is dropped before it is done.
                let _hand_over = HandOver {
                    sends: self,
                    conversation_id,
                };
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.sends.fetch_add(1, Ordering::Relaxed);
                let mut outcome = self.write(conversation_id, &[&new]).await;
                outcome.pop().unwrap_or(Err(StoreError::NotFound))
            }
        }
    }

    /// A send with mentions or attachments: its mention rows and the
    /// attaching update must commit with it, so it goes in a transaction of
    /// its own (the lone-send statement, then the rows) instead of a batch. It takes the conversation's row lock like any
    /// batch, so it commits in seq order with them. Mentions are the rarer
    /// sends; batching them too would need per-send arrays of arrays. Run
    /// again, whole, when it loses a race on its client id.
    async fn send_mentioning(&self, new: &NewMessage) -> StoreResult<Inserted> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.sends.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 1;
        loop {
            match self.mentioning_once(new).await {
                Ok(outcome) => return outcome,
                Err(e) if attempt < ATTEMPTS && lost_a_race(&e) => attempt += 1,
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// One attempt: the outcome (`NotFound` with nothing written for a
    /// missing conversation or sender), or the database's error.
    async fn mentioning_once(
        &self,
        new: &NewMessage,
    ) -> Result<StoreResult<Inserted>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let rows = one_statement(&mut *tx, new.conversation_id, new, now()).await?;
        let outcome = outcomes(rows, 1).pop().unwrap_or(Err(StoreError::NotFound));
        if let Ok(Inserted::Created(message)) = &outcome {
            write_mentions(&mut *tx, message, &new.mentions.notified).await?;
            if !attach(&mut *tx, message, new).await? {
                // Dropping the transaction rolls the send back.
                return Ok(Err(StoreError::Conflict(CONFLICT_ATTACHMENT)));
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Hands the conversation's queue to a new drainer task.
    fn start_drainer(self: &Arc<Self>, conversation_id: Id) {
        let drainer = Drainer {
            sends: Arc::clone(self),
            conversation_id,
            done: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(drainer.run());
            }
            // No runtime to run it (being dropped outside one): the queued
            // sends fail, by dropping the drainer.
            Err(_) => drop(drainer),
        }
    }

    /// Writes one batch and answers its callers.
    async fn write_batch(&self, conversation_id: Id, batch: Vec<Pending>) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.sends.fetch_add(batch.len() as u64, Ordering::Relaxed);

        // Repeats of a (sender, client id) within the batch are not written:
        // they get the outcome of the first, as `Existing`.
        let mut distinct: Vec<Pending> = Vec::with_capacity(batch.len());
        let mut repeats: Vec<(usize, Reply)> = Vec::new();
        let mut first_of: HashMap<(Id, String), usize> = HashMap::new();
        for pending in batch {
            if let Some(client_id) = &pending.new.client_message_id {
                match first_of.entry((pending.new.user_id, client_id.clone())) {
                    Entry::Occupied(first) => {
                        repeats.push((*first.get(), pending.reply));
                        continue;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(distinct.len());
                    }
                }
            }
            distinct.push(pending);
        }

        let news: Vec<&NewMessage> = distinct.iter().map(|p| &p.new).collect();
        let outcomes = self.write(conversation_id, &news).await;

        for (first, reply) in repeats {
            let _ = reply.send(match &outcomes[first] {
                Ok(inserted) => Ok(Inserted::Existing(inserted.message().clone())),
                Err(e) => Err(copy(e)),
            });
        }
        for (pending, outcome) in distinct.into_iter().zip(outcomes) {
            // A caller that went away meanwhile just misses the answer.
            let _ = pending.reply.send(outcome);
        }
    }

    /// Writes `sends` (no two with the same sender and client id) and
    /// returns each one's outcome, in order.
    async fn write(
        &self,
        conversation_id: Id,
        sends: &[&NewMessage],
    ) -> Vec<StoreResult<Inserted>> {
        match self.run(conversation_id, sends).await {
            Ok(outcomes) => outcomes,
            // The database refused the statement, so none of it is written.
            // One send may be to blame: try each alone, so only it fails.
            Err(sqlx::Error::Database(e)) if sends.len() > 1 => {
                tracing::debug!(conversation_id, error = %e, "batch refused, sending one by one");
                let mut outcomes = Vec::with_capacity(sends.len());
                for send in sends {
                    outcomes.push(match self.run(conversation_id, &[send]).await {
                        Ok(mut one) => one.pop().unwrap_or(Err(StoreError::NotFound)),
                        Err(e) => Err(backend(e)),
                    });
                }
                outcomes
            }
            Err(e) => {
                let e = backend(e);
                sends.iter().map(|_| Err(copy(&e))).collect()
            }
        }
    }

    /// Runs the batch statement, again when it lost a race (nothing was
    /// written then).
    async fn run(
        &self,
        conversation_id: Id,
        sends: &[&NewMessage],
    ) -> Result<Vec<StoreResult<Inserted>>, sqlx::Error> {
        let mut attempt = 1;
        loop {
            match self.statement(conversation_id, sends, now()).await {
                Ok(rows) => return Ok(outcomes(rows, sends.len())),
                Err(e) if attempt < ATTEMPTS && lost_a_race(&e) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The statement writing `sends` (see the module documentation): one row
    /// per send that was created or found existing.
    async fn statement(
        &self,
        conversation_id: Id,
        sends: &[&NewMessage],
        now: Timestamp,
    ) -> Result<Vec<SentRow>, sqlx::Error> {
        match sends {
            [one] => self.one(conversation_id, one, now).await,
            _ => self.many(conversation_id, sends, now).await,
        }
    }

    /// The statement for a batch of one (see [`one_statement`]).
    async fn one(
        &self,
        conversation_id: Id,
        send: &NewMessage,
        now: Timestamp,
    ) -> Result<Vec<SentRow>, sqlx::Error> {
        one_statement(&self.pool, conversation_id, send, now).await
    }

    /// The statement for a batch of several.
    async fn many(
        &self,
        conversation_id: Id,
        sends: &[&NewMessage],
        now: Timestamp,
    ) -> Result<Vec<SentRow>, sqlx::Error> {
        let user_ids: Vec<Id> = sends.iter().map(|s| s.user_id).collect();
        let contents: Vec<&str> = sends.iter().map(|s| s.content.as_str()).collect();
        let kinds: Vec<i16> = sends.iter().map(|s| s.kind.as_i16()).collect();
        let parents: Vec<Option<Id>> = sends.iter().map(|s| s.parent_message_id).collect();
        let calls: Vec<Option<Id>> = sends.iter().map(|s| s.call_session_id).collect();
        let client_ids: Vec<Option<&str>> = sends
            .iter()
            .map(|s| s.client_message_id.as_deref())
            .collect();
        sqlx::query_as(concat!(
            // input: the sends, i = 1.. in queue order, with the message their
            // client id already names (if any) and whether their sender exists.
            "WITH input AS (
                 SELECT n.*, c.message_id AS original_id,
                        c.message_created_at AS original_created_at,
                        EXISTS (SELECT 1 FROM users u WHERE u.id = n.user_id) AS sender_exists
                 FROM unnest($2::bigint[], $3::text[], $4::smallint[], $5::bigint[],
                             $6::bigint[], $7::text[])
                      WITH ORDINALITY
                      AS n (user_id, content, kind, parent_message_id, call_session_id,
                            client_message_id, i)
                 LEFT JOIN message_client_ids c USING (user_id, client_message_id)
             ), new AS (
                 SELECT input.*, row_number() OVER (ORDER BY input.i) AS rank
                 FROM input
                 WHERE original_id IS NULL AND sender_exists
             ), conv AS (
                 UPDATE conversations c
                 SET last_seq = c.last_seq + batch.n, last_activity_at = $8, updated_at = $8
                 FROM (SELECT count(*) AS n, array_agg(i ORDER BY i) AS sends FROM new) AS batch
                 WHERE c.id = $1 AND batch.n > 0
                 RETURNING c.id, c.last_seq - batch.n AS base, batch.sends
             ), inserted AS (
                 INSERT INTO messages (conversation_id, user_id, seq, content, kind,
                                       parent_message_id, call_session_id, client_message_id,
                                       created_at, updated_at, search_vector)
                 SELECT conv.id, new.user_id, conv.base + new.rank, new.content, new.kind,
                        new.parent_message_id, new.call_session_id, new.client_message_id, $8, $8,
                        to_tsvector(chatterly_search_language(), new.content)
                 FROM conv, new
                 ORDER BY new.rank
                 RETURNING ",
            message_columns!(),
            "
             ), claimed AS (
                 INSERT INTO message_client_ids (user_id, client_message_id, message_id,
                                                 message_created_at)
                 SELECT user_id, client_message_id, id, created_at
                 FROM inserted
                 WHERE client_message_id IS NOT NULL
             ), read AS (
                 UPDATE conversation_members m
                 SET last_read_seq = own.seq,
                     last_delivered_seq = GREATEST(m.last_delivered_seq, own.seq),
                     read_at = $8
                 FROM (SELECT user_id, max(seq) AS seq FROM inserted GROUP BY user_id) AS own
                 WHERE m.conversation_id = $1 AND m.user_id = own.user_id
                   AND m.last_read_seq < own.seq
             ), latest AS (
                 ",
            copy_latest!("inserted"),
            "
             )
             SELECT conv.sends[inserted.seq - conv.base] AS i, true AS created, inserted.*
             FROM conv, inserted
             UNION ALL
             SELECT input.i, false AS created, original.*
             FROM input
             CROSS JOIN LATERAL (
                 SELECT ",
            message_columns!(),
            " FROM messages
                 WHERE id = input.original_id AND created_at = input.original_created_at
             ) AS original
             WHERE input.original_id IS NOT NULL"
        ))
        .bind(conversation_id)
        .bind(&user_ids)
        .bind(&contents)
        .bind(&kinds)
        .bind(&parents)
        .bind(&calls)
        .bind(&client_ids)
        .bind(now)
        .fetch_all(&self.pool)
        .await
    }
}

/// The statement for a batch of one: the batch statement's steps and result
/// without the arrays, numbering and mapping back, which would cost a lone
/// send nearly twice its database time. Run on `executor`: the pool for a
/// send, or a caller's transaction (see [`send_in`]).
async fn one_statement<'e, E: PgExecutor<'e>>(
    executor: E,
    conversation_id: Id,
    send: &NewMessage,
    now: Timestamp,
) -> Result<Vec<SentRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "WITH original AS (
             SELECT message_id, message_created_at
             FROM message_client_ids
             WHERE user_id = $2 AND client_message_id = $7
         ), conv AS (
             UPDATE conversations
             SET last_seq = last_seq + 1, last_activity_at = $8, updated_at = $8
             WHERE id = $1
               AND NOT EXISTS (SELECT 1 FROM original)
               AND EXISTS (SELECT 1 FROM users WHERE id = $2)
             RETURNING id, last_seq
         ), inserted AS (
             INSERT INTO messages (conversation_id, user_id, seq, content, kind,
                                   parent_message_id, call_session_id, client_message_id,
                                   created_at, updated_at, mentions, broadcast, search_vector)
             SELECT conv.id, $2, conv.last_seq, $3, $4, $5, $6, $7, $8, $8, $9, $10,
                    to_tsvector(chatterly_search_language(), $3)
             FROM conv
             RETURNING ",
        message_columns!(),
        "
         ), claimed AS (
             INSERT INTO message_client_ids (user_id, client_message_id, message_id,
                                             message_created_at)
             SELECT user_id, client_message_id, id, created_at
             FROM inserted
             WHERE client_message_id IS NOT NULL
         ), read AS (
             UPDATE conversation_members m
             SET last_read_seq = inserted.seq,
                 last_delivered_seq = GREATEST(m.last_delivered_seq, inserted.seq),
                 read_at = $8
             FROM inserted
             WHERE m.conversation_id = inserted.conversation_id
               AND m.user_id = inserted.user_id
               AND m.last_read_seq < inserted.seq
         ), latest AS (
             ",
        copy_latest!("inserted"),
        "
         )
         SELECT 1::bigint AS i, true AS created, inserted.*
         FROM inserted
         UNION ALL
         SELECT 1, false, found.*
         FROM original
         CROSS JOIN LATERAL (
             SELECT ",
        message_columns!(),
        " FROM messages
             WHERE id = original.message_id AND created_at = original.message_created_at
         ) AS found"
    ))
    .bind(conversation_id)
    .bind(send.user_id)
    .bind(&send.content)
    .bind(send.kind.as_i16())
    .bind(send.parent_message_id)
    .bind(send.call_session_id)
    .bind(&send.client_message_id)
    .bind(now)
    .bind((!send.mentions.user_ids.is_empty()).then_some(&send.mentions.user_ids))
    .bind(send.mentions.broadcast.map(|b| b.as_i16()))
    .fetch_all(executor)
    .await
}

/// The mention rows of a just-written message, in the caller's transaction:
/// one per notified user (unknown users are skipped rather than failing the
/// write).
pub(crate) async fn write_mentions<'e, E: PgExecutor<'e>>(
    executor: E,
    message: &Message,
    notified: &[Id],
) -> Result<(), sqlx::Error> {
    if notified.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO mentions (user_id, message_id, message_created_at, conversation_id, seq)
         SELECT u.id, $2, $3, $4, $5 FROM users u WHERE u.id = ANY($1)
         ON CONFLICT (user_id, message_id) DO NOTHING",
    )
    .bind(notified)
    .bind(message.id)
    .bind(message.created_at)
    .bind(message.conversation_id)
    .bind(message.seq)
    .execute(executor)
    .await?;
    Ok(())
}

/// Attaches the send's uploads to its just-written message, in the caller's
/// transaction: one conditional update, so an upload that is someone else's,
/// already attached or hidden is not taken. Returns whether every one was
/// (if not, the caller rolls the send back).
async fn attach<'e, E: PgExecutor<'e>>(
    executor: E,
    message: &Message,
    new: &NewMessage,
) -> Result<bool, sqlx::Error> {
    if new.attachment_ids.is_empty() {
        return Ok(true);
    }
    let attached = sqlx::query(
        "UPDATE attachments
         SET message_id = $1, message_created_at = $2, conversation_id = $3
         WHERE id = ANY($4) AND user_id = $5 AND message_id IS NULL AND deleted_at IS NULL",
    )
    .bind(message.id)
    .bind(message.created_at)
    .bind(message.conversation_id)
    .bind(&new.attachment_ids)
    .bind(new.user_id)
    .execute(executor)
    .await?
    .rows_affected();
    Ok(attached == new.attachment_ids.len() as u64)
}

/// Writes one message in the caller's transaction `executor`, as a lone
/// send does (`last_seq + 1` and `last_activity_at` under the conversation's
/// row lock, then the row): for writes that must commit together with other
/// rows, like a call's log message. The row lock is the transaction's until
/// it commits, so the message commits in seq order with the batches of
/// [`Sends`], which it simply queues with (or they with it) on that lock.
/// Not retried (the whole transaction would have to be): meant for sends
/// without `client_message_id`, which cannot lose a race to a claim.
pub(crate) async fn send_in<'e, E: PgExecutor<'e>>(
    executor: E,
    send: &NewMessage,
    now: Timestamp,
) -> StoreResult<Inserted> {
    let rows = one_statement(executor, send.conversation_id, send, now)
        .await
        .map_err(backend)?;
    outcomes(rows, 1).pop().unwrap_or(Err(StoreError::NotFound))
}

/// A row of the batch statement: which send (`i`, from 1), and its message.
#[derive(sqlx::FromRow)]
struct SentRow {
    i: i64,
    created: bool,
    #[sqlx(flatten)]
    message: MessageRow,
}

/// Each send's outcome: its row, or `NotFound` (no such conversation or
/// sender, or a client id whose message is gone).
fn outcomes(rows: Vec<SentRow>, sends: usize) -> Vec<StoreResult<Inserted>> {
    let mut outcomes: Vec<StoreResult<Inserted>> =
        (0..sends).map(|_| Err(StoreError::NotFound)).collect();
    for row in rows {
        let slot = usize::try_from(row.i - 1)
            .ok()
            .and_then(|k| outcomes.get_mut(k));
        let Some(slot) = slot else { continue };
        *slot = Message::try_from(row.message).map(|m| {
            if row.created {
                Inserted::Created(m)
            } else {
                Inserted::Existing(m)
            }
        });
    }
    outcomes
}

/// Whether the statement failed only because a concurrent transaction got
/// in its way, so that running it again will do.
fn lost_a_race(e: &sqlx::Error) -> bool {
    if matches!(
        violation(e),
        Some(Violation::Unique(Some("message_client_ids_pkey")))
    ) {
        return true;
    }
    // deadlock_detected, serialization_failure
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// The same error again, for another caller of the batch.
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Conflict(what) => StoreError::Conflict(what),
        StoreError::Backend(message) => StoreError::Backend(message.clone()),
    }
}

/// What a caller does with its send: wait for its batch, or write it alone.
enum Turn {
    Queued(oneshot::Receiver<StoreResult<Inserted>>),
    Alone(NewMessage),
}

/// Ends a caller's lone write, also when the caller is dropped mid-write:
/// the sends queued meanwhile go to a drainer, or, if there are none, the
/// conversation's queue is removed (under the lock, so a send arriving now
/// either was queued and is handed over, or finds no queue and writes alone).
struct HandOver<'a> {
    sends: &'a Arc<Sends>,
    conversation_id: Id,
}

impl Drop for HandOver<'_> {
    fn drop(&mut self) {
        let mut queues = self.sends.queues();
        if queues
            .get(&self.conversation_id)
            .is_some_and(|queue| !queue.is_empty())
        {
            drop(queues);
            self.sends.start_drainer(self.conversation_id);
        } else {
            queues.remove(&self.conversation_id);
        }
    }
}

/// The drainer of one conversation's queue (a task; see [`Drainer::run`]).
struct Drainer {
    sends: Arc<Sends>,
    conversation_id: Id,
    /// Set when the drainer removed the queue itself, having emptied it.
    done: bool,
}

impl Drainer {
    /// Writes batches until the queue is empty, then removes it (under the
    /// lock, so a send queued meanwhile is either taken here or finds no
    /// queue and writes alone).
    async fn run(mut self) {
        loop {
            let batch: Vec<Pending> = {
                let mut queues = self.sends.queues();
                let Some(queue) = queues.get_mut(&self.conversation_id) else {
                    self.done = true;
                    return;
                };
                // Callers that went away before their send was written
                // don't want it written.
                queue.retain(|pending| !pending.reply.is_closed());
                if queue.is_empty() {
                    queues.remove(&self.conversation_id);
                    self.done = true;
                    return;
                }
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            self.sends.write_batch(self.conversation_id, batch).await;
        }
    }
}

/// A drainer that stops without having emptied its queue (a panic, the
/// runtime shutting down, or never started) removes it: the sends still
/// queued fail (their callers see the reply dropped), and the next send
/// writes alone instead of queueing forever.
impl Drop for Drainer {
    fn drop(&mut self) {
        if !self.done {
            let orphans = self.sends.queues().remove(&self.conversation_id);
            drop(orphans);
        }
    }
}
