//! Conversations and memberships, with the authorization matrix of
//! contract 4.0 (creator is admin, contract 10.1; one direct conversation per
//! pair, 10.10).

use chatterly_store::{
    Conversation, ConversationKind, Id, InboxCursor, InboxEntry, NewConversation, Role, StoreError,
    CONFLICT_MEMBER,
};

use super::auth::Identity;
use super::events::Event;
use super::validate::Errors;
use super::{Domain, DomainError, DomainResult};
use crate::bus::{BusMessage, Topic};
use crate::views::inbox::ConversationList;
use crate::views::ConversationView;

#[derive(Debug, Default)]
pub struct NewConversationRequest {
    pub conversation_type: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub member_ids: Vec<Id>,
}

const NAME_MAX: usize = 100;
const DESCRIPTION_MAX: usize = 2000;
/// Members one create may add; larger groups grow through memberships.
const CREATE_MEMBERS_MAX: usize = 1000;

impl Domain {
    /// A conversation the caller belongs to, with their role: 404 when it does
    /// not exist or the caller is not a member (non-members learn nothing).
    pub(super) async fn member_of(
        &self,
        identity: &Identity,
        conversation_id: Id,
    ) -> DomainResult<Role> {
        self.role_of(conversation_id, identity.user_id)
            .await?
            .ok_or(DomainError::NotFound)
    }

    async fn conversation(&self, id: Id) -> DomainResult<Conversation> {
        self.store
            .conversation_by_id(id)
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// The caller's conversations, most recent activity first, each with the
    /// caller's read state and its newest message.
    pub async fn list_conversations(&self, identity: &Identity) -> DomainResult<ConversationList> {
        let entries = self.store.inbox(identity.user_id).await?;
        self.conversation_list(entries).await
    }

    /// A page of the caller's conversations in the list's order: at most
    /// `limit` (default and bounds as for history), after `cursor` (the
    /// previous page's `next_cursor`). `next_cursor` is set when the page is
    /// full. A conversation whose activity moves while a client pages may
    /// show twice or be passed over; the user stream's events keep the
    /// client's list current.
    pub async fn list_conversations_page(
        &self,
        identity: &Identity,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> DomainResult<(ConversationList, Option<String>)> {
        let limit = self.limits.page_size(limit);
        let after = cursor.map(parse_list_cursor).transpose()?;
        let entries = self
            .store
            .inbox_page(identity.user_id, after, limit)
            .await?;
        let next_cursor = if entries.len() == limit as usize {
            entries
                .last()
                .map(|entry| format_list_cursor(&InboxCursor::after(entry)))
        } else {
            None
        };
        Ok((self.conversation_list(entries).await?, next_cursor))
    }

    /// 404 if it does not exist, 403 if the caller is not a member (contract
    /// 4.3). A list of exactly that one conversation.
    pub async fn show_conversation(
        &self,
        identity: &Identity,
        id: Id,
    ) -> DomainResult<ConversationList> {
        match self.store.inbox_entry(id, identity.user_id).await? {
            Some(entry) => self.conversation_list(vec![entry]).await,
            None => {
                self.conversation(id).await?;
                Err(DomainError::Forbidden)
            }
        }
    }

    pub(super) async fn render_one_entry(
        &self,
        entry: InboxEntry,
    ) -> DomainResult<ConversationView> {
        self.render_inbox(vec![entry]).await?.pop().ok_or_else(|| {
            DomainError::Internal("rendering a conversation produced nothing".into())
        })
    }

    /// Creates a conversation (the caller becomes its admin) and tells the other
    /// members. A direct conversation with someone the caller already has one
    /// with returns that one; the flag says whether it was created now.
    pub async fn create_conversation(
        &self,
        identity: &Identity,
        request: NewConversationRequest,
    ) -> DomainResult<(ConversationView, bool)> {
        let mut errors = Errors::default();
        let kind = match request.conversation_type.as_deref() {
            None => Some(ConversationKind::Channel),
            Some(text) => {
                let kind = ConversationKind::parse(text);
                if kind.is_none() {
                    errors.add("Conversation type is not included in the list");
                }
                kind
            }
        };
        if kind != Some(ConversationKind::Direct) {
            errors.required("Name", request.name.as_deref());
        }
        errors.max_chars("Name", request.name.as_deref(), NAME_MAX);
        errors.max_chars(
            "Description",
            request.description.as_deref(),
            DESCRIPTION_MAX,
        );
        let mut member_ids = request.member_ids;
        member_ids.sort_unstable();
        member_ids.dedup();
        member_ids.retain(|&id| id != identity.user_id);
        if member_ids.len() > CREATE_MEMBERS_MAX {
            errors.add(format!(
                "Member ids are too many (maximum is {CREATE_MEMBERS_MAX})"
            ));
        }
        errors.into_result()?;
        let kind = kind.ok_or_else(|| DomainError::Internal("validated kind lost".into()))?;
        // Unknown ids are skipped, as in the reference.
        let member_ids: Vec<Id> = self
            .store
            .users_by_ids(&member_ids)
            .await?
            .iter()
            .map(|u| u.id)
            .collect();
        if kind == ConversationKind::Direct && member_ids.len() != 1 {
            return Err(DomainError::invalid(
                "Direct conversations need exactly one other existing member",
            ));
        }
        let (conversation, created) = self
            .store
            .create_conversation(NewConversation {
                kind,
                name: request.name,
                description: request.description,
                created_by_id: identity.user_id,
                member_ids: member_ids.clone(),
            })
            .await?;
        // A new conversation has nothing unread; the existing direct
        // conversation of the pair comes with the caller's read state.
        let view = match created {
            true => self.render_conversation(&conversation).await?,
            false => match self
                .store
                .inbox_entry(conversation.id, identity.user_id)
                .await?
            {
                Some(entry) => self.render_one_entry(entry).await?,
                None => self.render_conversation(&conversation).await?,
            },
        };
        if created {
            for member_id in member_ids {
                self.publish(
                    Topic::User(member_id),
                    Event::NewConversation {
                        conversation: &view,
                    },
                );
            }
        }
        Ok((view, created))
    }

    /// Creator or admin only (contract 4.3).
    pub async fn delete_conversation(&self, identity: &Identity, id: Id) -> DomainResult<()> {
        let conversation = self.conversation(id).await?;
        let role = self.role_of(id, identity.user_id).await?;
        if conversation.created_by_id != Some(identity.user_id) && role != Some(Role::Admin) {
            return Err(DomainError::Forbidden);
        }
        if !self.store.delete_conversation(id).await? {
            return Err(DomainError::NotFound);
        }
        self.bus.publish(BusMessage::ConversationDeleted {
            conversation_id: id,
        });
        Ok(())
    }

    /// Admin only; 404 if the caller is not a member or the user is unknown,
    /// 422 if already a member (contract 4.4).
    pub async fn add_member(
        &self,
        identity: &Identity,
        conversation_id: Id,
        user_id: Option<Id>,
    ) -> DomainResult<()> {
        let role = self.member_of(identity, conversation_id).await?;
        if role != Role::Admin {
            return Err(DomainError::Forbidden);
        }
        let user_id = user_id.ok_or(DomainError::NotFound)?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(DomainError::NotFound)?;
        let conversation = self.conversation(conversation_id).await?;
        if conversation.kind == ConversationKind::Direct {
            return Err(DomainError::invalid(
                "Direct conversations cannot take more members",
            ));
        }
        self.store
            .add_member(conversation_id, user_id, Role::Member)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(CONFLICT_MEMBER) => {
                    DomainError::invalid("User is already a member of this conversation")
                }
                other => other.into(),
            })?;
        let user = self.user_public(&user);
        self.publish(
            Topic::Conversation(conversation_id),
            Event::MemberJoined {
                user: &user,
                conversation_id,
            },
        );
        // The added person learns of it on their user stream, as creators'
        // members do (`new_conversation`), rendered from their own view (their
        // read position starts at the conversation's newest message).
        if let Some(entry) = self.store.inbox_entry(conversation_id, user_id).await? {
            let view = self.render_one_entry(entry).await?;
            self.publish(
                Topic::User(user_id),
                Event::NewConversation {
                    conversation: &view,
                },
            );
        }
        Ok(())
    }

    /// An admin removes anyone; anyone removes themself (contract 4.4).
    pub async fn remove_member(
        &self,
        identity: &Identity,
        conversation_id: Id,
        user_id: Id,
    ) -> DomainResult<()> {
        let role = self.member_of(identity, conversation_id).await?;
        if self.role_of(conversation_id, user_id).await?.is_none() {
            return Err(DomainError::NotFound);
        }
        if user_id != identity.user_id && role != Role::Admin {
            return Err(DomainError::Forbidden);
        }
        if !self.store.remove_member(conversation_id, user_id).await? {
            return Err(DomainError::NotFound);
        }
        self.publish(
            Topic::Conversation(conversation_id),
            Event::MemberLeft {
                user_id,
                conversation_id,
            },
        );
        self.bus.publish(BusMessage::MemberRemoved {
            conversation_id,
            user_id,
        });
        Ok(())
    }
}

/// A conversation list cursor as clients see it:
/// `<last activity in Unix ms>_<conversation id>`.
fn format_list_cursor(cursor: &InboxCursor) -> String {
    format!(
        "{}_{}",
        cursor.last_activity_at.timestamp_millis(),
        cursor.conversation_id
    )
}

/// A cursor as [`format_list_cursor`] writes it; anything else is a 400.
fn parse_list_cursor(cursor: &str) -> DomainResult<InboxCursor> {
    let invalid = || DomainError::bad_request("cursor is not a conversation list cursor");
    let (millis, id) = cursor.trim().split_once('_').ok_or_else(invalid)?;
    let millis: i64 = millis.parse().map_err(|_| invalid())?;
    let conversation_id: Id = id.parse().map_err(|_| invalid())?;
    let last_activity_at = chrono::DateTime::from_timestamp_millis(millis).ok_or_else(invalid)?;
    Ok(InboxCursor {
        last_activity_at,
        conversation_id,
    })
}

#[cfg(test)]
mod tests {
    use super::{format_list_cursor, parse_list_cursor};

    #[test]
    fn list_cursors_read_back_and_junk_is_refused() {
        let cursor = parse_list_cursor("1733460000123_42").expect("valid");
        assert_eq!(
            cursor.last_activity_at.timestamp_millis(),
            1_733_460_000_123
        );
        assert_eq!(cursor.conversation_id, 42);
        assert_eq!(format_list_cursor(&cursor), "1733460000123_42");
        for junk in [
            "",
            "42",
            "_",
            "abc_1",
            "1_abc",
            "1_2_3",
            "99999999999999999999_1",
        ] {
            assert!(parse_list_cursor(junk).is_err(), "{junk:?}");
        }
    }
}
