//! Publish/subscribe across instances. Writers publish after their
//! transaction commits and never know who listens; every instance's gateway
//! hub receives every bus message and delivers it to its own sockets. With one
//! instance the bus hands messages straight to the local hub; with several,
//! the Redis transport carries them to every instance's hub.

mod redis;

use std::fmt;
use std::sync::Arc;

use chatterly_store::Id;

pub use self::redis::{RedisBus, BUS_STATS};

/// Where an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everyone subscribed to one conversation.
    Conversation(Id),
    /// One user's personal stream (all their devices).
    User(Id),
    /// One user's call stream.
    Calls(Id),
    /// The presence roster.
    Presence,
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Conversation(id) => write!(f, "conversation:{id}"),
            Topic::User(id) => write!(f, "user:{id}"),
            Topic::Calls(id) => write!(f, "calls:{id}"),
            Topic::Presence => f.write_str("presence"),
        }
    }
}

impl std::str::FromStr for Topic {
    type Err = ();

    fn from_str(text: &str) -> Result<Topic, ()> {
        if text == "presence" {
            return Ok(Topic::Presence);
        }
        let (kind, id) = text.split_once(':').ok_or(())?;
        let id: Id = id.parse().map_err(|_| ())?;
        match kind {
            "conversation" => Ok(Topic::Conversation(id)),
            "user" => Ok(Topic::User(id)),
            "calls" => Ok(Topic::Calls(id)),
            _ => Err(()),
        }
    }
}

/// An event payload, serialized once: the JSON object that goes in a channel
/// frame's `message` field. Shared, never re-serialized per subscriber.
pub type Payload = Arc<str>;

/// What travels on the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum BusMessage {
    /// An event for the subscribers of a topic. `seq` is set for a conversation's
    /// `new_message`, so a catching-up subscriber can drop what it already sent.
    Event {
        topic: Topic,
        seq: Option<i64>,
        payload: Payload,
    },
    /// A member left or was removed: their sockets stop receiving the
    /// conversation at once.
    MemberRemoved { conversation_id: Id, user_id: Id },
    /// The conversation is gone: every subscription to it ends.
    ConversationDeleted { conversation_id: Id },
    /// A token was revoked: sockets opened with it close.
    TokenRevoked { user_id: Id, jti: String },
    /// A user came online (first connection anywhere) or went offline (last
    /// one gone): every instance's presence view follows.
    PresenceChanged { user_id: Id, online: bool },
    /// A call reached a terminal state or gained a participant: every
    /// instance's cached roster of it goes.
    CallChanged { call_id: Id },
    /// An administrator disabled the account or reset its password: every
    /// socket of the user closes and every instance forgets that the user is
    /// known to be valid (the next token check reads the store).
    SessionsEnded { user_id: Id },
}

/// Where a bus delivers: each instance's gateway hub.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, message: &BusMessage);
}

pub trait Bus: Send + Sync + 'static {
    fn publish(&self, message: BusMessage);
}

/// Every local receiver of bus messages (the gateway hub, the presence view).
#[derive(Clone, Default)]
pub struct Receivers(Vec<Arc<dyn Deliver>>);

impl Receivers {
    pub fn new(receivers: Vec<Arc<dyn Deliver>>) -> Receivers {
        Receivers(receivers)
    }
}

impl Deliver for Receivers {
    fn deliver(&self, message: &BusMessage) {
        for receiver in &self.0 {
            receiver.deliver(message);
        }
    }
}

/// The single-instance bus: hands every message to the local receivers.
pub struct LocalBus {
    target: Arc<dyn Deliver>,
}

impl LocalBus {
    pub fn new(target: Arc<dyn Deliver>) -> LocalBus {
        LocalBus { target }
    }
}

impl Bus for LocalBus {
    fn publish(&self, message: BusMessage) {
        self.target.deliver(&message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<BusMessage>>);

    impl Deliver for Recorder {
        fn deliver(&self, message: &BusMessage) {
            self.0.lock().expect("lock").push(message.clone());
        }
    }

    #[test]
    fn the_local_bus_hands_messages_to_the_hub() {
        let recorder = Arc::new(Recorder::default());
        let bus = LocalBus::new(recorder.clone());
        let message = BusMessage::MemberRemoved {
            conversation_id: 9,
            user_id: 3,
        };
        bus.publish(message.clone());
        assert_eq!(*recorder.0.lock().expect("lock"), vec![message]);
    }

    #[test]
    fn topics_round_trip_through_text() {
        for topic in [
            Topic::Conversation(9),
            Topic::User(3),
            Topic::Calls(4),
            Topic::Presence,
        ] {
            assert_eq!(topic.to_string().parse::<Topic>(), Ok(topic));
        }
        assert!("conversation:x".parse::<Topic>().is_err());
        assert!("room:1".parse::<Topic>().is_err());
    }
}
