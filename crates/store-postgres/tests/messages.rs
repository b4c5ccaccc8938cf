//! Messages (seq, idempotency, history, edit, delete) and reactions.

mod common;

use chatterly_store::{
    millis, now, HistoryPage, Inserted, Message, MessageKind, NewMessage, Store, StoreError,
    CONFLICT_REACTION,
};
use chatterly_store_postgres::PgStore;
use common::*;

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

#[tokio::test]
async fn insert_assigns_seq_and_moves_activity() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;
    let before = now();

    let first = store
        .insert_message(text(c.id, alice.id, "hello"))
        .await
        .expect("send");
    let Inserted::Created(first) = first else {
        panic!("expected Created, got {first:?}")
    };
    assert_eq!(first.id, 1, "ids start at 1");
    assert_eq!(first.seq, 1);
    assert_eq!(first.conversation_id, c.id);
    assert_eq!(first.user_id, alice.id);
    assert_eq!(first.content, "hello");
    assert_eq!(first.kind, MessageKind::Text);
    assert_eq!(
        (
            first.parent_message_id,
            first.call_session_id,
            first.client_message_id.clone()
        ),
        (None, None, None)
    );
    assert_eq!((first.edited_at, first.deleted_at), (None, None));
    assert!(first.created_at >= before && first.created_at == millis(first.created_at));

    let reply = store
        .insert_message(NewMessage {
            attachment_ids: Vec::new(),
            kind: MessageKind::Call,
            parent_message_id: Some(first.id),
            call_session_id: Some(42),
            ..text(c.id, alice.id, "call")
        })
        .await
        .expect("send")
        .into_message();
    assert_eq!(reply.seq, 2);
    assert!(reply.id > first.id);
    assert_eq!(
        (reply.kind, reply.parent_message_id, reply.call_session_id),
        (MessageKind::Call, Some(first.id), Some(42))
    );

    let conv = store
        .conversation_by_id(c.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(conv.last_seq, 2);
    assert_eq!(conv.last_activity_at, reply.created_at);

    assert_eq!(
        store.message_by_id(first.id).await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(
        store.message_by_id(reply.id).await.expect("read"),
        Some(reply)
    );
    assert_eq!(store.message_by_id(999).await.expect("read"), None);

    let missing = store.insert_message(text(999, alice.id, "nowhere")).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let missing = store
        .insert_message(with_client_id(text(999, alice.id, "nowhere"), "x"))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let unknown_sender = store.insert_message(text(c.id, 999, "who?")).await;
    assert!(
        matches!(unknown_sender, Err(StoreError::NotFound)),
        "{unknown_sender:?}"
    );
    let conv = store
        .conversation_by_id(c.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(conv.last_seq, 2, "failed sends use no seq");
    assert_eq!(send(&store, &c, &alice, "third").await.seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sends_get_seq_1_to_50() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store: PgStore = store.clone();
        let sender = if i % 2 == 0 { alice.id } else { bob.id };
        // Half with client ids, half without: both paths share the counter.
        let new = text(c.id, sender, &format!("message {i}"));
        let new = if i % 3 == 0 {
            with_client_id(new, &format!("client-{i}"))
        } else {
            new
        };
        tasks.spawn(async move { store.insert_message(new).await });
    }
    let mut sent = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task").expect("send") {
            Inserted::Created(m) => sent.push(m),
            other => panic!("expected Created, got {other:?}"),
        }
    }
    sent.sort_by_key(|m| m.seq);
    assert_eq!(seqs(&sent), (1..=50).collect::<Vec<_>>());
    assert!(
        sent.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase with seq"
    );

    let conv = store
        .conversation_by_id(c.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(conv.last_seq, 50);
    let all = store
        .history(
            c.id,
            HistoryPage::AfterSeq {
                after_seq: 0,
                limit: 100,
            },
        )
        .await
        .expect("history");
    assert_eq!(all, sent);
}

#[tokio::test]
async fn a_repeated_client_id_returns_the_original() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let other = group(&store, &alice, &[]).await;

    let first = store
        .insert_message(with_client_id(text(c.id, alice.id, "hi"), "abc"))
        .await
        .expect("send");
    let Inserted::Created(original) = first else {
        panic!("expected Created, got {first:?}")
    };
    assert_eq!(original.client_message_id.as_deref(), Some("abc"));
    let before = store
        .conversation_by_id(c.id)
        .await
        .expect("read")
        .expect("exists");

    let again = store
        .insert_message(with_client_id(text(c.id, alice.id, "hi (retry)"), "abc"))
        .await
        .expect("retry");
    assert_eq!(again, Inserted::Existing(original.clone()));
    // Even aimed at another conversation, the sender's id is taken.
    let elsewhere = store
        .insert_message(with_client_id(text(other.id, alice.id, "hi"), "abc"))
        .await
        .expect("retry");
    assert_eq!(elsewhere, Inserted::Existing(original.clone()));
    let nowhere = store
        .insert_message(with_client_id(text(999, alice.id, "hi"), "abc"))
        .await
        .expect("retry");
    assert_eq!(
        nowhere,
        Inserted::Existing(original.clone()),
        "even to a missing conversation"
    );
    assert_eq!(
        store.conversation_by_id(c.id).await.expect("read"),
        Some(before),
        "nothing written"
    );
    assert_eq!(
        store
            .conversation_by_id(other.id)
            .await
            .expect("read")
            .map(|c| c.last_seq),
        Some(0)
    );

    // Another sender may use the same client id.
    let bobs = store
        .insert_message(with_client_id(text(c.id, bob.id, "me"), "abc"))
        .await
        .expect("send");
    assert!(
        matches!(&bobs, Inserted::Created(m) if m.seq == 2),
        "{bobs:?}"
    );
    // And the next plain send follows without a gap.
    assert_eq!(send(&store, &c, &alice, "next").await.seq, 3);

    let raw = db.raw().await;
    assert_eq!(count(&raw, "SELECT count(*) FROM messages").await, 3);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM message_client_ids").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_make_one_message_and_no_gap() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store: PgStore = store.clone();
        // 20 copies of one send racing 20 ordinary sends.
        let new = if i % 2 == 0 {
            with_client_id(text(c.id, alice.id, "once"), "dup")
        } else {
            text(c.id, bob.id, &format!("other {i}"))
        };
        tasks.spawn(async move { store.insert_message(new).await });
    }
    let mut created = Vec::new();
    let mut existing = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task").expect("send") {
            Inserted::Created(m) => created.push(m),
            Inserted::Existing(m) => existing.push(m),
        }
    }
    let originals: Vec<&Message> = created
        .iter()
        .filter(|m| m.client_message_id.is_some())
        .collect();
    assert_eq!(originals.len(), 1, "exactly one message for the client id");
    assert_eq!(existing.len(), 19);
    assert!(
        existing.iter().all(|m| m == originals[0]),
        "every duplicate gets the original"
    );

    created.sort_by_key(|m| m.seq);
    assert_eq!(seqs(&created), (1..=21).collect::<Vec<_>>(), "no gap");
    let conv = store
        .conversation_by_id(c.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(conv.last_seq, 21);
    let raw = db.raw().await;
    assert_eq!(count(&raw, "SELECT count(*) FROM messages").await, 21);
}

#[tokio::test]
async fn history_pages_by_id_and_by_seq() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;
    let noise = group(&store, &alice, &[]).await;

    let mut all = Vec::new();
    for i in 1..=10 {
        all.push(send(&store, &c, &alice, &format!("m{i}")).await);
        send(&store, &noise, &alice, "elsewhere").await;
    }
    let page = |before_id, limit| {
        let store = store.clone();
        async move {
            store
                .history(c.id, HistoryPage::Before { before_id, limit })
                .await
                .expect("history")
        }
    };
    let after = |after_seq, limit| {
        let store = store.clone();
        async move {
            store
                .history(c.id, HistoryPage::AfterSeq { after_seq, limit })
                .await
                .expect("history")
        }
    };

    // Newest page first, returned oldest first.
    assert_eq!(page(None, 3).await, all[7..10].to_vec());
    // The cursor is exclusive.
    assert_eq!(page(Some(all[7].id), 3).await, all[4..7].to_vec());
    // A last page that is exactly full, then nothing.
    assert_eq!(page(Some(all[3].id), 3).await, all[0..3].to_vec());
    assert!(page(Some(all[0].id), 3).await.is_empty());
    // A short last page, and a limit larger than everything.
    assert_eq!(page(Some(all[2].id), 5).await, all[0..2].to_vec());
    assert_eq!(page(None, 100).await, all);
    assert!(page(None, 0).await.is_empty());

    assert_eq!(seqs(&after(0, 4).await), vec![1, 2, 3, 4]);
    assert_eq!(seqs(&after(4, 4).await), vec![5, 6, 7, 8]);
    assert_eq!(seqs(&after(8, 4).await), vec![9, 10]);
    assert!(after(10, 4).await.is_empty());

    // Deleted messages are left out of both, and do not shorten the page.
    store
        .soft_delete_message(all[8].id, now())
        .await
        .expect("delete");
    store
        .soft_delete_message(all[5].id, now())
        .await
        .expect("delete");
    assert_eq!(
        page(None, 3).await,
        vec![all[6].clone(), all[7].clone(), all[9].clone()]
    );
    assert_eq!(seqs(&after(4, 3).await), vec![5, 7, 8]);
    assert_eq!(seqs(&after(8, 10).await), vec![10]);

    assert!(store
        .history(
            999,
            HistoryPage::Before {
                before_id: None,
                limit: 10
            }
        )
        .await
        .expect("h")
        .is_empty());
}

#[tokio::test]
async fn edit_and_soft_delete() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;
    let m = send(&store, &c, &alice, "draft").await;
    let t = ts("2030-06-01T10:00:00.123456Z");

    let edited = store
        .edit_message(m.id, "final", &Default::default(), t)
        .await
        .expect("edit");
    assert_eq!(edited.content, "final");
    assert_eq!(edited.edited_at, Some(millis(t)));
    assert_eq!(
        (edited.id, edited.seq, edited.created_at),
        (m.id, m.seq, m.created_at)
    );
    assert_eq!(
        store.message_by_id(m.id).await.expect("read"),
        Some(edited.clone())
    );
    assert!(matches!(
        store.edit_message(999, "x", &Default::default(), t).await,
        Err(StoreError::NotFound)
    ));

    store.soft_delete_message(m.id, t).await.expect("delete");
    let deleted = store
        .message_by_id(m.id)
        .await
        .expect("read")
        .expect("row kept");
    assert_eq!(deleted.deleted_at, Some(millis(t)));
    assert_eq!(deleted.content, "final", "content kept");
    assert!(
        matches!(
            store.soft_delete_message(m.id, t).await,
            Err(StoreError::NotFound)
        ),
        "already deleted"
    );
    assert!(matches!(
        store.soft_delete_message(999, t).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        matches!(
            store
                .edit_message(m.id, "too late", &Default::default(), t)
                .await,
            Err(StoreError::NotFound)
        ),
        "deleted"
    );
    assert_eq!(
        store.message_by_id(m.id).await.expect("read"),
        Some(deleted)
    );
}

#[tokio::test]
async fn reactions_one_per_user_and_emoji() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[&bob]).await;
    let m1 = send(&store, &c, &alice, "one").await;
    let m2 = send(&store, &c, &alice, "two").await;
    let before = now();

    let r1 = store.add_reaction(&m1, bob.id, "👍").await.expect("react");
    assert_eq!(
        (r1.id, r1.message_id, r1.user_id, r1.emoji.as_str()),
        (1, m1.id, bob.id, "👍")
    );
    assert!(r1.created_at >= before && r1.created_at == millis(r1.created_at));
    let r2 = store
        .add_reaction(&m2, alice.id, "🎉")
        .await
        .expect("react");
    let r3 = store
        .add_reaction(&m1, alice.id, "👍")
        .await
        .expect("another user");
    let r4 = store
        .add_reaction(&m1, bob.id, "❤️")
        .await
        .expect("another emoji");

    let twice = store.add_reaction(&m1, bob.id, "👍").await;
    assert!(
        matches!(twice, Err(StoreError::Conflict(x)) if x == CONFLICT_REACTION),
        "{twice:?}"
    );
    assert!(
        matches!(
            store.add_reaction(&m1, 999, "👍").await,
            Err(StoreError::NotFound)
        ),
        "unknown user"
    );
    let ghost = Message {
        id: 999,
        ..m1.clone()
    };
    assert!(
        matches!(
            store.add_reaction(&ghost, bob.id, "👍").await,
            Err(StoreError::NotFound)
        ),
        "no such message"
    );

    assert_eq!(
        store.reactions_for(&[m2.id, m1.id]).await.expect("list"),
        vec![r1.clone(), r2.clone(), r3.clone(), r4]
    );
    assert_eq!(
        store.reactions_for(&[m2.id]).await.expect("list"),
        vec![r2.clone()]
    );
    assert!(store.reactions_for(&[]).await.expect("empty").is_empty());
    assert_eq!(
        store.reaction_by_id(r3.id).await.expect("read"),
        Some(r3.clone())
    );
    assert_eq!(store.reaction_by_id(999).await.expect("read"), None);

    assert!(store.remove_reaction(r3.id).await.expect("remove"));
    assert!(!store.remove_reaction(r3.id).await.expect("remove again"));
    assert_eq!(store.reaction_by_id(r3.id).await.expect("read"), None);
    // Removing frees the slot.
    let back = store
        .add_reaction(&m1, alice.id, "👍")
        .await
        .expect("react again");
    assert!(back.id > r3.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_sends_leave_no_gaps() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;

    // Sends dropped at arbitrary points (before, during or after their
    // statement) must neither leave a gap nor break the pool.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store: PgStore = store.clone();
        let new = with_client_id(text(c.id, alice.id, &format!("m{i}")), &format!("c{i}"));
        tasks.push(tokio::spawn(async move { store.insert_message(new).await }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        if let Ok(result) = task.await {
            result.expect("a send that finished succeeded");
        }
    }

    let last = send(&store, &c, &alice, "after").await;
    let all = store
        .history(
            c.id,
            HistoryPage::AfterSeq {
                after_seq: 0,
                limit: 1000,
            },
        )
        .await
        .expect("history");
    assert_eq!(seqs(&all), (1..=last.seq).collect::<Vec<_>>());
    assert_eq!(
        store
            .conversation_by_id(c.id)
            .await
            .expect("read")
            .map(|c| c.last_seq),
        Some(last.seq)
    );
}

/// Search reads back through time a span at a time (a month, four, then
/// the rest): the window, the recent order's pages and the date bounds all
/// see messages in old partitions and in the default partition alike.
#[tokio::test]
async fn search_walks_back_through_older_partitions() {
    use chatterly_store::{SearchOrder, SearchQuery, SearchRequest, SearchTerm};

    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let c = group(&store, &alice, &[]).await;
    let raw = db.raw().await;
    let now = now();
    // Newest first: today, 50 days, 150 days (past the first two spans) and
    // 400 days ago (no partition: the default one holds it). The oldest
    // says the word most often, so it ranks first once inside the window.
    let ages = [0i64, 50, 150, 400];
    let mut ids = Vec::new();
    for (seq, days) in ages.iter().enumerate() {
        let at = now - chrono::TimeDelta::days(*days);
        let content = if *days == 400 {
            "ibis ibis ibis"
        } else {
            "an ibis among many other words"
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (conversation_id, user_id, seq, content, kind, created_at,
                                   updated_at, search_vector)
             VALUES ($1, $2, $3, $4, 0, $5, $5, to_tsvector(chatterly_search_language(), $4))
             RETURNING id",
        )
        .bind(c.id)
        .bind(alice.id)
        .bind(seq as i64 + 1)
        .bind(content)
        .bind(at)
        .fetch_one(&raw)
        .await
        .expect("insert an old message");
        ids.push(id);
    }
    let request = |order: SearchOrder| SearchRequest {
        user_id: alice.id,
        query: SearchQuery {
            terms: vec![SearchTerm::Word("ibis".into())],
        },
        conversation_id: None,
        from_user_id: None,
        created_before: None,
        created_from: None,
        after: None,
        limit: 10,
        order,
    };
    let found = |hits: Vec<chatterly_store::SearchHit>| -> Vec<i64> {
        hits.iter().map(|h| h.message.id).collect()
    };

    let every = store
        .search_messages(request(SearchOrder::Relevance { window: None }))
        .await
        .expect("search");
    assert_eq!(every.len(), 4);
    assert_eq!(every[0].message.id, ids[3], "the best match, however old");
    assert!(every.iter().all(|h| h.snippet.contains('\u{E000}')));

    let window = store
        .search_messages(request(SearchOrder::Relevance { window: Some(3) }))
        .await
        .expect("search");
    let mut windowed = found(window);
    windowed.sort_unstable();
    assert_eq!(
        windowed,
        ids[..3].to_vec(),
        "the three newest, across spans"
    );

    // Newest first, a page of one at a time, to the end.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .search_messages(SearchRequest {
                after,
                limit: 1,
                ..request(SearchOrder::Recent)
            })
            .await
            .expect("search");
        let Some(hit) = page.first() else { break };
        pages.push(hit.message.id);
        after = Some(hit.position());
        assert!(pages.len() <= 4, "{pages:?}");
    }
    assert_eq!(pages, ids);

    let before_100_days = store
        .search_messages(SearchRequest {
            created_before: Some(now - chrono::TimeDelta::days(100)),
            ..request(SearchOrder::Recent)
        })
        .await
        .expect("search");
    assert_eq!(found(before_100_days), ids[2..].to_vec());
    let from_200_days = store
        .search_messages(SearchRequest {
            created_from: Some(now - chrono::TimeDelta::days(200)),
            ..request(SearchOrder::Relevance { window: Some(100) })
        })
        .await
        .expect("search");
    let mut recent_three = found(from_200_days);
    recent_three.sort_unstable();
    assert_eq!(recent_three, ids[..3].to_vec());
}
