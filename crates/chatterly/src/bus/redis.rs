//! The scale-out bus: Redis pub/sub on one channel that every instance
//! subscribes to. A message is delivered to the local receivers at once (no
//! round trip for the sockets of the publishing instance) and published for
//! the others, which skip their own messages by the origin tag.
//!
//! Publishing never blocks a request: messages go through a bounded queue to
//! one publisher task that pipelines them. If Redis is away, messages for
//! other instances are dropped (and counted in the log); clients recover what
//! they missed with `since_seq` catch-up, since messages live in the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Bus, BusMessage, Deliver, Topic};
use crate::redis_keys::RedisKeys;

const QUEUE: usize = 65_536;

/// The Redis bus's counters, for the metrics endpoint (process-wide).
pub struct BusStats {
    /// Messages published for the other instances.
    pub published: AtomicU64,
    /// Messages received from other instances.
    pub received: AtomicU64,
    /// Messages for other instances lost (queue full, or Redis failed).
    pub dropped: AtomicU64,
}

pub static BUS_STATS: BusStats = BusStats {
    published: AtomicU64::new(0),
    received: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
};
const PIPELINE_MAX: usize = 256;

/// The routing part of a message on the wire; an event's payload follows it
/// after a newline, unescaped.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Header {
    Event {
        topic: String,
        seq: Option<i64>,
    },
    MemberRemoved {
        conversation_id: i64,
        user_id: i64,
    },
    ConversationDeleted {
        conversation_id: i64,
    },
    TokenRevoked {
        user_id: i64,
        jti: String,
    },
    PresenceChanged {
        user_id: i64,
        online: bool,
    },
    CallChanged {
        call_id: i64,
    },
    // The wire name of the first release of this message, kept so that
    // instances of either build understand each other.
    #[serde(rename = "user_disabled")]
    SessionsEnded {
        user_id: i64,
    },
}

/// `origin@sent_ms\nheader\npayload`: `sent_ms` (Unix milliseconds, when
/// published) measures the bus's lag on the receiving side. An instance that
/// predates it sends `origin` alone, and reads this origin as one that is not
/// its own, which it is not.
fn encode(origin: &str, message: &BusMessage) -> Vec<u8> {
    let (header, payload) = match message {
        BusMessage::Event {
            topic,
            seq,
            payload,
        } => (
            Header::Event {
                topic: topic.to_string(),
                seq: *seq,
            },
            Some(payload),
        ),
        BusMessage::MemberRemoved {
            conversation_id,
            user_id,
        } => (
            Header::MemberRemoved {
                conversation_id: *conversation_id,
                user_id: *user_id,
            },
            None,
        ),
        BusMessage::ConversationDeleted { conversation_id } => (
            Header::ConversationDeleted {
                conversation_id: *conversation_id,
            },
            None,
        ),
        BusMessage::TokenRevoked { user_id, jti } => (
            Header::TokenRevoked {
                user_id: *user_id,
                jti: jti.clone(),
            },
            None,
        ),
        BusMessage::PresenceChanged { user_id, online } => (
            Header::PresenceChanged {
                user_id: *user_id,
                online: *online,
            },
            None,
        ),
        BusMessage::CallChanged { call_id } => (Header::CallChanged { call_id: *call_id }, None),
        BusMessage::SessionsEnded { user_id } => {
            (Header::SessionsEnded { user_id: *user_id }, None)
        }
    };
    let header = serde_json::to_string(&header).unwrap_or_default();
    let mut bytes =
        Vec::with_capacity(origin.len() + header.len() + 2 + payload.map_or(0, |p| p.len()));
    bytes.extend_from_slice(origin.as_bytes());
    bytes.push(b'@');
    bytes.extend_from_slice(chrono::Utc::now().timestamp_millis().to_string().as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(header.as_bytes());
    bytes.push(b'\n');
    if let Some(payload) = payload {
        bytes.extend_from_slice(payload.as_bytes());
    }
    bytes
}

/// The origin, when it was sent (if it says) and the message, or `None` for
/// anything malformed.
fn decode(bytes: &[u8]) -> Option<(&str, Option<i64>, BusMessage)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (tag, rest) = text.split_once('\n')?;
    let (origin, sent) = match tag.split_once('@') {
        Some((origin, sent)) => (origin, sent.parse::<i64>().ok()),
        None => (tag, None),
    };
    let (header, payload) = rest.split_once('\n')?;
    let message = match serde_json::from_str::<Header>(header).ok()? {
        Header::Event { topic, seq } => BusMessage::Event {
            topic: topic.parse::<Topic>().ok()?,
            seq,
            payload: Arc::from(payload),
        },
        Header::MemberRemoved {
            conversation_id,
            user_id,
        } => BusMessage::MemberRemoved {
            conversation_id,
            user_id,
        },
        Header::ConversationDeleted { conversation_id } => {
            BusMessage::ConversationDeleted { conversation_id }
        }
        Header::TokenRevoked { user_id, jti } => BusMessage::TokenRevoked { user_id, jti },
        Header::PresenceChanged { user_id, online } => {
            BusMessage::PresenceChanged { user_id, online }
        }
        Header::CallChanged { call_id } => BusMessage::CallChanged { call_id },
        Header::SessionsEnded { user_id } => BusMessage::SessionsEnded { user_id },
    };
    Some((origin, sent, message))
}

pub struct RedisBus {
    origin: Arc<str>,
    local: Arc<dyn Deliver>,
    queue: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl RedisBus {
    /// Subscribes to the bus channel (waiting until the subscription is live,
    /// so nothing published after start-up is missed) and starts the publisher.
    pub async fn start(
        client: redis::Client,
        connection: ConnectionManager,
        instance_id: &str,
        keys: &RedisKeys,
        local: Arc<dyn Deliver>,
    ) -> redis::RedisResult<RedisBus> {
        let origin: Arc<str> = Arc::from(instance_id);
        let channel: Arc<str> = Arc::from(keys.key("bus"));
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&*channel).await?;
        tokio::spawn(listen(
            client,
            pubsub,
            Arc::clone(&channel),
            Arc::clone(&origin),
            Arc::clone(&local),
        ));
        let (queue, receiver) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(publish_loop(
            connection,
            channel,
            receiver,
            Arc::clone(&dropped),
        ));
        Ok(RedisBus {
            origin,
            local,
            queue,
            dropped,
        })
    }
}

impl Bus for RedisBus {
    fn publish(&self, message: BusMessage) {
        self.local.deliver(&message);
        if self.queue.try_send(encode(&self.origin, &message)).is_err() {
            BUS_STATS.dropped.fetch_add(1, Ordering::Relaxed);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "bus queue full: messages for other instances dropped"
                );
            }
        }
    }
}

async fn publish_loop(
    mut connection: ConnectionManager,
    channel: Arc<str>,
    mut queue: mpsc::Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(PIPELINE_MAX);
    while queue.recv_many(&mut batch, PIPELINE_MAX).await > 0 {
        let mut pipe = redis::pipe();
        for message in &batch {
            pipe.cmd("PUBLISH")
                .arg(&*channel)
                .arg(message.as_slice())
                .ignore();
        }
        if let Err(error) = pipe.query_async::<()>(&mut connection).await {
            dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            BUS_STATS
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(%error, lost = batch.len(), "publishing to Redis failed");
        } else {
            BUS_STATS
                .published
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        batch.clear();
    }
}

async fn listen(
    client: redis::Client,
    mut pubsub: redis::aio::PubSub,
    channel: Arc<str>,
    origin: Arc<str>,
    local: Arc<dyn Deliver>,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                match decode(message.get_payload_bytes()) {
                    Some((from, _, _)) if from == &*origin => {}
                    Some((_, sent, message)) => {
                        BUS_STATS.received.fetch_add(1, Ordering::Relaxed);
                        if let Some(sent) = sent {
                            let lag = chrono::Utc::now().timestamp_millis() - sent;
                            metrics::histogram!("chatterly_bus_lag_seconds")
                                .record(lag.max(0) as f64 / 1000.0);
                        }
                        local.deliver(&message)
                    }
                    None => tracing::warn!("malformed message on the bus ignored"),
                }
            }
        }
        tracing::warn!("lost the Redis bus subscription; reconnecting");
        pubsub = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match client.get_async_pubsub().await {
                Ok(mut fresh) => match fresh.subscribe(&*channel).await {
                    Ok(()) => break fresh,
                    Err(error) => tracing::warn!(%error, "re-subscribing to the bus failed"),
                },
                Err(error) => tracing::warn!(%error, "reconnecting to Redis failed"),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_through_the_wire_format() {
        let messages = [
            BusMessage::Event {
                topic: Topic::Conversation(9),
                seq: Some(5),
                payload: Arc::from("{\"type\":\"new_message\",\"x\":\"a\\nb\"}"),
            },
            BusMessage::Event {
                topic: Topic::Presence,
                seq: None,
                payload: Arc::from("{}"),
            },
            BusMessage::MemberRemoved {
                conversation_id: 9,
                user_id: 3,
            },
            BusMessage::ConversationDeleted { conversation_id: 9 },
            BusMessage::TokenRevoked {
                user_id: 3,
                jti: "abc".into(),
            },
            BusMessage::PresenceChanged {
                user_id: 3,
                online: true,
            },
            BusMessage::SessionsEnded { user_id: 3 },
        ];
        for message in messages {
            let bytes = encode("instance-1", &message);
            let (origin, sent, decoded) = decode(&bytes).expect("decodes");
            assert_eq!(origin, "instance-1");
            assert!(sent.is_some_and(|ms| ms > 0));
            assert_eq!(decoded, message);
        }
        // The format before the send time: still read.
        let (origin, sent, _) =
            decode(b"old-instance\n{\"k\":\"call_changed\",\"call_id\":4}\n").expect("decodes");
        assert_eq!((origin, sent), ("old-instance", None));
        assert!(decode(b"garbage").is_none());
        assert!(decode(b"o\n{\"k\":\"event\",\"topic\":\"room:1\",\"seq\":null}\n{}").is_none());
    }
}
