//! Integration tests of `SqliteStore` against a real database file in a
//! temporary directory.

use std::collections::HashSet;
use std::sync::Arc;

use chatterly_store::{
    millis, now, ConversationKind, HistoryPage, Id, Inserted, Message, MessageKind,
    NewConversation, NewMessage, NewUser, ProfileUpdate, Role, Store, StoreError, CONFLICT_EMAIL,
    CONFLICT_MEMBER, CONFLICT_REACTION, CONFLICT_USERNAME,
};
use chatterly_store_sqlite::SqliteStore;
use chrono::Duration;
use tempfile::TempDir;

async fn open_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("chatterly.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    (dir, store)
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        email: format!("{name}@example.com"),
        username: name.to_string(),
        display_name: None,
        password_hash: format!("$argon2id$hash-of-{name}"),
    }
}

async fn user(store: &SqliteStore, name: &str) -> Id {
    store
        .create_user(new_user(name))
        .await
        .expect("create_user")
        .id
}

fn conversation(kind: ConversationKind, creator: Id, members: &[Id]) -> NewConversation {
    NewConversation {
        kind,
        name: Some("general".into()),
        description: Some("talk".into()),
        created_by_id: creator,
        member_ids: members.to_vec(),
    }
}

async fn channel(store: &SqliteStore, creator: Id, members: &[Id]) -> Id {
    let (c, created) = store
        .create_conversation(conversation(ConversationKind::Channel, creator, members))
        .await
        .expect("create_conversation");
    assert!(created);
    c.id
}

fn text(conversation_id: Id, user_id: Id, content: &str) -> NewMessage {
    NewMessage {
        attachment_ids: Vec::new(),
        conversation_id,
        user_id,
        content: content.to_string(),
        kind: MessageKind::Text,
        parent_message_id: None,
        call_session_id: None,
        client_message_id: None,
        mentions: Default::default(),
    }
}

async fn send(store: &SqliteStore, conversation_id: Id, user_id: Id, content: &str) -> Message {
    match store
        .insert_message(text(conversation_id, user_id, content))
        .await
        .expect("insert_message")
    {
        Inserted::Created(m) => m,
        Inserted::Existing(m) => panic!("expected a new message, got existing {m:?}"),
    }
}

fn contents(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.content.as_str()).collect()
}

// ---- lifecycle ------------------------------------------------------------------

#[tokio::test]
async fn open_migrate_ping_and_wal() {
    let dir = tempfile::tempdir().unwrap();
    // A missing directory is created too.
    let path = dir.path().join("nested").join("chatterly.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.exists(), "open creates the file");
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrate is idempotent");
    assert_eq!(store.backend(), "sqlite");
    store.ping().await.unwrap();

    user(&store, "alice").await;
    let wal = path.with_file_name("chatterly.db-wal");
    assert!(wal.exists(), "the database is in WAL mode");
}

#[tokio::test]
async fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatterly.db");
    let (alice, conv, message, last_id) = {
        let store = SqliteStore::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        let alice = user(&store, "alice").await;
        let conv = channel(&store, alice, &[]).await;
        let message = send(&store, conv, alice, "persisted").await;
        store
            .revoke_token("jti-1", now() + Duration::hours(1))
            .await
            .unwrap();
        // A message in a conversation that is then deleted: its id must not
        // come back after the reopen.
        let doomed = channel(&store, alice, &[]).await;
        let last = send(&store, doomed, alice, "gone").await;
        assert!(store.delete_conversation(doomed).await.unwrap());
        (alice, conv, message, last.id)
    };

    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    let user = store.user_by_id(alice).await.unwrap().expect("user kept");
    assert_eq!(user.username, "alice");
    assert_eq!(
        store.message_by_id(message.id).await.unwrap(),
        Some(message.clone())
    );
    let c = store
        .conversation_by_id(conv)
        .await
        .unwrap()
        .expect("conversation kept");
    assert_eq!(c.last_seq, 1);
    assert_eq!(
        store.membership(conv, alice).await.unwrap(),
        Some(Role::Admin)
    );
    assert!(store.is_token_revoked("jti-1").await.unwrap());

    let next = send(&store, conv, alice, "after reopen").await;
    assert_eq!(next.seq, 2);
    assert!(
        next.id > last_id,
        "ids are never reused ({} <= {last_id})",
        next.id
    );
}

// ---- users ------------------------------------------------------------------------

#[tokio::test]
async fn create_and_find_users() {
    let (_dir, store) = open_store().await;
    let before = now();
    let alice = store
        .create_user(NewUser {
            display_name: Some("Alice A.".into()),
            ..new_user("alice")
        })
        .await
        .unwrap();
    assert!(alice.id > 0);
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.display_name.as_deref(), Some("Alice A."));
    assert_eq!(alice.avatar_url, None);
    assert_eq!(alice.password_hash, "$argon2id$hash-of-alice");
    assert_eq!(alice.failed_attempts, 0);
    assert_eq!(alice.locked_at, None);
    assert_eq!(alice.last_seen_at, None);
    assert!(alice.created_at >= before && alice.created_at <= now());
    assert_eq!(alice.created_at, millis(alice.created_at));

    let bob = store.create_user(new_user("bob")).await.unwrap();
    assert!(bob.id > alice.id);

    assert_eq!(
        store.user_by_id(alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_id(9_999).await.unwrap(), None);
    assert_eq!(
        store.user_by_email("bob@example.com").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(
        store.user_by_email("nobody@example.com").await.unwrap(),
        None
    );

    let found = store
        .users_by_ids(&[bob.id, 9_999, alice.id, bob.id])
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![alice.clone(), bob.clone()],
        "existing ones, by id"
    );
    assert!(store.users_by_ids(&[]).await.unwrap().is_empty());

    // Many ids in one call.
    let many: Vec<Id> = (1..=2_000).collect();
    assert_eq!(store.users_by_ids(&many).await.unwrap().len(), 2);
}

#[tokio::test]
async fn create_user_conflicts() {
    let (_dir, store) = open_store().await;
    store.create_user(new_user("alice")).await.unwrap();

    let same_email = NewUser {
        username: "alice2".into(),
        ..new_user("alice")
    };
    assert!(matches!(
        store.create_user(same_email).await,
        Err(StoreError::Conflict(c)) if c == CONFLICT_EMAIL
    ));
    let same_username = NewUser {
        email: "other@example.com".into(),
        ..new_user("alice")
    };
    assert!(matches!(
        store.create_user(same_username).await,
        Err(StoreError::Conflict(c)) if c == CONFLICT_USERNAME
    ));
    // Nothing was written by the refused attempts.
    assert_eq!(store.search_users(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn search_users_matches_and_orders() {
    let (_dir, store) = open_store().await;
    for (name, display) in [
        ("carol", Some("Carol Alison")),
        ("alice", None),
        ("bob", Some("Bobby")),
        ("malice", None),
        ("dave_x", None),
        ("davex", None),
    ] {
        store
            .create_user(NewUser {
                display_name: display.map(String::from),
                ..new_user(name)
            })
            .await
            .unwrap();
    }
    let names = |users: Vec<chatterly_store::User>| {
        users.into_iter().map(|u| u.username).collect::<Vec<_>>()
    };

    // Username or display name, case-insensitive, ordered by username.
    assert_eq!(
        names(store.search_users(Some("ALI"), 10).await.unwrap()),
        vec!["alice", "carol", "malice"]
    );
    assert_eq!(
        names(store.search_users(Some("bobby"), 10).await.unwrap()),
        vec!["bob"]
    );
    assert_eq!(
        names(store.search_users(Some("ali"), 2).await.unwrap()),
        vec!["alice", "carol"],
        "limit"
    );
    assert!(store
        .search_users(Some("zzz"), 10)
        .await
        .unwrap()
        .is_empty());
    // `_` is a wildcard, as in the reference.
    assert_eq!(
        names(store.search_users(Some("dave_"), 10).await.unwrap()),
        vec!["dave_x", "davex"]
    );
    assert_eq!(
        names(store.search_users(None, 3).await.unwrap()),
        vec!["alice", "bob", "carol"]
    );
    assert!(store.search_users(None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn update_profile_sets_clears_and_keeps() {
    let (_dir, store) = open_store().await;
    let id = user(&store, "alice").await;

    let u = store
        .update_profile(
            id,
            ProfileUpdate {
                display_name: Some(Some("Alice".into())),
                avatar_url: Some(Some("https://x/a.png".into())),
                read_receipts: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(u.display_name.as_deref(), Some("Alice"));
    assert_eq!(u.avatar_url.as_deref(), Some("https://x/a.png"));

    // None leaves a field alone; Some(None) clears it.
    let u = store
        .update_profile(
            id,
            ProfileUpdate {
                display_name: None,
                avatar_url: Some(None),
                read_receipts: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(u.display_name.as_deref(), Some("Alice"));
    assert_eq!(u.avatar_url, None);
    assert_eq!(store.user_by_id(id).await.unwrap(), Some(u));

    assert!(matches!(
        store.update_profile(9_999, ProfileUpdate::default()).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn failed_logins_lock_and_reset() {
    let (_dir, store) = open_store().await;
    let id = user(&store, "alice").await;
    let t1 = now();

    let u = store.record_failed_login(id, 3, t1).await.unwrap();
    assert_eq!((u.failed_attempts, u.locked_at), (1, None));
    let u = store.record_failed_login(id, 3, t1).await.unwrap();
    assert_eq!((u.failed_attempts, u.locked_at), (2, None));
    let u = store.record_failed_login(id, 3, t1).await.unwrap();
    assert_eq!(
        (u.failed_attempts, u.locked_at),
        (3, Some(t1)),
        "locks at the limit"
    );
    // Further failures count but keep the original lock time.
    let t2 = t1 + Duration::seconds(10);
    let u = store.record_failed_login(id, 3, t2).await.unwrap();
    assert_eq!((u.failed_attempts, u.locked_at), (4, Some(t1)));
    assert_eq!(store.user_by_id(id).await.unwrap(), Some(u));

    store.reset_failed_logins(id).await.unwrap();
    let u = store.user_by_id(id).await.unwrap().unwrap();
    assert_eq!((u.failed_attempts, u.locked_at), (0, None));

    assert!(matches!(
        store.record_failed_login(9_999, 3, t1).await,
        Err(StoreError::NotFound)
    ));
    // Resetting a clean or missing user is a no-op.
    store.reset_failed_logins(id).await.unwrap();
    store.reset_failed_logins(9_999).await.unwrap();
}

#[tokio::test]
async fn touch_last_seen_sets_the_time() {
    let (_dir, store) = open_store().await;
    let id = user(&store, "alice").await;
    let t = now() + Duration::minutes(5);
    store.touch_last_seen(id, t).await.unwrap();
    assert_eq!(
        store.user_by_id(id).await.unwrap().unwrap().last_seen_at,
        Some(t)
    );
}

// ---- tokens ---------------------------------------------------------------------------

#[tokio::test]
async fn token_revocation_and_maintenance() {
    let (_dir, store) = open_store().await;
    let t = now();
    let later = t + Duration::hours(1);
    let earlier = t - Duration::hours(1);

    assert!(!store.is_token_revoked("a").await.unwrap());
    store.revoke_token("a", later).await.unwrap();
    store.revoke_token("a", later).await.expect("idempotent");
    store.revoke_token("b", earlier).await.unwrap();
    store.revoke_token("c", t).await.unwrap();
    assert!(store.is_token_revoked("a").await.unwrap());
    assert!(store.is_token_revoked("b").await.unwrap());
    assert!(!store.is_token_revoked("z").await.unwrap());

    // Expiring exactly now is no longer active.
    assert_eq!(
        store.active_revocations(t).await.unwrap(),
        vec![("a".to_string(), later)]
    );

    store.maintain(t).await.unwrap();
    assert!(store.is_token_revoked("a").await.unwrap());
    assert!(!store.is_token_revoked("b").await.unwrap(), "purged");
    assert!(
        !store.is_token_revoked("c").await.unwrap(),
        "purged at expiry"
    );
    store.maintain(t).await.expect("maintain is idempotent");
}

// ---- conversations and members ---------------------------------------------------

#[tokio::test]
async fn create_conversation_with_members() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;

    let before = now();
    let (c, created) = store
        .create_conversation(conversation(ConversationKind::Group, alice, &[carol, bob]))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(c.kind, ConversationKind::Group);
    assert_eq!(c.name.as_deref(), Some("general"));
    assert_eq!(c.description.as_deref(), Some("talk"));
    assert_eq!(c.created_by_id, Some(alice));
    assert_eq!(c.last_seq, 0);
    assert_eq!(c.last_activity_at, c.created_at);
    assert!(c.created_at >= before);
    assert_eq!(
        store.conversation_by_id(c.id).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(store.conversation_by_id(9_999).await.unwrap(), None);

    assert_eq!(
        store.membership(c.id, alice).await.unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(
        store.membership(c.id, bob).await.unwrap(),
        Some(Role::Member)
    );
    assert_eq!(
        store.membership(c.id, carol).await.unwrap(),
        Some(Role::Member)
    );
    let dave = user(&store, "dave").await;
    assert_eq!(store.membership(c.id, dave).await.unwrap(), None);

    let members = store.members_of(&[c.id]).await.unwrap();
    let ids: Vec<Id> = members.iter().map(|m| m.user.id).collect();
    assert_eq!(ids, vec![alice, bob, carol], "ordered by user id");
    assert!(members.iter().all(|m| m.conversation_id == c.id));
    assert!(members.iter().all(|m| m.joined_at == c.created_at));
    assert_eq!(members[1].user.username, "bob");
    assert_eq!(members[0].role, Role::Admin);

    // A creator without other members.
    let (solo, created) = store
        .create_conversation(conversation(ConversationKind::Channel, dave, &[]))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(store.members_of(&[solo.id]).await.unwrap().len(), 1);

    // An unknown creator: nothing is created.
    assert!(matches!(
        store
            .create_conversation(conversation(ConversationKind::Channel, 9_999, &[]))
            .await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn members_of_several_conversations() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let c1 = channel(&store, carol, &[alice]).await;
    let c2 = channel(&store, bob, &[carol, alice]).await;

    let members = store.members_of(&[c2, c1, 9_999]).await.unwrap();
    let pairs: Vec<(Id, Id)> = members
        .iter()
        .map(|m| (m.conversation_id, m.user.id))
        .collect();
    assert_eq!(
        pairs,
        vec![
            (c1, alice),
            (c1, carol),
            (c2, alice),
            (c2, bob),
            (c2, carol)
        ]
    );
    assert!(store.members_of(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn direct_conversation_is_unique_per_pair() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;

    let (first, created) = store
        .create_conversation(conversation(ConversationKind::Direct, alice, &[bob]))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(first.kind, ConversationKind::Direct);
    assert_eq!(
        store.membership(first.id, alice).await.unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(
        store.membership(first.id, bob).await.unwrap(),
        Some(Role::Member)
    );

    // The other way round is the same pair.
    let (again, created) = store
        .create_conversation(conversation(ConversationKind::Direct, bob, &[alice]))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, first);
    // The existing one's memberships are unchanged.
    assert_eq!(
        store.membership(first.id, bob).await.unwrap(),
        Some(Role::Member)
    );

    // Another pair is another conversation.
    let (other, created) = store
        .create_conversation(conversation(ConversationKind::Direct, carol, &[bob]))
        .await
        .unwrap();
    assert!(created);
    assert_ne!(other.id, first.id);

    // A direct conversation needs exactly one other member.
    assert!(matches!(
        store
            .create_conversation(conversation(ConversationKind::Direct, alice, &[]))
            .await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(
        store
            .create_conversation(conversation(ConversationKind::Direct, alice, &[bob, carol]))
            .await,
        Err(StoreError::Backend(_))
    ));
    // Channels are never deduplicated.
    let a = channel(&store, alice, &[bob]).await;
    let b = channel(&store, alice, &[bob]).await;
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_direct_creates_make_one_conversation() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let store = Arc::new(store);

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            // Half from each side.
            let (me, other) = if i % 2 == 0 {
                (alice, bob)
            } else {
                (bob, alice)
            };
            tokio::spawn(async move {
                store
                    .create_conversation(conversation(ConversationKind::Direct, me, &[other]))
                    .await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let (c, was_created) = task.await.unwrap().unwrap();
        ids.insert(c.id);
        created += usize::from(was_created);
    }
    assert_eq!(ids.len(), 1, "every create returned the same conversation");
    assert_eq!(created, 1, "exactly one create made it");
    assert_eq!(store.conversations_for_user(alice).await.unwrap().len(), 1);
    assert_eq!(store.conversations_for_user(bob).await.unwrap().len(), 1);
    let id = ids.into_iter().next().unwrap();
    assert_eq!(store.members_of(&[id]).await.unwrap().len(), 2);
}

#[tokio::test]
async fn conversations_for_user_by_recent_activity() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c1 = channel(&store, alice, &[bob]).await;
    let c2 = channel(&store, alice, &[]).await;
    let c3 = channel(&store, bob, &[alice]).await;
    let _not_alices = channel(&store, bob, &[]).await;

    let ids =
        |cs: Vec<chatterly_store::Conversation>| cs.into_iter().map(|c| c.id).collect::<Vec<_>>();
    // Created within the same millisecond or not, newer first (ties: id desc).
    let listed = store.conversations_for_user(alice).await.unwrap();
    let mut expected = listed.clone();
    expected.sort_by(|a, b| {
        b.last_activity_at
            .cmp(&a.last_activity_at)
            .then(b.id.cmp(&a.id))
    });
    assert_eq!(listed, expected);
    assert_eq!(listed.len(), 3);

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let m = send(&store, c1, bob, "bump").await;
    let listed = store.conversations_for_user(alice).await.unwrap();
    assert_eq!(
        listed[0].id, c1,
        "the conversation with the newest message first"
    );
    assert_eq!(listed[0].last_activity_at, m.created_at);
    assert_eq!(listed[0].last_seq, 1);
    let rest = ids(listed[1..].to_vec());
    let mut sorted = rest.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(rest, sorted);
    assert_eq!(HashSet::<Id>::from_iter(rest), HashSet::from([c2, c3]));

    assert!(store
        .conversations_for_user(9_999)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn add_and_remove_members() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[]).await;

    store.add_member(c, bob, Role::Admin).await.unwrap();
    assert_eq!(store.membership(c, bob).await.unwrap(), Some(Role::Admin));
    assert!(matches!(
        store.add_member(c, bob, Role::Member).await,
        Err(StoreError::Conflict(x)) if x == CONFLICT_MEMBER
    ));
    assert_eq!(
        store.membership(c, bob).await.unwrap(),
        Some(Role::Admin),
        "unchanged"
    );
    assert!(matches!(
        store.add_member(9_999, bob, Role::Member).await,
        Err(StoreError::NotFound)
    ));

    assert!(store.remove_member(c, bob).await.unwrap());
    assert!(!store.remove_member(c, bob).await.unwrap());
    assert_eq!(store.membership(c, bob).await.unwrap(), None);
    store
        .add_member(c, bob, Role::Member)
        .await
        .expect("can rejoin");
    assert_eq!(store.membership(c, bob).await.unwrap(), Some(Role::Member));
}

#[tokio::test]
async fn delete_conversation_removes_everything() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    let keep = channel(&store, alice, &[bob]).await;
    let m1 = send(&store, c, alice, "one").await;
    let reply = store
        .insert_message(NewMessage {
            attachment_ids: Vec::new(),
            parent_message_id: Some(m1.id),
            ..text(c, bob, "reply")
        })
        .await
        .unwrap()
        .into_message();
    let r = store.add_reaction(&m1, bob, "👍").await.unwrap();
    let kept_message = send(&store, keep, alice, "stays").await;
    let kept_reaction = store.add_reaction(&kept_message, bob, "👍").await.unwrap();

    assert!(store.delete_conversation(c).await.unwrap());
    assert_eq!(store.conversation_by_id(c).await.unwrap(), None);
    assert_eq!(store.message_by_id(m1.id).await.unwrap(), None);
    assert_eq!(store.message_by_id(reply.id).await.unwrap(), None);
    assert_eq!(store.reaction_by_id(r.id).await.unwrap(), None);
    assert_eq!(store.membership(c, alice).await.unwrap(), None);
    assert!(store.members_of(&[c]).await.unwrap().is_empty());
    assert!(store
        .history(
            c,
            HistoryPage::Before {
                before_id: None,
                limit: 10
            }
        )
        .await
        .unwrap()
        .is_empty());
    assert!(!store.delete_conversation(c).await.unwrap(), "already gone");

    // The other conversation is untouched.
    assert_eq!(
        store.message_by_id(kept_message.id).await.unwrap(),
        Some(kept_message.clone())
    );
    assert_eq!(
        store.reaction_by_id(kept_reaction.id).await.unwrap(),
        Some(kept_reaction)
    );
    assert_eq!(store.members_of(&[keep]).await.unwrap().len(), 2);

    // Writes that depend on the deleted conversation fail with NotFound.
    assert!(matches!(
        store.insert_message(text(c, alice, "late")).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.add_reaction(&m1, alice, "🎉").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .edit_message(m1.id, "x", &Default::default(), now())
            .await,
        Err(StoreError::NotFound)
    ));
}

// ---- messages ---------------------------------------------------------------------------

#[tokio::test]
async fn insert_message_assigns_seq_and_moves_activity() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    let other = channel(&store, alice, &[]).await;

    let before = now();
    let m1 = send(&store, c, alice, "hello").await;
    assert_eq!(m1.seq, 1);
    assert_eq!(m1.conversation_id, c);
    assert_eq!(m1.user_id, alice);
    assert_eq!(m1.content, "hello");
    assert_eq!(m1.kind, MessageKind::Text);
    assert!(m1.created_at >= before);
    assert_eq!((m1.edited_at, m1.deleted_at), (None, None));
    // What insert returns is what is stored.
    assert_eq!(store.message_by_id(m1.id).await.unwrap(), Some(m1.clone()));

    let call = store
        .insert_message(NewMessage {
            attachment_ids: Vec::new(),
            kind: MessageKind::Call,
            call_session_id: Some(77),
            parent_message_id: Some(m1.id),
            ..text(c, alice, "call ended")
        })
        .await
        .unwrap()
        .into_message();
    assert_eq!(call.seq, 2);
    assert!(call.id > m1.id);
    assert_eq!(
        store.message_by_id(call.id).await.unwrap(),
        Some(call.clone())
    );

    // Each conversation has its own sequence.
    assert_eq!(send(&store, other, alice, "elsewhere").await.seq, 1);

    let conv = store.conversation_by_id(c).await.unwrap().unwrap();
    assert_eq!(conv.last_seq, 2);
    assert_eq!(conv.last_activity_at, call.created_at);

    assert!(matches!(
        store.insert_message(text(9_999, alice, "nowhere")).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.message_by_id(9_999).await.unwrap(), None);
    // The failed insert consumed no seq anywhere.
    assert_eq!(send(&store, c, alice, "third").await.seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_get_gap_free_seqs() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    let store = Arc::new(store);

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { store.insert_message(text(c, alice, &format!("m{i}"))).await },
            )
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Inserted::Created(m) => seqs.push(m.seq),
            Inserted::Existing(m) => panic!("unexpected existing {m:?}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<i64>>());

    let all = store
        .history(
            c,
            HistoryPage::AfterSeq {
                after_seq: 0,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 50);
    // Ids and seqs grow together.
    assert!(all
        .windows(2)
        .all(|w| w[0].id < w[1].id && w[0].seq + 1 == w[1].seq));
    assert_eq!(
        store.conversation_by_id(c).await.unwrap().unwrap().last_seq,
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_sends_leave_no_gaps() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    let store = Arc::new(store);

    // Sends cancelled at arbitrary points (some before, some inside, some
    // after their transaction) must neither leave a gap nor wedge the writer.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { store.insert_message(text(c, alice, &format!("m{i}"))).await },
            )
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        if let Ok(result) = task.await {
            result.expect("a send that finished succeeded");
        }
    }

    let last = send(&store, c, alice, "after").await;
    let history = store
        .history(
            c,
            HistoryPage::AfterSeq {
                after_seq: 0,
                limit: 1_000,
            },
        )
        .await
        .unwrap();
    let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=last.seq).collect::<Vec<_>>());
    assert_eq!(
        store.conversation_by_id(c).await.unwrap().unwrap().last_seq,
        last.seq
    );
}

#[tokio::test]
async fn insert_with_client_message_id_is_idempotent() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    let with_id = |user_id: Id, content: &str, client_id: &str| NewMessage {
        attachment_ids: Vec::new(),
        client_message_id: Some(client_id.to_string()),
        ..text(c, user_id, content)
    };

    let first = match store
        .insert_message(with_id(alice, "hi", "cm-1"))
        .await
        .unwrap()
    {
        Inserted::Created(m) => m,
        other => panic!("expected created, got {other:?}"),
    };
    assert_eq!(first.client_message_id.as_deref(), Some("cm-1"));

    // The retry returns the first message, even with other content.
    let retry = store
        .insert_message(with_id(alice, "hi again", "cm-1"))
        .await
        .unwrap();
    assert_eq!(retry, Inserted::Existing(first.clone()));
    assert_eq!(
        store.conversation_by_id(c).await.unwrap().unwrap().last_seq,
        1,
        "no seq used"
    );

    // Another sender may use the same client id.
    let bobs = store
        .insert_message(with_id(bob, "yo", "cm-1"))
        .await
        .unwrap();
    assert!(matches!(&bobs, Inserted::Created(m) if m.seq == 2 && m.id != first.id));

    // Messages without a client id never collide.
    send(&store, c, alice, "plain").await;
    send(&store, c, alice, "plain").await;
    let history = store
        .history(
            c,
            HistoryPage::AfterSeq {
                after_seq: 0,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(contents(&history), vec!["hi", "yo", "plain", "plain"]);

    // A retry after the original was deleted still returns it (deleted).
    store.soft_delete_message(first.id, now()).await.unwrap();
    match store
        .insert_message(with_id(alice, "hi", "cm-1"))
        .await
        .unwrap()
    {
        Inserted::Existing(m) => {
            assert_eq!(m.id, first.id);
            assert!(m.deleted_at.is_some());
        }
        other => panic!("expected existing, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_sends_write_one_row() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    let store = Arc::new(store);

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_message(NewMessage {
                        attachment_ids: Vec::new(),
                        client_message_id: Some("same".into()),
                        ..text(c, alice, "once")
                    })
                    .await
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = HashSet::new();
    for task in tasks {
        let inserted = task.await.unwrap().unwrap();
        if matches!(inserted, Inserted::Created(_)) {
            created += 1;
        }
        ids.insert(inserted.message().id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    let history = store
        .history(
            c,
            HistoryPage::Before {
                before_id: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        store.conversation_by_id(c).await.unwrap().unwrap().last_seq,
        1
    );
}

#[tokio::test]
async fn history_pages() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    let noise = channel(&store, alice, &[]).await;
    let mut sent = Vec::new();
    for i in 1..=10 {
        sent.push(send(&store, c, alice, &format!("m{i}")).await);
        // Interleaved messages of another conversation must never show up.
        send(&store, noise, alice, "noise").await;
    }
    let id = |n: usize| sent[n - 1].id;
    let before = |before_id: Option<Id>, limit: u32| HistoryPage::Before { before_id, limit };
    let after = |after_seq: i64, limit: u32| HistoryPage::AfterSeq { after_seq, limit };

    // Newest page, oldest first.
    let page = store.history(c, before(None, 3)).await.unwrap();
    assert_eq!(contents(&page), vec!["m8", "m9", "m10"]);
    // The cursor is exclusive.
    let page = store.history(c, before(Some(id(8)), 3)).await.unwrap();
    assert_eq!(contents(&page), vec!["m5", "m6", "m7"]);
    // A full last page, then an empty one.
    let page = store.history(c, before(Some(id(4)), 3)).await.unwrap();
    assert_eq!(contents(&page), vec!["m1", "m2", "m3"]);
    assert!(store
        .history(c, before(Some(id(1)), 3))
        .await
        .unwrap()
        .is_empty());
    // A short last page.
    let page = store.history(c, before(Some(id(3)), 3)).await.unwrap();
    assert_eq!(contents(&page), vec!["m1", "m2"]);
    // Everything.
    assert_eq!(store.history(c, before(None, 100)).await.unwrap(), sent);
    assert!(store.history(c, before(None, 0)).await.unwrap().is_empty());

    // Deleted messages are left out (and do not count toward the limit).
    store.soft_delete_message(id(9), now()).await.unwrap();
    store.soft_delete_message(id(6), now()).await.unwrap();
    let page = store.history(c, before(None, 3)).await.unwrap();
    assert_eq!(contents(&page), vec!["m7", "m8", "m10"]);
    let page = store.history(c, before(Some(id(8)), 2)).await.unwrap();
    assert_eq!(contents(&page), vec!["m5", "m7"]);

    // After a seq: exclusive, oldest first, deleted left out.
    let page = store.history(c, after(0, 3)).await.unwrap();
    assert_eq!(contents(&page), vec!["m1", "m2", "m3"]);
    let page = store.history(c, after(4, 3)).await.unwrap();
    assert_eq!(contents(&page), vec!["m5", "m7", "m8"]);
    let page = store.history(c, after(8, 10)).await.unwrap();
    assert_eq!(contents(&page), vec!["m10"]);
    assert!(store.history(c, after(10, 10)).await.unwrap().is_empty());
    assert!(store.history(c, after(0, 0)).await.unwrap().is_empty());

    // Unknown conversation: empty.
    assert!(store
        .history(9_999, before(None, 10))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn edit_and_soft_delete() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    let m = send(&store, c, alice, "tpyo").await;

    let t = now() + Duration::seconds(1);
    let edited = store
        .edit_message(m.id, "typo", &Default::default(), t)
        .await
        .unwrap();
    assert_eq!(edited.content, "typo");
    assert_eq!(edited.edited_at, Some(t));
    assert_eq!(
        (edited.id, edited.seq, edited.created_at),
        (m.id, m.seq, m.created_at)
    );
    assert_eq!(
        store.message_by_id(m.id).await.unwrap(),
        Some(edited.clone())
    );

    let t2 = t + Duration::seconds(1);
    store.soft_delete_message(m.id, t2).await.unwrap();
    let deleted = store.message_by_id(m.id).await.unwrap().expect("row kept");
    assert_eq!(deleted.deleted_at, Some(t2));
    assert_eq!(deleted.content, "typo", "content kept");

    assert!(matches!(
        store.soft_delete_message(m.id, now()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .edit_message(m.id, "again", &Default::default(), now())
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .edit_message(9_999, "x", &Default::default(), now())
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.soft_delete_message(9_999, now()).await,
        Err(StoreError::NotFound)
    ));
}

// ---- reactions ---------------------------------------------------------------------------

#[tokio::test]
async fn reactions() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = channel(&store, alice, &[bob]).await;
    let m1 = send(&store, c, alice, "one").await;
    let m2 = send(&store, c, alice, "two").await;

    let before = now();
    let r1 = store.add_reaction(&m2, bob, "👍").await.unwrap();
    assert_eq!(
        (r1.message_id, r1.user_id, r1.emoji.as_str()),
        (m2.id, bob, "👍")
    );
    assert!(r1.created_at >= before);
    let r2 = store.add_reaction(&m1, bob, "👍").await.unwrap();
    let r3 = store.add_reaction(&m2, alice, "👍").await.unwrap();
    let r4 = store.add_reaction(&m2, bob, "🎉").await.unwrap();
    assert!(matches!(
        store.add_reaction(&m2, bob, "👍").await,
        Err(StoreError::Conflict(x)) if x == CONFLICT_REACTION
    ));

    assert_eq!(store.reaction_by_id(r1.id).await.unwrap(), Some(r1.clone()));
    assert_eq!(store.reaction_by_id(9_999).await.unwrap(), None);
    assert_eq!(
        store.reactions_for(&[m2.id, m1.id]).await.unwrap(),
        vec![r1.clone(), r2.clone(), r3.clone(), r4.clone()],
        "ordered by id"
    );
    assert_eq!(
        store.reactions_for(&[m1.id]).await.unwrap(),
        vec![r2.clone()]
    );
    assert!(store.reactions_for(&[]).await.unwrap().is_empty());
    assert!(store.reactions_for(&[9_999]).await.unwrap().is_empty());

    assert!(store.remove_reaction(r1.id).await.unwrap());
    assert!(!store.remove_reaction(r1.id).await.unwrap());
    assert_eq!(store.reactions_for(&[m2.id]).await.unwrap(), vec![r3, r4]);
    // Removed, the same reaction can be added again (with a new id).
    let again = store.add_reaction(&m2, bob, "👍").await.unwrap();
    assert!(again.id > r1.id);
}

// ---- group commit -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_with_failures_are_isolated() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let c = channel(&store, alice, &[]).await;
    let store = Arc::new(store);

    // Many writes at once (so they share batches), a third of them failing
    // in different ways: each failure must undo only itself.
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                match i % 6 {
                    0 => store
                        .create_user(new_user(&format!("u{i}")))
                        .await
                        .map(|u| format!("user {}", u.id)),
                    // The email is taken.
                    1 => store
                        .create_user(NewUser {
                            username: format!("dup{i}"),
                            ..new_user("alice")
                        })
                        .await
                        .map(|u| format!("user {}", u.id)),
                    // The conversation does not exist.
                    2 => store
                        .insert_message(text(9_999, alice, "lost"))
                        .await
                        .map(|m| format!("message {}", m.message().id)),
                    // The user does not exist.
                    3 => store
                        .add_member(c, 9_999, Role::Member)
                        .await
                        .map(|()| "member".into()),
                    _ => store
                        .insert_message(text(c, alice, &format!("m{i}")))
                        .await
                        .map(|m| format!("message {}", m.message().id)),
                }
            })
        })
        .collect();
    let mut sent = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        match i % 6 {
            0 => assert!(result.is_ok(), "{result:?}"),
            1 => assert!(
                matches!(result, Err(StoreError::Conflict(x)) if x == CONFLICT_EMAIL),
                "{result:?}"
            ),
            2 | 3 => assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}"),
            _ => {
                assert!(result.is_ok(), "{result:?}");
                sent += 1;
            }
        }
    }

    assert_eq!(store.search_users(None, 1_000).await.unwrap().len(), 1 + 50);
    let history = store
        .history(
            c,
            HistoryPage::AfterSeq {
                after_seq: 0,
                limit: 1_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(history.len(), sent);
    let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=sent as i64).collect::<Vec<_>>(), "no gaps");
    assert_eq!(store.members_of(&[c]).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_are_acknowledged_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatterly.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    store.migrate().await.unwrap();
    let alice = user(&store, "alice").await;
    let mut conversations = Vec::new();
    for _ in 0..4 {
        conversations.push(channel(&store, alice, &[]).await);
    }

    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let store = store.clone();
            let conversations = conversations.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..25 {
                    let c = conversations[(t + n) % conversations.len()];
                    let inserted = store
                        .insert_message(NewMessage {
                            attachment_ids: Vec::new(),
                            client_message_id: Some(format!("{t}-{n}")),
                            ..text(c, alice, &format!("{t}-{n}"))
                        })
                        .await
                        .expect("every send is acknowledged");
                    match inserted {
                        Inserted::Created(m) => acknowledged.push(m),
                        Inserted::Existing(m) => panic!("unexpected existing {m:?}"),
                    }
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 64 * 25);
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    for m in &acknowledged {
        assert_eq!(
            store.message_by_id(m.id).await.unwrap().as_ref(),
            Some(m),
            "acknowledged message {} is stored as returned",
            m.id
        );
    }
    for c in conversations {
        let history = store
            .history(
                c,
                HistoryPage::AfterSeq {
                    after_seq: 0,
                    limit: 10_000,
                },
            )
            .await
            .unwrap();
        assert_eq!(history.len(), 64 * 25 / 4);
        let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=history.len() as i64).collect::<Vec<_>>());
        assert!(history.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(
            store.conversation_by_id(c).await.unwrap().unwrap().last_seq,
            history.len() as i64
        );
    }
}

/// Where `acknowledged_sends_survive_kill_9` tells its child process the
/// database is; unset in a normal run.
const KILL_CHILD_DB: &str = "CHATTERLY_SQLITE_KILL_CHILD_DB";

/// Not a test on its own: the child process of
/// `acknowledged_sends_survive_kill_9`, which sends messages and prints each
/// acknowledged one until it is killed. Returns at once in a normal run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_child_process() {
    let Ok(path) = std::env::var(KILL_CHILD_DB) else {
        return;
    };
    let store = Arc::new(
        SqliteStore::open(std::path::Path::new(&path))
            .await
            .unwrap(),
    );
    let alice = store
        .user_by_email("alice@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let c = store.conversations_for_user(alice).await.unwrap()[0].id;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                // Bounded, in case the parent is gone: it kills us long before.
                for n in 0..100_000 {
                    let m = store
                        .insert_message(text(c, alice, &format!("{t}-{n}")))
                        .await
                        .unwrap()
                        .into_message();
                    println!("ACK {} {} {}", m.id, m.seq, m.content);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn acknowledged_sends_survive_kill_9() {
    use std::io::BufRead;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatterly.db");
    let c = runtime.block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        let alice = user(&store, "alice").await;
        channel(&store, alice, &[]).await
    });

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_9_child_process", "--nocapture"])
        .env(KILL_CHILD_DB, &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(ack) = line.strip_prefix("ACK ") {
            let fields: Vec<&str> = ack.splitn(3, ' ').collect();
            let id: Id = fields[0].parse().unwrap();
            let seq: i64 = fields[1].parse().unwrap();
            acknowledged.push((id, seq, fields[2].to_string()));
            if acknowledged.len() == 2_000 {
                // SIGKILL: no destructor, no close, no checkpoint.
                child.kill().unwrap();
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 2_000, "the child sent and acknowledged");

    runtime.block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        for (id, seq, content) in &acknowledged {
            let m = store
                .message_by_id(*id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged message {id} was lost"));
            assert_eq!((m.seq, &m.content), (*seq, content));
        }
        // Whatever else committed before the kill is there too, gap-free.
        let last_seq = store.conversation_by_id(c).await.unwrap().unwrap().last_seq;
        let history = store
            .history(
                c,
                HistoryPage::AfterSeq {
                    after_seq: 0,
                    limit: u32::MAX,
                },
            )
            .await
            .unwrap();
        let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
        assert!(last_seq >= 2_000);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_creates_leave_no_partial_conversation() {
    let (_dir, store) = open_store().await;
    let alice = user(&store, "alice").await;
    let mut members = Vec::new();
    for i in 0..30 {
        members.push(user(&store, &format!("member{i}")).await);
    }
    let store = Arc::new(store);

    // Creates (a conversation row plus 31 membership rows each) cancelled at
    // arbitrary points: each is either all there or not there at all.
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = store.clone();
            let members = members.clone();
            tokio::spawn(async move {
                store
                    .create_conversation(conversation(ConversationKind::Group, alice, &members))
                    .await
            })
        })
        .collect();
    // Cancel them all once some are stored: by then some are done, some are
    // in the batch being run, the rest queued or not yet sent.
    for _ in 0..10_000 {
        if store.conversations_for_user(alice).await.unwrap().len() >= 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    for task in &tasks {
        task.abort();
    }
    let mut finished = 0;
    for task in tasks {
        if let Ok(result) = task.await {
            result.expect("a create that finished succeeded");
            finished += 1;
        }
    }

    // A write queued behind every command the aborted callers managed to send:
    // once it is answered, each of those has run whole or been skipped, so what
    // is read below no longer changes.
    store.touch_last_seen(alice, now()).await.unwrap();
    let conversations = store.conversations_for_user(alice).await.unwrap();
    assert!(conversations.len() >= finished.max(20));
    let ids: Vec<Id> = conversations.iter().map(|c| c.id).collect();
    let all_members = store.members_of(&ids).await.unwrap();
    for id in ids {
        let count = all_members
            .iter()
            .filter(|m| m.conversation_id == id)
            .count();
        assert_eq!(count, 31, "conversation {id} is whole");
    }
    // Nor any membership row without its conversation.
    for member in &members {
        assert_eq!(
            store.conversations_for_user(*member).await.unwrap().len(),
            conversations.len()
        );
    }
}
