//! Conversations, direct pairs and memberships.

mod common;

use chatterly_store::{
    millis, now, ConversationKind, NewConversation, NewMessage, Role, Store, StoreError,
    CONFLICT_MEMBER,
};
use chatterly_store_postgres::PgStore;
use common::*;

fn direct(creator: i64, other: i64) -> NewConversation {
    NewConversation {
        kind: ConversationKind::Direct,
        name: None,
        description: None,
        created_by_id: creator,
        member_ids: vec![other],
    }
}

#[tokio::test]
async fn create_a_group_with_its_members() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let before = now();

    let (c, created) = store
        .create_conversation(NewConversation {
            kind: ConversationKind::Channel,
            name: Some("general".into()),
            description: Some("everything".into()),
            created_by_id: bob.id,
            member_ids: vec![carol.id, alice.id],
        })
        .await
        .expect("create");
    assert!(created);
    assert_eq!(c.id, 1, "ids start at 1");
    assert_eq!(c.kind, ConversationKind::Channel);
    assert_eq!(c.name.as_deref(), Some("general"));
    assert_eq!(c.description.as_deref(), Some("everything"));
    assert_eq!(c.created_by_id, Some(bob.id));
    assert_eq!(c.last_seq, 0);
    assert_eq!(c.last_activity_at, c.created_at);
    assert!(c.created_at >= before && c.created_at == millis(c.created_at));
    assert_eq!(
        store.conversation_by_id(c.id).await.expect("read"),
        Some(c.clone())
    );
    assert_eq!(store.conversation_by_id(999).await.expect("read"), None);

    assert_eq!(
        store.membership(c.id, bob.id).await.expect("role"),
        Some(Role::Admin)
    );
    assert_eq!(
        store.membership(c.id, alice.id).await.expect("role"),
        Some(Role::Member)
    );
    assert_eq!(
        store.membership(c.id, carol.id).await.expect("role"),
        Some(Role::Member)
    );
    assert_eq!(store.membership(999, alice.id).await.expect("role"), None);

    let members = store.members_of(&[c.id]).await.expect("members");
    let ids: Vec<i64> = members.iter().map(|m| m.user.id).collect();
    assert_eq!(ids, vec![alice.id, bob.id, carol.id], "ordered by user id");
    assert!(members
        .iter()
        .all(|m| m.conversation_id == c.id && m.joined_at == c.created_at));
    assert_eq!(members[0].user, alice, "the whole user row");
    assert_eq!(members[1].role, Role::Admin);
}

#[tokio::test]
async fn repeated_member_ids_and_the_creator_are_added_once() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let (c, _) = store
        .create_conversation(NewConversation {
            kind: ConversationKind::Group,
            name: None,
            description: None,
            created_by_id: alice.id,
            member_ids: vec![bob.id, alice.id, bob.id],
        })
        .await
        .expect("create");
    let members = store.members_of(&[c.id]).await.expect("members");
    let roles: Vec<(i64, Role)> = members.iter().map(|m| (m.user.id, m.role)).collect();
    assert_eq!(roles, vec![(alice.id, Role::Admin), (bob.id, Role::Member)]);
}

#[tokio::test]
async fn create_with_an_unknown_member_writes_nothing() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let result = store
        .create_conversation(NewConversation {
            kind: ConversationKind::Group,
            name: None,
            description: None,
            created_by_id: alice.id,
            member_ids: vec![999],
        })
        .await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    let raw = db.raw().await;
    assert_eq!(count(&raw, "SELECT count(*) FROM conversations").await, 0);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM conversation_members").await,
        0
    );
}

#[tokio::test]
async fn members_of_several_conversations() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let first = group(&store, &carol, &[&alice]).await;
    let second = group(&store, &bob, &[&carol, &alice]).await;
    let _unrelated = group(&store, &bob, &[]).await;

    let members = store
        .members_of(&[second.id, first.id, 999])
        .await
        .expect("members");
    let pairs: Vec<(i64, i64)> = members
        .iter()
        .map(|m| (m.conversation_id, m.user.id))
        .collect();
    assert_eq!(
        pairs,
        vec![
            (first.id, alice.id),
            (first.id, carol.id),
            (second.id, alice.id),
            (second.id, bob.id),
            (second.id, carol.id)
        ]
    );
    assert!(store.members_of(&[]).await.expect("empty").is_empty());
}

#[tokio::test]
async fn conversations_for_user_most_recent_activity_first() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c1 = group(&store, &alice, &[&bob]).await;
    let c2 = group(&store, &alice, &[]).await;
    let c3 = group(&store, &bob, &[&alice]).await;
    let bobs_own = group(&store, &bob, &[]).await;

    let ids = |list: Vec<chatterly_store::Conversation>| {
        list.into_iter().map(|c| c.id).collect::<Vec<_>>()
    };
    // Equal activity times (same millisecond) fall back to id, newest first,
    // which is also creation order.
    assert_eq!(
        ids(store.conversations_for_user(alice.id).await.expect("list")),
        vec![c3.id, c2.id, c1.id]
    );

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    send(&store, &c1, &bob, "bump").await;
    let list = store.conversations_for_user(alice.id).await.expect("list");
    assert_eq!(list[0].last_seq, 1);
    assert_eq!(ids(list), vec![c1.id, c3.id, c2.id]);
    assert_eq!(
        ids(store.conversations_for_user(bob.id).await.expect("list")),
        vec![c1.id, bobs_own.id, c3.id]
    );
    assert!(store
        .conversations_for_user(999)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn add_and_remove_members() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = group(&store, &alice, &[]).await;

    store
        .add_member(c.id, bob.id, Role::Member)
        .await
        .expect("add");
    assert_eq!(
        store.membership(c.id, bob.id).await.expect("role"),
        Some(Role::Member)
    );
    let again = store.add_member(c.id, bob.id, Role::Admin).await;
    assert!(
        matches!(again, Err(StoreError::Conflict(x)) if x == CONFLICT_MEMBER),
        "{again:?}"
    );
    assert_eq!(
        store.membership(c.id, bob.id).await.expect("role"),
        Some(Role::Member),
        "unchanged"
    );
    assert!(matches!(
        store.add_member(999, bob.id, Role::Member).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.add_member(c.id, 999, Role::Member).await,
        Err(StoreError::NotFound)
    ));

    assert!(store.remove_member(c.id, bob.id).await.expect("remove"));
    assert!(!store
        .remove_member(c.id, bob.id)
        .await
        .expect("remove again"));
    assert_eq!(store.membership(c.id, bob.id).await.expect("role"), None);
    assert_eq!(store.members_of(&[c.id]).await.expect("members").len(), 1);
}

#[tokio::test]
async fn one_direct_conversation_per_pair() {
    let (_db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;

    let (ab, created) = store
        .create_conversation(direct(alice.id, bob.id))
        .await
        .expect("create");
    assert!(created);
    assert_eq!(ab.kind, ConversationKind::Direct);
    assert_eq!(
        store.membership(ab.id, alice.id).await.expect("role"),
        Some(Role::Admin)
    );
    assert_eq!(
        store.membership(ab.id, bob.id).await.expect("role"),
        Some(Role::Member)
    );

    let (ba, created) = store
        .create_conversation(direct(bob.id, alice.id))
        .await
        .expect("again");
    assert!(!created);
    assert_eq!(ba, ab, "the existing one, whoever asks");
    assert_eq!(
        store.membership(ab.id, alice.id).await.expect("role"),
        Some(Role::Admin),
        "roles unchanged"
    );

    let (ac, created) = store
        .create_conversation(direct(alice.id, carol.id))
        .await
        .expect("other pair");
    assert!(created);
    assert_ne!(ac.id, ab.id);

    let mut two_others = direct(alice.id, bob.id);
    two_others.member_ids.push(carol.id);
    assert!(
        store.create_conversation(two_others).await.is_err(),
        "direct needs exactly one other"
    );

    // Deleting it frees the pair.
    assert!(store.delete_conversation(ab.id).await.expect("delete"));
    let (again, created) = store
        .create_conversation(direct(bob.id, alice.id))
        .await
        .expect("recreate");
    assert!(created);
    assert_ne!(again.id, ab.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_direct_creates_give_one_conversation() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store: PgStore = store.clone();
        let new = if i % 2 == 0 {
            direct(alice.id, bob.id)
        } else {
            direct(bob.id, alice.id)
        };
        tasks.spawn(async move { store.create_conversation(new).await });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.expect("task").expect("create direct"));
    }
    assert_eq!(
        results.iter().filter(|(_, created)| *created).count(),
        1,
        "exactly one creator"
    );
    let id = results[0].0.id;
    assert!(results.iter().all(|(c, _)| c.id == id));

    let raw = db.raw().await;
    assert_eq!(count(&raw, "SELECT count(*) FROM conversations").await, 1);
    assert_eq!(store.members_of(&[id]).await.expect("members").len(), 2);
}

#[tokio::test]
async fn delete_conversation_removes_everything_it_owns() {
    let (db, store) = TestDb::migrated().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let doomed = group(&store, &alice, &[&bob]).await;
    let kept = group(&store, &alice, &[&bob]).await;

    let m1 = send(&store, &doomed, &alice, "one").await;
    let with_id = NewMessage {
        attachment_ids: Vec::new(),
        client_message_id: Some("c-1".into()),
        ..text(doomed.id, bob.id, "two")
    };
    let m2 = store
        .insert_message(with_id)
        .await
        .expect("send")
        .into_message();
    let r1 = store.add_reaction(&m1, bob.id, "👍").await.expect("react");
    let k1 = send(&store, &kept, &alice, "kept").await;
    let kr = store.add_reaction(&k1, bob.id, "🎉").await.expect("react");

    assert!(store.delete_conversation(doomed.id).await.expect("delete"));
    assert_eq!(
        store.conversation_by_id(doomed.id).await.expect("read"),
        None
    );
    assert_eq!(
        store.membership(doomed.id, alice.id).await.expect("role"),
        None
    );
    assert!(store
        .members_of(&[doomed.id])
        .await
        .expect("members")
        .is_empty());
    assert_eq!(store.message_by_id(m1.id).await.expect("read"), None);
    assert_eq!(store.message_by_id(m2.id).await.expect("read"), None);
    assert_eq!(store.reaction_by_id(r1.id).await.expect("read"), None);
    assert!(store
        .reactions_for(&[m1.id, m2.id])
        .await
        .expect("reactions")
        .is_empty());
    let ids: Vec<i64> = store
        .conversations_for_user(alice.id)
        .await
        .expect("list")
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec![kept.id]);

    let raw = db.raw().await;
    assert_eq!(
        count(&raw, "SELECT count(*) FROM message_client_ids").await,
        0,
        "idempotency keys released"
    );
    // So the same client id creates a fresh message elsewhere.
    let reused = NewMessage {
        attachment_ids: Vec::new(),
        client_message_id: Some("c-1".into()),
        ..text(kept.id, bob.id, "again")
    };
    assert!(matches!(
        store.insert_message(reused).await,
        Ok(chatterly_store::Inserted::Created(_))
    ));

    // The other conversation is untouched.
    assert_eq!(
        store.message_by_id(k1.id).await.expect("read"),
        Some(k1.clone())
    );
    assert_eq!(
        store.reactions_for(&[k1.id]).await.expect("reactions"),
        vec![kr]
    );
    assert_eq!(
        store.members_of(&[kept.id]).await.expect("members").len(),
        2
    );

    assert!(!store
        .delete_conversation(doomed.id)
        .await
        .expect("delete again"));
    assert!(matches!(
        store
            .insert_message(text(doomed.id, alice.id, "late"))
            .await,
        Err(StoreError::NotFound)
    ));
}
