//! Read state (beyond the reference): read positions, unread and mention
//! counts, read receipts with a privacy switch, delivery in direct
//! conversations, and the mentions list.
//!
//! Every live event here goes to user streams (`user:{id}`, the UserChannel),
//! not to the conversation stream: the gateway hands a conversation-stream
//! frame to every subscriber alike, and receipts must reach only the members
//! entitled to them (a member with receipts off sees no one's). User streams
//! also reach devices that have the conversation closed, which is where
//! badges and ticks in a conversation list need them.

use std::collections::HashMap;

use chatterly_store::{ConversationKind, Id, InboxEntry, MarkKind, Marked, Receipt};

use super::auth::Identity;
use super::events::Event;
use super::{Domain, DomainError, DomainResult};
use crate::bus::Topic;
use crate::views::inbox::{ConversationList, InboxParts};
use crate::views::{format_timestamp, ConversationView, MessagePage, ReadStateView, ReceiptView};

/// Conversations up to this many members get live `read_receipt` events; in
/// larger ones each mark would fan out to too many streams, and receipts
/// are read on demand (`GET …/receipts`).
pub const LIVE_RECEIPTS_MAX_MEMBERS: usize = 100;

impl Domain {
    /// Moves the caller's read position to `seq` (`None`: the newest
    /// message), never back. Their other devices get `conversation_read`;
    /// other members who take receipts get `read_receipt` (if the caller
    /// sends receipts).
    pub async fn mark_read(
        &self,
        identity: &Identity,
        conversation_id: Id,
        seq: Option<i64>,
    ) -> DomainResult<ReadStateView> {
        self.mark(identity, conversation_id, MarkKind::Read, seq)
            .await
    }

    /// The caller's devices received every message up to `seq` (`None`: the
    /// newest). In a direct conversation the other member gets
    /// `message_delivered`.
    pub async fn mark_delivered(
        &self,
        identity: &Identity,
        conversation_id: Id,
        seq: Option<i64>,
    ) -> DomainResult<ReadStateView> {
        self.mark(identity, conversation_id, MarkKind::Delivered, seq)
            .await
    }

    async fn mark(
        &self,
        identity: &Identity,
        conversation_id: Id,
        kind: MarkKind,
        seq: Option<i64>,
    ) -> DomainResult<ReadStateView> {
        self.member_of(identity, conversation_id).await?;
        if seq.is_some_and(|s| s < 0) {
            return Err(DomainError::invalid(
                "Seq must be greater than or equal to 0",
            ));
        }
        let marked = self
            .store
            .mark(
                conversation_id,
                identity.user_id,
                kind,
                seq,
                chatterly_store::now(),
            )
            .await?;
        let (state, conversation_kind, read_moved, delivered_moved) = match marked {
            Marked::Beyond { last_seq } => {
                return Err(DomainError::invalid(format!(
                    "Seq must be at most the conversation's last seq ({last_seq})"
                )))
            }
            Marked::Applied {
                state,
                kind,
                read_moved,
                delivered_moved,
            } => (state, kind, read_moved, delivered_moved),
        };
        let view = ReadStateView::from(&state);
        if read_moved {
            self.publish(
                Topic::User(identity.user_id),
                Event::ConversationRead { state: &view },
            );
        }
        let direct = conversation_kind == ConversationKind::Direct;
        if read_moved || (direct && delivered_moved) {
            // The write has committed; a failure to tell others only costs
            // them the live update, never the answer.
            if let Err(error) = self
                .tell_members(identity.user_id, &view, direct, read_moved, delivered_moved)
                .await
            {
                tracing::warn!(%error, conversation_id, "read state fan-out failed");
            }
        }
        Ok(view)
    }

    /// `read_receipt` to each other member who takes receipts (when the
    /// reader sends them, in conversations small enough), and in a direct
    /// conversation `message_delivered` to the other member.
    async fn tell_members(
        &self,
        reader: Id,
        state: &ReadStateView,
        direct: bool,
        read_moved: bool,
        delivered_moved: bool,
    ) -> DomainResult<()> {
        let receipts = self
            .store
            .receipts(
                state.conversation_id,
                Some(LIVE_RECEIPTS_MAX_MEMBERS as u32 + 1),
            )
            .await?;
        let others = || receipts.iter().filter(|r| r.user_id != reader);
        if direct && delivered_moved {
            self.publish_to(
                others().map(|r| Topic::User(r.user_id)),
                Event::MessageDelivered {
                    conversation_id: state.conversation_id,
                    user_id: reader,
                    last_delivered_seq: state.last_delivered_seq,
                },
            );
        }
        let sends_receipts = receipts
            .iter()
            .any(|r| r.user_id == reader && r.read_receipts);
        if read_moved && sends_receipts && receipts.len() <= LIVE_RECEIPTS_MAX_MEMBERS {
            let read_at = state.read_at.as_ref().map(format_timestamp);
            self.publish_to(
                others()
                    .filter(|r| r.read_receipts)
                    .map(|r| Topic::User(r.user_id)),
                Event::ReadReceipt {
                    conversation_id: state.conversation_id,
                    user_id: reader,
                    last_read_seq: state.last_read_seq,
                    read_at: read_at.as_deref().unwrap_or_default(),
                },
            );
        }
        Ok(())
    }

    /// Every member's positions (members only). A member's `last_read_seq`
    /// shows only if both they and the caller have read receipts on; the
    /// caller's own always shows.
    pub async fn receipts(
        &self,
        identity: &Identity,
        conversation_id: Id,
    ) -> DomainResult<Vec<ReceiptView>> {
        self.member_of(identity, conversation_id).await?;
        let receipts = self.store.receipts(conversation_id, None).await?;
        let caller_takes = receipts
            .iter()
            .any(|r: &Receipt| r.user_id == identity.user_id && r.read_receipts);
        Ok(receipts
            .iter()
            .map(|r| {
                let visible = r.user_id == identity.user_id || (caller_takes && r.read_receipts);
                ReceiptView::new(r, visible)
            })
            .collect())
    }

    /// The messages that mention the caller, newest first, in conversations
    /// they are a member of; `cursor` pages back (`id < cursor`).
    pub async fn mentions(
        &self,
        identity: &Identity,
        cursor: Option<Id>,
        limit: Option<i64>,
    ) -> DomainResult<MessagePage> {
        let limit = self.limits.page_size(limit);
        let messages = self
            .store
            .mentions_for(identity.user_id, cursor, limit)
            .await?;
        let next_cursor = if messages.len() == limit as usize {
            messages.last().map(|m| m.id)
        } else {
            None
        };
        Ok(MessagePage {
            messages: self.render_messages(&messages).await?,
            next_cursor,
        })
    }

    /// Rows of the conversation list (or the one row of a show), ready to
    /// serialize: the entries carry their members' ids; the users (members
    /// and newest messages' authors together, each once), the newest
    /// messages' reactions and calls are loaded for all rows at once. The
    /// same JSON as [`Domain::render_inbox`]'s views, without building them.
    pub(super) async fn conversation_list(
        &self,
        entries: Vec<InboxEntry>,
    ) -> DomainResult<ConversationList> {
        let latest = || entries.iter().filter_map(|e| e.latest.as_ref());
        let mut user_ids: Vec<Id> = entries
            .iter()
            .flat_map(|e| e.member_ids.iter().copied())
            .chain(latest().map(|m| m.user_id))
            .collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let (
            users,
            super::MessageParts {
                reactions,
                calls,
                attachments,
            },
        ) = futures::try_join!(
            async { Ok(self.store.users_by_ids(&user_ids).await?) },
            self.message_parts(latest())
        )?;
        let parts = InboxParts {
            users,
            reactions,
            calls,
            attachments,
        };
        ConversationList::new(entries, parts, |id| self.online(id))
            .map_err(|e| DomainError::Internal(format!("rendering conversations: {e}")))
    }

    /// Conversation views with the member's read state and newest message:
    /// members and messages are loaded for all rows at once.
    pub(super) async fn render_inbox(
        &self,
        mut entries: Vec<InboxEntry>,
    ) -> DomainResult<Vec<ConversationView>> {
        let ids: Vec<Id> = entries.iter().map(|e| e.conversation.id).collect();
        let latest: Vec<_> = entries.iter_mut().filter_map(|e| e.latest.take()).collect();
        let (mut members, latest) = futures::try_join!(
            self.members_by_conversation(&ids),
            self.render_messages(&latest)
        )?;
        let mut latest: HashMap<Id, _> =
            latest.into_iter().map(|m| (m.conversation_id, m)).collect();
        Ok(entries
            .iter()
            .map(|e| {
                let id = e.conversation.id;
                ConversationView::new(&e.conversation, members.remove(&id).unwrap_or_default())
                    .with_read_state(&e.read, latest.remove(&id))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use chatterly_store::Store;

    use crate::domain::messages::SendMessage;
    use crate::domain::testing::world;
    use crate::domain::NewConversationRequest;

    fn text(content: &str) -> SendMessage {
        SendMessage {
            content: Some(content.into()),
            ..SendMessage::default()
        }
    }

    /// The list and show answers render exactly what the owned views (which
    /// create answers and `new_conversation` events use) render, on a real
    /// store: mentions, a reaction, a deleted newest message, a call log, an
    /// empty conversation and a direct one.
    #[tokio::test]
    async fn list_and_show_render_what_the_owned_views_render() {
        let w = world().await;
        let [rana, omar, lina, zaid] = &w.users;
        let domain = &w.domain;
        let crew = w.conversation_id;
        domain
            .send_message(omar, crew, text("@rana look \"here\" </b>"))
            .await
            .expect("sent");
        let liked = domain
            .send_message(lina, crew, text("héllo\n🙂"))
            .await
            .expect("sent")
            .message;
        domain
            .add_reaction(rana, Some(liked.id), Some("👍".into()))
            .await
            .expect("reacted");
        let (direct, _) = domain
            .create_conversation(
                rana,
                NewConversationRequest {
                    conversation_type: Some("direct".into()),
                    member_ids: vec![zaid.user_id],
                    ..NewConversationRequest::default()
                },
            )
            .await
            .expect("direct");
        let gone = domain
            .send_message(zaid, direct.id, text("soon deleted"))
            .await
            .expect("sent")
            .message;
        domain
            .send_message(zaid, direct.id, text("stays"))
            .await
            .expect("sent");
        domain
            .delete_message(zaid, direct.id, gone.id)
            .await
            .expect("deleted");
        let (quiet, _) = domain
            .create_conversation(
                omar,
                NewConversationRequest {
                    name: Some("Quiet".into()),
                    description: Some("nothing said yet".into()),
                    member_ids: vec![rana.user_id, lina.user_id],
                    ..NewConversationRequest::default()
                },
            )
            .await
            .expect("channel");
        let call = domain
            .start_call(lina, crew, Ok(Some("video".into())))
            .await
            .expect("call");
        // Ending it writes the call log.
        domain
            .end_call_as_initiator(lina, crew, call.id)
            .await
            .expect("ended");

        for identity in &w.users {
            let entries = w.store.inbox(identity.user_id).await.expect("inbox");
            let expected =
                serde_json::to_string(&domain.render_inbox(entries).await.expect("views"))
                    .expect("serializes");
            let list = domain.list_conversations(identity).await.expect("list");
            assert_eq!(
                serde_json::to_string(&list).expect("serializes"),
                expected,
                "user {}",
                identity.user_id
            );
            for id in [crew, direct.id, quiet.id] {
                let Some(entry) = w
                    .store
                    .inbox_entry(id, identity.user_id)
                    .await
                    .expect("entry")
                else {
                    continue;
                };
                let view = domain.render_one_entry(entry).await.expect("view");
                let shown = domain.show_conversation(identity, id).await.expect("show");
                assert_eq!(
                    serde_json::to_string(&shown.first().expect("one row")).expect("serializes"),
                    serde_json::to_string(&view).expect("serializes"),
                );
            }
        }
        // The cases above all occurred: a newest message replaced after a
        // delete, a reaction, a call log, a conversation without messages.
        let list = serde_json::to_value(domain.list_conversations(rana).await.expect("list"))
            .expect("JSON");
        let rows = list.as_array().expect("rows");
        assert_eq!(rows.len(), 3);
        let row = |id| rows.iter().find(|r| r["id"] == id).expect("row");
        assert_eq!(row(direct.id)["last_message"]["content"], "stays");
        assert_eq!(row(quiet.id)["last_message"], serde_json::Value::Null);
        assert_eq!(row(crew)["last_message"]["message_type"], "call");
        assert_eq!(row(crew)["member_count"], 3);
        assert_eq!(row(crew)["mention_count"], 1);
    }
}
