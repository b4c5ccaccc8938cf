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
    /// Whether the user sends read receipts (and so sees other members'); on
    /// by default.
    pub read_receipts: bool,
    /// Set by an administrator (`chatterly users disable`): the account
    /// cannot sign in and its tokens are refused.
    pub disabled_at: Option<Timestamp>,
    /// A site administrator (`chatterly users promote`).
    pub site_admin: bool,
    /// Tokens issued before this (a password reset) are refused.
    pub sessions_revoked_at: Option<Timestamp>,
}

/// What a retention run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// Messages deleted (with their reactions).
    pub messages: u64,
    /// Whole monthly partitions dropped (PostgreSQL), by table name.
    pub partitions: Vec<String>,
}

/// An administrator's change to an account (`chatterly users …`).
#[derive(Debug, Clone, PartialEq)]
pub enum AccountChange {
    /// Disabled since the given time, or enabled again with `None`.
    Disabled(Option<Timestamp>),
    /// Made a site administrator, or no longer one.
    SiteAdmin(bool),
    /// A new password hash; also clears failed logins and any lock, and
    /// sets `sessions_revoked_at` to now (every earlier token is refused).
    PasswordHash(String),
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
    /// `Some` sets the read-receipts setting.
    pub read_receipts: Option<bool>,
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
    /// Members the content names with `@username` (see [`Mentions`]),
    /// ascending.
    pub mentions: Vec<Id>,
    /// An admin's `@channel` or `@here`, if the message has one.
    pub broadcast: Option<Broadcast>,
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
    /// Who the message mentions, resolved by the domain; written with the
    /// message, in its transaction.
    pub mentions: Mentions,
    /// Uploads attached to the message, in its transaction: each must be the
    /// sender's, not yet attached and not deleted, or the whole send fails
    /// with `Conflict(CONFLICT_ATTACHMENT)` and writes nothing. Distinct ids.
    pub attachment_ids: Vec<Id>,
}

int_enum!(
    /// An admin's mention of a whole conversation: `@channel` (every member)
    /// or `@here` (the members online when it was sent).
    Broadcast { Channel = 1 => "channel", Here = 2 => "here" }
);

/// Who a message mentions, as the domain resolved it from the content. The
/// store keeps `user_ids` and `broadcast` on the message and writes one
/// mention row per `notified` user (what `mention_count` and the mentions
/// list read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mentions {
    /// Members named with `@username`, ascending, the author left out.
    pub user_ids: Vec<Id>,
    pub broadcast: Option<Broadcast>,
    /// Everyone mentioned: `user_ids` and whoever the broadcast reached;
    /// ascending, unique, never the author.
    pub notified: Vec<Id>,
}

impl Mentions {
    pub fn is_empty(&self) -> bool {
        self.user_ids.is_empty() && self.broadcast.is_none() && self.notified.is_empty()
    }
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

impl CallStatus {
    /// `declined`, `missed` and `ended` are final: no transition leaves them
    /// (contract 10.7).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CallStatus::Ended | CallStatus::Declined | CallStatus::Missed
        )
    }
}

/// A call (`call_sessions` row).
#[derive(Debug, Clone, PartialEq)]
pub struct CallSession {
    pub id: Id,
    pub conversation_id: Id,
    pub initiator_id: Id,
    pub kind: CallKind,
    pub status: CallStatus,
    pub created_at: Timestamp,
    /// Set by the first accept.
    pub started_at: Option<Timestamp>,
    /// Set when a started call ends (never without `started_at`).
    pub ended_at: Option<Timestamp>,
}

/// Someone who joined a call (the initiator at creation, then each acceptor
/// or late joiner).
#[derive(Debug, Clone, PartialEq)]
pub struct CallParticipant {
    pub call_session_id: Id,
    pub user_id: Id,
    pub joined_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewCall {
    pub conversation_id: Id,
    pub initiator_id: Id,
    pub kind: CallKind,
    /// Created `ringing` (the reference never uses `calling` at creation).
    pub status: CallStatus,
}

/// One compare-and-set on a call's status, decided by the domain's state
/// machine and applied by the store in one transaction.
#[derive(Debug, Clone)]
pub struct CallTransition {
    pub call_id: Id,
    /// Applies only if the call's current status is one of these.
    pub from: Vec<CallStatus>,
    pub to: CallStatus,
    /// Added as a participant (idempotent: an existing participant is kept
    /// with its first `joined_at`).
    pub participant: Option<Id>,
    /// Sets `started_at = now` unless it is already set.
    pub start: bool,
    /// Sets `ended_at = now` if `started_at` is set.
    pub end: bool,
    /// Writes the call-log message (contract 5.7: `message_type` call,
    /// content `"call"`, author the initiator, `call_session_id` this call,
    /// the conversation's next `seq`) in the same transaction.
    pub log: bool,
    pub now: Timestamp,
}

/// What a [`CallTransition`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CallChange {
    /// The status was one of `from`: the call as it is now, and the call-log
    /// message if one was written.
    Applied {
        call: CallSession,
        log: Option<Message>,
    },
    /// The status was not one of `from`: nothing was written; the call as it
    /// is.
    Refused(CallSession),
}

int_enum!(
    /// Where a job is in the durable queue.
    JobStatus { Pending = 0 => "pending", Running = 1 => "running", Dead = 2 => "dead" }
);

/// Work for the durable job queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Which handler runs it (e.g. `call.missed`).
    pub kind: String,
    /// The handler's arguments, JSON text.
    pub payload: String,
    /// Not claimed before this time.
    pub run_at: Timestamp,
    /// Failed runs after which the job is dead (kept for `chatterly jobs`).
    pub max_attempts: i32,
    /// At most one pending or running job holds a given key: enqueueing a
    /// second is a no-op (a recurring job that every instance ensures at start
    /// stays one job).
    pub unique_key: Option<String>,
}

/// A job in the queue. Done jobs are deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Id,
    pub kind: String,
    pub payload: String,
    pub status: JobStatus,
    pub run_at: Timestamp,
    /// Claims so far; also identifies the current claim (see
    /// `Store::complete_job`).
    pub attempts: i32,
    pub max_attempts: i32,
    pub unique_key: Option<String>,
    pub last_error: Option<String>,
    /// While `running`: when the claim lapses and another worker may take it.
    pub locked_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

// ---- read state ------------------------------------------------------------------

/// One member's read state in a conversation. The counts come from the same
/// snapshot as `last_seq`, and neither scans history: sending moves the
/// sender's own position to their message (so no own message ever lies after
/// it), which makes `unread_count` = `last_seq - last_read_seq` minus the
/// deleted messages after the position (a small indexed range); mentions are
/// rows indexed by (user, conversation, seq).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadState {
    pub conversation_id: Id,
    pub user_id: Id,
    /// Every message with `seq <= last_read_seq` is read. Never moves back.
    pub last_read_seq: i64,
    /// When the position last moved (by a mark or by a send).
    pub read_at: Option<Timestamp>,
    /// The member's devices received every message up to here (never below
    /// `last_read_seq`).
    pub last_delivered_seq: i64,
    /// The conversation's `last_seq` in the snapshot the counts come from.
    pub last_seq: i64,
    /// Messages after `last_read_seq` that are not deleted and not the
    /// member's own.
    pub unread_count: i64,
    /// Of those, the ones that mention the member.
    pub mention_count: i64,
}

/// Where a page of the conversation list starts: just after this
/// conversation in activity order (most recent first, ties by id desc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxCursor {
    pub last_activity_at: Timestamp,
    pub conversation_id: Id,
}

impl InboxCursor {
    /// The cursor of the page that follows `entry`.
    pub fn after(entry: &InboxEntry) -> InboxCursor {
        InboxCursor {
            last_activity_at: entry.conversation.last_activity_at,
            conversation_id: entry.conversation.id,
        }
    }
}

/// A row of a member's conversation list.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    pub conversation: Conversation,
    pub read: ReadState,
    /// The newest message that is not deleted.
    pub latest: Option<Message>,
    /// The conversation's members (user ids, ascending), read in the same
    /// statement: a list of conversations needs no second query for them.
    pub member_ids: Vec<Id>,
}

/// Which position a mark moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// The read position (it also moves the delivered one: read implies
    /// delivered).
    Read,
    /// The delivered position only.
    Delivered,
}

/// What `Store::mark` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Marked {
    /// The position is now at least the one asked for; the flags say whether
    /// this call moved it (a repeat moves nothing).
    Applied {
        state: ReadState,
        kind: ConversationKind,
        read_moved: bool,
        delivered_moved: bool,
    },
    /// The seq asked for is beyond the conversation's last message; nothing
    /// was written.
    Beyond { last_seq: i64 },
}

/// A member's read position as other members may see it (subject to both
/// sides' `read_receipts` setting, which the domain applies).
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub user_id: Id,
    pub last_read_seq: i64,
    pub read_at: Option<Timestamp>,
    pub last_delivered_seq: i64,
    /// The member's setting.
    pub read_receipts: bool,
}

// ---- attachments ------------------------------------------------------------------

/// An uploaded file (`attachments` row). Its bytes live in the blob store
/// under `blob_key`; the row is written only once they are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub id: Id,
    /// The uploader.
    pub user_id: Id,
    /// The file name the client gave.
    pub name: String,
    /// Sniffed from the bytes, never the client's claim.
    pub content_type: String,
    pub size: i64,
    /// Of a raster image the server decoded.
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub blob_key: String,
    /// The preview's blob, when one was made.
    pub thumbnail_key: Option<String>,
    /// Set (with `conversation_id`) by the send that attached it.
    pub message_id: Option<Id>,
    pub conversation_id: Option<Id>,
    pub created_at: Timestamp,
    /// Hidden since then: its message was deleted (or its conversation, or
    /// retention removed it), or the cleanup claimed it. Never served again;
    /// the cleanup job removes the blobs and the row.
    pub deleted_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub user_id: Id,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub blob_key: String,
    pub thumbnail_key: Option<String>,
    /// The uploader's stored bytes (of attachments not deleted) may not
    /// exceed this once the new one is counted: `Conflict(CONFLICT_QUOTA)`,
    /// nothing written. `None`: no quota.
    pub quota: Option<i64>,
}
