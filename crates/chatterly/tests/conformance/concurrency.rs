//! Races: concurrent senders get a gap-free seq, racing direct creates leave
//! one conversation, idempotent retries never create a second row, and
//! uniqueness races end in 422s, never 500s.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::*;

/// Runs the futures on the runtime's workers at once and collects them.
async fn all<T: Send + 'static>(
    tasks: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

async fn register_many(app: &Arc<TestApp>, n: usize) -> Vec<TestUser> {
    let tasks = (0..n)
        .map(|i| {
            let app = Arc::clone(app);
            async move { app.register(&format!("user_{i:02}")).await }
        })
        .collect();
    all(tasks).await
}

async fn fifty_concurrent_senders_get_seq_1_to_50(backend: Backend) {
    let app = Arc::new(TestApp::start(backend).await);
    let users = register_many(&app, 50).await;
    let others: Vec<&TestUser> = users[1..].iter().collect();
    let id = app.group(&users[0], "Stampede", &others).await;
    let tasks = users
        .iter()
        .cloned()
        .map(|user| {
            let app = Arc::clone(&app);
            async move {
                let resp = app
                    .send_raw(
                        &user,
                        id,
                        json!({"content": format!("from {}", user.username)}),
                    )
                    .await;
                resp.expect(201)["data"].clone()
            }
        })
        .collect();
    let sent: Vec<Value> = all(tasks).await;
    let mut seqs: Vec<i64> = sent
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=50).collect::<Vec<_>>(),
        "every seq once, no gaps"
    );
    let history = app.all_messages(&users[0], id).await;
    let history_seqs: Vec<i64> = history
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        history_seqs,
        (1..=50).collect::<Vec<_>>(),
        "history is in seq order"
    );
    let mut acked: Vec<i64> = sent.iter().map(|m| m["id"].as_i64().expect("id")).collect();
    let mut stored: Vec<i64> = history
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    acked.sort_unstable();
    stored.sort_unstable();
    assert_eq!(acked, stored, "exactly the acknowledged messages");
    // Catch-up by seq agrees with paging by cursor.
    let (page, _) = app.history(&users[0], id, "after_seq=0&limit=100").await;
    assert_eq!(page, history);
    let shown = app
        .get(
            &format!("/api/v1/conversations/{id}"),
            Some(&users[0].token),
        )
        .await
        .expect(200);
    if let Some(last_seq) = shown["data"].get("last_seq") {
        assert_eq!(last_seq, 50);
    }
}

async fn racing_direct_creates_leave_one_conversation(backend: Backend) {
    let app = Arc::new(TestApp::start(backend).await);
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let tasks = (0..20)
        .map(|i| {
            let app = Arc::clone(&app);
            let (me, other) = if i % 2 == 0 {
                (rana.clone(), omar.clone())
            } else {
                (omar.clone(), rana.clone())
            };
            async move {
                let resp = app
                    .post(
                        "/api/v1/conversations",
                        Some(&me.token),
                        json!({"conversation_type": "direct", "member_ids": [other.id]}),
                    )
                    .await;
                let status = resp.status.as_u16();
                assert!(
                    status == 200 || status == 201,
                    "{}: {}",
                    resp.status,
                    resp.text
                );
                (status, resp.json()["data"]["id"].as_i64().expect("id"))
            }
        })
        .collect();
    let results = all(tasks).await;
    let created = results.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 1, "exactly one create: {results:?}");
    let first = results[0].1;
    assert!(
        results.iter().all(|(_, id)| *id == first),
        "one conversation: {results:?}"
    );
    for user in [&rana, &omar] {
        let list = app.conversations(user).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["id"], first);
        assert_eq!(list[0]["member_count"], 2);
    }
}

async fn concurrent_idempotent_retries_create_one_row(backend: Backend) {
    let app = Arc::new(TestApp::start(backend).await);
    let rana = app.register("rana_h").await;
    let id = app.group(&rana, "Retries", &[]).await;
    let tasks = (0..12)
        .map(|_| {
            let app = Arc::clone(&app);
            let rana = rana.clone();
            async move {
                let resp = app
                    .send_raw(
                        &rana,
                        id,
                        json!({"content": "exactly once", "client_message_id": "retry-key-1"}),
                    )
                    .await;
                let status = resp.status.as_u16();
                assert!(
                    status == 200 || status == 201,
                    "{}: {}",
                    resp.status,
                    resp.text
                );
                (status, resp.json()["data"].clone())
            }
        })
        .collect();
    let results = all(tasks).await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "one 201"
    );
    let first = &results[0].1;
    assert!(results
        .iter()
        .all(|(_, m)| m["id"] == first["id"] && m["seq"] == 1));
    let history = app.all_messages(&rana, id).await;
    assert_eq!(history.len(), 1, "no second row");
    // Seq was not consumed by the losers.
    assert_eq!(app.send(&rana, id, "next").await["seq"], 2);
}

async fn uniqueness_races_end_in_422_not_500(backend: Backend) {
    let app = Arc::new(TestApp::start(backend).await);
    let rana = app.register("rana_h").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let id = app.group(&rana, "Crew", &[&omar]).await;
    let message = app.send(&rana, id, "react to me").await;

    // Same username, different emails; same email, different usernames.
    let tasks = (0..8)
        .map(|i| {
            let app = Arc::clone(&app);
            async move {
                let body = if i % 2 == 0 {
                    json!({"email": format!("same{i}@example.test"), "password": "s3cret-pass", "username": "same_name"})
                } else {
                    json!({"email": "same@example.test", "password": "s3cret-pass", "username": format!("name_{i}")})
                };
                let resp = app.register_raw(body).await;
                (resp.status.as_u16(), resp.text)
            }
        })
        .collect();
    let results = all(tasks).await;
    for (status, text) in &results {
        assert!(*status == 201 || *status == 422, "{status}: {text}");
        if *status == 422 {
            assert!(text.contains("has already been taken"), "{text}");
        }
    }
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 2, "one per unique key: {results:?}");

    // The same reaction at once.
    let tasks = (0..8)
        .map(|_| {
            let app = Arc::clone(&app);
            let omar = omar.clone();
            let mid = message["id"].clone();
            async move {
                let resp = app
                    .post(
                        "/api/v1/reactions",
                        Some(&omar.token),
                        json!({"message_id": mid, "emoji": "🔥"}),
                    )
                    .await;
                (resp.status.as_u16(), resp.text)
            }
        })
        .collect();
    let results = all(tasks).await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|(s, t)| *s == 201 || (*s == 422 && t.contains("already reacted"))),
        "{results:?}"
    );
    let history = app.all_messages(&rana, id).await;
    assert_eq!(history[0]["reactions"].as_array().map(Vec::len), Some(1));

    // The same member added at once.
    let tasks = (0..8)
        .map(|_| {
            let app = Arc::clone(&app);
            let rana = rana.clone();
            let lina_id = lina.id;
            async move {
                let resp = app
                    .post(
                        &format!("/api/v1/conversations/{id}/memberships"),
                        Some(&rana.token),
                        json!({"user_id": lina_id}),
                    )
                    .await;
                (resp.status.as_u16(), resp.text)
            }
        })
        .collect();
    let results = all(tasks).await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|(s, t)| *s == 201 || (*s == 422 && t.contains("already a member"))),
        "{results:?}"
    );
    let shown = app
        .get(&format!("/api/v1/conversations/{id}"), Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(shown["data"]["member_count"], 3);
}

async fn concurrent_sends_to_many_conversations_stay_gap_free(backend: Backend) {
    let app = Arc::new(TestApp::start(backend).await);
    let users = register_many(&app, 4).await;
    let others: Vec<&TestUser> = users[1..].iter().collect();
    let mut conversations = Vec::new();
    for i in 0..3 {
        conversations.push(app.group(&users[0], &format!("Room {i}"), &others).await);
    }
    let tasks = (0..60)
        .map(|i| {
            let app = Arc::clone(&app);
            let user = users[i % users.len()].clone();
            let conversation = conversations[i % conversations.len()];
            async move {
                app.send_raw(&user, conversation, json!({"content": format!("m{i}")}))
                    .await
                    .expect(201)["data"]
                    .clone()
            }
        })
        .collect();
    all(tasks).await;
    for conversation in conversations {
        let history = app.all_messages(&users[0], conversation).await;
        let seqs: Vec<i64> = history
            .iter()
            .map(|m| m["seq"].as_i64().expect("seq"))
            .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        assert!(history.iter().all(|m| m["conversation_id"] == conversation));
    }
}

conformance!(
    fifty_concurrent_senders_get_seq_1_to_50,
    racing_direct_creates_leave_one_conversation,
    concurrent_idempotent_retries_create_one_row,
    uniqueness_races_end_in_422_not_500,
    concurrent_sends_to_many_conversations_stay_gap_free,
);
