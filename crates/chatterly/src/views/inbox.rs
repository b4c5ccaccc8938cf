//! The conversation list (`GET /api/v1/conversations`) and one of its rows
//! (`GET /api/v1/conversations/:id`), rendered straight from the store's
//! rows. Same JSON as [`ConversationView`] with its [`MessageView`]
//! (ConversationWithMembers, contract 3.3), without building those owned
//! views first: a list of 1,000 conversations names a few thousand members,
//! mostly the same few people, and cloning each member's strings into a
//! `UserPublic` per conversation and escaping them again per row was most of
//! the list's cost. Here every distinct user is rendered once per response
//! (with their `online` flag of that moment) and spliced in as raw JSON, and
//! the rows borrow everything else. Nothing is cached across responses.
//!
//! [`ConversationView`]: super::ConversationView
//! [`MessageView`]: super::MessageView

use std::collections::HashMap;

use chatterly_store::{
    Attachment, CallSession, Id, InboxEntry, Message, Reaction, Timestamp, User,
};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::{
    attachments_by_message, opt_ts, reactions_by_message, ts, AttachmentView, CallSessionSummary,
    ReactionView, UserPublic,
};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("author {user_id} of message {message_id} is missing")]
    MissingAuthor { user_id: Id, message_id: Id },
    #[error("rendering a user: {0}")]
    Json(#[from] serde_json::Error),
}

/// What a list of conversations shows besides the rows themselves, as the
/// store returns it.
#[derive(Debug, Default)]
pub struct InboxParts {
    /// The members and the newest messages' authors (more are ignored).
    pub users: Vec<User>,
    /// The reactions to the newest messages.
    pub reactions: Vec<Reaction>,
    /// The calls the newest messages log.
    pub calls: Vec<CallSession>,
    /// The files of the newest messages.
    pub attachments: Vec<Attachment>,
}

/// Conversations ready to serialize as a JSON array of
/// ConversationWithMembers, in the order of the entries.
pub struct ConversationList {
    entries: Vec<InboxEntry>,
    /// Each user as UserPublic JSON.
    users: HashMap<Id, Box<RawValue>>,
    reactions: HashMap<Id, Vec<ReactionView>>,
    calls: HashMap<Id, CallSessionSummary>,
    attachments: HashMap<Id, Vec<AttachmentView>>,
}

impl ConversationList {
    /// `online` is asked once per distinct user. Members are listed in the
    /// order of each entry's `member_ids`; one missing from `parts.users` is
    /// left out (users are never deleted, so none is). A newest message's
    /// missing author is an error.
    pub fn new(
        entries: Vec<InboxEntry>,
        parts: InboxParts,
        online: impl Fn(Id) -> bool,
    ) -> Result<ConversationList, RenderError> {
        let users = parts
            .users
            .iter()
            .map(|u| {
                Ok((
                    u.id,
                    serde_json::value::to_raw_value(&UserPublic::new(u, online(u.id)))?,
                ))
            })
            .collect::<Result<HashMap<_, _>, serde_json::Error>>()?;
        for message in entries.iter().filter_map(|e| e.latest.as_ref()) {
            if !users.contains_key(&message.user_id) {
                return Err(RenderError::MissingAuthor {
                    user_id: message.user_id,
                    message_id: message.id,
                });
            }
        }
        let reactions = reactions_by_message(&parts.reactions);
        let attachments = attachments_by_message(&parts.attachments);
        let calls = parts
            .calls
            .iter()
            .map(|c| (c.id, CallSessionSummary::new(c)))
            .collect();
        Ok(ConversationList {
            entries,
            users,
            reactions,
            calls,
            attachments,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// A generous guess at the JSON's length (a row with a newest message
    /// is ~600 bytes, each member ~130), to size the output buffer once.
    pub fn json_len_hint(&self) -> usize {
        let members: usize = self.entries.iter().map(|e| e.member_ids.len()).sum();
        64 + 768 * self.entries.len() + 160 * members
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first conversation, on its own (a one-row list is a show).
    pub fn first(&self) -> Option<impl Serialize + '_> {
        self.entries.first().map(|e| self.row(e))
    }

    fn row<'a>(&'a self, entry: &'a InboxEntry) -> ConversationRow<'a> {
        let c = &entry.conversation;
        let members = Members {
            ids: &entry.member_ids,
            users: &self.users,
        };
        ConversationRow {
            id: c.id,
            conversation_type: c.kind.as_str(),
            created_at: c.created_at,
            created_by_id: c.created_by_id,
            description: c.description.as_deref(),
            member_count: members.count(),
            members,
            name: c.name.as_deref(),
            last_seq: entry.read.last_seq,
            last_activity_at: c.last_activity_at,
            last_read_seq: entry.read.last_read_seq,
            unread_count: entry.read.unread_count,
            mention_count: entry.read.mention_count,
            last_message: entry.latest.as_ref().and_then(|m| self.message(m)),
        }
    }

    fn message<'a>(&'a self, m: &'a Message) -> Option<MessageRow<'a>> {
        Some(MessageRow {
            id: m.id,
            // A call log shows the call's live status (contract 3.4).
            call_session: m.call_session_id.and_then(|id| self.calls.get(&id)),
            content: &m.content,
            created_at: m.created_at,
            edited_at: m.edited_at,
            message_type: m.kind.as_str(),
            parent_message_id: m.parent_message_id,
            reactions: self.reactions.get(&m.id).map_or(&[][..], Vec::as_slice),
            // Checked in `new`.
            user: self.users.get(&m.user_id)?,
            conversation_id: m.conversation_id,
            seq: m.seq,
            client_message_id: m.client_message_id.as_deref(),
            mentions: &m.mentions,
            broadcast_mention: m.broadcast.map(|b| b.as_str()),
            attachments: self.attachments.get(&m.id).map_or(&[][..], Vec::as_slice),
        })
    }
}

impl Serialize for ConversationList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.entries.iter().map(|e| self.row(e)))
    }
}

/// ConversationWithMembers; the fields and their order are
/// [`super::ConversationView`]'s.
#[derive(Serialize)]
struct ConversationRow<'a> {
    id: Id,
    conversation_type: &'static str,
    #[serde(serialize_with = "ts")]
    created_at: Timestamp,
    created_by_id: Option<Id>,
    description: Option<&'a str>,
    member_count: usize,
    members: Members<'a>,
    name: Option<&'a str>,
    last_seq: i64,
    #[serde(serialize_with = "ts")]
    last_activity_at: Timestamp,
    last_read_seq: i64,
    unread_count: i64,
    mention_count: i64,
    last_message: Option<MessageRow<'a>>,
}

/// A conversation's members, each user's JSON spliced in as rendered.
struct Members<'a> {
    ids: &'a [Id],
    users: &'a HashMap<Id, Box<RawValue>>,
}

impl<'a> Members<'a> {
    fn rendered(&self) -> impl Iterator<Item = &'a RawValue> + '_ {
        self.ids
            .iter()
            .filter_map(|id| self.users.get(id).map(|u| &**u))
    }

    fn count(&self) -> usize {
        self.rendered().count()
    }
}

impl Serialize for Members<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.rendered())
    }
}

/// Message; the fields and their order are [`super::MessageView`]'s.
#[derive(Serialize)]
struct MessageRow<'a> {
    id: Id,
    call_session: Option<&'a CallSessionSummary>,
    content: &'a str,
    #[serde(serialize_with = "ts")]
    created_at: Timestamp,
    #[serde(serialize_with = "opt_ts")]
    edited_at: Option<Timestamp>,
    message_type: &'static str,
    parent_message_id: Option<Id>,
    reactions: &'a [ReactionView],
    user: &'a RawValue,
    conversation_id: Id,
    seq: i64,
    client_message_id: Option<&'a str>,
    mentions: &'a [Id],
    broadcast_mention: Option<&'static str>,
    attachments: &'a [AttachmentView],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{ConversationView, MessageView};
    use chatterly_store::{
        Broadcast, CallKind, CallStatus, Conversation, ConversationKind, MessageKind, ReadState,
    };
    use chrono::TimeZone;

    fn at(millis: i64) -> Timestamp {
        chrono::Utc
            .timestamp_millis_opt(1_775_208_011_000 + millis)
            .single()
            .expect("valid millis")
    }

    fn user(id: Id, name: &str, display: Option<&str>, avatar: Option<&str>) -> User {
        User {
            id,
            email: format!("{name}@example.com"),
            username: name.into(),
            display_name: display.map(Into::into),
            avatar_url: avatar.map(Into::into),
            password_hash: "x".into(),
            failed_attempts: 0,
            locked_at: None,
            last_seen_at: None,
            created_at: at(0),
            read_receipts: true,
            disabled_at: None,
            site_admin: false,
            sessions_revoked_at: None,
        }
    }

    fn users() -> Vec<User> {
        vec![
            user(1, "rana", Some("Rana \"R\" Haddad"), None),
            user(2, "omar", None, Some("https://example.com/a.png")),
            user(3, "zoë", Some("Zoë\n🙂"), None),
        ]
    }

    fn conversation(id: Id, kind: ConversationKind, last_seq: i64) -> Conversation {
        Conversation {
            id,
            kind,
            name: (kind != ConversationKind::Direct).then(|| format!("room <{id}> \\ \"x\"")),
            description: (id % 2 == 0).then(|| "about\tthings".to_string()),
            created_by_id: Some(1),
            created_at: at(id),
            last_seq,
            last_activity_at: at(1000 + id),
        }
    }

    fn message(id: Id, conversation_id: Id, user_id: Id, seq: i64) -> Message {
        Message {
            id,
            conversation_id,
            user_id,
            seq,
            content: format!("hello @omar </script> \u{2028} {id}"),
            kind: MessageKind::Text,
            parent_message_id: None,
            call_session_id: None,
            client_message_id: None,
            created_at: at(2000 + id),
            edited_at: None,
            deleted_at: None,
            mentions: Vec::new(),
            broadcast: None,
        }
    }

    fn entry(
        conversation: Conversation,
        read: i64,
        latest: Option<Message>,
        member_ids: &[Id],
    ) -> InboxEntry {
        InboxEntry {
            member_ids: member_ids.to_vec(),
            read: ReadState {
                conversation_id: conversation.id,
                user_id: 1,
                last_read_seq: read,
                read_at: Some(at(5)),
                last_delivered_seq: read,
                last_seq: conversation.last_seq,
                unread_count: conversation.last_seq - read,
                mention_count: (conversation.last_seq - read) / 2,
            },
            conversation,
            latest,
        }
    }

    /// Conversations covering what a row can hold: no messages, a plain
    /// newest message, an edited reply with mentions, reactions and a key, a
    /// broadcast, a call log, a member without a user row.
    fn sample() -> (Vec<InboxEntry>, InboxParts) {
        let mut reply = message(21, 11, 2, 7);
        reply.parent_message_id = Some(20);
        reply.edited_at = Some(at(3000));
        reply.client_message_id = Some("c-\"1\"".into());
        reply.mentions = vec![1, 3];
        let mut broadcast = message(31, 12, 1, 2);
        broadcast.broadcast = Some(Broadcast::Here);
        let mut call_log = message(41, 13, 3, 1);
        call_log.kind = MessageKind::Call;
        call_log.content = String::new();
        call_log.call_session_id = Some(500);
        let mut missed_log = message(42, 14, 2, 4);
        missed_log.kind = MessageKind::Call;
        missed_log.call_session_id = Some(501);
        let entries = vec![
            entry(
                conversation(10, ConversationKind::Channel, 0),
                0,
                None,
                &[1],
            ),
            entry(
                conversation(11, ConversationKind::Group, 7),
                3,
                Some(reply),
                &[1, 2, 3],
            ),
            entry(
                conversation(12, ConversationKind::Channel, 2),
                2,
                Some(broadcast),
                &[1],
            ),
            entry(
                conversation(13, ConversationKind::Direct, 1),
                0,
                Some(call_log),
                &[1, 3],
            ),
            entry(
                conversation(14, ConversationKind::Group, 4),
                1,
                Some(missed_log),
                &[1, 2, 3],
            ),
            // Every message deleted: no newest message though last_seq > 0;
            // and a member without a user row, left out as before.
            entry(
                conversation(15, ConversationKind::Group, 9),
                9,
                None,
                &[1, 99],
            ),
        ];
        let reaction = |id: Id, message_id: Id, user_id: Id, emoji: &str| Reaction {
            id,
            message_id,
            user_id,
            emoji: emoji.into(),
            created_at: at(id),
        };
        let call =
            |id: Id, status: CallStatus, started: Option<i64>, ended: Option<i64>| CallSession {
                id,
                conversation_id: 13,
                initiator_id: 3,
                kind: CallKind::Video,
                status,
                created_at: at(id),
                started_at: started.map(at),
                ended_at: ended.map(at),
            };
        let parts = InboxParts {
            users: users(),
            reactions: vec![
                reaction(7, 21, 1, "👍"),
                reaction(8, 21, 3, "🎉"),
                reaction(9, 31, 2, "\"q\""),
            ],
            calls: vec![
                call(500, CallStatus::Ended, Some(1000), Some(62_000)),
                call(501, CallStatus::Missed, None, None),
            ],
            attachments: vec![
                attachment(40, Some(21), Some((640, 480))),
                attachment(41, Some(21), None),
                // Not sent yet: in no message.
                attachment(42, None, None),
            ],
        };
        (entries, parts)
    }

    fn attachment(id: Id, message_id: Option<Id>, size: Option<(i32, i32)>) -> Attachment {
        Attachment {
            id,
            user_id: 1,
            name: format!("file \"{id}\".png"),
            content_type: "image/png".into(),
            size: 1000 + id,
            width: size.map(|(w, _)| w),
            height: size.map(|(_, h)| h),
            blob_key: format!("blob/{id}"),
            thumbnail_key: size.map(|_| format!("thumb/{id}")),
            message_id,
            conversation_id: message_id.map(|_| 12),
            created_at: at(id),
            deleted_at: None,
        }
    }

    fn online(id: Id) -> bool {
        id == 2
    }

    /// The same conversations rendered the way `ConversationView` and
    /// `MessageView` are built for the other answers and events.
    fn owned_views(entries: &[InboxEntry], parts: &InboxParts) -> Vec<ConversationView> {
        let public = |id: Id| {
            parts
                .users
                .iter()
                .find(|u| u.id == id)
                .map(|u| UserPublic::new(u, online(u.id)))
        };
        entries
            .iter()
            .map(|e| {
                let members = e.member_ids.iter().copied().filter_map(public).collect();
                let latest = e.latest.as_ref().map(|m| {
                    let reactions = parts
                        .reactions
                        .iter()
                        .filter(|r| r.message_id == m.id)
                        .map(ReactionView::from)
                        .collect();
                    let call = m
                        .call_session_id
                        .and_then(|id| parts.calls.iter().find(|c| c.id == id))
                        .map(CallSessionSummary::new);
                    let attachments = parts
                        .attachments
                        .iter()
                        .filter(|a| a.message_id == Some(m.id))
                        .map(AttachmentView::from)
                        .collect();
                    MessageView::new(m, public(m.user_id).expect("author"), reactions, call)
                        .with_attachments(attachments)
                });
                ConversationView::new(&e.conversation, members).with_read_state(&e.read, latest)
            })
            .collect()
    }

    #[test]
    fn renders_exactly_what_the_owned_views_render() {
        let (entries, parts) = sample();
        let expected =
            serde_json::to_string(&owned_views(&entries, &parts)).expect("views serialize");
        let list = ConversationList::new(entries, parts, online).expect("renders");
        assert_eq!(list.len(), 6);
        let rendered = serde_json::to_string(&list).expect("list serializes");
        assert_eq!(rendered, expected);
        // And it is what a client parses: ids first, members never null.
        let parsed: serde_json::Value = serde_json::from_str(&rendered).expect("valid JSON");
        let rows = parsed.as_array().expect("an array");
        assert_eq!(
            rows[0]["members"],
            serde_json::json!([{
                "id": 1, "avatar_url": null, "display_name": "Rana \"R\" Haddad",
                "online": false, "username": "rana"
            }])
        );
        assert_eq!(rows[0]["last_message"], serde_json::Value::Null);
        assert_eq!(rows[5]["member_count"], 1);
        assert!(rendered.starts_with(r#"[{"id":10,"conversation_type":"channel","#));
    }

    #[test]
    fn a_single_row_renders_as_its_owned_view() {
        let (mut entries, parts) = sample();
        let second = entries.swap_remove(1);
        let expected =
            serde_json::to_string(&owned_views(std::slice::from_ref(&second), &parts)[0])
                .expect("view serializes");
        let list = ConversationList::new(vec![second], parts, online).expect("renders");
        let row = list.first().expect("one row");
        assert_eq!(serde_json::to_string(&row).expect("serializes"), expected);
    }

    #[test]
    fn an_empty_list_is_an_empty_array() {
        let list =
            ConversationList::new(Vec::new(), InboxParts::default(), online).expect("renders");
        assert!(list.is_empty());
        assert!(list.first().is_none());
        assert_eq!(serde_json::to_string(&list).expect("serializes"), "[]");
    }

    #[test]
    fn a_missing_author_is_an_error_not_a_row_without_its_message() {
        let (entries, mut parts) = sample();
        parts.users.retain(|u| u.id != 2);
        match ConversationList::new(entries, parts, online) {
            Err(RenderError::MissingAuthor {
                user_id: 2,
                message_id: 21,
            }) => {}
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("rendered without an author"),
        }
    }
}
