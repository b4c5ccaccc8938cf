//! Read state, counts and mentions on PostgreSQL: the shared store checks
//! (`chatterly_store::testkit`), then what is particular to this backend:
//! group-committed batches move every sender's position, sends with mentions
//! take their own transaction and still commit in seq order, and marks racing
//! sends keep the counts exact.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatterly_store::testkit;
use chatterly_store::{
    HistoryPage, Id, Inserted, MarkKind, Marked, Mentions, NewMessage, Store, StoreError,
};
use chatterly_store_postgres::PgStore;
use common::*;
use sqlx::{Connection, Executor, PgConnection};
use tokio::task::JoinHandle;

macro_rules! shared {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_db, store) = TestDb::migrated().await;
                testkit::$name(&store).await;
            }
        )*
    };
}

shared!(
    own_messages_never_count,
    deleted_and_edited_messages,
    marks_move_forward_only,
    new_members_start_caught_up,
    mentions_count_list_edit_and_delete,
    inbox_rows,
    inbox_pages,
    receipts_and_the_setting,
    attachments_attach_hide_and_clean,
);

const PATIENCE: Duration = Duration::from_secs(10);

/// Holds the conversation's row lock until `pull`ed: sends to it wait, and
/// queue into one batch.
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

fn spawn_send(store: &PgStore, new: NewMessage) -> JoinHandle<Result<Inserted, StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.insert_message(new).await })
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One batch statement writes sends of several members: each sender's
/// position lands on their own last message of the batch, and a send with
/// mentions, which takes a transaction of its own, queues on the same row
/// lock and keeps seq gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_moves_each_senders_position_to_their_last_message() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let c = group(&store, &alice, &[&bob, &carol]).await;

    let plug = Plug::put(&db, c.id).await;
    // The first send writes alone and waits on the plug; the next ones queue
    // behind it and go together as one batch.
    let mut handles = vec![spawn_send(&store, text(c.id, alice.id, "lone"))];
    wait_until("the lone send is in flight", || {
        store.send_stats().active_conversations == 1
    })
    .await;
    for (who, content) in [(&bob, "b1"), (&alice, "a1"), (&bob, "b2"), (&alice, "a2")] {
        let before = store.send_stats().waiting;
        handles.push(spawn_send(&store, text(c.id, who.id, content)));
        wait_until("the send is queued", || {
            store.send_stats().waiting == before + 1
        })
        .await;
    }
    let mentioning = spawn_send(
        &store,
        NewMessage {
            attachment_ids: Vec::new(),
            mentions: Mentions {
                user_ids: vec![carol.id],
                broadcast: None,
                notified: vec![carol.id],
            },
            ..text(c.id, bob.id, "@carol look")
        },
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    plug.pull().await;
    let mut sent = Vec::new();
    for handle in handles {
        sent.push(handle.await.expect("task").expect("send").into_message());
    }
    let mention = mentioning
        .await
        .expect("task")
        .expect("send")
        .into_message();
    sent.push(mention.clone());

    let mut seqs: Vec<i64> = sent.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "gap-free");
    let last_of = |user: Id| {
        sent.iter()
            .filter(|m| m.user_id == user)
            .map(|m| m.seq)
            .max()
            .unwrap_or(0)
    };
    for member in [alice.id, bob.id] {
        let s = testkit::state(&store, c.id, member).await;
        assert_eq!(s.last_read_seq, last_of(member), "member {member}");
        assert_eq!(
            s.unread_count,
            testkit::unread_by_scanning(&store, c.id, member).await
        );
    }
    let carol_state = testkit::state(&store, c.id, carol.id).await;
    assert_eq!(
        (carol_state.unread_count, carol_state.mention_count),
        (6, 1)
    );
    assert_eq!(
        store.mention_recipients(mention.id).await.expect("rows"),
        vec![carol.id]
    );
    let raw = db.raw().await;
    let row_seq: i64 = sqlx::query_scalar("SELECT seq FROM mentions WHERE message_id = $1")
        .bind(mention.id)
        .fetch_one(&raw)
        .await
        .expect("mention row");
    assert_eq!(row_seq, mention.seq);
}

/// Sends by several members (group-committed, some with mentions) race
/// marks by one of them: every mark answers exact counts, and afterwards,
/// with some messages deleted, every member's count equals a full scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_and_marks_keep_the_counts_exact() {
    let (_db, store) = TestDb::migrated().await;
    let store = Arc::new(store);
    let reader = user(&store, "reader").await;
    let mut senders = Vec::new();
    for i in 0..4 {
        senders.push(user(&store, &format!("sender{i}")).await);
    }
    let c = group(&store, &reader, &senders.iter().collect::<Vec<_>>()).await;

    let mut tasks = Vec::new();
    for (n, sender) in senders.iter().map(|s| s.id).enumerate() {
        let store = Arc::clone(&store);
        let reader = reader.id;
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let mut new = text(c.id, sender, &format!("{n}-{i}"));
                if i % 10 == 0 {
                    new.mentions = Mentions {
                        user_ids: vec![reader],
                        broadcast: None,
                        notified: vec![reader],
                    };
                }
                store.insert_message(new).await.expect("send");
            }
        }));
    }
    let marker = {
        let store = Arc::clone(&store);
        let reader = reader.id;
        tokio::spawn(async move {
            let mut last = 0;
            for _ in 0..60 {
                match store
                    .mark(c.id, reader, MarkKind::Read, None, chatterly_store::now())
                    .await
                    .expect("mark")
                {
                    Marked::Applied { state, .. } => {
                        assert!(state.last_read_seq >= last, "never backwards");
                        assert!(state.last_read_seq <= state.last_seq);
                        assert_eq!(
                            state.unread_count,
                            state.last_seq - state.last_read_seq,
                            "no deletions yet: unread is what lies after the position"
                        );
                        last = state.last_read_seq;
                    }
                    other => panic!("{other:?}"),
                }
            }
        })
    };
    for task in tasks {
        task.await.expect("sender");
    }
    marker.await.expect("marker");
    assert_eq!(testkit::state(&*store, c.id, reader.id).await.last_seq, 160);

    for seq in (3..=160).step_by(7) {
        let page = store
            .history(
                c.id,
                HistoryPage::AfterSeq {
                    after_seq: seq - 1,
                    limit: 1,
                },
            )
            .await
            .expect("history");
        store
            .soft_delete_message(page[0].id, chatterly_store::now())
            .await
            .expect("delete");
    }
    for member in std::iter::once(reader.id).chain(senders.iter().map(|s| s.id)) {
        let s = testkit::state(&*store, c.id, member).await;
        assert_eq!(
            s.unread_count,
            testkit::unread_by_scanning(&*store, c.id, member).await,
            "member {member} at {}",
            s.last_read_seq
        );
    }
    // The reader's mentions after the position, against the rows.
    let s = testkit::state(&*store, c.id, reader.id).await;
    let listed = store
        .mentions_for(reader.id, None, 100)
        .await
        .expect("mentions");
    assert_eq!(
        s.mention_count,
        listed.iter().filter(|m| m.seq > s.last_read_seq).count() as i64
    );
}

/// A mark waits for a send by the same member that holds the membership
/// row, and then sees it: the send's seq is never "beyond" the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mark_behind_a_send_of_the_same_member_sees_it() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    send(&store, &c, &alice, "one").await;

    // Hold bob's membership row, as a send of his would.
    let mut holder = PgConnection::connect(&db.url).await.expect("connect");
    holder.execute("BEGIN").await.expect("begin");
    sqlx::query(
        "UPDATE conversation_members SET read_at = now()
         WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(c.id)
    .bind(bob.id)
    .execute(&mut holder)
    .await
    .expect("hold the row");
    let marking = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .mark(
                    c.id,
                    bob.id,
                    MarkKind::Read,
                    Some(2),
                    chatterly_store::now(),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile seq 2 is written and committed by someone else.
    send(&store, &c, &alice, "two").await;
    holder.execute("COMMIT").await.expect("release");
    match marking.await.expect("task").expect("mark") {
        Marked::Applied {
            state, read_moved, ..
        } => {
            assert!(read_moved);
            assert_eq!(
                (state.last_read_seq, state.last_seq, state.unread_count),
                (2, 2, 0)
            );
        }
        other => panic!("expected the mark to apply, got {other:?}"),
    }
}

/// Deletions are counted in their own table, in the deleting statement, so
/// the unread count reads no partition of `messages`.
#[tokio::test]
async fn deletions_are_recorded_with_the_soft_delete() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;
    let m = send(&store, &c, &alice, "gone soon").await;
    store
        .soft_delete_message(m.id, chatterly_store::now())
        .await
        .expect("delete");
    let raw = db.raw().await;
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT conversation_id, seq FROM message_deletions")
            .fetch_all(&raw)
            .await
            .expect("deletions");
    assert_eq!(rows, vec![(c.id, m.seq)]);
    assert!(store.delete_conversation(c.id).await.expect("delete"));
    assert_eq!(
        count(&raw, "SELECT count(*) FROM message_deletions").await,
        0
    );
}

/// The inbox reads each conversation's newest message from its copy in
/// `latest_messages`, never from the partitioned `messages` (whose per-row
/// lookup costs grow with the number of monthly partitions); the migration
/// that adds the copies fills them from the history already there.
#[tokio::test]
async fn the_inbox_reads_the_newest_messages_from_their_copies() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    // The schema as it was before the copies (migrations 1 to 7).
    let mut before = sqlx::migrate!("./migrations");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 8)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&raw).await.expect("migrate to 0007");
    let store = db.connect().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    // Twelve older months of partitions, each holding some conversations'
    // history (written behind the store, at those dates).
    for month in 1..=12 {
        let from = format!("2025-{month:02}-01");
        let to = if month == 12 {
            "2026-01-01".to_owned()
        } else {
            format!("2025-{:02}-01", month + 1)
        };
        sqlx::query(&format!(
            "CREATE TABLE messages_2025_{month:02} PARTITION OF messages \
             FOR VALUES FROM ('{from}') TO ('{to}')"
        ))
        .execute(&raw)
        .await
        .expect("partition");
    }
    for _ in 0..60 {
        group(&store, &alice, &[&bob]).await;
    }
    let quiet = group(&store, &alice, &[&bob]).await;
    sqlx::query(
        "WITH c AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM conversations
                    WHERE id <> $2),
         m AS (
             INSERT INTO messages (conversation_id, user_id, seq, content, kind, created_at,
                                   updated_at)
             SELECT c.id, $1, s, 'm' || s, 0,
                    timestamptz '2025-01-03' + (c.n * interval '5 days') + (s * interval '1 minute'),
                    now()
             FROM c, generate_series(1, 5) s
             RETURNING conversation_id, created_at
         )
         UPDATE conversations SET last_seq = 5,
             last_activity_at = (SELECT max(created_at) FROM m WHERE m.conversation_id = conversations.id)
         WHERE id <> $2",
    )
    .bind(bob.id)
    .bind(quiet.id)
    .execute(&raw)
    .await
    .expect("history");
    // One conversation's newest message was deleted before the migration.
    let first_id: Id = sqlx::query_scalar("SELECT min(id) FROM conversations")
        .fetch_one(&raw)
        .await
        .expect("first");
    sqlx::query("UPDATE messages SET deleted_at = now() WHERE conversation_id = $1 AND seq = 5")
        .bind(first_id)
        .execute(&raw)
        .await
        .expect("delete behind the store");
    store.migrate().await.expect("migrate to the copies");
    sqlx::query("ANALYZE").execute(&raw).await.expect("analyze");

    let inbox = store.inbox(alice.id).await.expect("inbox");
    assert_eq!(inbox.len(), 61);
    for entry in &inbox {
        if entry.conversation.id == quiet.id {
            assert!(entry.latest.is_none(), "no messages, no copy");
            continue;
        }
        let newest = if entry.conversation.id == first_id {
            4
        } else {
            5
        };
        let latest = entry.latest.as_ref().expect("a newest message");
        assert_eq!(
            (latest.seq, latest.content.clone()),
            (newest, format!("m{newest}"))
        );
        assert_eq!(latest.conversation_id, entry.conversation.id);
        assert_eq!(latest.user_id, bob.id);
        assert!(latest.deleted_at.is_none());
        let read = store
            .message_by_id(latest.id)
            .await
            .expect("read")
            .expect("there");
        assert_eq!(&read, latest, "the copy is the message");
    }
    // The newest deleted through the store: its copy goes, and the list
    // walks back to the one before.
    let first = inbox
        .iter()
        .find(|e| e.conversation.id != first_id && e.conversation.id != quiet.id)
        .expect("a conversation");
    let newest = first.latest.clone().expect("newest");
    store
        .soft_delete_message(newest.id, chatterly_store::now())
        .await
        .expect("delete");
    let entry = store
        .inbox_entry(first.conversation.id, alice.id)
        .await
        .expect("entry")
        .expect("member");
    assert_eq!(entry.latest.map(|m| m.seq), Some(4));
    assert_eq!(
        count(
            &raw,
            &format!(
                "SELECT count(*) FROM latest_messages WHERE conversation_id = {}",
                first.conversation.id
            )
        )
        .await,
        0,
        "the deleted message's copy went"
    );
    // A copy that is not the message at last_seq (an instance of an earlier
    // version sent the newest one, say) is passed over for the walk back.
    let other = inbox
        .iter()
        .find(|e| ![first_id, quiet.id, first.conversation.id].contains(&e.conversation.id))
        .expect("another conversation");
    sqlx::query("UPDATE latest_messages SET seq = 3, content = 'stale' WHERE conversation_id = $1")
        .bind(other.conversation.id)
        .execute(&raw)
        .await
        .expect("make the copy stale");
    let entry = store
        .inbox_entry(other.conversation.id, alice.id)
        .await
        .expect("entry")
        .expect("member");
    let latest = entry.latest.expect("newest");
    assert_eq!((latest.seq, latest.content.as_str()), (5, "m5"));

    // The plan: the copies by key, nothing of messages.
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {}",
        chatterly_store_postgres::INBOX_QUERY
    ))
    .bind(alice.id)
    .fetch_all(&raw)
    .await
    .expect("explain");
    let text = plan.join("\n");
    assert!(text.contains("latest_messages"), "{text}");
    assert!(
        !text.contains(" on messages"),
        "the inbox reads messages:\n{text}"
    );
}
