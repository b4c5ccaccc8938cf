//! The only home of business rules and authorization. HTTP handlers and cable
//! channel actions both call into [`Domain`], so every rule is written once.
//! Writes go to the store in one transaction, then their events are published
//! on the bus: after commit, never before, never for a rolled-back write.

mod accounts;
pub mod admin;
mod attachments;
pub mod auth;
mod calls;
mod channels;
mod conversations;
mod error;
pub mod events;
pub mod jobs;
mod limits;
mod memberships;
mod mentions;
mod messages;
mod read_state;
mod search;
#[cfg(test)]
pub(crate) mod testing;
mod validate;

use std::collections::HashMap;
use std::sync::Arc;

use chatterly_store::{
    Attachment, CallSession, Conversation, Id, Message, MessageKind, Reaction, Role, Store, User,
};

pub use accounts::{Login, ProfileChanges, Registration};
pub use attachments::{Download, Rendition};
pub use calls::{RosterCache, Toggle};
pub use conversations::NewConversationRequest;
pub use error::{DomainError, DomainResult};
pub use limits::RateLimiter;
pub use memberships::MembershipCache;
pub use mentions::MENTIONS_MAX;
pub use messages::{HistoryQuery, SendMessage, Sent};
pub use read_state::LIVE_RECEIPTS_MAX_MEMBERS;
pub use search::SearchParams;

use crate::blobs::Blobs;
use crate::bus::Bus;
use crate::config::Limits;
use crate::ephemeral::Presence;
use crate::views::{
    attachments_by_message, reactions_by_message, AttachmentView, CallSessionSummary,
    ConversationView, MessageView, UserPublic,
};
use auth::{Identity, KnownUsers, Passwords, Revocations, Tokens};

/// Only image and file messages carry attachments (a send with attachments
/// is one of them), so only they are looked up.
/// See [`Domain::message_parts`].
pub(super) struct MessageParts {
    pub reactions: Vec<Reaction>,
    pub calls: Vec<CallSession>,
    pub attachments: Vec<Attachment>,
}

fn carries_files(kind: MessageKind) -> bool {
    matches!(kind, MessageKind::Image | MessageKind::File)
}

/// Why a disabled account's login or token is refused.
pub const ACCOUNT_DISABLED: &str = "Your account is disabled.";

pub struct Domain {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    presence: Arc<Presence>,
    tokens: Tokens,
    passwords: Arc<Passwords>,
    revocations: Revocations,
    known_users: Arc<KnownUsers>,
    memberships: Arc<MembershipCache>,
    calls: Arc<RosterCache>,
    limits: Limits,
    rate: Option<RateLimiter>,
    blobs: Arc<Blobs>,
}

pub struct DomainParts {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<Presence>,
    pub tokens: Tokens,
    pub passwords: Passwords,
    pub revocations: Revocations,
    /// Must also receive the bus messages (it evicts on them).
    pub known_users: Arc<KnownUsers>,
    /// Must also receive the bus messages (it evicts on them).
    pub memberships: Arc<MembershipCache>,
    /// Must also receive the bus messages (it evicts on them).
    pub calls: Arc<RosterCache>,
    pub limits: Limits,
    pub rate: Option<RateLimiter>,
    /// Where attachment bytes are kept.
    pub blobs: Arc<Blobs>,
}

impl Domain {
    pub fn new(parts: DomainParts) -> Domain {
        Domain {
            store: parts.store,
            bus: parts.bus,
            presence: parts.presence,
            tokens: parts.tokens,
            passwords: Arc::new(parts.passwords),
            revocations: parts.revocations,
            known_users: parts.known_users,
            memberships: parts.memberships,
            calls: parts.calls,
            limits: parts.limits,
            rate: parts.rate,
            blobs: parts.blobs,
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Periodic upkeep: store maintenance (partitions, expired revocations) and
    /// forgetting expired in-memory state.
    pub async fn maintain(&self) -> DomainResult<()> {
        let now = chatterly_store::now();
        self.store.maintain(now).await?;
        self.revocations.purge_expired(now);
        if let Some(rate) = &self.rate {
            rate.forget_idle();
        }
        Ok(())
    }

    /// The token check behind every authenticated request and socket
    /// (contract 2.5): signature, expiry, denylist, user existence, and the
    /// account not disabled.
    pub async fn authenticate(&self, token: Option<&str>) -> DomainResult<Identity> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| DomainError::Unauthenticated(auth::NO_TOKEN.into()))?;
        let identity = self.tokens.verify(token)?;
        if self
            .revocations
            .is_revoked(&*self.store, &identity.jti)
            .await?
        {
            return Err(DomainError::Unauthenticated("revoked token".into()));
        }
        let cutoff = match self.known_users.cutoff(identity.user_id) {
            Some(cutoff) => cutoff,
            None => {
                let generation = self.known_users.generation();
                match self.store.user_by_id(identity.user_id).await? {
                    None => return Err(DomainError::Unauthenticated("nil user".into())),
                    Some(user) if user.disabled_at.is_some() => {
                        return Err(DomainError::Unauthenticated(ACCOUNT_DISABLED.into()))
                    }
                    Some(user) => {
                        let cutoff = auth::token_cutoff(&user);
                        self.known_users.insert(user.id, cutoff, generation);
                        cutoff
                    }
                }
            }
        };
        // Issued before a password reset (same-second tokens survive, so a
        // login right after the reset works).
        if identity.issued_at < cutoff {
            return Err(DomainError::Unauthenticated("revoked token".into()));
        }
        Ok(identity)
    }

    /// The role of `user_id` in a conversation, or `None` if not a member
    /// (cached; see `MembershipCache`).
    async fn role_of(&self, conversation_id: Id, user_id: Id) -> DomainResult<Option<Role>> {
        Ok(self
            .memberships
            .role(&*self.store, conversation_id, user_id)
            .await?)
    }

    fn online(&self, user_id: Id) -> bool {
        self.presence.is_online(user_id)
    }

    fn user_public(&self, user: &User) -> UserPublic {
        UserPublic::new(user, self.online(user.id))
    }

    /// The members of each conversation, rendered: the memberships in one
    /// query, then each distinct user once (in a list of conversations the
    /// same people recur).
    async fn members_by_conversation(
        &self,
        ids: &[Id],
    ) -> DomainResult<HashMap<Id, Vec<UserPublic>>> {
        let pairs = self.store.member_ids_of(ids).await?;
        let mut user_ids: Vec<Id> = pairs.iter().map(|(_, user_id)| *user_id).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let users: HashMap<Id, UserPublic> = self
            .store
            .users_by_ids(&user_ids)
            .await?
            .iter()
            .map(|u| (u.id, self.user_public(u)))
            .collect();
        let mut by_conversation: HashMap<Id, Vec<UserPublic>> = HashMap::with_capacity(ids.len());
        for (conversation_id, user_id) in &pairs {
            // A user is never deleted; one missing here raced nothing.
            if let Some(user) = users.get(user_id) {
                by_conversation
                    .entry(*conversation_id)
                    .or_default()
                    .push(user.clone());
            }
        }
        Ok(by_conversation)
    }

    async fn render_conversations(
        &self,
        conversations: &[Conversation],
    ) -> DomainResult<Vec<ConversationView>> {
        let ids: Vec<Id> = conversations.iter().map(|c| c.id).collect();
        let mut by_conversation = self.members_by_conversation(&ids).await?;
        Ok(conversations
            .iter()
            .map(|c| ConversationView::new(c, by_conversation.remove(&c.id).unwrap_or_default()))
            .collect())
    }

    async fn render_conversation(
        &self,
        conversation: &Conversation,
    ) -> DomainResult<ConversationView> {
        let mut views = self
            .render_conversations(std::slice::from_ref(conversation))
            .await?;
        views.pop().ok_or_else(|| {
            DomainError::Internal("rendering a conversation produced nothing".into())
        })
    }

    /// Renders messages with their authors, reactions and attachments in a
    /// few queries, whatever the page size (calls and attachments only when
    /// the page has call logs, images or files).
    async fn render_messages(&self, messages: &[Message]) -> DomainResult<Vec<MessageView>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut author_ids: Vec<Id> = messages.iter().map(|m| m.user_id).collect();
        author_ids.sort_unstable();
        author_ids.dedup();
        let (
            authors,
            MessageParts {
                reactions,
                calls,
                attachments,
            },
        ) = futures::try_join!(
            async { Ok(self.store.users_by_ids(&author_ids).await?) },
            self.message_parts(messages.iter())
        )?;
        let mut attachments_by_message = attachments_by_message(&attachments);
        let calls: HashMap<Id, CallSessionSummary> = calls
            .iter()
            .map(|c| (c.id, CallSessionSummary::new(c)))
            .collect();
        let authors: HashMap<Id, UserPublic> = authors
            .iter()
            .map(|u| (u.id, self.user_public(u)))
            .collect();
        let mut reactions_by_message = reactions_by_message(&reactions);
        messages
            .iter()
            .map(|m| {
                let author = authors.get(&m.user_id).cloned().ok_or_else(|| {
                    DomainError::Internal(format!(
                        "author {} of message {} is missing",
                        m.user_id, m.id
                    ))
                })?;
                let reactions = reactions_by_message.remove(&m.id).unwrap_or_default();
                // A call log shows the call's live status (contract 3.4).
                let call = m.call_session_id.and_then(|id| calls.get(&id)).cloned();
                let attachments = attachments_by_message.remove(&m.id).unwrap_or_default();
                Ok(MessageView::new(m, author, reactions, call).with_attachments(attachments))
            })
            .collect()
    }

    /// The reactions, logged calls and files of `messages`, one query each,
    /// at once (none for calls or files when no message has them): what
    /// rendering messages needs besides their authors.
    pub(super) async fn message_parts<'a>(
        &self,
        messages: impl Iterator<Item = &'a Message> + Clone,
    ) -> DomainResult<MessageParts> {
        let message_ids: Vec<Id> = messages.clone().map(|m| m.id).collect();
        let call_ids: Vec<Id> = messages
            .clone()
            .filter(|m| m.kind == MessageKind::Call)
            .filter_map(|m| m.call_session_id)
            .collect();
        let with_files: Vec<Id> = messages
            .filter(|m| carries_files(m.kind))
            .map(|m| m.id)
            .collect();
        let (reactions, calls, attachments) = futures::try_join!(
            self.store.reactions_for(&message_ids),
            self.calls_by_ids(&call_ids),
            self.store.attachments_for(&with_files)
        )?;
        Ok(MessageParts {
            reactions,
            calls,
            attachments,
        })
    }

    /// Calls by id; no round trip for a page without call logs.
    async fn calls_by_ids(&self, ids: &[Id]) -> chatterly_store::StoreResult<Vec<CallSession>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.store.calls_by_ids(ids).await
    }

    /// A message written just now: it cannot have reactions yet, so only its
    /// author (and its attachments, if it may have some) is loaded.
    async fn render_new_message(&self, message: &Message) -> DomainResult<MessageView> {
        let attachments = if carries_files(message.kind) {
            self.store
                .attachments_for(&[message.id])
                .await?
                .iter()
                .map(AttachmentView::from)
                .collect()
        } else {
            Vec::new()
        };
        let author = self
            .store
            .user_by_id(message.user_id)
            .await?
            .ok_or_else(|| {
                DomainError::Internal(format!(
                    "author {} of message {} is missing",
                    message.user_id, message.id
                ))
            })?;
        Ok(
            MessageView::new(message, self.user_public(&author), Vec::new(), None)
                .with_attachments(attachments),
        )
    }

    async fn render_message(&self, message: &Message) -> DomainResult<MessageView> {
        let mut views = self.render_messages(std::slice::from_ref(message)).await?;
        views
            .pop()
            .ok_or_else(|| DomainError::Internal("rendering a message produced nothing".into()))
    }
}
