//! Users, login counters and the token denylist.

mod common;

use chatterly_store::{
    millis, now, NewUser, ProfileUpdate, Store, StoreError, User, CONFLICT_EMAIL, CONFLICT_USERNAME,
};
use chatterly_store_postgres::PgStore;
use chrono::Duration;
use common::*;

async fn named(store: &PgStore, username: &str, display_name: Option<&str>) -> User {
    store
        .create_user(NewUser {
            email: format!("{username}@example.com"),
            username: username.to_string(),
            display_name: display_name.map(str::to_string),
            password_hash: "hash".to_string(),
        })
        .await
        .expect("create user")
}

fn usernames(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.username.as_str()).collect()
}

#[tokio::test]
async fn create_and_find_users() {
    let (_db, store) = TestDb::migrated().await;
    let before = now();
    let alice = store
        .create_user(NewUser {
            email: "alice@example.com".into(),
            username: "alice".into(),
            display_name: Some("Alice L.".into()),
            password_hash: "$argon2id$alice".into(),
        })
        .await
        .expect("create alice");
    let bob = named(&store, "bob", None).await;

    assert_eq!((alice.id, bob.id), (1, 2), "ids start at 1");
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.display_name.as_deref(), Some("Alice L."));
    assert_eq!(alice.avatar_url, None);
    assert_eq!(alice.password_hash, "$argon2id$alice");
    assert_eq!(alice.failed_attempts, 0);
    assert_eq!((alice.locked_at, alice.last_seen_at), (None, None));
    assert!(alice.created_at >= before && alice.created_at <= now());
    assert_eq!(
        alice.created_at,
        millis(alice.created_at),
        "millisecond precision"
    );

    assert_eq!(
        store.user_by_id(alice.id).await.expect("by id"),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_id(999).await.expect("by id"), None);
    assert_eq!(
        store
            .user_by_email("alice@example.com")
            .await
            .expect("by email"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .user_by_email("nobody@example.com")
            .await
            .expect("by email"),
        None
    );

    let found = store
        .users_by_ids(&[bob.id, 999, alice.id, bob.id])
        .await
        .expect("by ids");
    assert_eq!(
        found,
        vec![alice.clone(), bob.clone()],
        "existing ones, by id, once"
    );
    assert!(store.users_by_ids(&[]).await.expect("empty").is_empty());
}

#[tokio::test]
async fn create_user_conflicts_name_the_rule() {
    let (_db, store) = TestDb::migrated().await;
    named(&store, "alice", None).await;

    let same_email = store
        .create_user(NewUser {
            email: "alice@example.com".into(),
            username: "other".into(),
            display_name: None,
            password_hash: "x".into(),
        })
        .await;
    assert!(
        matches!(same_email, Err(StoreError::Conflict(c)) if c == CONFLICT_EMAIL),
        "{same_email:?}"
    );

    let same_username = store
        .create_user(NewUser {
            email: "other@example.com".into(),
            username: "alice".into(),
            display_name: None,
            password_hash: "x".into(),
        })
        .await;
    assert!(
        matches!(same_username, Err(StoreError::Conflict(c)) if c == CONFLICT_USERNAME),
        "{same_username:?}"
    );

    // Nothing was written by the failures.
    assert_eq!(store.search_users(None, 10).await.expect("list").len(), 1);
}

#[tokio::test]
async fn search_users_by_username_or_display_name() {
    let (_db, store) = TestDb::migrated().await;
    named(&store, "dave", Some("Al")).await;
    named(&store, "alice", Some("Alice Liddell")).await;
    named(&store, "bob", Some("Bobby Tables")).await;
    named(&store, "carol_x", None).await;

    let all = store.search_users(None, 10).await.expect("all");
    assert_eq!(
        usernames(&all),
        ["alice", "bob", "carol_x", "dave"],
        "ordered by username"
    );
    let two = store.search_users(None, 2).await.expect("limited");
    assert_eq!(usernames(&two), ["alice", "bob"]);

    let q = |s: &'static str| {
        let store = store.clone();
        async move { store.search_users(Some(s), 10).await.expect("search") }
    };
    assert_eq!(
        usernames(&q("LIC").await),
        ["alice"],
        "case-insensitive substring"
    );
    assert_eq!(
        usernames(&q("al").await),
        ["alice", "dave"],
        "username or display name"
    );
    assert_eq!(usernames(&q("tables").await), ["bob"], "display name only");
    assert_eq!(usernames(&q("a_i").await), ["alice"], "_ is a wildcard");
    assert_eq!(usernames(&q("c%x").await), ["carol_x"], "% is a wildcard");
    assert_eq!(q("%").await.len(), 4);
    assert!(q("zzz").await.is_empty());
    assert!(
        q("x\\").await.is_empty(),
        "a trailing backslash is a plain character, not an error"
    );
    let limited = store.search_users(Some("a"), 1).await.expect("search");
    assert_eq!(usernames(&limited), ["alice"]);
}

#[tokio::test]
async fn update_profile_sets_keeps_and_clears() {
    let (_db, store) = TestDb::migrated().await;
    let alice = named(&store, "alice", Some("Alice")).await;

    let updated = store
        .update_profile(
            alice.id,
            ProfileUpdate {
                display_name: None,
                avatar_url: Some(Some("https://x.test/a.png".into())),
                read_receipts: None,
            },
        )
        .await
        .expect("set avatar");
    assert_eq!(
        updated.display_name.as_deref(),
        Some("Alice"),
        "None leaves it alone"
    );
    assert_eq!(updated.avatar_url.as_deref(), Some("https://x.test/a.png"));

    let cleared = store
        .update_profile(
            alice.id,
            ProfileUpdate {
                display_name: Some(None),
                avatar_url: None,
                read_receipts: None,
            },
        )
        .await
        .expect("clear name");
    assert_eq!(cleared.display_name, None, "Some(None) clears");
    assert_eq!(cleared.avatar_url.as_deref(), Some("https://x.test/a.png"));
    assert_eq!(
        store.user_by_id(alice.id).await.expect("read"),
        Some(cleared)
    );

    let missing = store.update_profile(999, ProfileUpdate::default()).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

#[tokio::test]
async fn failed_logins_lock_at_the_threshold_and_reset() {
    let (_db, store) = TestDb::migrated().await;
    let alice = named(&store, "alice", None).await;
    let t = ts("2030-01-02T03:04:05.678901Z");

    let one = store.record_failed_login(alice.id, 3, t).await.expect("1");
    assert_eq!((one.failed_attempts, one.locked_at), (1, None));
    let two = store.record_failed_login(alice.id, 3, t).await.expect("2");
    assert_eq!((two.failed_attempts, two.locked_at), (2, None));
    let three = store.record_failed_login(alice.id, 3, t).await.expect("3");
    assert_eq!(three.failed_attempts, 3);
    assert_eq!(
        three.locked_at,
        Some(millis(t)),
        "locked at the threshold, at ms precision"
    );
    let four = store
        .record_failed_login(alice.id, 3, t + Duration::minutes(5))
        .await
        .expect("4");
    assert_eq!(four.failed_attempts, 4);
    assert_eq!(
        four.locked_at,
        Some(millis(t)),
        "an existing lock is not moved"
    );
    assert_eq!(store.user_by_id(alice.id).await.expect("read"), Some(four));

    store.reset_failed_logins(alice.id).await.expect("reset");
    let reset = store
        .user_by_id(alice.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!((reset.failed_attempts, reset.locked_at), (0, None));

    assert!(matches!(
        store.record_failed_login(999, 3, t).await,
        Err(StoreError::NotFound)
    ));
    store
        .reset_failed_logins(999)
        .await
        .expect("a missing user is not an error");

    // A clean record stays as it is.
    store
        .reset_failed_logins(alice.id)
        .await
        .expect("reset again");
    assert_eq!(store.user_by_id(alice.id).await.expect("read"), Some(reset));
}

#[tokio::test]
async fn touch_last_seen_round_trips() {
    let (_db, store) = TestDb::migrated().await;
    let alice = named(&store, "alice", None).await;
    let t = ts("2030-01-02T03:04:05.678901Z");
    store.touch_last_seen(alice.id, t).await.expect("touch");
    let read = store
        .user_by_id(alice.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.last_seen_at, Some(millis(t)));
    store
        .touch_last_seen(999, t)
        .await
        .expect("a missing user is not an error");
}

#[tokio::test]
async fn revoked_tokens_are_kept_until_they_expire() {
    let (_db, store) = TestDb::migrated().await;
    let n = now();
    let soon = n + Duration::minutes(10);
    let later = n + Duration::hours(1);
    let past = n - Duration::seconds(1);

    store
        .revoke_token("jti-later", later)
        .await
        .expect("revoke");
    store
        .revoke_token("jti-later", later)
        .await
        .expect("revoking twice is fine");
    store.revoke_token("jti-soon", soon).await.expect("revoke");
    store.revoke_token("jti-past", past).await.expect("revoke");

    assert!(store.is_token_revoked("jti-later").await.expect("check"));
    assert!(
        store.is_token_revoked("jti-past").await.expect("check"),
        "still listed until purged"
    );
    assert!(!store.is_token_revoked("jti-other").await.expect("check"));

    let active = store.active_revocations(n).await.expect("active");
    assert_eq!(
        active,
        vec![
            ("jti-later".to_string(), later),
            ("jti-soon".to_string(), soon)
        ],
        "by jti"
    );

    store.maintain(n).await.expect("maintain purges");
    assert!(!store.is_token_revoked("jti-past").await.expect("check"));
    assert!(store.is_token_revoked("jti-soon").await.expect("check"));
    assert_eq!(
        store
            .active_revocations(n + Duration::minutes(30))
            .await
            .expect("active")
            .len(),
        1
    );
}
