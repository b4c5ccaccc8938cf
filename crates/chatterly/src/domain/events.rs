//! The event catalogue (contract 6.7): payloads serialized once, published on
//! the bus after the write that caused them has committed.

use std::sync::Arc;

use chatterly_store::Id;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::bus::{BusMessage, Payload, Topic};
use crate::views::{ConversationView, MessageView, ReactionView, ReadStateView, UserPublic};

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    NewMessage {
        message: &'a MessageView,
    },
    MessageEdited {
        message: &'a MessageView,
    },
    MessageDeleted {
        message_id: Id,
        conversation_id: Id,
    },
    ReactionAdded {
        reaction: &'a ReactionView,
    },
    ReactionRemoved {
        reaction_id: Id,
        message_id: Id,
    },
    MemberJoined {
        user: &'a UserPublic,
        conversation_id: Id,
    },
    MemberLeft {
        user_id: Id,
        conversation_id: Id,
    },
    NewConversation {
        conversation: &'a ConversationView,
    },
    TypingStart {
        user_id: Id,
        display_name: &'a str,
    },
    TypingStop {
        user_id: Id,
    },
    // ---- a user's call stream (contract 6.7) ----
    IncomingCall {
        call_session_id: Id,
        caller: &'a UserPublic,
        call_type: &'a str,
        conversation_id: Id,
    },
    CallAccepted {
        call_session_id: Id,
        accepted_by: &'a UserPublic,
    },
    /// Also on the conversation stream (contract 6.7).
    CallDeclined {
        call_session_id: Id,
        declined_by: &'a UserPublic,
    },
    /// `status` is beyond the reference: `ended`, `declined` or `missed`
    /// (contract 10.8: a missed call is announced too).
    CallEnded {
        call_session_id: Id,
        status: &'a str,
    },
    /// Beyond the reference: someone joined an active call late.
    ParticipantJoined {
        call_session_id: Id,
        user: &'a UserPublic,
    },
    ParticipantMuted {
        call_session_id: Id,
        user_id: Id,
        muted: bool,
    },
    ParticipantCameraToggled {
        call_session_id: Id,
        user_id: Id,
        camera_off: bool,
    },
    /// WebRTC signaling, relayed byte for byte: `call_session_id` as the
    /// sender wrote it, `signal` untouched.
    Signal {
        call_session_id: &'a RawValue,
        from_user_id: Id,
        signal: &'a RawValue,
    },
    // ---- read state, on user streams (beyond the reference) ----
    /// To the reader's own devices: their read position moved (the counts
    /// are as of that moment).
    ConversationRead {
        #[serde(flatten)]
        state: &'a ReadStateView,
    },
    /// To the other members who take receipts: `user_id` has read up to
    /// `last_read_seq`.
    ReadReceipt {
        conversation_id: Id,
        user_id: Id,
        last_read_seq: i64,
        read_at: &'a str,
    },
    /// In a direct conversation, to the other member: `user_id`'s devices
    /// received every message up to `last_delivered_seq`.
    MessageDelivered {
        conversation_id: Id,
        user_id: Id,
        last_delivered_seq: i64,
    },
    /// To a mentioned user (when a message mentions them, or an edit starts
    /// to).
    Mention {
        conversation_id: Id,
        message: &'a MessageView,
    },
    /// To a user a message no longer mentions (edited or deleted).
    MentionRemoved {
        conversation_id: Id,
        message_id: Id,
    },
}

impl Event<'_> {
    pub fn payload(&self) -> Payload {
        // Serializing plain data structures cannot fail; an empty object is a
        // harmless fallback that clients ignore.
        Arc::from(serde_json::to_string(self).unwrap_or_else(|_| String::from("{}")))
    }
}

impl super::Domain {
    /// Publishes an event for the subscribers of `topic`. Call only after the
    /// write that caused it has committed.
    pub(super) fn publish(&self, topic: Topic, event: Event<'_>) {
        let seq = match &event {
            Event::NewMessage { message } => Some(message.seq),
            _ => None,
        };
        self.bus.publish(BusMessage::Event {
            topic,
            seq,
            payload: event.payload(),
        });
    }

    /// Publishes one event to several topics, serialized once (not at all
    /// for no topic).
    pub(super) fn publish_to(&self, topics: impl IntoIterator<Item = Topic>, event: Event<'_>) {
        let mut topics = topics.into_iter().peekable();
        if topics.peek().is_none() {
            return;
        }
        let payload = event.payload();
        for topic in topics {
            self.bus.publish(BusMessage::Event {
                topic,
                seq: None,
                payload: Arc::clone(&payload),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_the_contract_type_names() {
        let deleted = Event::MessageDeleted {
            message_id: 5,
            conversation_id: 9,
        }
        .payload();
        assert_eq!(
            &*deleted,
            r#"{"type":"message_deleted","message_id":5,"conversation_id":9}"#
        );
        let removed = Event::ReactionRemoved {
            reaction_id: 77,
            message_id: 5,
        }
        .payload();
        assert_eq!(
            &*removed,
            r#"{"type":"reaction_removed","reaction_id":77,"message_id":5}"#
        );
        let left = Event::MemberLeft {
            user_id: 3,
            conversation_id: 9,
        }
        .payload();
        assert_eq!(
            &*left,
            r#"{"type":"member_left","user_id":3,"conversation_id":9}"#
        );
    }
}
