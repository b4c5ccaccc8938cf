//! Group commit of sends: batches per conversation keep seq gap-free and in
//! commit order, collapse repeated client ids, isolate failing sends, and
//! survive callers going away.
//!
//! Several tests steer batching by holding a conversation's row lock from a
//! raw connection (a "plug"): the send that reaches the database first waits
//! on it, and the sends queued meanwhile form the next batch, written when the
//! plug is pulled.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatterly_store::{HistoryPage, Id, Inserted, Message, NewMessage, Store, StoreError};
use chatterly_store_postgres::PgStore;
use common::*;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(20);

fn with_client_id(new: NewMessage, client_id: &str) -> NewMessage {
    NewMessage {
        attachment_ids: Vec::new(),
        client_message_id: Some(client_id.to_string()),
        ..new
    }
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

fn spawn_send(store: &PgStore, new: NewMessage) -> JoinHandle<Result<Inserted, StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.insert_message(new).await })
}

async fn all_messages(store: &PgStore, conversation_id: Id) -> Vec<Message> {
    store
        .history(
            conversation_id,
            HistoryPage::AfterSeq {
                after_seq: 0,
                limit: 100_000,
            },
        )
        .await
        .expect("history")
}

async fn last_seq(store: &PgStore, conversation_id: Id) -> i64 {
    store
        .conversation_by_id(conversation_id)
        .await
        .expect("read")
        .expect("exists")
        .last_seq
}

/// Holds the conversation's row lock until `pull`ed: sends to it wait.
struct Plug(PgConnection);

impl Plug {
    async fn put(db: &TestDb, conversation_id: Id) -> Plug {
        let mut conn = PgConnection::connect(&db.url).await.expect("connect");
        conn.execute("BEGIN").await.expect("begin");
        sqlx::query("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE")
            .bind(conversation_id)
            .execute(&mut conn)
            .await
            .expect("lock the conversation");
        Plug(conn)
    }

    async fn pull(mut self) {
        self.0.execute("ROLLBACK").await.expect("rollback");
        self.0.close().await.ok();
    }
}

/// Polls `check` until it holds, failing the test after `PATIENCE`.
macro_rules! wait_until {
    ($what:expr, $check:expr) => {{
        let deadline = Instant::now() + PATIENCE;
        loop {
            if $check {
                break;
            }
            assert!(Instant::now() < deadline, "gave up waiting until {}", $what);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }};
}

/// Spawns the send and waits until it is queued (behind a plugged send), so
/// that sends queue in the order of these calls.
async fn queue_send(store: &PgStore, new: NewMessage) -> JoinHandle<Result<Inserted, StoreError>> {
    let before = store.send_stats().waiting;
    let handle = spawn_send(store, new);
    wait_until!(
        "the send is queued",
        store.send_stats().waiting == before + 1
    );
    handle
}

/// Sessions of the test database waiting on a lock.
async fn lock_waiters(raw: &PgPool) -> i64 {
    count(
        raw,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_sends_from_64_tasks_into_one_conversation() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let stats_before = store.send_stats();

    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (store, next) = (store.clone(), next.clone());
        let (alice, bob) = (alice.id, bob.id);
        tasks.spawn(async move {
            let mut sent = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= 500 {
                    return sent;
                }
                let sender = if k % 2 == 0 { alice } else { bob };
                let new = text(c.id, sender, &format!("message {k}"));
                let new = if k % 3 == 0 {
                    with_client_id(new, &format!("client-{k}"))
                } else {
                    new
                };
                let inserted = store.insert_message(new.clone()).await.expect("send");
                sent.push((new, inserted));
            }
        });
    }
    let mut sent: Vec<(NewMessage, Message)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        for (new, inserted) in joined.expect("task") {
            let Inserted::Created(m) = inserted else {
                panic!("expected Created, got {inserted:?}")
            };
            sent.push((new, m));
        }
    }
    assert_eq!(sent.len(), 500);
    // Each caller got its own message back.
    for (new, m) in &sent {
        assert_eq!(
            (
                m.conversation_id,
                m.user_id,
                &m.content,
                &m.client_message_id
            ),
            (
                new.conversation_id,
                new.user_id,
                &new.content,
                &new.client_message_id
            )
        );
    }
    let mut sent: Vec<Message> = sent.into_iter().map(|(_, m)| m).collect();
    sent.sort_by_key(|m| m.seq);
    assert_eq!(seqs(&sent), (1..=500).collect::<Vec<_>>());
    assert!(
        sent.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase with seq"
    );
    // And what it got back is exactly what was stored.
    assert_eq!(all_messages(&store, c.id).await, sent);
    let conv = store
        .conversation_by_id(c.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(conv.last_seq, 500);
    assert_eq!(conv.last_activity_at, sent[499].created_at);

    let stats = store.send_stats();
    assert_eq!(stats.sends - stats_before.sends, 500);
    assert!(
        stats.batches - stats_before.batches < 500,
        "concurrent sends share batches: {stats:?}"
    );
    wait_until!("the drainer retires", {
        let stats = store.send_stats();
        stats.active_conversations == 0 && stats.waiting == 0
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeats_of_a_client_id_within_one_batch_make_one_message() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;

    let plug = Plug::put(&db, c.id).await;
    let first = spawn_send(&store, text(c.id, alice.id, "first"));
    wait_until!("the first send waits", lock_waiters(&raw).await == 1);
    let stats_before = store.send_stats();
    // Queued behind it: 20 copies of alice's "dup", 5 of bob's "dup" (another
    // sender's id is another key), 10 plain sends, interleaved.
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    let mut plain = Vec::new();
    for i in 0..20 {
        alices.push(spawn_send(
            &store,
            with_client_id(text(c.id, alice.id, &format!("alice {i}")), "dup"),
        ));
        if i % 4 == 0 {
            bobs.push(spawn_send(
                &store,
                with_client_id(text(c.id, bob.id, &format!("bob {i}")), "dup"),
            ));
        }
        if i % 2 == 0 {
            plain.push(spawn_send(
                &store,
                text(c.id, bob.id, &format!("plain {i}")),
            ));
        }
    }
    wait_until!("35 sends are queued", store.send_stats().waiting == 35);
    plug.pull().await;

    let first = first.await.expect("task").expect("send");
    assert!(
        matches!(&first, Inserted::Created(m) if m.seq == 1),
        "{first:?}"
    );
    for (copies, name) in [(alices, "alice"), (bobs, "bob")] {
        let mut created = Vec::new();
        let mut existing = Vec::new();
        for copy in copies {
            match copy.await.expect("task").expect("send") {
                Inserted::Created(m) => created.push(m),
                Inserted::Existing(m) => existing.push(m),
            }
        }
        assert_eq!(created.len(), 1, "one message for {name}'s client id");
        assert!(
            !existing.is_empty() && existing.iter().all(|m| *m == created[0]),
            "every repeat of {name}'s gets the original"
        );
    }
    for send in plain {
        let sent = send.await.expect("task").expect("send");
        assert!(matches!(sent, Inserted::Created(_)), "{sent:?}");
    }

    let stats = store.send_stats();
    assert_eq!(
        stats.batches - stats_before.batches,
        1,
        "one batch: {stats:?}"
    );
    // first + alice's + bob's + 10 plain, no gap.
    assert_eq!(
        seqs(&all_messages(&store, c.id).await),
        (1..=13).collect::<Vec<_>>()
    );
    assert_eq!(last_seq(&store, c.id).await, 13);
    assert_eq!(count(&raw, "SELECT count(*) FROM messages").await, 13);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM message_client_ids").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeats_across_batches_return_the_original_without_a_gap() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let other = group(&store, &alice, &[&bob]).await;

    let original = store
        .insert_message(with_client_id(text(c.id, alice.id, "once"), "dup"))
        .await
        .expect("send")
        .into_message();

    // A batch holding a repeat of it (also aimed elsewhere), among new sends.
    let plug = Plug::put(&db, c.id).await;
    let blocked = spawn_send(&store, text(c.id, bob.id, "blocked"));
    wait_until!("a send waits", lock_waiters(&raw).await == 1);
    let before = queue_send(&store, text(c.id, bob.id, "before")).await;
    let repeat = queue_send(&store, with_client_id(text(c.id, alice.id, "again"), "dup")).await;
    let after = queue_send(&store, text(c.id, bob.id, "after")).await;
    wait_until!("3 sends are queued", store.send_stats().waiting == 3);
    plug.pull().await;

    assert_eq!(blocked.await.expect("task").expect("send").message().seq, 2);
    assert_eq!(
        repeat.await.expect("task").expect("send"),
        Inserted::Existing(original.clone())
    );
    assert_eq!(before.await.expect("task").expect("send").message().seq, 3);
    assert_eq!(after.await.expect("task").expect("send").message().seq, 4);

    // Many repeats racing each other, in both conversations, across batches.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let target = if i % 2 == 0 { c.id } else { other.id };
        tasks.push(spawn_send(
            &store,
            with_client_id(text(target, alice.id, "again"), "dup"),
        ));
        tasks.push(spawn_send(
            &store,
            text(target, bob.id, &format!("new {i}")),
        ));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task").expect("send") {
            Inserted::Existing(m) => assert_eq!(m, original),
            Inserted::Created(m) => {
                assert_eq!(m.user_id, bob.id, "only the new sends create");
                created += 1;
            }
        }
    }
    assert_eq!(created, 60);
    for conversation in [c.id, other.id] {
        let all = all_messages(&store, conversation).await;
        assert_eq!(seqs(&all), (1..=all.len() as i64).collect::<Vec<_>>());
        assert_eq!(last_seq(&store, conversation).await, all.len() as i64);
    }
    assert_eq!(count(&raw, "SELECT count(*) FROM messages").await, 4 + 60);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM message_client_ids").await,
        1
    );
}

/// A client id claimed elsewhere after a send's statement started (and so
/// not seen by it) makes the statement fail on the key; it is run again, and
/// returns the claim's message, without using a seq. Both for a lone send
/// and for a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_id_claimed_while_the_send_waits_returns_that_claim() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let d = group(&store, &alice, &[&bob]).await;
    // Another instance, so the racing claim does not queue behind this one.
    let elsewhere = db.connect().await;

    // A lone send.
    let plug = Plug::put(&db, c.id).await;
    let lone = spawn_send(
        &store,
        with_client_id(text(c.id, alice.id, "to c"), "race-1"),
    );
    wait_until!("the lone send waits", lock_waiters(&raw).await == 1);
    let winner = elsewhere
        .insert_message(with_client_id(text(d.id, alice.id, "to d"), "race-1"))
        .await
        .expect("send")
        .into_message();
    plug.pull().await;
    assert_eq!(
        lone.await.expect("task").expect("send"),
        Inserted::Existing(winner)
    );
    assert_eq!(last_seq(&store, c.id).await, 0, "no seq used");

    // A batch. Another instance's send, not yet committed, has claimed
    // "race-2" (raw SQL standing in for it); the batch starts, its claim of
    // "race-2" waits on that key, and the other send commits.
    let mut other_instance = PgConnection::connect(&db.url).await.expect("connect");
    other_instance.execute("BEGIN").await.expect("begin");
    let winner_id: Id = sqlx::query_scalar(
        "WITH conv AS (
             UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1
             RETURNING id, last_seq
         ), inserted AS (
             INSERT INTO messages (conversation_id, user_id, seq, content, kind,
                                   client_message_id, created_at, updated_at)
             SELECT id, $2, last_seq, 'to d', 0, 'race-2', $3, $3 FROM conv
             RETURNING id, created_at
         )
         INSERT INTO message_client_ids (user_id, client_message_id, message_id,
                                         message_created_at)
         SELECT $2, 'race-2', id, created_at FROM inserted
         RETURNING message_id",
    )
    .bind(d.id)
    .bind(alice.id)
    .bind(chatterly_store::now())
    .fetch_one(&mut other_instance)
    .await
    .expect("claim race-2");

    // The batch forms behind a lone send held by a plug.
    let plug = Plug::put(&db, c.id).await;
    let lone = spawn_send(&store, text(c.id, bob.id, "lone"));
    wait_until!("the lone send waits", lock_waiters(&raw).await == 1);
    let racing = spawn_send(
        &store,
        with_client_id(text(c.id, alice.id, "to c"), "race-2"),
    );
    let others: Vec<_> = (0..3)
        .map(|i| spawn_send(&store, text(c.id, bob.id, &format!("other {i}"))))
        .collect();
    wait_until!("the batch is queued", store.send_stats().waiting == 4);
    plug.pull().await;
    assert_eq!(lone.await.expect("task").expect("send").message().seq, 1);
    wait_until!(
        "the batch waits on the claim",
        lock_waiters(&raw).await == 1
    );
    other_instance.execute("COMMIT").await.expect("commit");
    let winner = store
        .message_by_id(winner_id)
        .await
        .expect("read")
        .expect("committed");

    assert_eq!(
        racing.await.expect("task").expect("send"),
        Inserted::Existing(winner)
    );
    let mut other_seqs = Vec::new();
    for other in others {
        match other.await.expect("task").expect("send") {
            Inserted::Created(m) => other_seqs.push(m.seq),
            existing => panic!("expected Created, got {existing:?}"),
        }
    }
    other_seqs.sort_unstable();
    assert_eq!(other_seqs, vec![2, 3, 4]);
    assert_eq!(
        seqs(&all_messages(&store, c.id).await),
        vec![1, 2, 3, 4],
        "no gap"
    );
    assert_eq!(last_seq(&store, c.id).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_send_fails_alone_in_its_batch() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;

    let plug = Plug::put(&db, c.id).await;
    let first = spawn_send(&store, text(c.id, alice.id, "first"));
    wait_until!("the first send waits", lock_waiters(&raw).await == 1);
    let ok1 = queue_send(&store, text(c.id, alice.id, "ok 1")).await;
    let ghost = queue_send(&store, text(c.id, 999, "from nobody")).await;
    let ok2 = queue_send(&store, text(c.id, bob.id, "ok 2")).await;
    let ghost_with_id =
        queue_send(&store, with_client_id(text(c.id, 998, "from nobody"), "g")).await;
    let ok3 = queue_send(&store, with_client_id(text(c.id, alice.id, "ok 3"), "ok-3")).await;
    wait_until!("5 sends are queued", store.send_stats().waiting == 5);
    plug.pull().await;

    assert_eq!(first.await.expect("task").expect("send").message().seq, 1);
    let ghost = ghost.await.expect("task");
    assert!(matches!(ghost, Err(StoreError::NotFound)), "{ghost:?}");
    let ghost = ghost_with_id.await.expect("task");
    assert!(matches!(ghost, Err(StoreError::NotFound)), "{ghost:?}");
    let mut got = Vec::new();
    for ok in [ok1, ok2, ok3] {
        got.push(ok.await.expect("task").expect("send").message().seq);
    }
    assert_eq!(got, vec![2, 3, 4]);

    // Content PostgreSQL refuses (a NUL byte) makes the batch fail as a
    // whole; the others are then written one by one.
    let plug = Plug::put(&db, c.id).await;
    let blocked = spawn_send(&store, text(c.id, alice.id, "blocked"));
    wait_until!("a send waits", lock_waiters(&raw).await == 1);
    let good1 = queue_send(&store, text(c.id, alice.id, "good 1")).await;
    let bad = queue_send(&store, text(c.id, alice.id, "nul \0 byte")).await;
    let good2 = queue_send(
        &store,
        with_client_id(text(c.id, bob.id, "good 2"), "good-2"),
    )
    .await;
    let repeat = queue_send(
        &store,
        with_client_id(text(c.id, bob.id, "good 2 again"), "good-2"),
    )
    .await;
    wait_until!("4 sends are queued", store.send_stats().waiting == 4);
    plug.pull().await;

    assert_eq!(blocked.await.expect("task").expect("send").message().seq, 5);
    let bad = bad.await.expect("task");
    assert!(matches!(bad, Err(StoreError::Backend(_))), "{bad:?}");
    assert_eq!(good1.await.expect("task").expect("send").message().seq, 6);
    let good2 = good2.await.expect("task").expect("send");
    assert!(
        matches!(&good2, Inserted::Created(m) if m.seq == 7),
        "{good2:?}"
    );
    assert_eq!(
        repeat.await.expect("task").expect("send"),
        Inserted::Existing(good2.into_message())
    );

    assert_eq!(
        seqs(&all_messages(&store, c.id).await),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(last_seq(&store, c.id).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_to_a_missing_or_deleted_conversation_fail_alone() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let kept = group(&store, &alice, &[]).await;
    let doomed = group(&store, &alice, &[]).await;

    // Sends to nowhere, racing sends to a real conversation.
    let mut nowhere = Vec::new();
    let mut somewhere = Vec::new();
    for i in 0..40 {
        let new = text(999, alice.id, &format!("lost {i}"));
        let new = if i % 2 == 0 {
            with_client_id(new, &format!("lost-{i}"))
        } else {
            new
        };
        nowhere.push(spawn_send(&store, new));
        somewhere.push(spawn_send(
            &store,
            text(kept.id, alice.id, &format!("m {i}")),
        ));
    }
    for send in nowhere {
        let sent = send.await.expect("task");
        assert!(matches!(sent, Err(StoreError::NotFound)), "{sent:?}");
    }
    for send in somewhere {
        send.await.expect("task").expect("send");
    }
    assert_eq!(
        seqs(&all_messages(&store, kept.id).await),
        (1..=40).collect::<Vec<_>>()
    );

    // Sends racing the conversation's deletion: each is either written before
    // it (and its seq follows the others') or finds it gone.
    let stop = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for t in 0..32 {
        let (store, stop) = (store.clone(), stop.clone());
        let alice = alice.id;
        senders.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for n in 0.. {
                match store
                    .insert_message(text(doomed.id, alice, &format!("{t}/{n}")))
                    .await
                {
                    Ok(Inserted::Created(m)) => created.push(m.seq),
                    Err(StoreError::NotFound) => {
                        stop.fetch_add(1, Ordering::Relaxed);
                        return created;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            created
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.delete_conversation(doomed.id).await.expect("delete"));
    let mut created = Vec::new();
    for sender in senders {
        created.extend(sender.await.expect("task"));
    }
    assert_eq!(stop.load(Ordering::Relaxed), 32, "every sender saw it gone");
    created.sort_unstable();
    assert!(!created.is_empty());
    assert_eq!(
        created,
        (1..=created.len() as i64).collect::<Vec<_>>(),
        "acknowledged sends are gap-free"
    );
    assert_eq!(
        store.conversation_by_id(doomed.id).await.expect("read"),
        None
    );
    assert!(all_messages(&store, doomed.id).await.is_empty());
    wait_until!(
        "the drainers retire",
        store.send_stats().active_conversations == 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_holds_at_most_256_sends() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;

    let plug = Plug::put(&db, c.id).await;
    let first = spawn_send(&store, text(c.id, alice.id, "first"));
    wait_until!("the first send waits", lock_waiters(&raw).await == 1);
    let stats_before = store.send_stats();
    let queued: Vec<_> = (0..600)
        .map(|i| spawn_send(&store, text(c.id, alice.id, &format!("m {i}"))))
        .collect();
    wait_until!("600 sends are queued", store.send_stats().waiting == 600);
    plug.pull().await;
    first.await.expect("task").expect("send");
    let mut got = Vec::new();
    for send in queued {
        got.push(send.await.expect("task").expect("send").into_message());
    }
    let mut got = seqs(&got);
    got.sort_unstable();
    assert_eq!(got, (2..=601).collect::<Vec<_>>());
    let stats = store.send_stats();
    assert_eq!(
        stats.batches - stats_before.batches,
        3,
        "256 + 256 + 88: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_dropped_at_random_points_leave_no_gap() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;

    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let store = store.clone();
        let alice = alice.id;
        tasks.push(tokio::spawn(async move {
            // A per-task pseudo-random sequence of timeouts, 0 to ~4 ms.
            let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (t + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let mut acknowledged = Vec::new();
            for n in 0..25 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let patience = Duration::from_micros(state % 4000);
                let new = text(c.id, alice, &format!("{t}/{n}"));
                let new = if n % 2 == 0 {
                    with_client_id(new, &format!("{t}/{n}"))
                } else {
                    new
                };
                if let Ok(sent) = tokio::time::timeout(patience, store.insert_message(new)).await {
                    acknowledged.push(sent.expect("a send that finished succeeded"));
                }
            }
            acknowledged
        }));
    }
    // Some tasks are also aborted outright.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for task in tasks.iter().step_by(5) {
        task.abort();
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        if let Ok(sent) = task.await {
            acknowledged.extend(sent);
        }
    }

    wait_until!("everything queued is written", {
        let stats = store.send_stats();
        stats.active_conversations == 0 && stats.waiting == 0
    });
    let last = send(&store, &c, &alice, "after").await;
    let all = all_messages(&store, c.id).await;
    assert_eq!(seqs(&all), (1..=last.seq).collect::<Vec<_>>());
    assert_eq!(last_seq(&store, c.id).await, last.seq);
    assert_eq!(count(&raw, "SELECT count(*) FROM messages").await, last.seq);
    // Every acknowledged send is stored as acknowledged.
    let stored: HashSet<Id> = all.iter().map(|m| m.id).collect();
    for sent in &acknowledged {
        let m = sent.message();
        assert!(stored.contains(&m.id), "acknowledged {m:?} is stored");
        assert_eq!(all.iter().find(|s| s.id == m.id), Some(m));
    }
    // The pool is intact.
    assert_eq!(
        send(&store, &c, &alice, "still fine").await.seq,
        last.seq + 1
    );
}

/// The caller writing alone is dropped while its statement waits: the sends
/// queued behind it are still written (by a drainer), and its own send is
/// written whole or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_writer_dropped_mid_write_hands_its_queue_over() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;

    let plug = Plug::put(&db, c.id).await;
    let lone = spawn_send(
        &store,
        with_client_id(text(c.id, alice.id, "dropped"), "dropped"),
    );
    wait_until!("the lone send waits", lock_waiters(&raw).await == 1);
    let queued: Vec<_> = [
        queue_send(&store, text(c.id, alice.id, "queued 1")).await,
        queue_send(&store, text(c.id, alice.id, "queued 2")).await,
    ]
    .into();
    lone.abort();
    assert!(lone.await.expect_err("aborted").is_cancelled());
    // The queue went to a drainer, whose batch now waits on the plug too.
    wait_until!("the batch waits", {
        let stats = store.send_stats();
        stats.waiting == 0 && lock_waiters(&raw).await == 2
    });
    plug.pull().await;

    for send in queued {
        let sent = send.await.expect("task").expect("send");
        assert!(matches!(sent, Inserted::Created(_)), "{sent:?}");
    }
    wait_until!(
        "the conversation is idle",
        store.send_stats().active_conversations == 0
    );
    let last = send(&store, &c, &alice, "after").await;
    let all = all_messages(&store, c.id).await;
    assert_eq!(seqs(&all), (1..=last.seq).collect::<Vec<_>>());
    let dropped = all
        .iter()
        .filter(|m| m.client_message_id.as_deref() == Some("dropped"))
        .count();
    assert_eq!(last.seq, 3 + dropped as i64, "written whole or not at all");
    // Sending it again answers consistently with what happened to it.
    let again = store
        .insert_message(with_client_id(text(c.id, alice.id, "again"), "dropped"))
        .await
        .expect("send");
    assert_eq!(matches!(again, Inserted::Existing(_)), dropped == 1);
}

/// Two instances (two stores, two sets of batches) sending into one
/// conversation: the row lock orders their batches, and every snapshot a
/// reader takes holds a prefix 1..k of the seqs (commit order = seq order,
/// which catch-up relies on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_commit_one_conversation_in_seq_order() {
    let (db, first) = TestDb::migrated().await;
    let second = db.connect().await;
    let raw = db.raw().await;
    let alice = user(&first, "alice").await;
    let c = group(&first, &alice, &[]).await;

    let done = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (raw, done) = (raw.clone(), done.clone());
        tokio::spawn(async move {
            let mut snapshots = 0;
            while done.load(Ordering::Relaxed) == 0 {
                let seen: Vec<i64> = sqlx::query_scalar(
                    "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq",
                )
                .bind(c.id)
                .fetch_all(&raw)
                .await
                .expect("read");
                assert_eq!(
                    seen,
                    (1..=seen.len() as i64).collect::<Vec<_>>(),
                    "a snapshot with a hole"
                );
                snapshots += 1;
            }
            snapshots
        })
    };

    let mut tasks = Vec::new();
    for t in 0..64 {
        let store = if t % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let alice = alice.id;
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 0..8 {
                let new =
                    with_client_id(text(c.id, alice, &format!("{t}/{n}")), &format!("{t}/{n}"));
                sent.push(
                    store
                        .insert_message(new)
                        .await
                        .expect("send")
                        .into_message(),
                );
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.expect("task"));
    }
    done.store(1, Ordering::Relaxed);
    assert!(reader.await.expect("reader") > 0);

    sent.sort_by_key(|m| m.seq);
    assert_eq!(seqs(&sent), (1..=512).collect::<Vec<_>>());
    assert!(
        sent.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase with seq"
    );
    assert_eq!(all_messages(&first, c.id).await, sent);
    let (a, b) = (first.send_stats(), second.send_stats());
    assert!(a.sends >= 256 && b.sends >= 256, "{a:?} {b:?}");
}
