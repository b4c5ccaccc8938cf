//! Publish/subscribe by topic. Writers publish after their transaction commits
//! and never know who listens; the gateway subscribes and never knows who
//! writes. In-process for one instance; the Redis transport for several
//! instances plugs in behind the same [`Bus`] trait.

use std::fmt;
use std::sync::Arc;

use chatterly_store::Id;
use dashmap::DashMap;
use tokio::sync::broadcast;

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

/// An event payload, serialized once: the JSON object that goes in a channel
/// frame's `message` field. Shared, never re-serialized per subscriber.
pub type Payload = Arc<str>;

pub trait Bus: Send + Sync + 'static {
    fn publish(&self, topic: Topic, payload: Payload);
    fn subscribe(&self, topic: Topic) -> broadcast::Receiver<Payload>;
}

/// How many events a subscriber may fall behind before it lags (and the
/// gateway treats it as a slow consumer).
const TOPIC_CAPACITY: usize = 256;

/// The single-instance bus: one broadcast channel per topic with subscribers.
#[derive(Default)]
pub struct LocalBus {
    topics: DashMap<Topic, broadcast::Sender<Payload>>,
}

impl Bus for LocalBus {
    fn publish(&self, topic: Topic, payload: Payload) {
        let drop_topic = match self.topics.get(&topic) {
            Some(sender) => sender.send(payload).is_err(),
            None => false,
        };
        if drop_topic {
            // Nobody listens any more: forget the topic so the map stays small.
            self.topics.remove_if(&topic, |_, sender| sender.receiver_count() == 0);
        }
    }

    fn subscribe(&self, topic: Topic) -> broadcast::Receiver<Payload> {
        self.topics
            .entry(topic)
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_to_subscribers_of_the_topic_only() {
        let bus = LocalBus::default();
        let mut nine = bus.subscribe(Topic::Conversation(9));
        let mut ten = bus.subscribe(Topic::Conversation(10));
        bus.publish(Topic::Conversation(9), Arc::from(r#"{"type":"x"}"#));
        assert_eq!(&*nine.recv().await.expect("delivered"), r#"{"type":"x"}"#);
        assert!(ten.try_recv().is_err());
    }

    #[test]
    fn publishing_without_subscribers_is_a_no_op() {
        let bus = LocalBus::default();
        bus.publish(Topic::Presence, Arc::from("{}"));
        assert!(bus.topics.is_empty());
    }
}
