//! Calls (contract 4.7, 5.7, 6.6.4, 6.8): the lifecycle, who may do what, and
//! who is told. REST handlers and CallChannel actions call the same methods,
//! so both surfaces make the same transitions and send the same events
//! (contract 10.6). Every transition is one compare-and-set in the store
//! (`machine`); events go out only for the transition that won.

mod machine;
mod roster;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use chatterly_store::{
    CallChange, CallKind, CallSession, CallStatus, Id, Message, NewCall, StoreError, User,
    CONFLICT_CALL,
};
use serde_json::value::RawValue;

pub use machine::Action;
pub use roster::{Roster, RosterCache};

use super::auth::Identity;
use super::events::Event;
use super::jobs;
use super::{Domain, DomainError, DomainResult};
use crate::bus::{BusMessage, Topic};
use crate::views::{CallSessionSummary, CallSessionView, CallWithParticipantsView, MessageView};

/// Which media toggle a participant flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    Mute(bool),
    CameraOff(bool),
}

/// Who asks for a transition.
#[derive(Debug, Clone, Copy)]
enum Actor {
    User(Id),
    /// The missed-call job.
    Timeout,
}

impl Domain {
    /// `POST .../calls`: members start a call; every other member's call stream
    /// rings, and the missed-call timeout is enqueued with the call.
    /// `call_type` is the body as read: a malformed body is reported after
    /// the membership check, in the reference's order (404, then 400).
    pub async fn start_call(
        &self,
        identity: &Identity,
        conversation_id: Id,
        call_type: DomainResult<Option<String>>,
    ) -> DomainResult<CallSessionView> {
        self.member_of(identity, conversation_id).await?;
        let kind = match call_type?.as_deref() {
            None => CallKind::Audio,
            Some(text) => CallKind::parse(text)
                .ok_or_else(|| DomainError::invalid("Call type is not included in the list"))?,
        };
        let ring_timeout = self.limits.call_ring_timeout;
        let call = self
            .store
            .create_call(
                NewCall {
                    conversation_id,
                    initiator_id: identity.user_id,
                    kind,
                    status: CallStatus::Ringing,
                },
                Box::new(move |call: &CallSession| {
                    jobs::missed_call(call.id, call.created_at + ring_timeout)
                }),
            )
            .await
            .map_err(|error| match error {
                StoreError::Conflict(CONFLICT_CALL) => DomainError::Unprocessable(
                    "A call is already in progress in this conversation".into(),
                ),
                other => other.into(),
            })?;
        let caller = self.user(identity.user_id).await?;
        let caller = self.user_public(&caller);
        let members = self.store.members_of(&[conversation_id]).await?;
        self.publish_to(
            members
                .iter()
                .map(|m| m.user.id)
                .filter(|id| *id != identity.user_id)
                .map(Topic::Calls),
            Event::IncomingCall {
                call_session_id: call.id,
                caller: &caller,
                call_type: call.kind.as_str(),
                conversation_id,
            },
        );
        Ok(CallSessionView::new(&call))
    }

    /// `GET .../calls/active`: the conversation's active call with everyone
    /// who joined it; ringing calls are not returned (contract 4.7).
    pub async fn active_call(
        &self,
        identity: &Identity,
        conversation_id: Id,
    ) -> DomainResult<CallWithParticipantsView> {
        self.member_of(identity, conversation_id).await?;
        let call = self
            .store
            .current_call(conversation_id)
            .await?
            .filter(|c| c.status == CallStatus::Active)
            .ok_or(DomainError::NotFound)?;
        self.call_with_participants(&call).await
    }

    /// Accept (REST or `accept_call`): a member other than the initiator, while
    /// it rings. `conversation_id` is the REST path's (the call must be in it).
    pub async fn accept_call(
        &self,
        identity: &Identity,
        conversation_id: Option<Id>,
        call_id: Id,
    ) -> DomainResult<CallSessionView> {
        self.answer(identity, conversation_id, call_id, Action::Accept)
            .await
    }

    /// Decline (REST or `decline_call`): same rule as accept.
    pub async fn decline_call(
        &self,
        identity: &Identity,
        conversation_id: Option<Id>,
        call_id: Id,
    ) -> DomainResult<CallSessionView> {
        self.answer(identity, conversation_id, call_id, Action::Decline)
            .await
    }

    /// The initiator cannot answer their own call (contract 4.0).
    async fn answer(
        &self,
        identity: &Identity,
        conversation_id: Option<Id>,
        call_id: Id,
        action: Action,
    ) -> DomainResult<CallSessionView> {
        let call = self.call_for(identity, conversation_id, call_id).await?;
        if call.initiator_id == identity.user_id {
            return Err(DomainError::Forbidden);
        }
        self.act(call, Actor::User(identity.user_id), action).await
    }

    /// `DELETE .../calls/:id`: only the initiator may end a call over REST
    /// (contract 4.0); a ringing call ends as cancelled.
    pub async fn end_call_as_initiator(
        &self,
        identity: &Identity,
        conversation_id: Id,
        call_id: Id,
    ) -> DomainResult<CallSessionView> {
        let call = self
            .call_for(identity, Some(conversation_id), call_id)
            .await?;
        if call.initiator_id != identity.user_id {
            return Err(DomainError::Forbidden);
        }
        self.act(call, Actor::User(identity.user_id), Action::End)
            .await
    }

    /// `end_call`: any member of the call's conversation hangs up (the
    /// reference lets anyone; contract 6.6.4 recommends members).
    pub async fn hang_up(&self, identity: &Identity, call_id: Id) -> DomainResult<CallSessionView> {
        let call = self.call_for(identity, None, call_id).await?;
        self.act(call, Actor::User(identity.user_id), Action::End)
            .await
    }

    /// Beyond the reference: a member joins an active call late (group
    /// calls); the other participants are told. Joining again is a no-op.
    pub async fn join_call(
        &self,
        identity: &Identity,
        conversation_id: Option<Id>,
        call_id: Id,
    ) -> DomainResult<CallWithParticipantsView> {
        let call = self.call_for(identity, conversation_id, call_id).await?;
        let already = self
            .store
            .call_participants(call_id)
            .await?
            .iter()
            .any(|p| p.user_id == identity.user_id);
        let call = if already && call.status == CallStatus::Active {
            call
        } else {
            self.transition(call, Actor::User(identity.user_id), Action::Join)
                .await?
        };
        self.call_with_participants(&call).await
    }

    /// The missed-call job: a call still ringing becomes `missed`. Anything
    /// else (answered, declined, cancelled, gone) means there is nothing to do.
    pub async fn miss_call(&self, call_id: Id) -> DomainResult<()> {
        let Some(call) = self.store.call_by_id(call_id).await? else {
            return Ok(());
        };
        match self.transition(call, Actor::Timeout, Action::Miss).await {
            Ok(_) | Err(DomainError::Unprocessable(_)) | Err(DomainError::NotFound) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// `send_signal`: relays an offer, answer or ICE candidate to another
    /// participant, untouched. Sender and target must both be in the live
    /// call; nothing is written.
    pub async fn relay_signal(
        &self,
        identity: &Identity,
        call_id: Id,
        raw_call_id: &RawValue,
        target_user_id: Id,
        signal: &RawValue,
    ) -> DomainResult<()> {
        let needed = [identity.user_id, target_user_id];
        self.calls
            .live_with(&*self.store, call_id, &needed)
            .await?
            .ok_or(DomainError::NotFound)?;
        self.publish(
            Topic::Calls(target_user_id),
            Event::Signal {
                call_session_id: raw_call_id,
                from_user_id: identity.user_id,
                signal,
            },
        );
        Ok(())
    }

    /// `toggle_mute` / `toggle_camera`: participants only; the others are
    /// told.
    pub async fn toggle_media(
        &self,
        identity: &Identity,
        call_id: Id,
        toggle: Toggle,
    ) -> DomainResult<()> {
        let roster = self
            .calls
            .live_with(&*self.store, call_id, &[identity.user_id])
            .await?
            .ok_or(DomainError::NotFound)?;
        let others = everyone_in(&roster)
            .into_iter()
            .filter(|id| *id != identity.user_id)
            .map(Topic::Calls);
        let user_id = identity.user_id;
        let event = match toggle {
            Toggle::Mute(muted) => Event::ParticipantMuted {
                call_session_id: call_id,
                user_id,
                muted,
            },
            Toggle::CameraOff(camera_off) => Event::ParticipantCameraToggled {
                call_session_id: call_id,
                user_id,
                camera_off,
            },
        };
        self.publish_to(others, event);
        Ok(())
    }

    /// The call, if the caller is a member of its conversation (404 either
    /// way otherwise, as for messages) and it is in the REST path's
    /// conversation.
    async fn call_for(
        &self,
        identity: &Identity,
        conversation_id: Option<Id>,
        call_id: Id,
    ) -> DomainResult<CallSession> {
        if let Some(conversation_id) = conversation_id {
            self.member_of(identity, conversation_id).await?;
        }
        let call = self
            .store
            .call_by_id(call_id)
            .await?
            .filter(|c| conversation_id.is_none_or(|id| c.conversation_id == id))
            .ok_or(DomainError::NotFound)?;
        if conversation_id.is_none() {
            self.member_of(identity, call.conversation_id).await?;
        }
        Ok(call)
    }

    async fn act(
        &self,
        call: CallSession,
        actor: Actor,
        action: Action,
    ) -> DomainResult<CallSessionView> {
        let call = self.transition(call, actor, action).await?;
        Ok(CallSessionView::new(&call))
    }

    /// Applies `action` as one compare-and-set; on success tells whoever must
    /// know. A refused transition changes nothing and tells no one.
    async fn transition(
        &self,
        call: CallSession,
        actor: Actor,
        action: Action,
    ) -> DomainResult<CallSession> {
        let actor_id = match actor {
            Actor::User(id) => id,
            Actor::Timeout => call.initiator_id,
        };
        let change = self
            .store
            .transition_call(action.transition(call.id, actor_id, chatterly_store::now()))
            .await?;
        let (call, log) = match change {
            CallChange::Applied { call, log } => (call, log),
            CallChange::Refused(_) => {
                return Err(DomainError::Unprocessable(action.refusal().into()))
            }
        };
        self.calls.forget(call.id);
        // Every instance drops its cached roster when the call is over or
        // gained a participant: a roster cached elsewhere before a join would
        // leave the joiner out of the others' toggles.
        if call.status.is_terminal() || action.step().adds_participant {
            self.bus
                .publish(BusMessage::CallChanged { call_id: call.id });
        }
        self.announce(&call, actor, action).await?;
        if let Some(log) = log {
            self.publish_call_log(&call, &log).await?;
        }
        Ok(call)
    }

    /// The events of a transition that happened (contract 6.7; 10.6 and 10.8
    /// fixed: REST and socket alike, a missed call announced).
    async fn announce(&self, call: &CallSession, actor: Actor, action: Action) -> DomainResult<()> {
        let participants: Vec<Id> = self
            .store
            .call_participants(call.id)
            .await?
            .into_iter()
            .map(|p| p.user_id)
            .collect();
        let actor_id = match actor {
            Actor::User(id) => Some(id),
            Actor::Timeout => None,
        };
        let not_actor = |id: &Id| Some(*id) != actor_id;
        match action {
            Action::Accept => {
                let accepted_by = self.user_public(&self.actor_user(actor_id).await?);
                let told = participants.iter().copied().chain([call.initiator_id]);
                self.publish_to(
                    unique(told.filter(not_actor)).map(Topic::Calls),
                    Event::CallAccepted {
                        call_session_id: call.id,
                        accepted_by: &accepted_by,
                    },
                );
            }
            Action::Join => {
                let user = self.user_public(&self.actor_user(actor_id).await?);
                let told = participants.iter().copied().chain([call.initiator_id]);
                self.publish_to(
                    unique(told.filter(not_actor)).map(Topic::Calls),
                    Event::ParticipantJoined {
                        call_session_id: call.id,
                        user: &user,
                    },
                );
            }
            Action::Decline => {
                let declined_by = self.user_public(&self.actor_user(actor_id).await?);
                let declined = Event::CallDeclined {
                    call_session_id: call.id,
                    declined_by: &declined_by,
                };
                self.publish_to(
                    [
                        Topic::Calls(call.initiator_id),
                        Topic::Conversation(call.conversation_id),
                    ],
                    declined,
                );
                // Every other ringing device (the decliner's too) is dismissed.
                let others = self.members_and(call, &participants).await?;
                self.publish_to(
                    others
                        .into_iter()
                        .filter(|id| *id != call.initiator_id)
                        .map(Topic::Calls),
                    Event::CallEnded {
                        call_session_id: call.id,
                        status: call.status.as_str(),
                    },
                );
            }
            Action::End | Action::Miss => {
                let everyone = self.members_and(call, &participants).await?;
                self.publish_to(
                    everyone.into_iter().filter(not_actor).map(Topic::Calls),
                    Event::CallEnded {
                        call_session_id: call.id,
                        status: call.status.as_str(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Every member of the call's conversation and every participant.
    async fn members_and(&self, call: &CallSession, participants: &[Id]) -> DomainResult<Vec<Id>> {
        let members = self.store.members_of(&[call.conversation_id]).await?;
        let all = members
            .iter()
            .map(|m| m.user.id)
            .chain(participants.iter().copied())
            .chain([call.initiator_id]);
        Ok(unique(all).collect())
    }

    async fn actor_user(&self, actor_id: Option<Id>) -> DomainResult<User> {
        let id = actor_id.ok_or_else(|| DomainError::Internal("no acting user".into()))?;
        self.user(id).await
    }

    /// The call log is an ordinary `new_message` on the conversation stream.
    async fn publish_call_log(&self, call: &CallSession, log: &Message) -> DomainResult<()> {
        let author = self.user(log.user_id).await?;
        let view = MessageView::new(
            log,
            self.user_public(&author),
            Vec::new(),
            Some(CallSessionSummary::new(call)),
        );
        self.publish(
            Topic::Conversation(call.conversation_id),
            Event::NewMessage { message: &view },
        );
        Ok(())
    }

    async fn call_with_participants(
        &self,
        call: &CallSession,
    ) -> DomainResult<CallWithParticipantsView> {
        let ids: Vec<Id> = self
            .store
            .call_participants(call.id)
            .await?
            .into_iter()
            .map(|p| p.user_id)
            .collect();
        let users = self.store.users_by_ids(&ids).await?;
        // In join order, as the store lists participants.
        let participants = ids
            .iter()
            .filter_map(|id| users.iter().find(|u| u.id == *id))
            .map(|u| self.user_public(u))
            .collect();
        Ok(CallWithParticipantsView::new(call, participants))
    }
}

fn everyone_in(roster: &Roster) -> Vec<Id> {
    unique(
        roster
            .participants
            .iter()
            .copied()
            .chain([roster.call.initiator_id]),
    )
    .collect()
}

/// Distinct ids, in ascending order.
fn unique(ids: impl IntoIterator<Item = Id>) -> impl Iterator<Item = Id> {
    ids.into_iter().collect::<BTreeSet<Id>>().into_iter()
}
