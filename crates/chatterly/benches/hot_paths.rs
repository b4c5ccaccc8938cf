//! Micro-benchmarks of per-request hot paths: the auth check's token
//! verification, the rendering of a history page, the serialization of a
//! `new_message` event into its channel frame (done once per fan-out group)
//! and the parsing of a client's Action Cable command. Run with
//! `cargo bench -p chatterly --bench hot_paths`.

use std::time::Duration;

use chatterly::cable::hub::frame_prefix;
use chatterly::cable::protocol::{parse_action, parse_command, Command};
use chatterly::domain::auth::Tokens;
use chatterly::domain::events::Event;
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

fn sample_author() -> UserPublic {
    UserPublic {
        id: 1,
        avatar_url: None,
        display_name: Some("Rana Haddad".into()),
        online: true,
        username: "rana_h".into(),
    }
}

fn sample_message(i: i64, now: chatterly_store::Timestamp) -> Message {
    Message {
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
    }
}

fn history_page_serialization(c: &mut Criterion) {
    let now = chatterly_store::now();
    let author = sample_author();
    let messages = (1..=50)
        .map(|i| {
            let message = sample_message(i, now);
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

/// What the hub does once per group of subscribers for a new message: the
/// event's JSON, then the frame around it (every socket of the group then
/// gets a clone of those bytes).
fn new_message_frame(c: &mut Criterion) {
    let message = MessageView::new(
        &sample_message(7, chatterly_store::now()),
        sample_author(),
        Vec::new(),
        None,
    );
    let prefix = frame_prefix(r#"{"channel":"ConversationChannel","conversation_id":9}"#);
    c.bench_function("new_message_event_frame", |b| {
        b.iter(|| {
            let payload = Event::NewMessage {
                message: black_box(&message),
            }
            .payload();
            let mut frame = String::with_capacity(prefix.len() + payload.len() + 1);
            frame.push_str(&prefix);
            frame.push_str(&payload);
            frame.push('}');
            frame
        })
    });
}

/// A client's `message` command (a `typing` action), parsed as the socket's
/// task parses every frame it receives.
fn command_parsing(c: &mut Criterion) {
    let frame = r#"{"command":"message","identifier":"{\"channel\":\"ConversationChannel\",\"conversation_id\":9}","data":"{\"action\":\"typing\"}"}"#;
    c.bench_function("parse_client_command", |b| {
        b.iter(|| match parse_command(black_box(frame)) {
            Ok(Command::Message { data, .. }) => parse_action(&data).map(|(action, _)| action),
            _ => None,
        })
    });
}

criterion_group!(
    benches,
    token_verification,
    history_page_serialization,
    new_message_frame,
    command_parsing
);
criterion_main!(benches);
