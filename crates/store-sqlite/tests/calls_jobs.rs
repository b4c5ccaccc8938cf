//! Integration tests of the calls and the durable job queue of `SqliteStore`,
//! against a real database file in a temporary directory.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chatterly_store::{
    millis, now, CallChange, CallKind, CallParticipant, CallSession, CallStatus, CallTransition,
    ConversationKind, HistoryPage, Id, Inserted, JobStatus, Message, MessageKind, NewCall,
    NewConversation, NewJob, NewMessage, NewUser, Store, StoreError, Timestamp, CONFLICT_CALL,
};
use chatterly_store_sqlite::{SqliteStore, CONFLICT_JOB};
use chrono::Duration;
use tempfile::TempDir;
use tokio::sync::Barrier;

async fn open_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("chatterly.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    (dir, store)
}

async fn user(store: &SqliteStore, name: &str) -> Id {
    store
        .create_user(NewUser {
            email: format!("{name}@example.com"),
            username: name.to_string(),
            display_name: None,
            password_hash: "x".into(),
        })
        .await
        .expect("create_user")
        .id
}

async fn channel(store: &SqliteStore, creator: Id, members: &[Id]) -> Id {
    store
        .create_conversation(NewConversation {
            kind: ConversationKind::Channel,
            name: Some("general".into()),
            description: None,
            created_by_id: creator,
            member_ids: members.to_vec(),
        })
        .await
        .expect("create_conversation")
        .0
        .id
}

async fn send(store: &SqliteStore, conversation_id: Id, user_id: Id, content: &str) -> Message {
    match store
        .insert_message(NewMessage {
            attachment_ids: Vec::new(),
            conversation_id,
            user_id,
            content: content.to_string(),
            kind: MessageKind::Text,
            parent_message_id: None,
            call_session_id: None,
            client_message_id: None,
            mentions: Default::default(),
        })
        .await
        .expect("insert_message")
    {
        Inserted::Created(m) => m,
        Inserted::Existing(m) => panic!("expected a new message, got existing {m:?}"),
    }
}

fn new_call(conversation_id: Id, initiator_id: Id) -> NewCall {
    NewCall {
        conversation_id,
        initiator_id,
        kind: CallKind::Video,
        status: CallStatus::Ringing,
    }
}

/// The missed-call timeout the domain would enqueue with a call.
fn missed_timeout(call: &CallSession) -> NewJob {
    NewJob {
        kind: "call.missed".into(),
        payload: format!("{{\"call_id\":{}}}", call.id),
        run_at: call.created_at + Duration::seconds(30),
        max_attempts: 3,
        unique_key: Some(format!("call.missed:{}", call.id)),
    }
}

async fn ring(store: &SqliteStore, conversation_id: Id, initiator_id: Id) -> CallSession {
    store
        .create_call(
            new_call(conversation_id, initiator_id),
            Box::new(missed_timeout),
        )
        .await
        .expect("create_call")
}

/// A transition that changes only the status.
fn transition(call_id: Id, from: &[CallStatus], to: CallStatus, now: Timestamp) -> CallTransition {
    CallTransition {
        call_id,
        from: from.to_vec(),
        to,
        participant: None,
        start: false,
        end: false,
        log: false,
        now,
    }
}

fn accept(call_id: Id, user_id: Id, now: Timestamp) -> CallTransition {
    CallTransition {
        participant: Some(user_id),
        start: true,
        ..transition(call_id, &[CallStatus::Ringing], CallStatus::Active, now)
    }
}

fn hang_up(call_id: Id, now: Timestamp) -> CallTransition {
    CallTransition {
        end: true,
        log: true,
        ..transition(
            call_id,
            &[CallStatus::Ringing, CallStatus::Active],
            CallStatus::Ended,
            now,
        )
    }
}

fn missed(call_id: Id, now: Timestamp) -> CallTransition {
    CallTransition {
        end: true,
        log: true,
        ..transition(call_id, &[CallStatus::Ringing], CallStatus::Missed, now)
    }
}

fn applied(change: CallChange) -> (CallSession, Option<Message>) {
    match change {
        CallChange::Applied { call, log } => (call, log),
        CallChange::Refused(call) => panic!("expected Applied, got Refused({call:?})"),
    }
}

fn refused(change: CallChange) -> CallSession {
    match change {
        CallChange::Refused(call) => call,
        CallChange::Applied { call, log } => {
            panic!("expected Refused, got Applied {{ {call:?}, {log:?} }}")
        }
    }
}

async fn all_messages(store: &SqliteStore, conversation_id: Id) -> Vec<Message> {
    store
        .history(
            conversation_id,
            HistoryPage::AfterSeq {
                after_seq: 0,
                limit: 1000,
            },
        )
        .await
        .expect("history")
}

fn user_ids(participants: &[CallParticipant]) -> Vec<Id> {
    participants.iter().map(|p| p.user_id).collect()
}

fn job(kind: &str, run_at: Timestamp, unique_key: Option<&str>) -> NewJob {
    NewJob {
        kind: kind.into(),
        payload: "{}".into(),
        run_at,
        max_attempts: 5,
        unique_key: unique_key.map(str::to_owned),
    }
}

async fn enqueue(store: &SqliteStore, job: NewJob) -> Id {
    store
        .enqueue_job(job)
        .await
        .expect("enqueue_job")
        .expect("a new job")
}

const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

// ---- calls ----------------------------------------------------------------------------

#[tokio::test]
async fn create_call_writes_the_call_its_initiator_and_its_job_together() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    assert_eq!(store.current_call(c).await.unwrap(), None);

    let before = now();
    let call = ring(&store, c, alice).await;
    assert_eq!(call.conversation_id, c);
    assert_eq!(call.initiator_id, alice);
    assert_eq!(call.kind, CallKind::Video);
    assert_eq!(call.status, CallStatus::Ringing);
    assert!(call.created_at >= before && call.created_at <= now());
    assert_eq!((call.started_at, call.ended_at), (None, None));
    // What create returns is what is stored.
    assert_eq!(store.call_by_id(call.id).await.unwrap(), Some(call.clone()));
    assert_eq!(store.current_call(c).await.unwrap(), Some(call.clone()));

    assert_eq!(
        store.call_participants(call.id).await.unwrap(),
        vec![CallParticipant {
            call_session_id: call.id,
            user_id: alice,
            joined_at: call.created_at,
        }]
    );

    // The job was built from the call as inserted (its id, its created_at).
    let jobs = store.list_jobs(None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let expected = missed_timeout(&call);
    assert_eq!(jobs[0].kind, "call.missed");
    assert_eq!(jobs[0].payload, format!("{{\"call_id\":{}}}", call.id));
    assert_eq!(jobs[0].run_at, expected.run_at);
    assert_eq!(jobs[0].unique_key, expected.unique_key);
    assert_eq!(jobs[0].max_attempts, 3);
    assert_eq!(jobs[0].status, JobStatus::Pending);
    assert_eq!(jobs[0].attempts, 0);
}

#[tokio::test]
async fn a_failed_create_call_writes_no_job() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    let first = ring(&store, c, alice).await;

    // A second call while the first is not over: refused before its job is
    // even built, and nothing is written.
    let built = Arc::new(AtomicUsize::new(0));
    let counter = built.clone();
    let second = store
        .create_call(
            new_call(c, bob),
            Box::new(move |call| {
                counter.fetch_add(1, Ordering::SeqCst);
                job("second", call.created_at, None)
            }),
        )
        .await;
    assert!(
        matches!(second, Err(StoreError::Conflict(CONFLICT_CALL))),
        "{second:?}"
    );
    assert_eq!(built.load(Ordering::SeqCst), 0, "failed before the job");
    assert_eq!(store.current_call(c).await.unwrap(), Some(first.clone()));

    // A conversation that does not exist.
    let nowhere = store
        .create_call(new_call(9_999, alice), Box::new(missed_timeout))
        .await;
    assert!(matches!(nowhere, Err(StoreError::NotFound)), "{nowhere:?}");
    assert_eq!(store.call_by_id(first.id + 1).await.unwrap(), None);

    // Only the first call's job is there.
    let jobs = store.list_jobs(None, 10).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.payload.as_str()).collect::<Vec<_>>(),
        vec![format!("{{\"call_id\":{}}}", first.id)]
    );

    // Each status that is not over blocks a new call; a final one does not.
    for status in [CallStatus::Calling, CallStatus::Active] {
        let (call, _) = applied(
            store
                .transition_call(transition(
                    first.id,
                    &[CallStatus::Ringing, CallStatus::Calling],
                    status,
                    now(),
                ))
                .await
                .unwrap(),
        );
        assert_eq!(call.status, status);
        assert!(matches!(
            store
                .create_call(new_call(c, bob), Box::new(missed_timeout))
                .await,
            Err(StoreError::Conflict(CONFLICT_CALL))
        ));
        // Back to ringing for the next round.
        applied(
            store
                .transition_call(transition(first.id, &[status], CallStatus::Ringing, now()))
                .await
                .unwrap(),
        );
    }
    applied(
        store
            .transition_call(hang_up(first.id, now()))
            .await
            .unwrap(),
    );
    assert_eq!(store.current_call(c).await.unwrap(), None);
    let next = ring(&store, c, bob).await;
    assert!(next.id > first.id);
    assert_eq!(store.current_call(c).await.unwrap(), Some(next.clone()));
    assert_eq!(store.list_jobs(None, 10).await.unwrap().len(), 2);

    // A transition back into a status that is not over, while the
    // conversation has another such call, is the same conflict.
    let back = store
        .transition_call(transition(
            first.id,
            &[CallStatus::Ended],
            CallStatus::Ringing,
            now(),
        ))
        .await;
    assert!(
        matches!(back, Err(StoreError::Conflict(CONFLICT_CALL))),
        "{back:?}"
    );
    assert_eq!(
        store.call_by_id(first.id).await.unwrap().unwrap().status,
        CallStatus::Ended
    );
}

#[tokio::test]
async fn a_create_call_whose_job_key_is_held_keeps_the_existing_job() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    let held = enqueue(&store, job("held", now(), Some("shared"))).await;

    let call = store
        .create_call(
            new_call(c, alice),
            Box::new(|call| job("call", call.created_at, Some("shared"))),
        )
        .await
        .expect("the call is created");
    assert_eq!(store.call_by_id(call.id).await.unwrap(), Some(call));
    let jobs = store.list_jobs(None, 10).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![held]);
}

#[tokio::test]
async fn transition_is_a_compare_and_set() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    let call = ring(&store, c, alice).await;

    let t1 = millis(now()) + Duration::seconds(5);
    let (active, log) = applied(
        store
            .transition_call(accept(call.id, bob, t1))
            .await
            .unwrap(),
    );
    assert_eq!(log, None);
    assert_eq!(active.status, CallStatus::Active);
    assert_eq!(active.started_at, Some(t1));
    assert_eq!(active.ended_at, None);
    assert_eq!(
        (active.id, active.created_at, active.initiator_id),
        (call.id, call.created_at, alice)
    );
    assert_eq!(
        store.call_by_id(call.id).await.unwrap(),
        Some(active.clone())
    );

    // The same transition again: the status is no longer ringing.
    let t2 = t1 + Duration::seconds(5);
    let again = refused(
        store
            .transition_call(accept(call.id, bob, t2))
            .await
            .unwrap(),
    );
    assert_eq!(again, active, "refused, and the call as it is");
    assert_eq!(
        store.call_by_id(call.id).await.unwrap(),
        Some(active.clone()),
        "nothing written"
    );
    let participants = store.call_participants(call.id).await.unwrap();
    assert_eq!(user_ids(&participants), vec![alice, bob]);
    assert_eq!(participants[1].joined_at, t1);

    // A refused transition adds no participant and writes no log.
    let carol = user(&store, "carol").await;
    let declined = CallTransition {
        participant: Some(carol),
        log: true,
        ..transition(call.id, &[CallStatus::Ringing], CallStatus::Declined, t2)
    };
    refused(store.transition_call(declined).await.unwrap());
    assert_eq!(
        user_ids(&store.call_participants(call.id).await.unwrap()),
        vec![alice, bob]
    );
    assert!(all_messages(&store, c).await.is_empty());

    // An empty `from` matches nothing.
    refused(
        store
            .transition_call(transition(call.id, &[], CallStatus::Ended, t2))
            .await
            .unwrap(),
    );

    let missing = store.transition_call(accept(9_999, bob, t2)).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transitions_from_ringing_apply_exactly_once() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    let store = Arc::new(store);

    let rounds = 30;
    let mut missed_won = 0;
    for _ in 0..rounds {
        let call = ring(&store, c, alice).await;
        let barrier = Arc::new(Barrier::new(2));
        let spawn = |t: CallTransition| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.transition_call(t).await
            })
        };
        let accepted = spawn(accept(call.id, bob, now()));
        let timed_out = spawn(missed(call.id, now()));
        let accepted = accepted.await.unwrap().unwrap();
        let timed_out = timed_out.await.unwrap().unwrap();

        let stored = store.call_by_id(call.id).await.unwrap().unwrap();
        match (accepted, timed_out) {
            (CallChange::Applied { call: a, log: None }, CallChange::Refused(r)) => {
                assert_eq!(a.status, CallStatus::Active);
                assert_eq!(r, a, "the loser sees the winner's call");
                assert_eq!(stored, a);
                // End it so the next round can ring.
                applied(
                    store
                        .transition_call(hang_up(call.id, now()))
                        .await
                        .unwrap(),
                );
            }
            (
                CallChange::Refused(r),
                CallChange::Applied {
                    call: m,
                    log: Some(log),
                },
            ) => {
                assert_eq!(m.status, CallStatus::Missed);
                assert_eq!(r, m);
                assert_eq!(stored, m);
                assert_eq!(log.call_session_id, Some(call.id));
                assert_eq!(
                    user_ids(&store.call_participants(call.id).await.unwrap()),
                    vec![alice],
                    "the refused accept did not join"
                );
                missed_won += 1;
            }
            (a, m) => panic!("expected exactly one Applied, got {a:?} and {m:?}"),
        }
    }
    // One call log per call (a missed one, or the hang-up after an accept),
    // with gap-free seqs.
    let messages = all_messages(&store, c).await;
    assert_eq!(messages.len(), rounds, "missed won {missed_won} times");
    assert!(messages
        .iter()
        .enumerate()
        .all(|(i, m)| m.seq == i as i64 + 1 && m.kind == MessageKind::Call));
    let calls: HashSet<Option<Id>> = messages.iter().map(|m| m.call_session_id).collect();
    assert_eq!(calls.len(), rounds, "one log per call");
}

#[tokio::test]
async fn the_call_log_is_sent_like_a_message() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    send(&store, c, alice, "one").await;
    send(&store, c, bob, "two").await;
    let call = ring(&store, c, alice).await;
    applied(
        store
            .transition_call(accept(call.id, bob, now()))
            .await
            .unwrap(),
    );

    // Bob hangs up; the log is authored by the initiator.
    let before = now();
    let (ended, log) = applied(
        store
            .transition_call(hang_up(call.id, now()))
            .await
            .unwrap(),
    );
    let log = log.expect("a call log");
    assert_eq!(ended.status, CallStatus::Ended);
    assert_eq!(log.conversation_id, c);
    assert_eq!(log.user_id, alice);
    assert_eq!(log.kind, MessageKind::Call);
    assert_eq!(log.content, "call");
    assert_eq!(log.call_session_id, Some(call.id));
    assert_eq!(log.seq, 3);
    assert_eq!(
        (log.parent_message_id, log.client_message_id.as_deref()),
        (None, None)
    );
    assert!(log.created_at >= before);
    assert_eq!(
        store.message_by_id(log.id).await.unwrap(),
        Some(log.clone())
    );
    let conversation = store.conversation_by_id(c).await.unwrap().unwrap();
    assert_eq!(conversation.last_seq, 3);
    assert_eq!(conversation.last_activity_at, log.created_at);

    // Only once: ending it again is refused and sends nothing.
    refused(
        store
            .transition_call(hang_up(call.id, now()))
            .await
            .unwrap(),
    );
    assert_eq!(send(&store, c, bob, "three").await.seq, 4);
    let messages = all_messages(&store, c).await;
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.kind == MessageKind::Call)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn call_logs_interleaved_with_sends_keep_seqs_gap_free() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    let store = Arc::new(store);

    let mut logs = Vec::new();
    let mut sends = 0;
    for round in 0..10 {
        let call = ring(&store, c, alice).await;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                send(&store, c, bob, &format!("r{round} m{i}")).await;
            }));
        }
        let ender = {
            let store = store.clone();
            tokio::spawn(async move { store.transition_call(missed(call.id, now())).await })
        };
        for task in tasks {
            task.await.unwrap();
            sends += 1;
        }
        let (_, log) = applied(ender.await.unwrap().unwrap());
        logs.push(log.expect("a call log"));
    }

    let messages = all_messages(&store, c).await;
    assert_eq!(messages.len(), sends + logs.len());
    assert!(
        messages
            .windows(2)
            .all(|w| w[0].seq + 1 == w[1].seq && w[0].id < w[1].id),
        "gap-free, in id order"
    );
    assert_eq!(messages[0].seq, 1);
    for log in &logs {
        assert_eq!(messages[(log.seq - 1) as usize], *log);
    }
    assert_eq!(
        store.conversation_by_id(c).await.unwrap().unwrap().last_seq,
        messages.len() as i64
    );
}

#[tokio::test]
async fn started_and_ended_are_stamped_only_when_they_apply() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let c = channel(&store, alice, &[bob, carol]).await;
    let t0 = millis(now());
    let at = |s: i64| t0 + Duration::seconds(s);

    // Never started: ending sets no ended_at.
    let unanswered = ring(&store, c, alice).await;
    let (gone, _) = applied(
        store
            .transition_call(missed(unanswered.id, at(30)))
            .await
            .unwrap(),
    );
    assert_eq!(gone.status, CallStatus::Missed);
    assert_eq!((gone.started_at, gone.ended_at), (None, None));

    // Started by the first accept; a later start keeps it; ended once over.
    let call = ring(&store, c, alice).await;
    let (active, _) = applied(
        store
            .transition_call(accept(call.id, bob, at(1)))
            .await
            .unwrap(),
    );
    assert_eq!((active.started_at, active.ended_at), (Some(at(1)), None));
    let late_join = CallTransition {
        participant: Some(carol),
        start: true,
        ..transition(call.id, &[CallStatus::Active], CallStatus::Active, at(2))
    };
    let (still, _) = applied(store.transition_call(late_join).await.unwrap());
    assert_eq!(still.started_at, Some(at(1)), "the first start is kept");
    let (ended, _) = applied(
        store
            .transition_call(hang_up(call.id, at(60)))
            .await
            .unwrap(),
    );
    assert_eq!(
        (ended.started_at, ended.ended_at),
        (Some(at(1)), Some(at(60)))
    );
    assert_eq!(store.call_by_id(call.id).await.unwrap(), Some(ended));

    // Started and ended by one transition: both stamps, the same time.
    let quick = ring(&store, c, alice).await;
    let both = CallTransition {
        start: true,
        end: true,
        ..transition(quick.id, &[CallStatus::Ringing], CallStatus::Ended, at(90))
    };
    let (quick, _) = applied(store.transition_call(both).await.unwrap());
    assert_eq!(
        (quick.started_at, quick.ended_at),
        (Some(at(90)), Some(at(90)))
    );
}

#[tokio::test]
async fn participants_are_idempotent_and_ordered() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let dave = user(&store, "dave").await;
    let c = channel(&store, alice, &[bob, carol, dave]).await;
    let call = ring(&store, c, alice).await;
    let t = millis(now()) + Duration::seconds(10);

    applied(
        store
            .transition_call(accept(call.id, dave, t))
            .await
            .unwrap(),
    );
    let join = |user_id: Id, at: Timestamp| CallTransition {
        participant: Some(user_id),
        ..transition(call.id, &[CallStatus::Active], CallStatus::Active, at)
    };
    // At the same time as dave: ordered by user id (bob's is the smaller).
    applied(store.transition_call(join(bob, t)).await.unwrap());
    applied(
        store
            .transition_call(join(carol, t + Duration::seconds(1)))
            .await
            .unwrap(),
    );
    // Dave again, later: keeps his first joined_at.
    applied(
        store
            .transition_call(join(dave, t + Duration::seconds(5)))
            .await
            .unwrap(),
    );

    let participants = store.call_participants(call.id).await.unwrap();
    assert_eq!(user_ids(&participants), vec![alice, bob, dave, carol]);
    let joined: Vec<Timestamp> = participants.iter().map(|p| p.joined_at).collect();
    assert_eq!(
        joined,
        vec![call.created_at, t, t, t + Duration::seconds(1)]
    );
    assert!(participants.iter().all(|p| p.call_session_id == call.id));

    // An unknown participant fails the whole transition: no status change.
    let stranger = store
        .transition_call(CallTransition {
            participant: Some(9_999),
            ..transition(call.id, &[CallStatus::Active], CallStatus::Ended, t)
        })
        .await;
    assert!(
        matches!(stranger, Err(StoreError::NotFound)),
        "{stranger:?}"
    );
    assert_eq!(
        store.call_by_id(call.id).await.unwrap().unwrap().status,
        CallStatus::Active
    );
    assert!(store.call_participants(9_999).await.unwrap().is_empty());
}

#[tokio::test]
async fn current_call_and_calls_by_ids() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c1 = channel(&store, alice, &[]).await;
    let c2 = channel(&store, alice, &[]).await;

    let first = ring(&store, c1, alice).await;
    let other = ring(&store, c2, alice).await;
    assert_eq!(store.current_call(c1).await.unwrap(), Some(first.clone()));
    assert_eq!(store.current_call(c2).await.unwrap(), Some(other.clone()));
    let (first, _) = applied(
        store
            .transition_call(missed(first.id, now()))
            .await
            .unwrap(),
    );
    assert_eq!(store.current_call(c1).await.unwrap(), None);
    assert_eq!(store.current_call(c2).await.unwrap(), Some(other.clone()));
    let second = ring(&store, c1, alice).await;
    assert_eq!(store.current_call(c1).await.unwrap(), Some(second.clone()));
    assert_eq!(store.current_call(9_999).await.unwrap(), None);

    assert_eq!(
        store
            .calls_by_ids(&[second.id, 9_999, first.id, other.id, first.id])
            .await
            .unwrap(),
        vec![first, other, second]
    );
    assert!(store.calls_by_ids(&[]).await.unwrap().is_empty());
    assert!(store.calls_by_ids(&[9_999]).await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_conversation_removes_its_calls() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    let keep = channel(&store, alice, &[bob]).await;
    let old = ring(&store, c, alice).await;
    applied(store.transition_call(missed(old.id, now())).await.unwrap());
    let current = ring(&store, c, alice).await;
    applied(
        store
            .transition_call(accept(current.id, bob, now()))
            .await
            .unwrap(),
    );
    let kept = ring(&store, keep, bob).await;

    assert!(store.delete_conversation(c).await.unwrap());
    assert_eq!(store.call_by_id(old.id).await.unwrap(), None);
    assert_eq!(store.call_by_id(current.id).await.unwrap(), None);
    assert_eq!(store.current_call(c).await.unwrap(), None);
    assert!(store
        .call_participants(current.id)
        .await
        .unwrap()
        .is_empty());
    assert!(store.call_participants(old.id).await.unwrap().is_empty());
    assert!(matches!(
        store.transition_call(hang_up(current.id, now())).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .create_call(new_call(c, alice), Box::new(missed_timeout))
            .await,
        Err(StoreError::NotFound)
    ));

    // The other conversation's call is untouched.
    assert_eq!(store.current_call(keep).await.unwrap(), Some(kept.clone()));
    assert_eq!(
        user_ids(&store.call_participants(kept.id).await.unwrap()),
        vec![bob]
    );
}

// ---- jobs -----------------------------------------------------------------------------

#[tokio::test]
async fn unique_key_dedupes_until_the_job_is_done() {
    let (_dir, store) = open_store().await;
    let t = millis(now());

    let first = enqueue(&store, job("sweep", t, Some("sweep"))).await;
    assert_eq!(
        store
            .enqueue_job(job("sweep", t, Some("sweep")))
            .await
            .unwrap(),
        None,
        "pending holds the key"
    );
    // No key: never deduped.
    let a = enqueue(&store, job("free", t + Duration::seconds(1), None)).await;
    let b = enqueue(&store, job("free", t + Duration::seconds(1), None)).await;
    assert!(first < a && a < b);
    assert_eq!(store.list_jobs(None, 10).await.unwrap().len(), 3);

    let claimed = store.claim_jobs(t, LEASE, 1).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![first]
    );
    assert_eq!(
        store
            .enqueue_job(job("sweep", t, Some("sweep")))
            .await
            .unwrap(),
        None,
        "running holds the key"
    );
    assert!(store.complete_job(first, 1, None).await.unwrap());
    let again = enqueue(&store, job("sweep", t, Some("sweep"))).await;
    assert!(again > b, "the key is free once the job is done");

    // A dead job frees its key too.
    store.claim_jobs(t, LEASE, 1).await.unwrap();
    assert!(store.fail_job(again, 1, "boom", None, t).await.unwrap());
    let after_dead = enqueue(&store, job("sweep", t, Some("sweep"))).await;
    assert!(after_dead > again);
}

#[tokio::test]
async fn claim_takes_only_due_jobs_earliest_first() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let later = enqueue(&store, job("later", t + Duration::seconds(30), None)).await;
    let due = enqueue(&store, job("due", t, None)).await;
    let overdue = enqueue(&store, job("overdue", t - Duration::seconds(1), None)).await;
    let also_due = enqueue(&store, job("also due", t, None)).await;

    let claimed = store.claim_jobs(t, LEASE, 2).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![overdue, due],
        "by run_at, then id, at most the limit"
    );
    for job in &claimed {
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.locked_until, Some(t + Duration::seconds(60)));
        assert_eq!(job.updated_at, t);
    }
    let claimed = store.claim_jobs(t, LEASE, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![also_due]
    );
    assert!(
        store.claim_jobs(t, LEASE, 10).await.unwrap().is_empty(),
        "the rest is not due, the claimed are leased"
    );
    assert!(store.claim_jobs(t, LEASE, 0).await.unwrap().is_empty());

    let claimed = store
        .claim_jobs(t + Duration::seconds(30), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![later]
    );
    // What claim returns is what is stored.
    let stored = store.list_jobs(Some(JobStatus::Running), 10).await.unwrap();
    assert_eq!(stored.iter().find(|j| j.id == later), Some(&claimed[0]));

    // Once the first leases lapse, those jobs come back merged with the due
    // pending ones, still by run_at then id; `later` is still leased.
    let pending = enqueue(&store, job("pending", t + Duration::seconds(45), None)).await;
    let claimed = store
        .claim_jobs(t + Duration::seconds(60), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|j| (j.id, j.attempts))
            .collect::<Vec<_>>(),
        vec![(overdue, 2), (due, 2), (also_due, 2), (pending, 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_job() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let jobs = 200;
    for i in 0..jobs {
        enqueue(&store, job("work", t - Duration::milliseconds(i), None)).await;
    }
    let store = Arc::new(store);
    let claimers = 16;
    let barrier = Arc::new(Barrier::new(claimers));
    let tasks: Vec<_> = (0..claimers)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_jobs(t, LEASE, 7).await.unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|j| (j.id, j.attempts)));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut busy = 0;
    for task in tasks {
        let mine = task.await.unwrap();
        busy += usize::from(!mine.is_empty());
        for (id, attempts) in mine {
            assert_eq!(attempts, 1);
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), jobs as usize, "every job claimed");
    assert!(busy > 1, "the claimers did run concurrently");
    assert!(store
        .list_jobs(Some(JobStatus::Pending), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_lapsed_lease_is_reclaimed_and_the_stale_claim_loses() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let lease = std::time::Duration::from_secs(1);
    let id = enqueue(&store, job("slow", t, None)).await;

    let first = store.claim_jobs(t, lease, 10).await.unwrap();
    assert_eq!((first[0].id, first[0].attempts), (id, 1));
    assert!(
        store
            .claim_jobs(t + Duration::milliseconds(999), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "the lease holds"
    );

    let later = t + Duration::seconds(2);
    let second = store.claim_jobs(later, lease, 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].id, second[0].attempts), (id, 2));
    assert_eq!(second[0].status, JobStatus::Running);
    assert_eq!(second[0].locked_until, Some(later + Duration::seconds(1)));
    assert_eq!(second[0].run_at, t, "run_at is the job's, not the claim's");

    // The first worker comes back: its claim is gone.
    assert!(!store.complete_job(id, 1, None).await.unwrap());
    assert!(!store.fail_job(id, 1, "late", None, later).await.unwrap());
    let stored = store.list_jobs(None, 10).await.unwrap();
    assert_eq!(stored, second, "untouched by the stale claim");

    assert!(store.complete_job(id, 2, None).await.unwrap());
    assert!(store.list_jobs(None, 10).await.unwrap().is_empty());
    assert!(!store.complete_job(id, 2, None).await.unwrap(), "only once");
}

#[tokio::test]
async fn complete_with_next_enqueues_the_next_run() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let id = enqueue(&store, job("tick", t, Some("tick"))).await;
    store.claim_jobs(t, LEASE, 10).await.unwrap();

    let next_run = t + Duration::minutes(5);
    assert!(store
        .complete_job(id, 1, Some(job("tick", next_run, Some("tick"))))
        .await
        .unwrap());
    let jobs = store.list_jobs(None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let next = &jobs[0];
    assert!(next.id > id);
    assert_eq!(next.kind, "tick");
    assert_eq!(next.status, JobStatus::Pending);
    assert_eq!(next.run_at, next_run);
    assert_eq!(next.attempts, 0);
    assert_eq!(next.unique_key.as_deref(), Some("tick"));
    assert_eq!(
        (next.locked_until, next.last_error.as_deref()),
        (None, None)
    );

    // A completion that does not act enqueues nothing.
    assert!(!store
        .complete_job(id, 1, Some(job("tick", next_run, None)))
        .await
        .unwrap());
    assert_eq!(store.list_jobs(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn fail_with_retry_at_makes_the_job_pending_later() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let id = enqueue(&store, job("flaky", t, None)).await;
    store.claim_jobs(t, LEASE, 10).await.unwrap();

    let retry_at = t + Duration::seconds(30);
    let failed_at = t + Duration::seconds(1);
    assert!(store
        .fail_job(id, 1, "boom", Some(retry_at), failed_at)
        .await
        .unwrap());
    let jobs = store.list_jobs(Some(JobStatus::Pending), 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, id);
    assert_eq!(jobs[0].run_at, retry_at);
    assert_eq!(jobs[0].attempts, 1);
    assert_eq!(jobs[0].last_error.as_deref(), Some("boom"));
    assert_eq!(jobs[0].locked_until, None);
    assert_eq!(jobs[0].updated_at, failed_at);
    assert!(
        !store
            .fail_job(id, 1, "again", None, failed_at)
            .await
            .unwrap(),
        "no longer running"
    );

    assert!(store
        .claim_jobs(retry_at - Duration::milliseconds(1), LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    let claimed = store.claim_jobs(retry_at, LEASE, 10).await.unwrap();
    assert_eq!((claimed[0].id, claimed[0].attempts), (id, 2));
}

#[tokio::test]
async fn fail_without_retry_makes_the_job_dead() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let id = enqueue(&store, job("doomed", t, None)).await;
    store.claim_jobs(t, LEASE, 10).await.unwrap();

    assert!(store.fail_job(id, 1, "fatal", None, t).await.unwrap());
    let dead = store.list_jobs(Some(JobStatus::Dead), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].last_error.as_deref(), Some("fatal"));
    assert_eq!(dead[0].locked_until, None);
    assert_eq!(dead[0].attempts, 1);
    assert!(
        store
            .claim_jobs(t + Duration::days(365), LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "a dead job is never claimed"
    );
    assert!(!store.complete_job(id, 1, None).await.unwrap());
}

#[tokio::test]
async fn list_jobs_by_status() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let at = |s: i64| t + Duration::seconds(s);
    let running = enqueue(&store, job("running", at(0), None)).await;
    store.claim_jobs(at(0), LEASE, 1).await.unwrap();
    let dead = enqueue(&store, job("dead", at(-10), None)).await;
    store.claim_jobs(at(0), LEASE, 1).await.unwrap();
    assert!(store.fail_job(dead, 1, "x", None, at(0)).await.unwrap());
    let p3 = enqueue(&store, job("p3", at(30), None)).await;
    let p1 = enqueue(&store, job("p1", at(10), None)).await;
    let p2 = enqueue(&store, job("p2", at(10), None)).await;

    let ids = |jobs: Vec<chatterly_store::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_jobs(Some(JobStatus::Pending), 10).await.unwrap()),
        vec![p1, p2, p3]
    );
    assert_eq!(
        ids(store.list_jobs(Some(JobStatus::Pending), 2).await.unwrap()),
        vec![p1, p2]
    );
    assert_eq!(
        ids(store.list_jobs(Some(JobStatus::Running), 10).await.unwrap()),
        vec![running]
    );
    assert_eq!(
        ids(store.list_jobs(Some(JobStatus::Dead), 10).await.unwrap()),
        vec![dead]
    );
    assert_eq!(
        ids(store.list_jobs(None, 10).await.unwrap()),
        vec![dead, running, p1, p2, p3]
    );
    assert_eq!(
        ids(store.list_jobs(None, 3).await.unwrap()),
        vec![dead, running, p1]
    );
    assert!(store.list_jobs(None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn retry_revives_only_a_dead_job() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let id = enqueue(&store, job("doomed", t, Some("doomed"))).await;
    store.claim_jobs(t, LEASE, 10).await.unwrap();
    assert!(
        !store.retry_job(id, t).await.unwrap(),
        "running: not retried"
    );
    assert!(store.fail_job(id, 1, "fatal", None, t).await.unwrap());

    let later = t + Duration::hours(1);
    assert!(store.retry_job(id, later).await.unwrap());
    let jobs = store.list_jobs(None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job_ = &jobs[0];
    assert_eq!(job_.id, id);
    assert_eq!(job_.status, JobStatus::Pending);
    assert_eq!(job_.run_at, later);
    assert_eq!(job_.attempts, 0);
    assert_eq!(job_.locked_until, None);
    assert_eq!(job_.last_error.as_deref(), Some("fatal"), "kept");
    assert_eq!(job_.updated_at, later);
    assert!(
        !store.retry_job(id, later).await.unwrap(),
        "pending: not retried"
    );
    // Pending again, it holds its key again.
    assert_eq!(
        store
            .enqueue_job(job("doomed", t, Some("doomed")))
            .await
            .unwrap(),
        None
    );

    let claimed = store.claim_jobs(later, LEASE, 10).await.unwrap();
    assert_eq!((claimed[0].id, claimed[0].attempts), (id, 1));
    assert!(!store.retry_job(9_999, later).await.unwrap(), "missing");
}

#[tokio::test]
async fn retry_conflicts_when_the_key_is_taken_again() {
    let (_dir, store) = open_store().await;
    let t = millis(now());
    let dead = enqueue(&store, job("sync", t, Some("sync"))).await;
    store.claim_jobs(t, LEASE, 10).await.unwrap();
    assert!(store.fail_job(dead, 1, "fatal", None, t).await.unwrap());
    let replacement = enqueue(&store, job("sync", t, Some("sync"))).await;

    let retried = store.retry_job(dead, t).await;
    assert!(
        matches!(retried, Err(StoreError::Conflict(CONFLICT_JOB))),
        "{retried:?}"
    );
    let jobs = store.list_jobs(None, 10).await.unwrap();
    let statuses: Vec<(Id, JobStatus)> = jobs.iter().map(|j| (j.id, j.status)).collect();
    assert_eq!(
        statuses,
        vec![(dead, JobStatus::Dead), (replacement, JobStatus::Pending)],
        "nothing changed"
    );

    // Once the replacement is done, the dead one may come back.
    store.claim_jobs(t, LEASE, 10).await.unwrap();
    assert!(store.complete_job(replacement, 1, None).await.unwrap());
    assert!(store.retry_job(dead, t).await.unwrap());
}
