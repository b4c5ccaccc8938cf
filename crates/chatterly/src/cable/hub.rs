//! The gateway hub of one instance: which local socket listens to which
//! topic, and delivery of bus messages to them.
//!
//! Delivery never blocks and never allocates per subscriber: subscribers of a
//! topic are grouped by their identifier string, the frame is built once per
//! group (usually one), and each socket gets a clone of the same bytes through
//! a bounded outbox. A socket whose outbox is full is a slow consumer: it is
//! told to close instead of growing memory or delaying anyone else.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use chatterly_store::Id;
use dashmap::DashMap;
use tokio::sync::{mpsc, Notify};

use crate::bus::{BusMessage, Deliver, Topic};

/// Why the server closes a socket (the `disconnect` frame's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    Unauthorized = 1,
    InvalidRequest = 2,
    ServerRestart = 3,
    SlowConsumer = 4,
}

impl CloseReason {
    fn from_u8(value: u8) -> Option<CloseReason> {
        match value {
            1 => Some(CloseReason::Unauthorized),
            2 => Some(CloseReason::InvalidRequest),
            3 => Some(CloseReason::ServerRestart),
            4 => Some(CloseReason::SlowConsumer),
            _ => None,
        }
    }

    pub fn wire_reason(self) -> &'static str {
        match self {
            CloseReason::Unauthorized => "unauthorized",
            CloseReason::InvalidRequest => "invalid_request",
            CloseReason::ServerRestart => "server_restart",
            CloseReason::SlowConsumer => "slow_consumer",
        }
    }

    pub fn reconnect(self) -> bool {
        matches!(self, CloseReason::ServerRestart | CloseReason::SlowConsumer)
    }
}

/// A ready channel frame, shared by every socket of a group. `seq` is
/// `(conversation_id, seq)` for a `new_message`, so a catching-up subscription
/// can drop duplicates.
#[derive(Debug)]
pub struct SharedFrame {
    pub frame: Utf8Bytes,
    pub seq: Option<(Id, i64)>,
}

/// What the hub hands a socket's task. Two words, so an idle socket's outbox
/// (whose first block of slots is allocated up front) stays small.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Arc<SharedFrame>),
    /// The hub ended this subscription (membership removed, conversation
    /// deleted); the socket forgets it so the client may subscribe again later.
    Ended(Arc<str>),
}

/// The hub's handle on one socket.
pub struct Connection {
    pub id: u64,
    pub user_id: Id,
    pub jti: Arc<str>,
    outbox: mpsc::Sender<Outgoing>,
    close: Notify,
    close_reason: AtomicU8,
}

impl Connection {
    /// Asks the socket's task to send `disconnect` and close. The first reason
    /// wins.
    pub fn close(&self, reason: CloseReason) {
        if self
            .close_reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.close.notify_one();
        }
    }

    /// Resolves once `close` was called, with its reason.
    pub async fn closed(&self) -> CloseReason {
        loop {
            if let Some(reason) = CloseReason::from_u8(self.close_reason.load(Ordering::Acquire)) {
                return reason;
            }
            self.close.notified().await;
        }
    }

    fn push(&self, item: Outgoing) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(item) {
            STATS.outbox_drops.fetch_add(1, Ordering::Relaxed);
            if self.close_reason.load(Ordering::Acquire) == 0 {
                STATS.slow_consumers.fetch_add(1, Ordering::Relaxed);
            }
            self.close(CloseReason::SlowConsumer);
        }
    }
}

/// The gateway's counters, for the metrics endpoint: process-wide atomics
/// (a connection pushes without a reference to its hub), bumped once per
/// subscriber group rather than once per socket on the delivery path.
#[derive(Default)]
pub struct HubStats {
    /// Frames handed to socket outboxes.
    pub deliveries: AtomicU64,
    /// Frames dropped because an outbox was full.
    pub outbox_drops: AtomicU64,
    /// Sockets closed as slow consumers.
    pub slow_consumers: AtomicU64,
}

pub static STATS: HubStats = HubStats {
    deliveries: AtomicU64::new(0),
    outbox_drops: AtomicU64::new(0),
    slow_consumers: AtomicU64::new(0),
};

/// Subscribers of one topic that used the same identifier string.
struct Group {
    identifier: Arc<str>,
    /// `{"identifier":"<escaped>","message":` — the frame up to the payload.
    prefix: Arc<str>,
    members: Vec<Arc<Connection>>,
}

#[derive(Default)]
pub struct Hub {
    topics: DashMap<Topic, Vec<Group>>,
    connections: DashMap<Id, Vec<Arc<Connection>>>,
    next_id: AtomicU64,
}

/// The start of a channel-data frame for `identifier`, echoed byte for byte
/// as a JSON string (contract 6.3).
pub fn frame_prefix(identifier: &str) -> String {
    let escaped = serde_json::Value::String(identifier.to_owned()).to_string();
    format!("{{\"identifier\":{escaped},\"message\":")
}

impl Hub {
    /// Registers a socket; returns its handle and the receiving end of its
    /// outbox (`capacity` frames).
    pub fn connect(
        &self,
        user_id: Id,
        jti: &str,
        capacity: usize,
    ) -> (Arc<Connection>, mpsc::Receiver<Outgoing>) {
        let (outbox, receiver) = mpsc::channel(capacity.max(1));
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user_id,
            jti: Arc::from(jti),
            outbox,
            close: Notify::new(),
            close_reason: AtomicU8::new(0),
        });
        self.connections
            .entry(user_id)
            .or_default()
            .push(Arc::clone(&connection));
        (connection, receiver)
    }

    pub fn disconnect(&self, connection: &Connection) {
        self.connections
            .remove_if_mut(&connection.user_id, |_, list| {
                list.retain(|c| c.id != connection.id);
                list.is_empty()
            });
    }

    pub fn subscribe(&self, topic: Topic, identifier: &Arc<str>, connection: &Arc<Connection>) {
        let mut groups = self.topics.entry(topic).or_default();
        match groups.iter_mut().find(|g| g.identifier == *identifier) {
            Some(group) => group.members.push(Arc::clone(connection)),
            None => groups.push(Group {
                identifier: Arc::clone(identifier),
                prefix: Arc::from(frame_prefix(identifier)),
                members: vec![Arc::clone(connection)],
            }),
        }
    }

    pub fn unsubscribe(&self, topic: Topic, identifier: &str, connection_id: u64) {
        self.topics.remove_if_mut(&topic, |_, groups| {
            for group in groups.iter_mut().filter(|g| &*g.identifier == identifier) {
                group.members.retain(|c| c.id != connection_id);
            }
            groups.retain(|g| !g.members.is_empty());
            groups.is_empty()
        });
    }

    /// Tells every local socket to close (graceful shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for entry in self.connections.iter() {
            for connection in entry.value() {
                connection.close(reason);
            }
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.iter().map(|e| e.value().len()).sum()
    }

    /// Number of local subscriptions, all topics.
    pub fn subscription_count(&self) -> usize {
        self.topics
            .iter()
            .map(|e| e.value().iter().map(|g| g.members.len()).sum::<usize>())
            .sum()
    }

    /// Number of local subscriptions to a topic.
    pub fn subscriber_count(&self, topic: Topic) -> usize {
        self.topics
            .get(&topic)
            .map(|groups| groups.iter().map(|g| g.members.len()).sum())
            .unwrap_or(0)
    }

    fn end_subscriptions(&self, topic: Topic, mut ends: impl FnMut(&Connection) -> bool) {
        let mut ended = Vec::new();
        self.topics.remove_if_mut(&topic, |_, groups| {
            for group in groups.iter_mut() {
                group.members.retain(|c| {
                    if ends(c) {
                        ended.push((Arc::clone(c), Arc::clone(&group.identifier)));
                        false
                    } else {
                        true
                    }
                });
            }
            groups.retain(|g| !g.members.is_empty());
            groups.is_empty()
        });
        for (connection, identifier) in ended {
            connection.push(Outgoing::Ended(identifier));
        }
    }
}

impl Deliver for Hub {
    fn deliver(&self, message: &BusMessage) {
        match message {
            BusMessage::Event {
                topic,
                seq,
                payload,
            } => {
                let Some(groups) = self.topics.get(topic) else {
                    return;
                };
                let seq = match (topic, seq) {
                    (Topic::Conversation(id), Some(seq)) => Some((*id, *seq)),
                    _ => None,
                };
                for group in groups.iter() {
                    let mut frame = String::with_capacity(group.prefix.len() + payload.len() + 1);
                    frame.push_str(&group.prefix);
                    frame.push_str(payload);
                    frame.push('}');
                    let shared = Arc::new(SharedFrame {
                        frame: Utf8Bytes::from(frame),
                        seq,
                    });
                    for connection in &group.members {
                        connection.push(Outgoing::Frame(Arc::clone(&shared)));
                    }
                    STATS
                        .deliveries
                        .fetch_add(group.members.len() as u64, Ordering::Relaxed);
                }
            }
            BusMessage::MemberRemoved {
                conversation_id,
                user_id,
            } => self.end_subscriptions(Topic::Conversation(*conversation_id), |c| {
                c.user_id == *user_id
            }),
            BusMessage::ConversationDeleted { conversation_id } => {
                self.end_subscriptions(Topic::Conversation(*conversation_id), |_| true)
            }
            BusMessage::TokenRevoked { user_id, jti } => {
                if let Some(connections) = self.connections.get(user_id) {
                    for connection in connections.iter().filter(|c| &*c.jti == jti.as_str()) {
                        connection.close(CloseReason::Unauthorized);
                    }
                }
            }
            BusMessage::SessionsEnded { user_id } => {
                if let Some(connections) = self.connections.get(user_id) {
                    for connection in connections.iter() {
                        connection.close(CloseReason::Unauthorized);
                    }
                }
            }
            // The presence view follows these; sockets learn from presence events.
            BusMessage::PresenceChanged { .. } | BusMessage::CallChanged { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_text(item: Outgoing) -> String {
        match item {
            Outgoing::Frame(shared) => shared.frame.as_str().to_owned(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frames_echo_the_identifier_and_embed_the_payload() {
        let hub = Hub::default();
        let (conn, mut rx) = hub.connect(1, "jti", 8);
        let identifier: Arc<str> =
            Arc::from(r#"{"channel":"ConversationChannel","conversation_id":9}"#);
        hub.subscribe(Topic::Conversation(9), &identifier, &conn);
        hub.deliver(&BusMessage::Event {
            topic: Topic::Conversation(9),
            seq: Some(4),
            payload: Arc::from(r#"{"type":"x"}"#),
        });
        let text = frame_text(rx.try_recv().expect("frame"));
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(parsed["identifier"], *identifier);
        assert_eq!(parsed["message"]["type"], "x");
    }

    #[test]
    fn a_full_outbox_closes_the_slow_consumer_only() {
        let hub = Hub::default();
        let (slow, _slow_rx) = hub.connect(1, "a", 1);
        let (fast, mut fast_rx) = hub.connect(2, "b", 8);
        let identifier: Arc<str> = Arc::from("{}");
        hub.subscribe(Topic::Presence, &identifier, &slow);
        hub.subscribe(Topic::Presence, &identifier, &fast);
        for _ in 0..3 {
            hub.deliver(&BusMessage::Event {
                topic: Topic::Presence,
                seq: None,
                payload: Arc::from("{}"),
            });
            assert!(fast_rx.try_recv().is_ok());
        }
        assert_eq!(
            slow.close_reason.load(Ordering::Acquire),
            CloseReason::SlowConsumer as u8
        );
        assert_eq!(fast.close_reason.load(Ordering::Acquire), 0);
    }

    #[test]
    fn removing_a_member_ends_only_their_subscription() {
        let hub = Hub::default();
        let (alice, mut alice_rx) = hub.connect(1, "a", 8);
        let (bob, _bob_rx) = hub.connect(2, "b", 8);
        let identifier: Arc<str> = Arc::from("{}");
        hub.subscribe(Topic::Conversation(9), &identifier, &alice);
        hub.subscribe(Topic::Conversation(9), &identifier, &bob);
        hub.deliver(&BusMessage::MemberRemoved {
            conversation_id: 9,
            user_id: 1,
        });
        assert!(matches!(alice_rx.try_recv(), Ok(Outgoing::Ended(_))));
        assert_eq!(hub.subscriber_count(Topic::Conversation(9)), 1);
        hub.deliver(&BusMessage::ConversationDeleted { conversation_id: 9 });
        assert_eq!(hub.subscriber_count(Topic::Conversation(9)), 0);
    }

    #[tokio::test]
    async fn revoking_a_token_closes_its_sockets_only() {
        let hub = Hub::default();
        let (phone, _a) = hub.connect(1, "phone-jti", 8);
        let (desktop, _b) = hub.connect(1, "desktop-jti", 8);
        hub.deliver(&BusMessage::TokenRevoked {
            user_id: 1,
            jti: "phone-jti".into(),
        });
        assert_eq!(phone.closed().await, CloseReason::Unauthorized);
        assert_eq!(desktop.close_reason.load(Ordering::Acquire), 0);
        hub.disconnect(&phone);
        assert_eq!(hub.connection_count(), 1);
    }

    #[tokio::test]
    async fn disabling_a_user_closes_all_their_sockets_only() {
        let hub = Hub::default();
        let (phone, _a) = hub.connect(1, "phone-jti", 8);
        let (desktop, _b) = hub.connect(1, "desktop-jti", 8);
        let (other, _c) = hub.connect(2, "other-jti", 8);
        hub.deliver(&BusMessage::SessionsEnded { user_id: 1 });
        assert_eq!(phone.closed().await, CloseReason::Unauthorized);
        assert_eq!(desktop.closed().await, CloseReason::Unauthorized);
        assert_eq!(other.close_reason.load(Ordering::Acquire), 0);
    }
}
