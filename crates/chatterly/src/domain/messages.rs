//! Messages (send, history, edit, soft delete) and reactions (contract 4.5,
//! 4.6), with per-conversation `seq` and idempotent sends beyond the reference.

use chatterly_store::{
    HistoryPage, Id, Inserted, Message, MessageKind, NewMessage, Role, StoreError,
    CONFLICT_ATTACHMENT, CONFLICT_REACTION,
};

use super::auth::Identity;
use super::events::Event;
use super::mentions::minus;
use super::validate::Errors;
use super::{Domain, DomainError, DomainResult};
use crate::bus::Topic;
use crate::views::{MessagePage, MessageView, ReactionView};

#[derive(Debug, Default)]
pub struct SendMessage {
    pub content: Option<String>,
    pub message_type: Option<String>,
    pub parent_message_id: Option<Id>,
    pub client_message_id: Option<String>,
    /// Uploads of the sender to attach (ATTACHMENTS_API.md).
    pub attachment_ids: Vec<Id>,
}

/// Which history to read.
#[derive(Debug, Default, Clone, Copy)]
pub struct HistoryQuery {
    /// Only messages with `id < cursor`.
    pub cursor: Option<Id>,
    /// Only messages with `seq > after_seq`, oldest first (catch-up).
    pub after_seq: Option<i64>,
    /// Page size; clamped to `1..=max_page`.
    pub limit: Option<i64>,
}

/// The result of a send: the message, and whether this call created it (a
/// retried idempotent send returns the original with `created == false`).
pub struct Sent {
    pub message: MessageView,
    pub created: bool,
}

const EMOJI_MAX: usize = 10;
const CLIENT_MESSAGE_ID_MAX: usize = 64;

impl Domain {
    fn check_content(&self, errors: &mut Errors, content: Option<&str>) {
        errors.required("Content", content);
        errors.max_chars("Content", content, self.limits.max_message_chars);
    }

    /// The users a message's mention rows name (no query for a message
    /// without mentions).
    async fn mentioned_by(&self, message: &Message) -> DomainResult<Vec<Id>> {
        if message.mentions.is_empty() && message.broadcast.is_none() {
            return Ok(Vec::new());
        }
        Ok(self.store.mention_recipients(message.id).await?)
    }

    /// A live (not deleted) message of this conversation.
    async fn message_in(&self, conversation_id: Id, message_id: Id) -> DomainResult<Message> {
        match self.store.message_by_id(message_id).await? {
            Some(m) if m.conversation_id == conversation_id && m.deleted_at.is_none() => Ok(m),
            _ => Err(DomainError::NotFound),
        }
    }

    /// Members only; non-members get 404 (contract 4.0).
    pub async fn history(
        &self,
        identity: &Identity,
        conversation_id: Id,
        query: HistoryQuery,
    ) -> DomainResult<MessagePage> {
        self.member_of(identity, conversation_id).await?;
        let limit = self.limits.page_size(query.limit);
        let page = match (query.after_seq, query.cursor) {
            (Some(_), Some(_)) => {
                return Err(DomainError::bad_request(
                    "cursor and after_seq cannot be combined",
                ))
            }
            (Some(after_seq), None) => HistoryPage::AfterSeq { after_seq, limit },
            (None, before_id) => HistoryPage::Before { before_id, limit },
        };
        let messages = self.store.history(conversation_id, page).await?;
        let full = messages.len() == limit as usize;
        // Paging back continues from the oldest message; catching up continues
        // from the newest (as a seq, since that is what `after_seq` takes).
        let next_cursor = match page {
            _ if !full => None,
            HistoryPage::Before { .. } => messages.first().map(|m| m.id),
            HistoryPage::AfterSeq { .. } => messages.last().map(|m| m.seq),
        };
        Ok(MessagePage {
            messages: self.render_messages(&messages).await?,
            next_cursor,
        })
    }

    /// Members only. Assigns the conversation's next `seq`; with a
    /// `client_message_id` the sender already used, returns that message and
    /// writes nothing.
    pub async fn send_message(
        &self,
        identity: &Identity,
        conversation_id: Id,
        request: SendMessage,
    ) -> DomainResult<Sent> {
        let role = self.member_of(identity, conversation_id).await?;
        if let Some(rate) = &self.rate {
            rate.check_send(identity.user_id)?;
        }
        let mut errors = Errors::default();
        // Repeats of an id attach it once.
        let mut attachment_ids = request.attachment_ids;
        let mut seen = std::collections::HashSet::new();
        attachment_ids.retain(|id| seen.insert(*id));
        let max_attachments = self.limits.max_attachments_per_message;
        if attachment_ids.len() > max_attachments {
            errors.add(format!(
                "Attachments are too many (maximum is {max_attachments})"
            ));
        }
        let with_files = !attachment_ids.is_empty();
        // A message with files may have no text.
        let content = match request.content {
            None if with_files => Some(String::new()),
            content => content,
        };
        if with_files {
            errors.max_chars("Content", content.as_deref(), self.limits.max_message_chars);
        } else {
            self.check_content(&mut errors, content.as_deref());
        }
        // Clients send text, image or file; call logs are written by the server.
        let kind = match request.message_type.as_deref() {
            None => Some(MessageKind::Text),
            Some(text) => match MessageKind::parse(text) {
                Some(MessageKind::Call) | None => {
                    errors.add("Message type is not included in the list");
                    None
                }
                Some(MessageKind::Text) if with_files => {
                    errors.add("Message type must be image or file when attachments are sent");
                    None
                }
                kind => kind,
            },
        };
        if let Some(client_id) = &request.client_message_id {
            errors.required("Client message id", Some(client_id));
            errors.max_chars("Client message id", Some(client_id), CLIENT_MESSAGE_ID_MAX);
        }
        errors.into_result()?;
        if let Some(parent_id) = request.parent_message_id {
            // Contract 10.11: a thread parent must be in the same conversation.
            match self.store.message_by_id(parent_id).await? {
                Some(parent) if parent.conversation_id == conversation_id => {}
                _ => {
                    return Err(DomainError::invalid(
                        "Parent message must be in this conversation",
                    ))
                }
            }
        }
        let kind = match kind {
            Some(kind) if with_files => {
                let retry = request.client_message_id.is_some();
                let attachments = self
                    .attachments_to_send(identity, &attachment_ids, retry)
                    .await?;
                // Unless the client said: images if every file is one.
                if request.message_type.is_some() {
                    Some(kind)
                } else if attachments
                    .iter()
                    .all(|a| crate::media::is_raster_image(&a.content_type))
                {
                    Some(MessageKind::Image)
                } else {
                    Some(MessageKind::File)
                }
            }
            kind => kind,
        };
        let (Some(content), Some(kind)) = (content, kind) else {
            return Err(DomainError::Internal(
                "validated message lost a field".into(),
            ));
        };
        let mentions = self
            .resolve_mentions(identity.user_id, role, conversation_id, &content, None)
            .await?;
        let notified = mentions.notified.clone();
        let inserted = self
            .store
            .insert_message(NewMessage {
                attachment_ids,
                conversation_id,
                user_id: identity.user_id,
                content,
                kind,
                parent_message_id: request.parent_message_id,
                call_session_id: None,
                client_message_id: request.client_message_id,
                mentions,
            })
            .await
            .map_err(|e| match e {
                // Attached or hidden since the check above (a race).
                StoreError::Conflict(CONFLICT_ATTACHMENT) => {
                    DomainError::invalid("Attachments must be uploads of yours waiting to be sent")
                }
                other => other.into(),
            })?;
        match inserted {
            Inserted::Created(message) => {
                let view = self.render_new_message(&message).await?;
                self.publish(
                    Topic::Conversation(conversation_id),
                    Event::NewMessage { message: &view },
                );
                self.publish_to(
                    notified.into_iter().map(Topic::User),
                    Event::Mention {
                        conversation_id,
                        message: &view,
                    },
                );
                Ok(Sent {
                    message: view,
                    created: true,
                })
            }
            Inserted::Existing(message) => {
                if message.conversation_id != conversation_id {
                    return Err(DomainError::invalid(
                        "Client message id has already been used",
                    ));
                }
                Ok(Sent {
                    message: self.render_message(&message).await?,
                    created: false,
                })
            }
        }
    }

    /// Author only (contract 4.5).
    pub async fn edit_message(
        &self,
        identity: &Identity,
        conversation_id: Id,
        message_id: Id,
        content: Option<String>,
    ) -> DomainResult<MessageView> {
        let role = self.member_of(identity, conversation_id).await?;
        let message = self.message_in(conversation_id, message_id).await?;
        if message.user_id != identity.user_id || message.kind == MessageKind::Call {
            return Err(DomainError::Forbidden);
        }
        let mut errors = Errors::default();
        self.check_content(&mut errors, content.as_deref());
        errors.into_result()?;
        let content = content.unwrap_or_default();
        // The edit's mentions replace the old ones: the newly mentioned hear
        // of it, those no longer mentioned lose it.
        let before = self.mentioned_by(&message).await?;
        let mentions = self
            .resolve_mentions(
                identity.user_id,
                role,
                conversation_id,
                &content,
                Some((&message, &before)),
            )
            .await?;
        let edited = self
            .store
            .edit_message(message_id, &content, &mentions, chatterly_store::now())
            .await?;
        let view = self.render_message(&edited).await?;
        self.publish(
            Topic::Conversation(conversation_id),
            Event::MessageEdited { message: &view },
        );
        self.publish_to(
            minus(&mentions.notified, &before)
                .into_iter()
                .map(Topic::User),
            Event::Mention {
                conversation_id,
                message: &view,
            },
        );
        self.publish_to(
            minus(&before, &mentions.notified)
                .into_iter()
                .map(Topic::User),
            Event::MentionRemoved {
                conversation_id,
                message_id,
            },
        );
        Ok(view)
    }

    /// The author, or an admin of the conversation (contract 4.5). Soft: the row
    /// stays, it is never served again.
    pub async fn delete_message(
        &self,
        identity: &Identity,
        conversation_id: Id,
        message_id: Id,
    ) -> DomainResult<()> {
        let role = self.member_of(identity, conversation_id).await?;
        let message = self.message_in(conversation_id, message_id).await?;
        if message.user_id != identity.user_id && role != Role::Admin {
            return Err(DomainError::Forbidden);
        }
        let mentioned = self.mentioned_by(&message).await?;
        self.store
            .soft_delete_message(message_id, chatterly_store::now())
            .await?;
        self.publish(
            Topic::Conversation(conversation_id),
            Event::MessageDeleted {
                message_id,
                conversation_id,
            },
        );
        self.publish_to(
            mentioned.into_iter().map(Topic::User),
            Event::MentionRemoved {
                conversation_id,
                message_id,
            },
        );
        Ok(())
    }

    /// Members of the message's conversation only (contract 10.11); one per
    /// (message, user, emoji).
    pub async fn add_reaction(
        &self,
        identity: &Identity,
        message_id: Option<Id>,
        emoji: Option<String>,
    ) -> DomainResult<ReactionView> {
        let message_id = message_id.ok_or(DomainError::NotFound)?;
        let message = match self.store.message_by_id(message_id).await? {
            Some(m) if m.deleted_at.is_none() => m,
            _ => return Err(DomainError::NotFound),
        };
        self.member_of(identity, message.conversation_id).await?;
        let mut errors = Errors::default();
        errors.required("Emoji", emoji.as_deref());
        errors.max_chars("Emoji", emoji.as_deref(), EMOJI_MAX);
        errors.into_result()?;
        let emoji = emoji.unwrap_or_default();
        let reaction = self
            .store
            .add_reaction(&message, identity.user_id, &emoji)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(CONFLICT_REACTION) => {
                    DomainError::invalid("User already reacted with this emoji")
                }
                other => other.into(),
            })?;
        let view = ReactionView::from(&reaction);
        self.publish(
            Topic::Conversation(message.conversation_id),
            Event::ReactionAdded { reaction: &view },
        );
        Ok(view)
    }

    /// The reaction's owner only.
    pub async fn remove_reaction(&self, identity: &Identity, reaction_id: Id) -> DomainResult<()> {
        let reaction = self
            .store
            .reaction_by_id(reaction_id)
            .await?
            .ok_or(DomainError::NotFound)?;
        if reaction.user_id != identity.user_id {
            return Err(DomainError::Forbidden);
        }
        let message = self.store.message_by_id(reaction.message_id).await?;
        if !self.store.remove_reaction(reaction_id).await? {
            return Err(DomainError::NotFound);
        }
        if let Some(message) = message {
            self.publish(
                Topic::Conversation(message.conversation_id),
                Event::ReactionRemoved {
                    reaction_id,
                    message_id: reaction.message_id,
                },
            );
        }
        Ok(())
    }
}
