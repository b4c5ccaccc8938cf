//! Micro-benchmarks of per-request hot paths: the auth check's token
//! verification and the rendering of a history page. Run with
//! `cargo bench -p chatterly --bench hot_paths`.

use std::time::Duration;

use chatterly::domain::auth::Tokens;
use chatterly::views::{MessagePage, MessageView, ReactionView, UserPublic};
use chatterly_store::{Message, MessageKind};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn token_verification(c: &mut Criterion) {
    let tokens = Tokens::new(
        b"0123456789abcdef0123456789abcdef",
        Duration::from_secs(86_400),
    );
    let token = tokens.issue(42).expect("issued");
    c.bench_function("verify_token", |b| {
        b.iter(|| tokens.verify(black_box(&token)).expect("valid"))
    });
}

fn history_page_serialization(c: &mut Criterion) {
    let now = chatterly_store::now();
    let author = UserPublic {
        id: 1,
        avatar_url: None,
        display_name: Some("Rana Haddad".into()),
        online: true,
        username: "rana_h".into(),
    };
    let messages = (1..=50)
        .map(|i| {
            let message = Message {
                id: i,
                conversation_id: 9,
                user_id: 1,
                seq: i,
                content: "On my way, see you at the usual place in ten minutes".into(),
                kind: MessageKind::Text,
                parent_message_id: None,
                call_session_id: None,
                client_message_id: None,
                created_at: now,
                edited_at: None,
                deleted_at: None,
                mentions: Vec::new(),
                broadcast: None,
            };
            let reactions = vec![ReactionView {
                id: i,
                emoji: "👍".into(),
                message_id: i,
                user_id: 2,
            }];
            MessageView::new(&message, author.clone(), reactions, None)
        })
        .collect();
    let page = MessagePage {
        messages,
        next_cursor: Some(1),
    };
    c.bench_function("serialize_history_page_50", |b| {
        b.iter(|| serde_json::to_vec(black_box(&page)).expect("serializes"))
    });
}

criterion_group!(benches, token_verification, history_page_serialization);
criterion_main!(benches);
