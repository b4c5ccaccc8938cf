//! Rules behind the WebSocket channels (contract 6.6): who may subscribe,
//! typing, presence and catch-up. The gateway calls these; it holds no rules.

use chatterly_store::{HistoryPage, Id, User};
use serde::Serialize;

use super::auth::Identity;
use super::events::Event;
use super::{Domain, DomainError, DomainResult};
use crate::bus::{BusMessage, Topic};
use crate::views::MessageView;

/// A presence status event: no `type` key (contract 6.7).
#[derive(Serialize)]
struct PresenceStatus<'a> {
    user_id: Id,
    username: &'a str,
    status: &'a str,
}

impl Domain {
    /// The user a socket belongs to, loaded once when it connects.
    pub async fn socket_user(&self, identity: &Identity) -> DomainResult<User> {
        self.store
            .user_by_id(identity.user_id)
            .await?
            .ok_or_else(|| DomainError::Unauthenticated("nil user".into()))
    }

    /// ConversationChannel subscribe: members only.
    pub async fn may_subscribe_conversation(
        &self,
        identity: &Identity,
        conversation_id: Id,
    ) -> DomainResult<()> {
        self.member_of(identity, conversation_id).await.map(|_| ())
    }

    /// `typing` / `stop_typing`: re-checks membership, then tells the
    /// conversation. Ephemeral: nothing is written.
    pub async fn typing(
        &self,
        user: &User,
        conversation_id: Id,
        started: bool,
    ) -> DomainResult<()> {
        if self.role_of(conversation_id, user.id).await?.is_none() {
            return Err(DomainError::NotFound);
        }
        self.publish_typing(user, conversation_id, started);
        Ok(())
    }

    /// Announces typing stop without a membership check: for a socket that
    /// goes away or a typing indicator that expires.
    pub fn publish_typing(&self, user: &User, conversation_id: Id, started: bool) {
        let topic = Topic::Conversation(conversation_id);
        if started {
            let display_name = user
                .display_name
                .as_deref()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or(&user.username);
            self.publish(
                topic,
                Event::TypingStart {
                    user_id: user.id,
                    display_name,
                },
            );
        } else {
            self.publish(topic, Event::TypingStop { user_id: user.id });
        }
    }

    /// PresenceChannel subscribe: counts the connection, announces the user,
    /// and returns the roster for `initial_presence`.
    pub async fn presence_join(&self, user: &User) -> Vec<Id> {
        if self.presence.connect(user.id).await {
            self.bus.publish(BusMessage::PresenceChanged {
                user_id: user.id,
                online: true,
            });
        }
        // Every subscriber is announced, a second device too: the reference does
        // the same and clients treat a repeat as a no-op.
        self.publish_presence(user.id, &user.username, "online");
        self.touch_last_seen(user.id).await;
        self.presence.online_user_ids()
    }

    /// PresenceChannel unsubscribe or socket close: offline only when the
    /// user's last connection anywhere goes (contract 7 REC).
    pub async fn presence_leave(&self, user: &User) {
        if self.presence.disconnect(user.id).await {
            self.announce_offline(user.id, &user.username);
        }
    }

    fn announce_offline(&self, user_id: Id, username: &str) {
        self.bus.publish(BusMessage::PresenceChanged {
            user_id,
            online: false,
        });
        self.publish_presence(user_id, username, "offline");
    }

    /// Periodic presence upkeep in scale-out mode: this instance's heartbeat,
    /// and `offline` events for the users of instances that died.
    pub async fn presence_tick(&self) {
        if let Err(error) = self.presence.heartbeat().await {
            tracing::warn!(%error, "presence heartbeat failed");
        }
        match self.presence.reap_dead_instances().await {
            Ok(offline) if !offline.is_empty() => match self.store.users_by_ids(&offline).await {
                Ok(users) => {
                    for user in users {
                        self.announce_offline(user.id, &user.username);
                    }
                }
                Err(error) => tracing::warn!(%error, "could not load users gone offline"),
            },
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reaping dead instances failed"),
        }
    }

    /// PresenceChannel `ping`.
    pub async fn presence_ping(&self, user: &User) {
        self.touch_last_seen(user.id).await;
    }

    async fn touch_last_seen(&self, user_id: Id) {
        if let Err(error) = self
            .store
            .touch_last_seen(user_id, chatterly_store::now())
            .await
        {
            tracing::warn!(%error, user_id, "could not record last_seen_at");
        }
    }

    fn publish_presence(&self, user_id: Id, username: &str, status: &str) {
        let payload = serde_json::to_string(&PresenceStatus {
            user_id,
            username,
            status,
        })
        .unwrap_or_else(|_| String::from("{}"));
        self.bus.publish(BusMessage::Event {
            topic: Topic::Presence,
            seq: None,
            payload: payload.into(),
        });
    }

    /// Catch-up after a reconnect: up to `limit` messages with `seq >
    /// after_seq`, oldest first, rendered like `new_message` events.
    pub async fn catch_up(
        &self,
        identity: &Identity,
        conversation_id: Id,
        after_seq: i64,
        limit: u32,
    ) -> DomainResult<Vec<MessageView>> {
        self.member_of(identity, conversation_id).await?;
        let messages = self
            .store
            .history(conversation_id, HistoryPage::AfterSeq { after_seq, limit })
            .await?;
        self.render_messages(&messages).await
    }

    /// The `new_message` payload for a message, as live subscribers get it.
    pub fn new_message_payload(message: &MessageView) -> crate::bus::Payload {
        Event::NewMessage { message }.payload()
    }
}
