//! Store-level checks written once and run by each backend's tests (feature
//! `testkit`, enabled only for their dev builds): read state, counts and
//! mentions. Each check takes a freshly migrated, empty store and panics on
//! a failure. Sequential only (no runtime here); each backend adds its own
//! concurrency tests.

use crate::{
    Broadcast, ConversationKind, Id, InboxEntry, Inserted, MarkKind, Marked, Mentions, Message,
    MessageKind, NewConversation, NewMessage, NewUser, ProfileUpdate, ReadState, Role, SearchOrder,
    SearchQuery, SearchRequest, SearchTerm, Store, StoreError, StoreResult,
};

async fn user(store: &dyn Store, name: &str) -> Id {
    store
        .create_user(NewUser {
            email: format!("{name}@example.test"),
            username: name.to_owned(),
            display_name: None,
            password_hash: "$argon2id$test".to_owned(),
        })
        .await
        .expect("create_user")
        .id
}

async fn conversation(store: &dyn Store, kind: ConversationKind, creator: Id, others: &[Id]) -> Id {
    store
        .create_conversation(NewConversation {
            kind,
            name: Some("room".to_owned()),
            description: None,
            created_by_id: creator,
            member_ids: others.to_vec(),
        })
        .await
        .expect("create_conversation")
        .0
        .id
}

fn text(conversation_id: Id, user_id: Id, content: &str) -> NewMessage {
    NewMessage {
        attachment_ids: Vec::new(),
        conversation_id,
        user_id,
        content: content.to_owned(),
        kind: MessageKind::Text,
        parent_message_id: None,
        call_session_id: None,
        client_message_id: None,
        mentions: Mentions::default(),
    }
}

/// Sends a text message; returns it.
pub async fn send(store: &dyn Store, conversation_id: Id, user_id: Id, content: &str) -> Message {
    send_mentioning(
        store,
        conversation_id,
        user_id,
        content,
        Mentions::default(),
    )
    .await
}

async fn send_mentioning(
    store: &dyn Store,
    conversation_id: Id,
    user_id: Id,
    content: &str,
    mentions: Mentions,
) -> Message {
    match store
        .insert_message(NewMessage {
            attachment_ids: Vec::new(),
            mentions,
            ..text(conversation_id, user_id, content)
        })
        .await
        .expect("insert_message")
    {
        Inserted::Created(m) => m,
        Inserted::Existing(m) => panic!("expected a new message, got {m:?}"),
    }
}

fn named(ids: &[Id]) -> Mentions {
    Mentions {
        user_ids: ids.to_vec(),
        broadcast: None,
        notified: ids.to_vec(),
    }
}

/// The unread count the slow way: every message after the member's position
/// read back through history (which skips deleted ones), minus their own.
pub async fn unread_by_scanning(store: &dyn Store, conversation_id: Id, user_id: Id) -> i64 {
    let position = state(store, conversation_id, user_id).await.last_read_seq;
    let mut after = position;
    let mut count = 0;
    loop {
        let page = store
            .history(
                conversation_id,
                crate::HistoryPage::AfterSeq {
                    after_seq: after,
                    limit: 100,
                },
            )
            .await
            .expect("history");
        let Some(last) = page.last() else {
            return count;
        };
        after = last.seq;
        count += page.iter().filter(|m| m.user_id != user_id).count() as i64;
    }
}

/// The member's row of the inbox, read back.
pub async fn state(store: &dyn Store, conversation_id: Id, user_id: Id) -> ReadState {
    store
        .inbox_entry(conversation_id, user_id)
        .await
        .expect("inbox_entry")
        .unwrap_or_else(|| panic!("user {user_id} is a member of {conversation_id}"))
        .read
}

async fn mark(
    store: &dyn Store,
    conversation_id: Id,
    user_id: Id,
    kind: MarkKind,
    seq: Option<i64>,
) -> Marked {
    store
        .mark(conversation_id, user_id, kind, seq, crate::now())
        .await
        .expect("mark")
}

fn applied(marked: Marked) -> (ReadState, bool, bool) {
    match marked {
        Marked::Applied {
            state,
            read_moved,
            delivered_moved,
            ..
        } => (state, read_moved, delivered_moved),
        other => panic!("expected the mark to apply, got {other:?}"),
    }
}

/// Sending moves the sender's own position to the new message: one's own
/// messages never count, and a reply marks what came before as read.
pub async fn own_messages_never_count(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let c = conversation(store, ConversationKind::Group, alice, &[bob]).await;

    for member in [alice, bob] {
        let s = state(store, c, member).await;
        assert_eq!((s.last_read_seq, s.unread_count, s.last_seq), (0, 0, 0));
    }
    for i in 0..3 {
        send(store, c, alice, &format!("a{i}")).await;
    }
    let a = state(store, c, alice).await;
    assert_eq!(
        (a.last_read_seq, a.unread_count),
        (3, 0),
        "own messages are read"
    );
    assert_eq!(a.last_delivered_seq, 3);
    assert!(a.read_at.is_some());
    let b = state(store, c, bob).await;
    assert_eq!((b.last_read_seq, b.unread_count, b.last_seq), (0, 3, 3));

    // Bob replies: what he answered is read for him; alice has one unread.
    send(store, c, bob, "b").await;
    let b = state(store, c, bob).await;
    assert_eq!((b.last_read_seq, b.unread_count), (4, 0));
    let a = state(store, c, alice).await;
    assert_eq!((a.last_read_seq, a.unread_count), (3, 1));

    // A repeated idempotent send moves nothing.
    let keyed = NewMessage {
        attachment_ids: Vec::new(),
        client_message_id: Some("k1".into()),
        ..text(c, alice, "keyed")
    };
    store.insert_message(keyed.clone()).await.expect("send");
    let again = store.insert_message(keyed).await.expect("repeat");
    assert!(matches!(again, Inserted::Existing(_)));
    let b = state(store, c, bob).await;
    assert_eq!((b.last_seq, b.unread_count), (5, 1));
    let a = state(store, c, alice).await;
    assert_eq!((a.last_read_seq, a.unread_count), (5, 0));
}

/// Deleted messages after the position leave the count; before it (or one's
/// own) they change nothing. Edits change nothing.
pub async fn deleted_and_edited_messages(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let c = conversation(store, ConversationKind::Group, alice, &[bob]).await;
    let m1 = send(store, c, alice, "one").await;
    let m2 = send(store, c, alice, "two").await;
    let m3 = send(store, c, alice, "three").await;
    assert_eq!(state(store, c, bob).await.unread_count, 3);

    store
        .edit_message(m2.id, "two, edited", &Mentions::default(), crate::now())
        .await
        .expect("edit");
    assert_eq!(
        state(store, c, bob).await.unread_count,
        3,
        "an edit is no new message"
    );

    store
        .soft_delete_message(m2.id, crate::now())
        .await
        .expect("delete");
    assert_eq!(state(store, c, bob).await.unread_count, 2);
    assert_eq!(state(store, c, alice).await.unread_count, 0);

    applied(mark(store, c, bob, MarkKind::Read, Some(m1.seq)).await);
    let b = state(store, c, bob).await;
    assert_eq!(
        (b.last_read_seq, b.unread_count),
        (1, 1),
        "m3 only (m2 deleted)"
    );
    // A deletion at or before the position changes nothing.
    store
        .soft_delete_message(m1.id, crate::now())
        .await
        .expect("delete");
    assert_eq!(state(store, c, bob).await.unread_count, 1);
    store
        .soft_delete_message(m3.id, crate::now())
        .await
        .expect("delete");
    let b = state(store, c, bob).await;
    assert_eq!((b.unread_count, b.last_seq), (0, 3));
    assert!(matches!(
        store.soft_delete_message(m3.id, crate::now()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        state(store, c, bob).await.unread_count,
        0,
        "deleting twice counts once"
    );
}

/// Marks move forward only, are idempotent, refuse a seq past the end (with
/// nothing written) and non-members; read implies delivered.
pub async fn marks_move_forward_only(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let eve = user(store, "eve").await;
    let c = conversation(store, ConversationKind::Direct, alice, &[bob]).await;
    for i in 0..5 {
        send(store, c, alice, &format!("m{i}")).await;
    }

    let (s, read_moved, delivered_moved) =
        applied(mark(store, c, bob, MarkKind::Delivered, Some(4)).await);
    assert!(!read_moved && delivered_moved);
    assert_eq!(
        (s.last_read_seq, s.last_delivered_seq, s.unread_count),
        (0, 4, 5)
    );
    assert!(s.read_at.is_none());

    let (s, read_moved, delivered_moved) =
        applied(mark(store, c, bob, MarkKind::Read, Some(3)).await);
    assert!(
        read_moved && !delivered_moved,
        "delivered was already past 3"
    );
    assert_eq!(
        (s.last_read_seq, s.last_delivered_seq, s.unread_count),
        (3, 4, 2)
    );
    assert_eq!(s.last_seq, 5);
    assert!(s.read_at.is_some());
    let read_at = s.read_at;

    // Backwards and repeats change nothing.
    for seq in [Some(3), Some(1), Some(0)] {
        let (s, read_moved, delivered_moved) =
            applied(mark(store, c, bob, MarkKind::Read, seq).await);
        assert!(!read_moved && !delivered_moved);
        assert_eq!(
            (s.last_read_seq, s.unread_count, s.read_at),
            (3, 2, read_at)
        );
    }
    let (s, _, delivered_moved) = applied(mark(store, c, bob, MarkKind::Delivered, Some(2)).await);
    assert!(!delivered_moved);
    assert_eq!(s.last_delivered_seq, 4);

    // Past the end: refused, nothing written.
    assert_eq!(
        mark(store, c, bob, MarkKind::Read, Some(6)).await,
        Marked::Beyond { last_seq: 5 }
    );
    assert_eq!(
        mark(store, c, bob, MarkKind::Delivered, Some(99)).await,
        Marked::Beyond { last_seq: 5 }
    );
    let s = state(store, c, bob).await;
    assert_eq!((s.last_read_seq, s.last_delivered_seq), (3, 4));

    // No seq: up to the newest message; read moves delivered along.
    let (s, read_moved, delivered_moved) = applied(mark(store, c, bob, MarkKind::Read, None).await);
    assert!(read_moved && delivered_moved);
    assert_eq!(
        (s.last_read_seq, s.last_delivered_seq, s.unread_count),
        (5, 5, 0)
    );
    match mark(store, c, bob, MarkKind::Read, None).await {
        Marked::Applied {
            kind, read_moved, ..
        } => {
            assert_eq!(kind, ConversationKind::Direct);
            assert!(!read_moved, "idempotent");
        }
        other => panic!("{other:?}"),
    }

    // Not a member, or no such conversation.
    for (conversation, member) in [(c, eve), (9_999, bob)] {
        assert!(matches!(
            store
                .mark(conversation, member, MarkKind::Read, Some(1), crate::now())
                .await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(store.inbox_entry(c, eve).await.expect("read").is_none());
}

/// A member added later starts with the history before them read.
pub async fn new_members_start_caught_up(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let carol = user(store, "carol").await;
    let c = conversation(store, ConversationKind::Group, alice, &[]).await;
    for i in 0..4 {
        send(store, c, alice, &format!("m{i}")).await;
    }
    store.add_member(c, carol, Role::Member).await.expect("add");
    let s = state(store, c, carol).await;
    assert_eq!(
        (s.last_read_seq, s.last_delivered_seq, s.unread_count),
        (4, 4, 0)
    );
    send(store, c, alice, "after").await;
    assert_eq!(state(store, c, carol).await.unread_count, 1);
    assert!(matches!(
        store.add_member(9_999, carol, Role::Member).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.add_member(c, carol, Role::Member).await,
        Err(StoreError::Conflict(crate::CONFLICT_MEMBER))
    ));
}

/// Mention rows: counted after the position, listed newest first, replaced
/// by edits, removed by deletes, hidden once the user leaves.
pub async fn mentions_count_list_edit_and_delete(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let dave = user(store, "dave").await;
    let c = conversation(store, ConversationKind::Group, alice, &[bob, carol]).await;
    let other = conversation(store, ConversationKind::Group, alice, &[bob]).await;

    // members_named: members only, by id.
    let names = vec![
        "carol".to_owned(),
        "bob".to_owned(),
        "dave".to_owned(),
        "nobody".to_owned(),
    ];
    assert_eq!(
        store.members_named(c, &names).await.expect("named"),
        vec![(bob, "bob".to_owned()), (carol, "carol".to_owned())]
    );
    assert!(store.members_named(c, &[]).await.expect("named").is_empty());

    let m1 = send_mentioning(store, c, alice, "@bob hi", named(&[bob])).await;
    assert_eq!(m1.mentions, vec![bob]);
    assert_eq!(m1.broadcast, None);
    let m2 = send(store, c, alice, "plain").await;
    let m3 = send_mentioning(
        store,
        c,
        alice,
        "@here @carol",
        Mentions {
            user_ids: vec![carol],
            broadcast: Some(Broadcast::Here),
            notified: vec![bob, carol],
        },
    )
    .await;
    let m4 = send_mentioning(store, other, alice, "@bob there", named(&[bob])).await;
    // As read back.
    let read = store.message_by_id(m3.id).await.expect("read").expect("m3");
    assert_eq!(
        (read.mentions, read.broadcast),
        (vec![carol], Some(Broadcast::Here))
    );
    assert_eq!(
        store.mention_recipients(m3.id).await.expect("recipients"),
        vec![bob, carol]
    );
    assert!(store
        .mention_recipients(m2.id)
        .await
        .expect("recipients")
        .is_empty());

    let b = state(store, c, bob).await;
    assert_eq!((b.unread_count, b.mention_count), (3, 2));
    assert_eq!(state(store, c, carol).await.mention_count, 1);
    assert_eq!(state(store, c, alice).await.mention_count, 0);

    // The list: newest first, across conversations, paged by id.
    let ids = |ms: Vec<Message>| ms.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.mentions_for(bob, None, 10).await.expect("list")),
        vec![m4.id, m3.id, m1.id]
    );
    let page = store.mentions_for(bob, None, 2).await.expect("list");
    assert_eq!(ids(page.clone()), vec![m4.id, m3.id]);
    assert_eq!(
        ids(store
            .mentions_for(bob, Some(page[1].id), 2)
            .await
            .expect("list")),
        vec![m1.id]
    );

    // Reading past a mention stops counting it (the row stays listed).
    applied(mark(store, c, bob, MarkKind::Read, Some(m1.seq)).await);
    let b = state(store, c, bob).await;
    assert_eq!((b.unread_count, b.mention_count), (2, 1));

    // An edit replaces the rows: bob out, dave (say the domain resolved him)
    // in.
    let edited = store
        .edit_message(m3.id, "@carol only", &named(&[carol, dave]), crate::now())
        .await
        .expect("edit");
    assert_eq!(
        (edited.mentions.clone(), edited.broadcast),
        (vec![carol, dave], None)
    );
    assert_eq!(
        store.mention_recipients(m3.id).await.expect("recipients"),
        vec![carol, dave]
    );
    assert_eq!(state(store, c, bob).await.mention_count, 0);
    assert_eq!(state(store, c, carol).await.mention_count, 1);
    // An edit that keeps a row keeps it.
    store
        .edit_message(m3.id, "@carol still", &named(&[carol]), crate::now())
        .await
        .expect("edit");
    assert_eq!(
        store.mention_recipients(m3.id).await.expect("recipients"),
        vec![carol]
    );
    assert_eq!(state(store, c, carol).await.mention_count, 1);

    // A delete removes them.
    store
        .soft_delete_message(m3.id, crate::now())
        .await
        .expect("delete");
    assert!(store
        .mention_recipients(m3.id)
        .await
        .expect("recipients")
        .is_empty());
    let s = state(store, c, carol).await;
    assert_eq!((s.unread_count, s.mention_count), (2, 0));
    assert!(store
        .mentions_for(carol, None, 10)
        .await
        .expect("list")
        .is_empty());

    // Leaving hides a conversation's mentions.
    assert!(store.remove_member(other, bob).await.expect("remove"));
    assert_eq!(
        ids(store.mentions_for(bob, None, 10).await.expect("list")),
        vec![m1.id]
    );

    // Deleting the conversation takes its rows.
    assert!(store.delete_conversation(c).await.expect("delete"));
    assert!(store
        .mention_recipients(m1.id)
        .await
        .expect("recipients")
        .is_empty());
    assert!(store
        .mentions_for(bob, None, 10)
        .await
        .expect("list")
        .is_empty());
}

/// The inbox: activity order, each row's state, and the newest message that
/// is not deleted.
pub async fn inbox_rows(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let quiet = conversation(store, ConversationKind::Group, alice, &[bob]).await;
    let busy = conversation(store, ConversationKind::Direct, alice, &[bob]).await;
    let first = send(store, busy, alice, "first").await;
    let second = send(store, busy, bob, "second").await;

    let inbox: Vec<InboxEntry> = store.inbox(alice).await.expect("inbox");
    let order: Vec<Id> = inbox.iter().map(|e| e.conversation.id).collect();
    assert_eq!(order, vec![busy, quiet], "most recent activity first");
    let busy_row = &inbox[0];
    assert_eq!(busy_row.latest.as_ref().map(|m| m.id), Some(second.id));
    assert_eq!(busy_row.read.last_seq, 2);
    assert_eq!(busy_row.conversation.last_seq, 2);
    assert_eq!(
        (busy_row.read.last_read_seq, busy_row.read.unread_count),
        (1, 1)
    );
    assert_eq!(busy_row.read.user_id, alice);
    assert!(inbox[1].latest.is_none());
    assert_eq!(inbox[1].read.unread_count, 0);

    // Each row names its members, ascending, as they are now.
    let carol = user(store, "carol").await;
    let dave = user(store, "dave").await;
    store
        .add_member(quiet, dave, Role::Member)
        .await
        .expect("add");
    store
        .add_member(quiet, carol, Role::Member)
        .await
        .expect("add");
    assert!(store.remove_member(quiet, bob).await.expect("remove"));
    let mut expected = vec![alice, carol, dave];
    expected.sort_unstable();
    let listed = store.inbox(alice).await.expect("inbox");
    assert_eq!(listed[1].member_ids, expected);
    assert_eq!(listed[0].member_ids, {
        let mut pair = vec![alice, bob];
        pair.sort_unstable();
        pair
    });
    let entry = store
        .inbox_entry(quiet, carol)
        .await
        .expect("entry")
        .expect("member");
    assert_eq!(entry.member_ids, expected);

    // An edit of the newest shows; an edit of an older one changes nothing
    // there.
    let edited = store
        .edit_message(
            second.id,
            "second, edited",
            &Mentions::default(),
            crate::now(),
        )
        .await
        .expect("edit");
    store
        .edit_message(
            first.id,
            "first, edited",
            &Mentions::default(),
            crate::now(),
        )
        .await
        .expect("edit");
    let listed = store.inbox(alice).await.expect("inbox");
    assert_eq!(listed[0].latest.as_ref(), Some(&edited));

    // The newest is deleted: the one before shows (as edited), and counts
    // follow.
    store
        .soft_delete_message(second.id, crate::now())
        .await
        .expect("delete");
    let entry = store
        .inbox_entry(busy, alice)
        .await
        .expect("entry")
        .expect("member");
    let before = store
        .message_by_id(first.id)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(before.content, "first, edited");
    assert_eq!(entry.latest.as_ref(), Some(&before));
    assert_eq!(entry.read.unread_count, 0);
    let listed = store.inbox(alice).await.expect("inbox");
    assert_eq!(listed[0].latest.as_ref(), Some(&before));
    // Deleting it again changes nothing.
    assert!(matches!(
        store.soft_delete_message(second.id, crate::now()).await,
        Err(StoreError::NotFound)
    ));
    store
        .soft_delete_message(first.id, crate::now())
        .await
        .expect("delete");
    let entry = store
        .inbox_entry(busy, alice)
        .await
        .expect("entry")
        .expect("member");
    assert!(entry.latest.is_none(), "nothing left to show");
    assert_eq!(entry.conversation.last_seq, 2);
    assert!(store.inbox(alice).await.expect("inbox")[0].latest.is_none());
    // A reply in a thread is the newest message too.
    let reply = store
        .insert_message(NewMessage {
            parent_message_id: Some(first.id),
            ..text(busy, bob, "a reply")
        })
        .await
        .expect("reply");
    let listed = store.inbox(alice).await.expect("inbox");
    assert_eq!(listed[0].conversation.id, busy);
    assert_eq!(listed[0].latest.as_ref(), Some(reply.message()));
    assert_eq!(listed[0].read.unread_count, 1);
    assert!(store
        .inbox(user(store, "nobody").await)
        .await
        .expect("inbox")
        .is_empty());
}

/// Pages of the inbox: in the list's order, each row as the whole list has
/// it, every conversation once, ending with a short (or empty) page.
pub async fn inbox_pages(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let c = conversation(store, ConversationKind::Group, alice, &[bob]).await;
        if n % 2 == 0 {
            send(store, c, bob, &format!("m{n}")).await;
        }
        ids.push(c);
    }
    // The oldest conversation becomes the most recent (unless all of this
    // took less than a millisecond: ties go by id).
    send(store, ids[0], bob, "again").await;
    let whole = store.inbox(alice).await.expect("inbox");
    assert_eq!(whole.len(), 7);
    let order: Vec<_> = whole
        .iter()
        .map(|e| (e.conversation.last_activity_at, e.conversation.id))
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted, "the list's order");

    let mut paged: Vec<InboxEntry> = Vec::new();
    let mut after = None;
    loop {
        let page = store.inbox_page(alice, after, 3).await.expect("page");
        assert!(page.len() <= 3);
        let full = page.len() == 3;
        after = page.last().map(crate::InboxCursor::after);
        paged.extend(page);
        if !full {
            break;
        }
    }
    assert_eq!(paged, whole, "the pages are the list");
    assert_eq!(
        store.inbox_page(alice, None, 100).await.expect("page"),
        whole
    );
    let first = store.inbox_page(alice, None, 1).await.expect("page");
    assert_eq!(first, whole[..1]);
    // After the last one: nothing.
    let beyond = crate::InboxCursor::after(&whole[6]);
    assert!(store
        .inbox_page(alice, Some(beyond), 3)
        .await
        .expect("page")
        .is_empty());
    // Someone else's list is theirs.
    let carol = user(store, "carol").await;
    assert!(store
        .inbox_page(carol, None, 3)
        .await
        .expect("page")
        .is_empty());
}

/// Receipts: every member's positions with their setting, in user order,
/// bounded by the limit; the setting changes through the profile.
pub async fn receipts_and_the_setting(store: &dyn Store) {
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let c = conversation(store, ConversationKind::Group, alice, &[bob, carol]).await;
    send(store, c, alice, "one").await;
    send(store, c, alice, "two").await;
    applied(mark(store, c, bob, MarkKind::Read, Some(1)).await);
    applied(mark(store, c, carol, MarkKind::Delivered, Some(2)).await);

    let off = store
        .update_profile(
            carol,
            ProfileUpdate {
                read_receipts: Some(false),
                ..ProfileUpdate::default()
            },
        )
        .await
        .expect("update");
    assert!(!off.read_receipts);
    let fresh = store.user_by_id(bob).await.expect("read").expect("bob");
    assert!(fresh.read_receipts, "on by default");
    // Other profile changes leave it alone.
    let renamed = store
        .update_profile(
            carol,
            ProfileUpdate {
                display_name: Some(Some("Carol".into())),
                ..ProfileUpdate::default()
            },
        )
        .await
        .expect("update");
    assert!(!renamed.read_receipts);
    let members = store.members_of(&[c]).await.expect("members");
    assert!(members
        .iter()
        .all(|m| m.user.read_receipts == (m.user.id != carol)));

    let receipts = store.receipts(c, None).await.expect("receipts");
    let rows: Vec<(Id, i64, i64, bool)> = receipts
        .iter()
        .map(|r| {
            (
                r.user_id,
                r.last_read_seq,
                r.last_delivered_seq,
                r.read_receipts,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![(alice, 2, 2, true), (bob, 1, 1, true), (carol, 0, 2, false)]
    );
    assert!(receipts[1].read_at.is_some() && receipts[2].read_at.is_none());
    assert_eq!(store.receipts(c, Some(2)).await.expect("receipts").len(), 2);
    assert!(store
        .receipts(9_999, None)
        .await
        .expect("receipts")
        .is_empty());
}

/// A reader in `conversations` group conversations of 2 to 4 members (drawn
/// from 50 peers), `messages` messages each from the peers, every 4th naming
/// the reader, every other conversation read: the inbox the benchmarks
/// measure. Returns the reader's id.
pub async fn seed_inbox(store: &dyn Store, conversations: usize, messages: usize) -> Id {
    let reader = user(store, "reader").await;
    let mut peers = Vec::new();
    for i in 0..50 {
        peers.push(user(store, &format!("peer{i}")).await);
    }
    let mut n = 0usize;
    for i in 0..conversations {
        let members: Vec<Id> = (0..1 + i % 3)
            .map(|k| peers[(i + k) % peers.len()])
            .collect();
        let c = conversation(store, ConversationKind::Group, reader, &members).await;
        for m in 0..messages {
            let author = members[m % members.len()];
            let mentions = if n.is_multiple_of(4) {
                named(&[reader])
            } else {
                Mentions::default()
            };
            send_mentioning(
                store,
                c,
                author,
                "a message of an ordinary length",
                mentions,
            )
            .await;
            n += 1;
        }
        if i % 2 == 0 {
            applied(mark(store, c, reader, MarkKind::Read, None).await);
        }
    }
    reader
}

// ---- a search corpus ----------------------------------------------------------------

/// The word of [`search_corpus_message`] in one message in 100.
pub const SEARCH_COMMON_WORD: &str = "kumquat";
/// The word of [`search_corpus_message`] in one message in 10,000.
pub const SEARCH_RARE_WORD: &str = "quokka";

/// The content of the `i`th message of a search benchmark's corpus,
/// deterministic: 6 to 17 filler words drawn from 5,000 with a Zipf-like skew
/// (a few very common, most rare, as in real chat), plus
/// [`SEARCH_COMMON_WORD`] in every 100th message and [`SEARCH_RARE_WORD`] in
/// every 10,000th.
pub fn search_corpus_message(i: u64) -> String {
    // splitmix64: a cheap, well-mixed deterministic stream per message.
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let words = 6 + next() % 12;
    let mut out = String::new();
    for w in 0..words {
        if w > 0 {
            out.push(' ');
        }
        // rank = 5000^u - 1 for u uniform in [0, 1): log-uniform, Zipf-like.
        let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (5000f64.powf(u) - 1.0) as u64;
        out.push_str(&filler_word(rank));
    }
    if i % 100 == 7 {
        out.push(' ');
        out.push_str(SEARCH_COMMON_WORD);
    }
    if i % 10_000 == 4_242 {
        out.push(' ');
        out.push_str(SEARCH_RARE_WORD);
    }
    out
}

/// A pronounceable word per rank, never one of the marked words.
fn filler_word(rank: u64) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ba", "de", "fi", "go", "hu", "je", "pa",
        "zo",
    ];
    let mut n = rank;
    let mut word = String::new();
    loop {
        word.push_str(SYLLABLES[(n % 16) as usize]);
        n /= 16;
        if n == 0 {
            break;
        }
    }
    word
}

/// The rooms of a search benchmark: `conversations` groups, each with a
/// creator among 20 peers; the returned reader is a member of two in three
/// (so a third of every word's matches are not theirs to see). Returns the
/// reader and each conversation's (id, author of its messages).
pub async fn seed_search_rooms(store: &dyn Store, conversations: usize) -> (Id, Vec<(Id, Id)>) {
    let reader = user(store, "reader").await;
    let mut peers = Vec::new();
    for i in 0..20 {
        peers.push(user(store, &format!("peer{i}")).await);
    }
    let mut rooms = Vec::with_capacity(conversations);
    for i in 0..conversations {
        let author = peers[i % peers.len()];
        let c = if i % 3 != 0 {
            conversation(store, ConversationKind::Group, reader, &[author]).await
        } else {
            conversation(store, ConversationKind::Group, author, &[]).await
        };
        rooms.push((c, author));
    }
    (reader, rooms)
}

// ---- timing for the store benches (the examples) ----------------------------

/// Durations of a bench's timed calls, sorted.
pub struct Timings(Vec<std::time::Duration>);

impl Timings {
    /// The `p` quantile (0.0..=1.0), nearest rank.
    pub fn percentile(&self, p: f64) -> std::time::Duration {
        let n = self.0.len();
        let index = ((n as f64 * p).ceil() as usize).clamp(1, n.max(1)) - 1;
        self.0.get(index).copied().unwrap_or_default()
    }
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:?}, p99 {:?}, max {:?} ({} calls)",
            self.percentile(0.50),
            self.percentile(0.99),
            self.0.last().copied().unwrap_or_default(),
            self.0.len()
        )
    }
}

/// Calls `call` `warmup` times untimed, then `calls` times one after the
/// other, timing each; `check` sees every timed result outside the timing.
/// Returns the timings and the last result.
pub async fn time_calls<T, F, Fut>(
    warmup: usize,
    calls: usize,
    mut call: F,
    mut check: impl FnMut(&T),
) -> StoreResult<(Timings, Option<T>)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    for _ in 0..warmup {
        call().await?;
    }
    let mut times = Vec::with_capacity(calls);
    let mut last = None;
    for _ in 0..calls {
        let started = std::time::Instant::now();
        let result = call().await?;
        times.push(started.elapsed());
        check(&result);
        last = Some(result);
    }
    times.sort_unstable();
    Ok((Timings(times), last))
}

/// The search benches of both backends: a page of 50 hits as the reader,
/// for the common word, the rare word and a prefix of the common word, each
/// ranked among every match, ranked among the newest `window` (the server's
/// default), and newest first.
pub async fn time_searches(
    store: &dyn Store,
    backend: &str,
    reader: Id,
    window: u32,
) -> StoreResult<()> {
    let terms = [
        (
            format!("one word in 1 % ({SEARCH_COMMON_WORD:?})"),
            SearchTerm::Word(SEARCH_COMMON_WORD.into()),
        ),
        (
            format!("one word in 0.01 % ({SEARCH_RARE_WORD:?})"),
            SearchTerm::Word(SEARCH_RARE_WORD.into()),
        ),
        (
            "a prefix of the 1 % word (\"kumq*\")".to_owned(),
            SearchTerm::Prefix("kumq".into()),
        ),
    ];
    let orders = [
        (
            "ranked, every match",
            SearchOrder::Relevance { window: None },
        ),
        (
            "ranked, newest window",
            SearchOrder::Relevance {
                window: Some(window),
            },
        ),
        ("newest first", SearchOrder::Recent),
    ];
    for (label, term) in &terms {
        for (order_label, order) in orders {
            time_search(
                store,
                backend,
                &format!("{label}, {order_label}"),
                reader,
                term.clone(),
                order,
            )
            .await?;
        }
    }
    Ok(())
}

/// A page of 50 search hits for one term, as the reader, timed over 300
/// calls after 20 warm-up calls.
async fn time_search(
    store: &dyn Store,
    backend: &str,
    label: &str,
    reader: Id,
    term: SearchTerm,
    order: SearchOrder,
) -> StoreResult<()> {
    let request = SearchRequest {
        user_id: reader,
        query: SearchQuery { terms: vec![term] },
        conversation_id: None,
        from_user_id: None,
        created_before: None,
        created_from: None,
        after: None,
        limit: 50,
        order,
    };
    let (timings, last) =
        time_calls(20, 300, || store.search_messages(request.clone()), |_| {}).await?;
    let hits = last.map_or(0, |page| page.len());
    println!("{backend} search {label}: {hits} hits on the page, {timings}");
    Ok(())
}

fn upload(user_id: Id, size: i64, quota: Option<i64>) -> crate::NewAttachment {
    crate::NewAttachment {
        user_id,
        name: "cat.png".to_owned(),
        content_type: "image/png".to_owned(),
        size,
        width: Some(640),
        height: Some(480),
        blob_key: format!("attachments/{user_id}-{size}"),
        thumbnail_key: None,
        quota,
    }
}

async fn last_seq(store: &dyn Store, conversation_id: Id) -> i64 {
    store
        .conversation_by_id(conversation_id)
        .await
        .expect("conversation_by_id")
        .expect("conversation exists")
        .last_seq
}

/// Attachments: the quota, attaching in the send's transaction (only one's
/// own unattached uploads, once; a refused send writes nothing), hiding with
/// the message and the conversation, and the cleanup's claim and removal.
pub async fn attachments_attach_hide_and_clean(store: &dyn Store) {
    use crate::{CONFLICT_ATTACHMENT, CONFLICT_QUOTA};
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let c = conversation(store, ConversationKind::Group, alice, &[bob]).await;

    // The quota counts the uploader's visible bytes.
    let first = store
        .create_attachment(upload(alice, 100, Some(150)))
        .await
        .expect("first upload");
    assert_eq!(
        (first.size, first.message_id, first.deleted_at),
        (100, None, None)
    );
    assert_eq!((first.width, first.height), (Some(640), Some(480)));
    assert_eq!(store.attachment_usage(alice).await.expect("usage"), 100);
    match store.create_attachment(upload(alice, 51, Some(150))).await {
        Err(StoreError::Conflict(CONFLICT_QUOTA)) => {}
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
    let second = store
        .create_attachment(upload(alice, 50, Some(150)))
        .await
        .expect("exactly at the quota");
    assert_eq!(store.attachment_usage(alice).await.expect("usage"), 150);
    assert_eq!(store.attachment_usage(bob).await.expect("usage"), 0);
    match store.create_attachment(upload(Id::MAX, 1, Some(10))).await {
        Err(StoreError::NotFound) => {}
        other => panic!("an unknown uploader: expected NotFound, got {other:?}"),
    }

    // Someone else's upload: refused, and the send wrote nothing.
    let before = last_seq(store, c).await;
    let stolen = NewMessage {
        attachment_ids: vec![first.id],
        ..text(c, bob, "")
    };
    match store.insert_message(stolen).await {
        Err(StoreError::Conflict(CONFLICT_ATTACHMENT)) => {}
        other => panic!("expected the attachment conflict, got {other:?}"),
    }
    // An id that does not exist, with one that does: all or nothing.
    let partly = NewMessage {
        attachment_ids: vec![first.id, Id::MAX],
        ..text(c, alice, "")
    };
    assert!(matches!(
        store.insert_message(partly).await,
        Err(StoreError::Conflict(CONFLICT_ATTACHMENT))
    ));
    assert_eq!(
        last_seq(store, c).await,
        before,
        "a refused send wrote nothing"
    );
    assert_eq!(
        store.attachment_by_id(first.id).await.expect("read"),
        Some(first.clone())
    );

    // One's own: attached in the send.
    let sent = match store
        .insert_message(NewMessage {
            attachment_ids: vec![first.id],
            ..text(c, alice, "look")
        })
        .await
        .expect("send with an attachment")
    {
        Inserted::Created(m) => m,
        other => panic!("expected a new message, got {other:?}"),
    };
    let attached = store
        .attachments_for(&[sent.id])
        .await
        .expect("attachments_for");
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].id, first.id);
    assert_eq!(attached[0].message_id, Some(sent.id));
    assert_eq!(attached[0].conversation_id, Some(c));
    // Attached once: a second send of it is refused.
    let again = NewMessage {
        attachment_ids: vec![first.id],
        ..text(c, alice, "again")
    };
    assert!(matches!(
        store.insert_message(again).await,
        Err(StoreError::Conflict(CONFLICT_ATTACHMENT))
    ));
    assert_eq!(last_seq(store, c).await, before + 1);
    let by_ids = store
        .attachments_by_ids(&[second.id, first.id, Id::MAX])
        .await
        .expect("by ids");
    assert_eq!(
        by_ids.iter().map(|a| a.id).collect::<Vec<_>>(),
        [first.id, second.id]
    );

    // Deleting the message hides its attachment (and frees the quota).
    store
        .soft_delete_message(sent.id, crate::now())
        .await
        .expect("delete");
    assert!(store
        .attachments_for(&[sent.id])
        .await
        .expect("read")
        .is_empty());
    let hidden = store
        .attachment_by_id(first.id)
        .await
        .expect("read")
        .expect("the row stays until the cleanup");
    assert!(hidden.deleted_at.is_some());
    assert_eq!(store.attachment_usage(alice).await.expect("usage"), 50);

    // The cleanup: a fresh unattached upload is kept, the hidden one claimed.
    let long_ago = crate::now() - chrono::TimeDelta::days(1);
    let claimed = store
        .hidden_attachments(long_ago, crate::now(), 100)
        .await
        .expect("claim");
    assert_eq!(claimed.iter().map(|a| a.id).collect::<Vec<_>>(), [first.id]);
    // Past its grace period, the unattached one is claimed too, and can no
    // longer be attached.
    let later = crate::now() + chrono::TimeDelta::seconds(1);
    let claimed = store
        .hidden_attachments(later, crate::now(), 100)
        .await
        .expect("claim");
    let mut ids: Vec<Id> = claimed.iter().map(|a| a.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [first.id, second.id]);
    let late = NewMessage {
        attachment_ids: vec![second.id],
        ..text(c, alice, "late")
    };
    assert!(matches!(
        store.insert_message(late).await,
        Err(StoreError::Conflict(CONFLICT_ATTACHMENT))
    ));
    // A limit bounds the claim.
    assert_eq!(
        store
            .hidden_attachments(long_ago, crate::now(), 1)
            .await
            .expect("claim")
            .len(),
        1
    );
    // Removal deletes hidden rows only, and repeats harmlessly.
    let third = store
        .create_attachment(upload(alice, 7, None))
        .await
        .expect("upload");
    assert_eq!(
        store
            .remove_attachments(&[first.id, second.id, third.id])
            .await
            .expect("remove"),
        2
    );
    assert_eq!(
        store
            .remove_attachments(&[first.id, second.id])
            .await
            .expect("remove"),
        0
    );
    assert!(store
        .attachment_by_id(first.id)
        .await
        .expect("read")
        .is_none());
    assert!(store
        .attachment_by_id(third.id)
        .await
        .expect("read")
        .is_some());

    // Deleting the conversation hides what its messages carried.
    let kept = match store
        .insert_message(NewMessage {
            attachment_ids: vec![third.id],
            ..text(c, alice, "")
        })
        .await
        .expect("send")
    {
        Inserted::Created(m) => m,
        other => panic!("expected a new message, got {other:?}"),
    };
    assert_eq!(
        store.attachments_for(&[kept.id]).await.expect("read").len(),
        1
    );
    assert!(store
        .delete_conversation(c)
        .await
        .expect("delete conversation"));
    let gone = store
        .attachment_by_id(third.id)
        .await
        .expect("read")
        .expect("hidden, not removed");
    assert!(gone.deleted_at.is_some());
}
