//! The JSON shapes of the wire contract (section 3). One definition serves the
//! REST response and the WebSocket event. Field order follows the reference
//! (`id` first, then alphabetical); fields added beyond the reference come last.
//! Every field is always present (`null` when absent); arrays are never `null`.

pub mod inbox;

use std::collections::HashMap;

use chatterly_store::{
    Attachment, CallSession, Conversation, Id, Member, Message, Reaction, ReadState, Receipt,
    Timestamp, User,
};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

/// ISO-8601 UTC with exactly three fractional digits and `Z` (contract 1.3).
/// (`to_rfc3339_opts` writes directly; a `format` string is parsed on every
/// call, which showed in profiles of history reads.)
pub fn format_timestamp(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// [`format_timestamp`] into a buffer on the stack, for the years 0 to 9999
/// (every timestamp the server writes; others go through chrono).
/// Serialized views format timestamps by the thousand (three per row of a
/// conversation list), and chrono's formatter allocates a `String` each time
/// and showed in profiles of the list.
struct TimestampText([u8; 24]);

impl TimestampText {
    fn new(ts: &Timestamp) -> Option<TimestampText> {
        use chrono::{Datelike, Timelike};
        let at = ts.naive_utc();
        let millis = at.and_utc().timestamp_subsec_millis();
        // A leap second counts its millis past 999: chrono's formatting.
        if !(0..=9999).contains(&at.year()) || millis > 999 {
            return None;
        }
        let mut text = *b"0000-00-00T00:00:00.000Z";
        let mut put = |end: usize, mut value: u32| {
            for digit in text[..end]
                .iter_mut()
                .rev()
                .take_while(|d| d.is_ascii_digit())
            {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(4, at.year().unsigned_abs());
        put(7, at.month());
        put(10, at.day());
        put(13, at.hour());
        put(16, at.minute());
        put(19, at.second());
        put(23, millis);
        Some(TimestampText(text))
    }

    fn as_str(&self) -> &str {
        // ASCII digits and separators only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn ts<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    match TimestampText::new(ts) {
        Some(text) => s.serialize_str(text.as_str()),
        None => s.serialize_str(&format_timestamp(ts)),
    }
}

fn opt_ts<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(stamp) => self::ts(stamp, s),
        None => s.serialize_none(),
    }
}

/// UserPublic (contract 3.1).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserPublic {
    pub id: Id,
    pub avatar_url: Option<String>,
    pub display_name: Option<String>,
    /// Whether the user has a live connection now.
    pub online: bool,
    pub username: String,
}

impl UserPublic {
    pub fn new(user: &User, online: bool) -> UserPublic {
        UserPublic {
            id: user.id,
            avatar_url: user.avatar_url.clone(),
            display_name: user.display_name.clone(),
            online,
            username: user.username.clone(),
        }
    }
}

/// UserWithEmail (contract 3.2): the caller's own profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserWithEmail {
    pub id: Id,
    pub avatar_url: Option<String>,
    pub display_name: Option<String>,
    pub email: String,
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen_at: Option<Timestamp>,
    pub online: bool,
    pub username: String,
    /// Beyond the reference: whether the user sends read receipts (and so
    /// sees other members'). Only in one's own profile.
    pub read_receipts: bool,
}

impl UserWithEmail {
    pub fn new(user: &User, online: bool) -> UserWithEmail {
        UserWithEmail {
            id: user.id,
            avatar_url: user.avatar_url.clone(),
            display_name: user.display_name.clone(),
            email: user.email.clone(),
            last_seen_at: user.last_seen_at,
            online,
            username: user.username.clone(),
            read_receipts: user.read_receipts,
        }
    }
}

/// ConversationWithMembers (contract 3.3).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationView {
    pub id: Id,
    /// `channel`, `group` or `direct`.
    pub conversation_type: &'static str,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub created_by_id: Option<Id>,
    pub description: Option<String>,
    pub member_count: usize,
    pub members: Vec<UserPublic>,
    pub name: Option<String>,
    /// Beyond the reference: the `seq` of the newest message (0 if none), for
    /// catch-up and unread state.
    pub last_seq: i64,
    /// Beyond the reference: when the newest message was sent (or the
    /// conversation created).
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub last_activity_at: Timestamp,
    /// Beyond the reference: the caller's read position (every message with
    /// `seq <= last_read_seq` is read).
    pub last_read_seq: i64,
    /// Beyond the reference: messages after the caller's read position that
    /// are neither deleted nor the caller's own.
    pub unread_count: i64,
    /// Beyond the reference: of those, the ones that mention the caller.
    pub mention_count: i64,
    /// Beyond the reference: the newest message that is not deleted, or null.
    pub last_message: Option<MessageView>,
}

impl ConversationView {
    /// `members` must be this conversation's members. The read state is
    /// that of a new member of a new conversation (nothing unread) until
    /// [`ConversationView::with_read_state`] sets it.
    pub fn new(conversation: &Conversation, members: Vec<UserPublic>) -> ConversationView {
        ConversationView {
            id: conversation.id,
            conversation_type: conversation.kind.as_str(),
            created_at: conversation.created_at,
            created_by_id: conversation.created_by_id,
            description: conversation.description.clone(),
            member_count: members.len(),
            members,
            name: conversation.name.clone(),
            last_seq: conversation.last_seq,
            last_activity_at: conversation.last_activity_at,
            last_read_seq: conversation.last_seq,
            unread_count: 0,
            mention_count: 0,
            last_message: None,
        }
    }

    /// The caller's read state and the newest message. `last_seq` follows
    /// the read state's snapshot, so the counts and `last_seq` agree.
    pub fn with_read_state(
        mut self,
        read: &ReadState,
        last_message: Option<MessageView>,
    ) -> ConversationView {
        self.last_seq = read.last_seq;
        self.last_read_seq = read.last_read_seq;
        self.unread_count = read.unread_count;
        self.mention_count = read.mention_count;
        self.last_message = last_message;
        self
    }

    pub fn from_members(
        conversation: &Conversation,
        members: &[Member],
        online: impl Fn(Id) -> bool,
    ) -> ConversationView {
        let members = members
            .iter()
            .filter(|m| m.conversation_id == conversation.id)
            .map(|m| UserPublic::new(&m.user, online(m.user.id)))
            .collect();
        ConversationView::new(conversation, members)
    }
}

/// Reaction (contract 3.5).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReactionView {
    pub id: Id,
    pub emoji: String,
    pub message_id: Id,
    pub user_id: Id,
}

impl From<&Reaction> for ReactionView {
    fn from(r: &Reaction) -> ReactionView {
        ReactionView {
            id: r.id,
            emoji: r.emoji.clone(),
            message_id: r.message_id,
            user_id: r.user_id,
        }
    }
}

/// CallSessionSummary inside a call-log message (contract 3.4).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallSessionSummary {
    pub id: Id,
    pub call_type: &'static str,
    pub status: &'static str,
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    pub duration: Option<i64>,
    pub initiator_id: Id,
}

impl CallSessionSummary {
    pub fn new(call: &CallSession) -> CallSessionSummary {
        CallSessionSummary {
            id: call.id,
            call_type: call.kind.as_str(),
            status: call.status.as_str(),
            started_at: call.started_at,
            ended_at: call.ended_at,
            duration: match (call.started_at, call.ended_at) {
                (Some(start), Some(end)) => Some((end - start).num_seconds()),
                _ => None,
            },
            initiator_id: call.initiator_id,
        }
    }
}

/// CallSession (contract 3.6).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallSessionView {
    pub id: Id,
    /// `audio` or `video`.
    pub call_type: &'static str,
    pub conversation_id: Id,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub initiator_id: Id,
    /// `calling`, `ringing`, `active`, `ended`, `declined` or `missed`.
    pub status: &'static str,
    /// Beyond the reference: when the first accept made it active.
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// Beyond the reference: when a started call ended.
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
}

impl CallSessionView {
    pub fn new(call: &CallSession) -> CallSessionView {
        CallSessionView {
            id: call.id,
            call_type: call.kind.as_str(),
            conversation_id: call.conversation_id,
            created_at: call.created_at,
            initiator_id: call.initiator_id,
            status: call.status.as_str(),
            started_at: call.started_at,
            ended_at: call.ended_at,
        }
    }
}

/// CallSessionWithParticipants (contract 3.6): everyone who joined, the
/// initiator included. `started_at` is the call's own (the reference reports
/// the earliest join instead, contract 10.15).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallWithParticipantsView {
    pub id: Id,
    pub call_type: &'static str,
    pub conversation_id: Id,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub initiator_id: Id,
    pub participants: Vec<UserPublic>,
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    pub status: &'static str,
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
}

impl CallWithParticipantsView {
    pub fn new(call: &CallSession, participants: Vec<UserPublic>) -> CallWithParticipantsView {
        CallWithParticipantsView {
            id: call.id,
            call_type: call.kind.as_str(),
            conversation_id: call.conversation_id,
            created_at: call.created_at,
            initiator_id: call.initiator_id,
            participants,
            started_at: call.started_at,
            status: call.status.as_str(),
            ended_at: call.ended_at,
        }
    }
}

/// Message (contract 3.4).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    pub id: Id,
    /// Non-null iff `message_type` is `call`.
    pub call_session: Option<CallSessionSummary>,
    pub content: String,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub edited_at: Option<Timestamp>,
    /// `text`, `image`, `file` or `call`.
    pub message_type: &'static str,
    pub parent_message_id: Option<Id>,
    pub reactions: Vec<ReactionView>,
    pub user: UserPublic,
    /// Beyond the reference: the conversation this message belongs to.
    pub conversation_id: Id,
    /// Beyond the reference: per-conversation sequence number (1, 2, 3… with no
    /// gaps), for gap detection and catch-up.
    pub seq: i64,
    /// Beyond the reference: the sender's idempotency key, if one was given.
    pub client_message_id: Option<String>,
    /// Beyond the reference: ids of the members the content names with
    /// `@username` (ascending; unknown names and non-members are plain text).
    pub mentions: Vec<Id>,
    /// Beyond the reference: `channel` or `here` when an admin's `@channel` /
    /// `@here` mentioned the conversation, else null.
    pub broadcast_mention: Option<&'static str>,
    /// Beyond the reference: the files sent with the message (always an
    /// array), in upload order.
    pub attachments: Vec<AttachmentView>,
}

impl MessageView {
    pub fn new(
        message: &Message,
        author: UserPublic,
        reactions: Vec<ReactionView>,
        call_session: Option<CallSessionSummary>,
    ) -> MessageView {
        MessageView {
            id: message.id,
            call_session,
            content: message.content.clone(),
            created_at: message.created_at,
            edited_at: message.edited_at,
            message_type: message.kind.as_str(),
            parent_message_id: message.parent_message_id,
            reactions,
            user: author,
            conversation_id: message.conversation_id,
            seq: message.seq,
            client_message_id: message.client_message_id.clone(),
            mentions: message.mentions.clone(),
            broadcast_mention: message.broadcast.map(|b| b.as_str()),
            attachments: Vec::new(),
        }
    }

    pub fn with_attachments(mut self, attachments: Vec<AttachmentView>) -> MessageView {
        self.attachments = attachments;
        self
    }
}

/// An uploaded file (beyond the reference; ATTACHMENTS_API.md).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttachmentView {
    pub id: Id,
    /// Sniffed from the bytes, never the uploader's claim;
    /// `application/octet-stream` when unknown.
    pub content_type: String,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Pixels, for a raster image the server decoded; else null.
    pub height: Option<i32>,
    /// The file name the uploader gave.
    pub name: String,
    /// Bytes.
    pub size: i64,
    /// A small preview image (null when there is none).
    pub thumbnail_url: Option<String>,
    /// The bytes (Bearer token, or `?access_token=`).
    pub url: String,
    pub width: Option<i32>,
}

/// Each message's reactions as views, by message id.
pub fn reactions_by_message(reactions: &[Reaction]) -> HashMap<Id, Vec<ReactionView>> {
    let mut by_message: HashMap<Id, Vec<ReactionView>> = HashMap::new();
    for reaction in reactions {
        by_message
            .entry(reaction.message_id)
            .or_default()
            .push(ReactionView::from(reaction));
    }
    by_message
}

/// Each message's attachments as views, by message id (unattached uploads
/// are left out).
pub fn attachments_by_message(attachments: &[Attachment]) -> HashMap<Id, Vec<AttachmentView>> {
    let mut by_message: HashMap<Id, Vec<AttachmentView>> = HashMap::new();
    for attachment in attachments {
        if let Some(message_id) = attachment.message_id {
            by_message
                .entry(message_id)
                .or_default()
                .push(AttachmentView::from(attachment));
        }
    }
    by_message
}

impl From<&Attachment> for AttachmentView {
    fn from(a: &Attachment) -> AttachmentView {
        AttachmentView {
            id: a.id,
            content_type: a.content_type.clone(),
            created_at: a.created_at,
            height: a.height,
            name: a.name.clone(),
            size: a.size,
            thumbnail_url: a
                .thumbnail_key
                .as_ref()
                .map(|_| format!("/api/v1/attachments/{}/thumbnail", a.id)),
            url: format!("/api/v1/attachments/{}/content", a.id),
            width: a.width,
        }
    }
}

/// A page of history (contract 4.5).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    /// Id of the oldest message when the page is full, else `null`.
    pub next_cursor: Option<Id>,
}

/// One search result (beyond the reference).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHitView {
    pub message: MessageView,
    /// An excerpt of the content around the matches, as HTML: the text
    /// escaped, each match in `<mark>…</mark>` (the only markup).
    pub snippet: String,
}

/// A page of search results, best first (beyond the reference).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchPage {
    pub results: Vec<SearchHitView>,
    /// Pass as `cursor` for the next page; `null` when this page is not full.
    /// Opaque, and only meaningful with the same query.
    pub next_cursor: Option<String>,
}

/// A member's own read state in one conversation (beyond the reference): the
/// answer to a mark, and the `conversation_read` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadStateView {
    pub conversation_id: Id,
    /// Every message with `seq <= last_read_seq` is read.
    pub last_read_seq: i64,
    /// When the read position last moved.
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<Timestamp>,
    /// The member's devices received every message up to here.
    pub last_delivered_seq: i64,
    /// The conversation's newest `seq` when the counts were taken.
    pub last_seq: i64,
    pub unread_count: i64,
    pub mention_count: i64,
}

impl From<&ReadState> for ReadStateView {
    fn from(r: &ReadState) -> ReadStateView {
        ReadStateView {
            conversation_id: r.conversation_id,
            last_read_seq: r.last_read_seq,
            read_at: r.read_at,
            last_delivered_seq: r.last_delivered_seq,
            last_seq: r.last_seq,
            unread_count: r.unread_count,
            mention_count: r.mention_count,
        }
    }
}

/// A member's read receipt (beyond the reference). `last_read_seq` and
/// `read_at` are null when either that member or the viewer has read
/// receipts off (one's own are always shown); delivery is not covered by the
/// setting.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptView {
    pub user_id: Id,
    pub last_read_seq: Option<i64>,
    #[serde(serialize_with = "opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<Timestamp>,
    /// The member's devices received every message up to here.
    pub last_delivered_seq: i64,
}

impl ReceiptView {
    pub fn new(receipt: &Receipt, visible: bool) -> ReceiptView {
        ReceiptView {
            user_id: receipt.user_id,
            last_read_seq: visible.then_some(receipt.last_read_seq),
            read_at: receipt.read_at.filter(|_| visible),
            last_delivered_seq: receipt.last_delivered_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_have_three_fraction_digits_and_z() {
        let ts = chrono::Utc
            .timestamp_millis_opt(1_775_208_011_734)
            .single()
            .expect("valid millis");
        assert_eq!(format_timestamp(&ts), "2026-04-03T09:20:11.734Z");
        let whole = chrono::Utc
            .timestamp_millis_opt(1_775_208_011_000)
            .single()
            .expect("valid");
        assert_eq!(format_timestamp(&whole), "2026-04-03T09:20:11.000Z");
    }

    #[test]
    fn serialized_timestamps_are_format_timestamp_s() {
        let serialized = |ts: &Timestamp| {
            let mut out = Vec::new();
            super::ts(ts, &mut serde_json::Serializer::new(&mut out)).expect("serializes");
            String::from_utf8(out).expect("UTF-8")
        };
        let mut millis: Vec<i64> = vec![
            0,
            1,
            999,
            1_775_208_011_734,
            1_775_208_011_000,
            951_782_400_000,     // 2000-02-29
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            253_402_300_800_000, // year 10000: chrono's way
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // year -1: chrono's way
            -1,
        ];
        // Every hour of a few years, at odd millis.
        millis.extend((0..30_000).map(|i| 1_600_000_000_000 + i * 3_600_007 + i % 1000));
        for ms in millis {
            let ts = chrono::Utc
                .timestamp_millis_opt(ms)
                .single()
                .expect("valid millis");
            assert_eq!(
                serialized(&ts),
                format!("\"{}\"", format_timestamp(&ts)),
                "{ms}"
            );
        }
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
            .expect("a leap second")
            .and_utc();
        assert_eq!(
            serialized(&leap),
            format!("\"{}\"", format_timestamp(&leap))
        );
    }

    #[test]
    fn user_public_has_the_contract_keys_in_order() {
        let user = UserPublic {
            id: 43,
            avatar_url: None,
            display_name: Some("Omar".into()),
            online: true,
            username: "omar".into(),
        };
        assert_eq!(
            serde_json::to_string(&user).expect("serializes"),
            r#"{"id":43,"avatar_url":null,"display_name":"Omar","online":true,"username":"omar"}"#
        );
    }
}
