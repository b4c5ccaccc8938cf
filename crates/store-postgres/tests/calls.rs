//! Calls: creation with its participant and job in one transaction, the
//! compare-and-set of transitions (also racing), stamping, the call-log
//! message among concurrent sends, and deletion with the conversation.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatterly_store::{
    now, CallChange, CallKind, CallParticipant, CallSession, CallStatus, CallTransition,
    Conversation, HistoryPage, Id, JobStatus, Message, MessageKind, NewCall, NewJob, Store,
    StoreError, Timestamp, User, CONFLICT_CALL,
};
use chatterly_store_postgres::PgStore;
use common::*;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::sync::Barrier;

const PATIENCE: Duration = Duration::from_secs(30);

fn missed_job(call: &CallSession) -> NewJob {
    NewJob {
        kind: "call.missed".to_string(),
        payload: format!("{{\"call_id\":{}}}", call.id),
        run_at: call.created_at + chrono::Duration::seconds(30),
        max_attempts: 5,
        unique_key: Some(format!("call.missed:{}", call.id)),
    }
}

async fn ring(store: &PgStore, conversation: &Conversation, initiator: &User) -> CallSession {
    store
        .create_call(
            NewCall {
                conversation_id: conversation.id,
                initiator_id: initiator.id,
                kind: CallKind::Video,
                status: CallStatus::Ringing,
            },
            Box::new(missed_job),
        )
        .await
        .expect("create call")
}

fn change(call_id: Id, from: &[CallStatus], to: CallStatus) -> CallTransition {
    CallTransition {
        call_id,
        from: from.to_vec(),
        to,
        participant: None,
        start: false,
        end: false,
        log: false,
        now: now(),
    }
}

fn accept(call_id: Id, user_id: Id) -> CallTransition {
    CallTransition {
        participant: Some(user_id),
        start: true,
        ..change(call_id, &[CallStatus::Ringing], CallStatus::Active)
    }
}

fn end(call_id: Id) -> CallTransition {
    CallTransition {
        end: true,
        log: true,
        ..change(call_id, &[CallStatus::Active], CallStatus::Ended)
    }
}

fn missed(call_id: Id) -> CallTransition {
    CallTransition {
        end: true,
        log: true,
        ..change(call_id, &[CallStatus::Ringing], CallStatus::Missed)
    }
}

fn at(t: CallTransition, now: Timestamp) -> CallTransition {
    CallTransition { now, ..t }
}

fn applied(outcome: CallChange) -> (CallSession, Option<Message>) {
    match outcome {
        CallChange::Applied { call, log } => (call, log),
        CallChange::Refused(call) => panic!("refused: {call:?}"),
    }
}

fn refused(outcome: CallChange) -> CallSession {
    match outcome {
        CallChange::Refused(call) => call,
        CallChange::Applied { call, log } => panic!("applied: {call:?} {log:?}"),
    }
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

/// Sessions of the test database waiting on a lock.
async fn lock_waiters(raw: &PgPool) -> i64 {
    count(
        raw,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .await
}

async fn wait_for_lock_waiters(raw: &PgPool, n: i64) {
    let deadline = Instant::now() + PATIENCE;
    while lock_waiters(raw).await < n {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {n} lock waiters"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Holds a row lock from its own connection until `pull`ed.
struct Plug(PgConnection);

impl Plug {
    async fn put(db: &TestDb, sql: &str, id: Id) -> Plug {
        let mut conn = PgConnection::connect(&db.url).await.expect("connect");
        conn.execute("BEGIN").await.expect("begin");
        sqlx::query(sql)
            .bind(id)
            .execute(&mut conn)
            .await
            .expect("take the row lock");
        Plug(conn)
    }

    async fn pull(mut self) {
        self.0.execute("ROLLBACK").await.expect("rollback");
        self.0.close().await.ok();
    }
}

const LOCK_CALL: &str = "SELECT 1 FROM call_sessions WHERE id = $1 FOR UPDATE";

#[tokio::test]
async fn create_call_commits_the_call_its_initiator_and_its_job() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    assert_eq!(store.current_call(c.id).await.expect("current"), None);

    let before = now();
    let call = ring(&store, &c, &alice).await;
    let after = now();
    assert_eq!(call.conversation_id, c.id);
    assert_eq!(call.initiator_id, alice.id);
    assert_eq!(call.kind, CallKind::Video);
    assert_eq!(call.status, CallStatus::Ringing);
    assert!(before <= call.created_at && call.created_at <= after);
    assert_eq!((call.started_at, call.ended_at), (None, None));

    assert_eq!(
        store.call_by_id(call.id).await.expect("read"),
        Some(call.clone())
    );
    assert_eq!(
        store.current_call(c.id).await.expect("current"),
        Some(call.clone())
    );
    assert_eq!(
        store
            .call_participants(call.id)
            .await
            .expect("participants"),
        vec![CallParticipant {
            call_session_id: call.id,
            user_id: alice.id,
            joined_at: call.created_at,
        }]
    );
    let jobs = store.list_jobs(None, 10).await.expect("jobs");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.kind, "call.missed");
    assert_eq!(job.payload, format!("{{\"call_id\":{}}}", call.id));
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.run_at, call.created_at + chrono::Duration::seconds(30));
    assert_eq!(job.unique_key, Some(format!("call.missed:{}", call.id)));
    assert_eq!((job.attempts, job.max_attempts), (0, 5));
    assert_eq!(job.locked_until, None);
}

#[tokio::test]
async fn a_failed_create_writes_no_call_participant_or_job() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let first = ring(&store, &c, &alice).await;

    // A second call while the first is not over.
    let second = store
        .create_call(
            NewCall {
                conversation_id: c.id,
                initiator_id: bob.id,
                kind: CallKind::Audio,
                status: CallStatus::Ringing,
            },
            Box::new(missed_job),
        )
        .await;
    assert!(
        matches!(second, Err(StoreError::Conflict(CONFLICT_CALL))),
        "{second:?}"
    );
    // A call in a conversation that does not exist.
    let nowhere = store
        .create_call(
            NewCall {
                conversation_id: c.id + 1000,
                initiator_id: alice.id,
                kind: CallKind::Audio,
                status: CallStatus::Ringing,
            },
            Box::new(missed_job),
        )
        .await;
    assert!(matches!(nowhere, Err(StoreError::NotFound)), "{nowhere:?}");

    assert_eq!(count(&raw, "SELECT count(*) FROM call_sessions").await, 1);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM call_participants").await,
        1
    );
    assert_eq!(count(&raw, "SELECT count(*) FROM jobs").await, 1);
    assert_eq!(
        store.current_call(c.id).await.expect("current"),
        Some(first.clone())
    );

    // Once the first call is over, the conversation can have another.
    applied(
        store
            .transition_call(missed(first.id))
            .await
            .expect("missed"),
    );
    assert_eq!(store.current_call(c.id).await.expect("current"), None);
    let next = ring(&store, &c, &bob).await;
    assert_ne!(next.id, first.id);
    assert_eq!(store.current_call(c.id).await.expect("current"), Some(next));
    assert_eq!(count(&raw, "SELECT count(*) FROM jobs").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_make_one_call() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, barrier, c, alice) = (store.clone(), barrier.clone(), c.clone(), alice.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            store
                .create_call(
                    NewCall {
                        conversation_id: c.id,
                        initiator_id: alice.id,
                        kind: CallKind::Audio,
                        status: CallStatus::Ringing,
                    },
                    Box::new(missed_job),
                )
                .await
        });
    }
    let (mut created, mut conflicts) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.expect("task") {
            Ok(_) => created += 1,
            Err(StoreError::Conflict(CONFLICT_CALL)) => conflicts += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((created, conflicts), (1, 7));
    assert_eq!(count(&raw, "SELECT count(*) FROM call_sessions").await, 1);
    assert_eq!(count(&raw, "SELECT count(*) FROM jobs").await, 1);
}

#[tokio::test]
async fn accept_applies_once_and_the_repeat_is_refused() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let c = group(&store, &alice, &[&bob, &carol]).await;
    let call = ring(&store, &c, &alice).await;

    let t1 = call.created_at + chrono::Duration::seconds(2);
    let (active, log) = applied(
        store
            .transition_call(at(accept(call.id, bob.id), t1))
            .await
            .expect("accept"),
    );
    assert_eq!(log, None);
    assert_eq!(active.status, CallStatus::Active);
    assert_eq!(active.started_at, Some(t1));
    assert_eq!(active.ended_at, None);
    assert_eq!(
        store.call_by_id(call.id).await.expect("read"),
        Some(active.clone())
    );

    // The same accept again: nothing written, the call as it is.
    let t2 = t1 + chrono::Duration::seconds(1);
    let again = refused(
        store
            .transition_call(at(accept(call.id, carol.id), t2))
            .await
            .expect("accept again"),
    );
    assert_eq!(again, active);
    let participants = store.call_participants(call.id).await.expect("read");
    assert_eq!(
        participants.iter().map(|p| p.user_id).collect::<Vec<_>>(),
        vec![alice.id, bob.id],
        "the refused accept added nobody"
    );

    // Joining an active call (start again keeps the first started_at), and
    // joining again keeps the first joined_at.
    let join = |user_id: Id, now: Timestamp| CallTransition {
        participant: Some(user_id),
        start: true,
        now,
        ..change(call.id, &[CallStatus::Active], CallStatus::Active)
    };
    let (joined, _) = applied(
        store
            .transition_call(join(carol.id, t2))
            .await
            .expect("join"),
    );
    assert_eq!(joined.started_at, Some(t1));
    let t3 = t2 + chrono::Duration::seconds(1);
    applied(
        store
            .transition_call(join(bob.id, t3))
            .await
            .expect("join again"),
    );
    assert_eq!(
        store.call_participants(call.id).await.expect("read"),
        vec![
            CallParticipant {
                call_session_id: call.id,
                user_id: alice.id,
                joined_at: call.created_at,
            },
            CallParticipant {
                call_session_id: call.id,
                user_id: bob.id,
                joined_at: t1,
            },
            CallParticipant {
                call_session_id: call.id,
                user_id: carol.id,
                joined_at: t2,
            },
        ]
    );

    // Transitions of a call that does not exist.
    for t in [accept(call.id + 1000, bob.id), end(call.id + 1000)] {
        let outcome = store.transition_call(t).await;
        assert!(matches!(outcome, Err(StoreError::NotFound)), "{outcome:?}");
    }
}

#[tokio::test]
async fn ending_stamps_the_call_and_logs_it_once() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let hello = send(&store, &c, &bob, "hello").await;
    let call = ring(&store, &c, &alice).await;
    let t1 = call.created_at + chrono::Duration::seconds(3);
    let t2 = t1 + chrono::Duration::seconds(60);
    applied(
        store
            .transition_call(at(accept(call.id, bob.id), t1))
            .await
            .expect("accept"),
    );

    // Bob hangs up: the log message is authored by the initiator.
    let (ended, log) = applied(
        store
            .transition_call(at(end(call.id), t2))
            .await
            .expect("end"),
    );
    assert_eq!(ended.status, CallStatus::Ended);
    assert_eq!((ended.started_at, ended.ended_at), (Some(t1), Some(t2)));
    let log = log.expect("a call-log message");
    assert_eq!(log.kind, MessageKind::Call);
    assert_eq!(log.content, "call");
    assert_eq!(log.user_id, alice.id);
    assert_eq!(log.conversation_id, c.id);
    assert_eq!(log.call_session_id, Some(call.id));
    assert_eq!(log.seq, hello.seq + 1);
    assert!(log.id > hello.id);
    assert_eq!(log.created_at, t2);
    assert_eq!(log.client_message_id, None);
    assert_eq!(
        store.message_by_id(log.id).await.expect("read"),
        Some(log.clone())
    );
    let conversation = store
        .conversation_by_id(c.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(conversation.last_seq, log.seq);
    assert_eq!(conversation.last_activity_at, t2);
    assert_eq!(store.current_call(c.id).await.expect("current"), None);

    // Ending again (or missing it now) is refused and logs nothing more.
    let again = refused(store.transition_call(end(call.id)).await.expect("again"));
    assert_eq!(again, ended);
    refused(
        store
            .transition_call(missed(call.id))
            .await
            .expect("missed"),
    );
    let messages = all_messages(&store, c.id).await;
    assert_eq!(messages, vec![hello.clone(), log.clone()]);
    // The next send follows the log message.
    let after = send(&store, &c, &bob, "bye").await;
    assert_eq!(after.seq, log.seq + 1);
}

#[tokio::test]
async fn ended_at_needs_started_at() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;

    // Missed before anyone answered: ended but never started.
    let call = ring(&store, &c, &alice).await;
    let t = call.created_at + chrono::Duration::seconds(30);
    let (over, log) = applied(
        store
            .transition_call(at(missed(call.id), t))
            .await
            .expect("missed"),
    );
    assert_eq!(over.status, CallStatus::Missed);
    assert_eq!((over.started_at, over.ended_at), (None, None));
    assert_eq!(log.expect("logged").call_session_id, Some(call.id));

    // Declined without a log message: nothing written to messages.
    let call = ring(&store, &c, &alice).await;
    let declined = CallTransition {
        end: true,
        ..change(call.id, &[CallStatus::Ringing], CallStatus::Declined)
    };
    let (over, log) = applied(store.transition_call(declined).await.expect("decline"));
    assert_eq!(over.status, CallStatus::Declined);
    assert_eq!((over.ended_at, log), (None, None));
    assert_eq!(all_messages(&store, c.id).await.len(), 1);

    // Started and ended by the same transition: both stamped.
    let call = ring(&store, &c, &alice).await;
    let t = call.created_at + chrono::Duration::seconds(5);
    let both = CallTransition {
        start: true,
        end: true,
        now: t,
        ..change(call.id, &[CallStatus::Ringing], CallStatus::Ended)
    };
    let (over, _) = applied(store.transition_call(both).await.expect("both"));
    assert_eq!((over.started_at, over.ended_at), (Some(t), Some(t)));
}

#[tokio::test]
async fn calls_by_ids_skips_missing_ones() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;
    let d = group(&store, &alice, &[]).await;
    let first = ring(&store, &c, &alice).await;
    let second = ring(&store, &d, &alice).await;
    assert_eq!(
        store
            .calls_by_ids(&[second.id, 999_999, first.id])
            .await
            .expect("read"),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(store.calls_by_ids(&[]).await.expect("read"), vec![]);
    assert_eq!(store.call_by_id(999_999).await.expect("read"), None);
    assert_eq!(
        store.call_participants(999_999).await.expect("read"),
        vec![]
    );
}

/// Accept and missed from ringing, at once: exactly one applies, and the
/// other sees the winner's call.
async fn race_round(store: &PgStore, call: &CallSession, bob: &User) -> (bool, CallSession) {
    let barrier = Arc::new(Barrier::new(2));
    let accepting = {
        let (store, barrier, t) = (store.clone(), barrier.clone(), accept(call.id, bob.id));
        tokio::spawn(async move {
            barrier.wait().await;
            store.transition_call(t).await
        })
    };
    let missing = {
        let (store, barrier, t) = (store.clone(), barrier.clone(), missed(call.id));
        tokio::spawn(async move {
            barrier.wait().await;
            store.transition_call(t).await
        })
    };
    let accepted = accepting.await.expect("task").expect("accept");
    let went_missed = missing.await.expect("task").expect("missed");
    match (accepted, went_missed) {
        (CallChange::Applied { call: won, log }, CallChange::Refused(seen)) => {
            assert_eq!(log, None);
            assert_eq!(won.status, CallStatus::Active);
            assert_eq!(seen, won, "the loser sees the winner's call");
            (true, won)
        }
        (CallChange::Refused(seen), CallChange::Applied { call: won, log }) => {
            assert_eq!(won.status, CallStatus::Missed);
            assert_eq!(log.expect("logged").call_session_id, Some(call.id));
            assert_eq!(seen, won, "the loser sees the winner's call");
            (false, won)
        }
        (a, m) => panic!("not exactly one applied: accept {a:?}, missed {m:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transitions_from_ringing_apply_exactly_once() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let (mut accepts, mut misses, mut logs) = (0, 0, 0);
    for round in 0..60 {
        let call = ring(&store, &c, &alice).await;
        // Some rounds with both queued on the call's row lock for certain.
        let plug = if round % 10 == 0 {
            Some(Plug::put(&db, LOCK_CALL, call.id).await)
        } else {
            None
        };
        let race = {
            let (store, call, bob) = (store.clone(), call.clone(), bob.clone());
            tokio::spawn(async move { race_round(&store, &call, &bob).await })
        };
        if let Some(plug) = plug {
            wait_for_lock_waiters(&raw, 2).await;
            plug.pull().await;
        }
        let (accepted, won) = race.await.expect("race");
        assert_eq!(
            store.call_by_id(call.id).await.expect("read"),
            Some(won.clone())
        );
        let participants = store.call_participants(call.id).await.expect("read");
        if accepted {
            accepts += 1;
            assert_eq!(participants.len(), 2);
            let (_, log) = applied(store.transition_call(end(call.id)).await.expect("end"));
            assert!(log.is_some());
        } else {
            misses += 1;
            assert_eq!(participants.len(), 1, "a missed call gained nobody");
        }
        logs += 1;
    }
    assert_eq!(accepts + misses, 60);
    let messages = all_messages(&store, c.id).await;
    assert_eq!(messages.len(), logs);
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=logs as i64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn call_logs_and_concurrent_sends_keep_seq_gap_free() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    const SENDERS: usize = 8;
    const SENDS: usize = 40;
    const CALLS: usize = 20;

    let work = async {
        let mut senders = tokio::task::JoinSet::new();
        for s in 0..SENDERS {
            let (store, c, bob) = (store.clone(), c.clone(), bob.clone());
            senders.spawn(async move {
                for i in 0..SENDS {
                    store
                        .insert_message(text(c.id, bob.id, &format!("{s}/{i}")))
                        .await
                        .expect("send");
                }
            });
        }
        let calls = {
            let (store, c, alice, bob) = (store.clone(), c.clone(), alice.clone(), bob.clone());
            tokio::spawn(async move {
                let mut logs = Vec::new();
                for _ in 0..CALLS {
                    let call = ring(&store, &c, &alice).await;
                    applied(
                        store
                            .transition_call(accept(call.id, bob.id))
                            .await
                            .expect("accept"),
                    );
                    let (_, log) = applied(store.transition_call(end(call.id)).await.expect("end"));
                    logs.push(log.expect("logged"));
                }
                logs
            })
        };
        while let Some(done) = senders.join_next().await {
            done.expect("sender");
        }
        calls.await.expect("calls")
    };
    let logs = tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("no deadlock, no stall");

    let messages = all_messages(&store, c.id).await;
    let total = SENDERS * SENDS + CALLS;
    assert_eq!(messages.len(), total);
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=total as i64).collect::<Vec<_>>(),
        "gap-free"
    );
    assert!(
        messages.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase with seq"
    );
    let call_messages: Vec<&Message> = messages
        .iter()
        .filter(|m| m.kind == MessageKind::Call)
        .collect();
    assert_eq!(call_messages.len(), CALLS);
    let calls: HashSet<Option<Id>> = call_messages.iter().map(|m| m.call_session_id).collect();
    assert_eq!(calls.len(), CALLS, "one log message per call");
    for (m, log) in call_messages.iter().zip(&logs) {
        assert_eq!(*m, log, "the log messages as returned, in order");
        assert_eq!((m.content.as_str(), m.user_id), ("call", alice.id));
    }
    let conversation = store
        .conversation_by_id(c.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(conversation.last_seq, total as i64);
}

#[tokio::test]
async fn delete_conversation_removes_its_calls_and_participants() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let other = group(&store, &alice, &[&bob]).await;

    let over = ring(&store, &c, &alice).await;
    applied(
        store
            .transition_call(accept(over.id, bob.id))
            .await
            .expect("accept"),
    );
    applied(store.transition_call(end(over.id)).await.expect("end"));
    let ringing = ring(&store, &c, &bob).await;
    let kept = ring(&store, &other, &alice).await;

    assert!(store.delete_conversation(c.id).await.expect("delete"));
    assert_eq!(store.call_by_id(over.id).await.expect("read"), None);
    assert_eq!(store.call_by_id(ringing.id).await.expect("read"), None);
    assert_eq!(store.current_call(c.id).await.expect("read"), None);
    assert_eq!(
        store.call_participants(over.id).await.expect("read"),
        vec![]
    );
    assert_eq!(
        count(
            &raw,
            &format!(
                "SELECT count(*) FROM call_participants WHERE call_session_id IN ({}, {})",
                over.id, ringing.id
            )
        )
        .await,
        0
    );
    assert_eq!(count(&raw, "SELECT count(*) FROM call_sessions").await, 1);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM call_participants").await,
        1
    );
    assert_eq!(
        store.call_by_id(kept.id).await.expect("read"),
        Some(kept.clone())
    );
    assert_eq!(
        store.current_call(other.id).await.expect("read"),
        Some(kept)
    );
    // The call of a deleted conversation can no longer change.
    let outcome = store.transition_call(missed(ringing.id)).await;
    assert!(matches!(outcome, Err(StoreError::NotFound)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_while_a_logged_transition_runs_does_not_deadlock() {
    let (db, store) = TestDb::migrated().await;
    let raw = db.raw().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    for round in 0..12 {
        let c = group(&store, &alice, &[&bob]).await;
        let call = ring(&store, &c, &alice).await;
        applied(
            store
                .transition_call(accept(call.id, bob.id))
                .await
                .expect("accept"),
        );
        // Half the rounds: the end takes the conversation's lock, then waits
        // on the call's (plugged), and the delete queues behind it. The
        // others race freely.
        let plug = if round % 2 == 0 {
            Some(Plug::put(&db, LOCK_CALL, call.id).await)
        } else {
            None
        };
        let ending = {
            let store = store.clone();
            tokio::spawn(async move { store.transition_call(end(call.id)).await })
        };
        if plug.is_some() {
            wait_for_lock_waiters(&raw, 1).await;
        }
        let deleting = {
            let store = store.clone();
            tokio::spawn(async move { store.delete_conversation(c.id).await })
        };
        if let Some(plug) = plug {
            wait_for_lock_waiters(&raw, 2).await;
            plug.pull().await;
        }
        let (ended, deleted) = tokio::time::timeout(PATIENCE, async {
            (ending.await.expect("task"), deleting.await.expect("task"))
        })
        .await
        .expect("no stall");
        assert!(deleted.expect("delete, no deadlock"), "round {round}");
        match ended {
            Ok(CallChange::Applied { log, .. }) => assert!(log.is_some()),
            Err(StoreError::NotFound) => assert!(round % 2 == 1, "the plugged end goes first"),
            other => panic!("round {round}: {other:?}"),
        }
        assert_eq!(store.call_by_id(call.id).await.expect("read"), None);
        assert_eq!(
            count(
                &raw,
                &format!(
                    "SELECT count(*) FROM messages WHERE conversation_id = {}",
                    c.id
                )
            )
            .await,
            0
        );
    }
}
