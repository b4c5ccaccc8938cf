//! One socket's task: reads client commands, writes frames from its outbox,
//! sends the 3-second heartbeat, and runs the channels' subscribe/unsubscribe
//! hooks. Its state is a few small fields; everything shared lives in the hub.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use chatterly_store::{Id, User};
use futures::SinkExt;
use serde_json::json;
use tokio::sync::mpsc;

use super::hub::{frame_prefix, CloseReason, Connection, Outgoing};
use super::protocol::{self, Channel, Command};
use super::Cable;
use crate::bus::Topic;
use crate::domain::auth::Identity;
use crate::domain::Domain;

/// How long a typing indicator lasts without a fresh `typing`.
const TYPING_EXPIRES: Duration = Duration::from_secs(8);
/// Most frames written before one flush.
const WRITE_BATCH: usize = 64;
/// How often a presence ping may write `last_seen_at`.
const LAST_SEEN_EVERY: Duration = Duration::from_secs(300);
/// Messages per catch-up page.
const CATCH_UP_PAGE: u32 = 200;
/// How long a closing socket may take to write its `disconnect` frame; a
/// client that does not read by then is dropped without it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

struct Subscription {
    identifier: Arc<str>,
    channel: Channel,
    /// After a catch-up, the highest `seq` already sent: live `new_message`
    /// events at or below it are duplicates.
    sent_up_to: Option<i64>,
}

struct Session {
    cable: Arc<Cable>,
    connection: Arc<Connection>,
    identity: Identity,
    user: User,
    subscriptions: Vec<Subscription>,
    /// Conversations this socket said it is typing in, and since when.
    typing: Vec<(Id, Instant)>,
    /// Malformed frames so far; too many close the socket.
    garbage: u32,
    /// Token bucket for channel actions.
    allowance: f64,
    refilled: Instant,
    /// When presence last wrote `last_seen_at` for this socket.
    last_seen_written: Instant,
}

/// Why the loop ended.
enum End {
    /// The client went away (or the socket failed).
    Gone,
    /// The server closes it.
    Close(CloseReason),
}

fn text(frame: String) -> Message {
    Message::Text(Utf8Bytes::from(frame))
}

pub async fn run(mut socket: WebSocket, cable: Arc<Cable>, identity: Identity, user: User) {
    let (connection, mut outbox) = cable.hub.connect(
        identity.user_id,
        &identity.jti,
        cable.options.outbox_capacity,
    );
    let mut session = Session {
        allowance: f64::from(cable.options.action_burst),
        refilled: Instant::now(),
        last_seen_written: Instant::now(),
        cable,
        connection,
        identity,
        user,
        subscriptions: Vec::new(),
        typing: Vec::new(),
        garbage: 0,
    };
    let end = if socket.send(text(protocol::welcome())).await.is_ok() {
        session.serve(&mut socket, &mut outbox).await
    } else {
        End::Gone
    };
    if let End::Close(reason) = end {
        let bye = protocol::disconnect(reason.wire_reason(), reason.reconnect());
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            socket.send(text(bye)).await?;
            socket.send(Message::Close(None)).await
        })
        .await;
    }
    session.finish().await;
}

/// Runs a write unless the hub closes the socket meanwhile. A client that
/// stops reading blocks writes once the kernel buffers are full; without this
/// its task would wait forever and never act on `slow_consumer`.
async fn guarded<T>(
    connection: &Connection,
    write: impl Future<Output = Result<T, axum::Error>>,
) -> Result<T, End> {
    tokio::select! {
        biased;
        result = write => result.map_err(|_| End::Gone),
        reason = connection.closed() => Err(End::Close(reason)),
    }
}

impl Session {
    fn domain(&self) -> &Domain {
        &self.cable.domain
    }

    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        outbox: &mut mpsc::Receiver<Outgoing>,
    ) -> End {
        let mut heartbeat = tokio::time::interval(self.cable.options.ping_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let connection = Arc::clone(&self.connection);
        loop {
            tokio::select! {
                biased;
                reason = connection.closed() => return End::Close(reason),
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(frame))) => {
                        // Boxed: handling a command (subscribe, catch-up, actions) is
                        // rare next to waiting, and inline its future would size the
                        // state of every idle socket's task.
                        if let Err(end) = Box::pin(self.on_frame(socket, frame.as_str())).await {
                            return end;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        if let Err(end) = self.on_garbage("binary frame") {
                            return end;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return End::Gone,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Err(error)) => {
                        tracing::debug!(%error, "socket read failed");
                        return End::Gone;
                    }
                },
                item = outbox.recv() => {
                    let Some(item) = item else { return End::Gone };
                    let batch = self.write_batch(socket, outbox, item);
                    if let Err(end) = guarded(&connection, batch).await {
                        return end;
                    }
                }
                _ = heartbeat.tick() => {
                    let now = chrono::Utc::now().timestamp();
                    let ping = socket.send(text(protocol::ping(now)));
                    if let Err(end) = guarded(&connection, ping).await {
                        return end;
                    }
                    self.expire_typing();
                }
            }
        }
    }

    /// Writes `first` and whatever else is already queued, then flushes once.
    async fn write_batch(
        &mut self,
        socket: &mut WebSocket,
        outbox: &mut mpsc::Receiver<Outgoing>,
        first: Outgoing,
    ) -> Result<(), axum::Error> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(item) = next.take() {
            if let Some(frame) = self.accept(item) {
                socket.feed(Message::Text(frame)).await?;
                written += 1;
            }
            if written < WRITE_BATCH {
                next = outbox.try_recv().ok();
            }
        }
        socket.flush().await
    }

    /// What of an outbox item goes on the wire.
    fn accept(&mut self, item: Outgoing) -> Option<Utf8Bytes> {
        match item {
            Outgoing::Frame(shared) => {
                if let Some((conversation_id, seq)) = shared.seq {
                    let duplicate = self.subscriptions.iter().any(|s| {
                        matches!(s.channel, Channel::Conversation { conversation_id: id, .. } if id == conversation_id)
                            && s.sent_up_to.is_some_and(|sent| seq <= sent)
                    });
                    if duplicate {
                        return None;
                    }
                }
                Some(shared.frame.clone())
            }
            Outgoing::Ended(identifier) => {
                self.subscriptions.retain(|s| s.identifier != identifier);
                None
            }
        }
    }

    fn on_garbage(&mut self, what: &str) -> Result<(), End> {
        self.garbage += 1;
        tracing::info!(
            user_id = self.identity.user_id,
            what,
            "malformed frame from a client"
        );
        if self.garbage >= self.cable.options.max_garbage_frames {
            return Err(End::Close(CloseReason::InvalidRequest));
        }
        Ok(())
    }

    async fn on_frame(&mut self, socket: &mut WebSocket, frame: &str) -> Result<(), End> {
        let command = match protocol::parse_command(frame) {
            Ok(command) => command,
            Err(error) => return self.on_garbage(&error.to_string()),
        };
        match command {
            Command::Subscribe { identifier } => self.subscribe(socket, identifier).await,
            Command::Unsubscribe { identifier } => {
                if let Some(index) = self
                    .subscriptions
                    .iter()
                    .position(|s| *s.identifier == *identifier)
                {
                    let subscription = self.subscriptions.swap_remove(index);
                    self.unsubscribed(&subscription).await;
                }
                Ok(())
            }
            Command::Message { identifier, data } => self.perform(socket, &identifier, &data).await,
        }
    }

    async fn send(&self, socket: &mut WebSocket, frame: String) -> Result<(), End> {
        guarded(&self.connection, socket.send(text(frame))).await
    }

    async fn subscribe(&mut self, socket: &mut WebSocket, identifier: String) -> Result<(), End> {
        if self
            .subscriptions
            .iter()
            .any(|s| *s.identifier == *identifier)
        {
            // The client retries subscribe until confirmed: duplicates are normal.
            return Ok(());
        }
        let channel = protocol::parse_identifier(&identifier);
        let allowed = match channel {
            None => false,
            Some(_) if self.subscriptions.len() >= self.cable.options.max_subscriptions => false,
            Some(Channel::Conversation {
                conversation_id, ..
            }) => self
                .domain()
                .may_subscribe_conversation(&self.identity, conversation_id)
                .await
                .is_ok(),
            Some(_) => true,
        };
        let Some(channel) = channel.filter(|_| allowed) else {
            return self.send(socket, protocol::reject(&identifier)).await;
        };
        let identifier: Arc<str> = Arc::from(identifier);
        let topic = match channel {
            Channel::Conversation {
                conversation_id, ..
            } => Topic::Conversation(conversation_id),
            Channel::Presence => Topic::Presence,
            Channel::User => Topic::User(self.identity.user_id),
            Channel::Calls => Topic::Calls(self.identity.user_id),
        };
        // Stream first, then confirm (contract 6.5): nothing published from here
        // on is missed.
        self.cable
            .hub
            .subscribe(topic, &identifier, &self.connection);
        self.subscriptions.push(Subscription {
            identifier: Arc::clone(&identifier),
            channel,
            sent_up_to: None,
        });
        if let Channel::Presence = channel {
            let online = self.domain().presence_join(&self.user).await;
            let roster = json!({ "type": "initial_presence", "online_user_ids": online });
            self.send(socket, protocol::data(&identifier, &roster))
                .await?;
        }
        self.send(socket, protocol::confirm(&identifier)).await?;
        if let Channel::Conversation {
            conversation_id,
            since_seq: Some(since_seq),
        } = channel
        {
            self.catch_up(socket, &identifier, conversation_id, since_seq)
                .await?;
        }
        Ok(())
    }

    /// Sends every message after `since_seq`, page by page; live events queued
    /// meanwhile are de-duplicated by `seq` when they are written.
    async fn catch_up(
        &mut self,
        socket: &mut WebSocket,
        identifier: &Arc<str>,
        conversation_id: Id,
        since_seq: i64,
    ) -> Result<(), End> {
        let prefix = frame_prefix(identifier);
        let mut after = since_seq;
        loop {
            let page = match self
                .domain()
                .catch_up(&self.identity, conversation_id, after, CATCH_UP_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, conversation_id, "catch-up failed");
                    break;
                }
            };
            let full = page.len() == CATCH_UP_PAGE as usize;
            for message in &page {
                let payload = Domain::new_message_payload(message);
                let frame = text(format!("{prefix}{payload}}}"));
                guarded(&self.connection, socket.feed(frame)).await?;
                after = after.max(message.seq);
            }
            guarded(&self.connection, socket.flush()).await?;
            if !full {
                break;
            }
        }
        if let Some(subscription) = self
            .subscriptions
            .iter_mut()
            .find(|s| s.identifier == *identifier)
        {
            subscription.sent_up_to = Some(after);
        }
        Ok(())
    }

    async fn unsubscribed(&mut self, subscription: &Subscription) {
        let hub = &self.cable.hub;
        match subscription.channel {
            Channel::Conversation {
                conversation_id, ..
            } => {
                hub.unsubscribe(
                    Topic::Conversation(conversation_id),
                    &subscription.identifier,
                    self.connection.id,
                );
                self.stop_typing(conversation_id);
            }
            Channel::Presence => {
                hub.unsubscribe(
                    Topic::Presence,
                    &subscription.identifier,
                    self.connection.id,
                );
                self.cable.domain.presence_leave(&self.user).await;
            }
            Channel::User => hub.unsubscribe(
                Topic::User(self.identity.user_id),
                &subscription.identifier,
                self.connection.id,
            ),
            Channel::Calls => hub.unsubscribe(
                Topic::Calls(self.identity.user_id),
                &subscription.identifier,
                self.connection.id,
            ),
        }
    }

    fn take_action_token(&mut self) -> bool {
        let options = &self.cable.options;
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.allowance = (self.allowance + elapsed * f64::from(options.actions_per_second))
            .min(f64::from(options.action_burst));
        if self.allowance >= 1.0 {
            self.allowance -= 1.0;
            true
        } else {
            false
        }
    }

    async fn perform(
        &mut self,
        socket: &mut WebSocket,
        identifier: &str,
        data: &str,
    ) -> Result<(), End> {
        let Some(channel) = self
            .subscriptions
            .iter()
            .find(|s| *s.identifier == *identifier)
            .map(|s| s.channel)
        else {
            tracing::debug!(
                identifier,
                "action for an identifier that is not subscribed"
            );
            return Ok(());
        };
        let Some((action, args)) = protocol::parse_action(data) else {
            return self.on_garbage("action data is not a JSON object with an action");
        };
        if self.cable.options.actions_per_second > 0 && !self.take_action_token() {
            let warning = json!({
                "error": "rate_limit",
                "message": format!("Too many {action} requests. Slow down."),
            });
            return self
                .send(socket, protocol::data(identifier, &warning))
                .await;
        }
        match (channel, action.as_str()) {
            (
                Channel::Conversation {
                    conversation_id, ..
                },
                "typing",
            ) => {
                if self
                    .domain()
                    .typing(&self.user, conversation_id, true)
                    .await
                    .is_ok()
                {
                    self.typing.retain(|(id, _)| *id != conversation_id);
                    self.typing.push((conversation_id, Instant::now()));
                }
            }
            (
                Channel::Conversation {
                    conversation_id, ..
                },
                "stop_typing",
            ) => {
                if self
                    .domain()
                    .typing(&self.user, conversation_id, false)
                    .await
                    .is_ok()
                {
                    self.typing.retain(|(id, _)| *id != conversation_id);
                }
            }
            (
                Channel::Conversation {
                    conversation_id, ..
                },
                "mark_read" | "mark_delivered",
            ) => {
                let domain = &self.cable.domain;
                super::read_state::perform(domain, &self.identity, conversation_id, &action, &args)
                    .await;
            }
            (Channel::Presence, "ping") => {
                // last_seen_at is coarse (contract 10.9): one write per few minutes.
                if self.last_seen_written.elapsed() >= LAST_SEEN_EVERY {
                    self.last_seen_written = Instant::now();
                    self.domain().presence_ping(&self.user).await;
                }
            }
            (Channel::Calls, action) => {
                if !super::calls::perform(&self.cable.domain, &self.identity, action, data).await {
                    tracing::debug!(action, "unknown call action ignored");
                }
            }
            (_, action) => tracing::debug!(action, "unknown action ignored"),
        }
        Ok(())
    }

    fn stop_typing(&mut self, conversation_id: Id) {
        if let Some(index) = self
            .typing
            .iter()
            .position(|(id, _)| *id == conversation_id)
        {
            self.typing.swap_remove(index);
            self.cable
                .domain
                .publish_typing(&self.user, conversation_id, false);
        }
    }

    /// Typing indicators end by themselves when not refreshed.
    fn expire_typing(&mut self) {
        let now = Instant::now();
        let expired: Vec<Id> = self
            .typing
            .iter()
            .filter(|(_, since)| now.duration_since(*since) >= TYPING_EXPIRES)
            .map(|(id, _)| *id)
            .collect();
        for conversation_id in expired {
            self.stop_typing(conversation_id);
        }
    }

    /// Runs every subscription's unsubscribe hook and leaves the hub.
    async fn finish(&mut self) {
        for subscription in std::mem::take(&mut self.subscriptions) {
            self.unsubscribed(&subscription).await;
        }
        self.cable.hub.disconnect(&self.connection);
    }
}
