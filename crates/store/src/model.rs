//! Rows as the domain sees them. Backend-neutral: timestamps are UTC
//! `DateTime`s with millisecond precision (the wire format's precision), ids are
//! `i64` (the contract's 64-bit integer ids), enums are Rust enums stored as the
//! contract's small integers.

use chrono::{DateTime, Utc};

pub type Id = i64;
pub type Timestamp = DateTime<Utc>;

/// Truncates a timestamp to whole milliseconds, so what a backend stores and
/// what it returns compare equal whatever its native precision.
pub fn millis(ts: Timestamp) -> Timestamp {
    DateTime::from_timestamp_millis(ts.timestamp_millis()).unwrap_or(ts)
}

/// The current time at the precision every backend stores.
pub fn now() -> Timestamp {
    millis(Utc::now())
}

macro_rules! int_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:literal => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The integer the database stores (contract 1.4).
            pub fn as_i16(self) -> i16 {
                match self { $(Self::$variant => $value),+ }
            }
            pub fn from_i16(value: i16) -> Option<Self> {
                match value { $($value => Some(Self::$variant),)+ _ => None }
            }
            /// The lowercase string the wire carries (contract 1.4).
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

int_enum!(
    /// `conversation_type`.
    ConversationKind { Channel = 0 => "channel", Group = 1 => "group", Direct = 2 => "direct" }
);
int_enum!(
    /// A member's role in a conversation; never serialized.
    Role { Member = 0 => "member", Admin = 1 => "admin" }
);
int_enum!(
    /// `message_type`.
    MessageKind { Text = 0 => "text", Image = 1 => "image", File = 2 => "file", Call = 3 => "call" }
);
int_enum!(
    /// `call_type`.
    CallKind { Audio = 0 => "audio", Video = 1 => "video" }
);
int_enum!(
    /// A call's lifecycle state.
    CallStatus {
        Calling = 0 => "calling", Ringing = 1 => "ringing", Active = 2 => "active",
        Ended = 3 => "ended", Declined = 4 => "declined", Missed = 5 => "missed",
    }
);

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: Id,
    pub email: String,
    pub username: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub password_hash: String,
    pub failed_attempts: i32,
    pub locked_at: Option<Timestamp>,
    pub last_seen_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    /// Already normalized (trimmed, lowercased) and validated by the domain.
    pub email: String,
    pub username: String,
    pub display_name: Option<String>,
    pub password_hash: String,
}

/// A profile change; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub display_name: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: Id,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub description: Option<String>,
    pub created_by_id: Option<Id>,
    pub created_at: Timestamp,
    /// The `seq` of the newest message (0 when there is none).
    pub last_seq: i64,
    /// When the newest message was sent, or `created_at` if none was.
    pub last_activity_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewConversation {
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Becomes the first member, with role `Admin`.
    pub created_by_id: Id,
    /// Other members (role `Member`); the domain has removed the creator,
    /// duplicates and unknown ids.
    pub member_ids: Vec<Id>,
}

/// A member of a conversation, with the user row for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub conversation_id: Id,
    pub role: Role,
    pub joined_at: Timestamp,
    pub user: User,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Id,
    pub conversation_id: Id,
    pub user_id: Id,
    /// Per-conversation sequence number: 1, 2, 3… with no gaps, assigned in the
    /// sending transaction.
    pub seq: i64,
    pub content: String,
    pub kind: MessageKind,
    pub parent_message_id: Option<Id>,
    pub call_session_id: Option<Id>,
    pub client_message_id: Option<String>,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: Id,
    pub user_id: Id,
    pub content: String,
    pub kind: MessageKind,
    pub parent_message_id: Option<Id>,
    pub call_session_id: Option<Id>,
    /// Makes the send idempotent per sender: a second send with the same id
    /// returns the first message.
    pub client_message_id: Option<String>,
}

/// What `insert_message` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    Created(Message),
    /// A message with the same `(user_id, client_message_id)` already existed.
    Existing(Message),
}

impl Inserted {
    pub fn message(&self) -> &Message {
        match self {
            Inserted::Created(m) | Inserted::Existing(m) => m,
        }
    }
    pub fn into_message(self) -> Message {
        match self {
            Inserted::Created(m) | Inserted::Existing(m) => m,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    pub id: Id,
    pub message_id: Id,
    pub user_id: Id,
    pub emoji: String,
    pub created_at: Timestamp,
}

/// Which page of history to read. Both bounds are exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistoryPage {
    /// The newest `limit` messages with `id < before` (or the newest overall),
    /// returned oldest first.
    Before { before_id: Option<Id>, limit: u32 },
    /// The oldest `limit` messages with `seq > after_seq`, returned oldest first.
    AfterSeq { after_seq: i64, limit: u32 },
}
