//! Read state, counts and mentions on SQLite: the shared store checks
//! (`chatterly_store::testkit`), and concurrency through the single writer.

use std::sync::Arc;

use chatterly_store::testkit;
use chatterly_store::{
    ConversationKind, Id, MarkKind, Marked, MessageKind, NewConversation, NewMessage, NewUser,
    Store,
};
use chatterly_store_sqlite::SqliteStore;
use tempfile::TempDir;

async fn open_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("chatterly.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    (dir, store)
}

macro_rules! shared {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_dir, store) = open_store().await;
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

async fn user(store: &SqliteStore, name: &str) -> Id {
    store
        .create_user(NewUser {
            email: format!("{name}@example.test"),
            username: name.to_owned(),
            display_name: None,
            password_hash: "x".into(),
        })
        .await
        .expect("user")
        .id
}

/// Sends by several members race marks by one of them: whatever the
/// interleaving, the counts the store reports are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_and_marks_keep_the_counts_exact() {
    let (_dir, store) = open_store().await;
    let store = Arc::new(store);
    let reader = user(&store, "reader").await;
    let senders: Vec<Id> = users(&store, 4).await;
    let (c, _) = store
        .create_conversation(NewConversation {
            kind: ConversationKind::Group,
            name: Some("busy".into()),
            description: None,
            created_by_id: reader,
            member_ids: senders.clone(),
        })
        .await
        .expect("conversation");

    let mut tasks = Vec::new();
    for (n, sender) in senders.iter().copied().enumerate() {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                store
                    .insert_message(NewMessage {
                        attachment_ids: Vec::new(),
                        conversation_id: c.id,
                        user_id: sender,
                        content: format!("{n}-{i}"),
                        kind: MessageKind::Text,
                        parent_message_id: None,
                        call_session_id: None,
                        client_message_id: None,
                        mentions: Default::default(),
                    })
                    .await
                    .expect("send");
            }
        }));
    }
    let marker = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut last = 0;
            for _ in 0..100 {
                match store
                    .mark(c.id, reader, MarkKind::Read, None, chatterly_store::now())
                    .await
                    .expect("mark")
                {
                    Marked::Applied { state, .. } => {
                        assert!(state.last_read_seq >= last, "never backwards");
                        assert_eq!(
                            state.unread_count,
                            state.last_seq - state.last_read_seq,
                            "no deletions: unread is what lies after the position"
                        );
                        last = state.last_read_seq;
                    }
                    other => panic!("{other:?}"),
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for task in tasks {
        task.await.expect("sender");
    }
    marker.await.expect("marker");
    assert_eq!(testkit::state(&*store, c.id, reader).await.last_seq, 200);
    // Some deletions, then every member's count against a full scan.
    for seq in (3..=200).step_by(7) {
        let page = store
            .history(
                c.id,
                chatterly_store::HistoryPage::AfterSeq {
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
    for member in std::iter::once(reader).chain(senders) {
        let s = testkit::state(&*store, c.id, member).await;
        assert_eq!(
            s.unread_count,
            testkit::unread_by_scanning(&*store, c.id, member).await,
            "member {member} at {}",
            s.last_read_seq
        );
    }
}

async fn users(store: &SqliteStore, n: usize) -> Vec<Id> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(user(store, &format!("sender{i}")).await);
    }
    ids
}
