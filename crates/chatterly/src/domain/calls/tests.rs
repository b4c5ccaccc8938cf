//! Property tests of the call lifecycle through the real domain on a real
//! (SQLite) store: random sequences of actions by random actors (the
//! initiator, other members, an outsider, the timeout) never reach an illegal
//! state, never leave a terminal one, and never announce a transition that
//! did not happen.

use chatterly_store::{CallStatus, MessageKind, Store};
use proptest::prelude::*;

use super::{Action, Toggle};
use crate::bus::{BusMessage, Topic};
use crate::domain::testing::world;
use crate::domain::DomainError;

/// What a random step does.
#[derive(Debug, Clone, Copy)]
enum Op {
    Accept(usize),
    Decline(usize),
    HangUp(usize),
    EndAsInitiator(usize),
    Join(usize),
    Timeout,
    Signal(usize, usize),
    Mute(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let actor = 0..4usize;
    prop_oneof![
        actor.clone().prop_map(Op::Accept),
        actor.clone().prop_map(Op::Decline),
        actor.clone().prop_map(Op::HangUp),
        actor.clone().prop_map(Op::EndAsInitiator),
        actor.clone().prop_map(Op::Join),
        Just(Op::Timeout),
        (actor.clone(), actor.clone()).prop_map(|(a, b)| Op::Signal(a, b)),
        actor.prop_map(Op::Mute),
    ]
}

/// The state-changing action an op attempts, if any.
fn action_of(op: Op) -> Option<Action> {
    match op {
        Op::Accept(_) => Some(Action::Accept),
        Op::Decline(_) => Some(Action::Decline),
        Op::HangUp(_) | Op::EndAsInitiator(_) => Some(Action::End),
        Op::Join(_) => Some(Action::Join),
        Op::Timeout => Some(Action::Miss),
        Op::Signal(..) | Op::Mute(_) => None,
    }
}

fn event_types(messages: &[BusMessage]) -> Vec<(Topic, String)> {
    messages
        .iter()
        .filter_map(|m| match m {
            BusMessage::Event { topic, payload, .. } => {
                let value: serde_json::Value =
                    serde_json::from_str(payload).expect("payloads are JSON");
                let kind = value["type"].as_str().unwrap_or("").to_owned();
                Some((*topic, kind))
            }
            _ => None,
        })
        .collect()
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let w = world().await;
    let [a, ..] = &w.users;
    let call = w
        .domain
        .start_call(a, w.conversation_id, Ok(Some("video".into())))
        .await
        .map_err(|e| TestCaseError::fail(format!("start: {e}")))?;
    let call_id = call.id;
    let rung = event_types(&w.bus.take());
    prop_assert_eq!(rung.len(), 2, "two members ring: {:?}", rung);
    prop_assert!(rung.iter().all(|(_, t)| t == "incoming_call"));

    let mut status = CallStatus::Ringing;
    let mut ever_active = false;
    for op in ops {
        let user = |i: usize| &w.users[i];
        let outcome: Result<(), DomainError> = match op {
            Op::Accept(i) => w.domain.accept_call(user(i), None, call_id).await.map(drop),
            Op::Decline(i) => w
                .domain
                .decline_call(user(i), None, call_id)
                .await
                .map(drop),
            Op::HangUp(i) => w.domain.hang_up(user(i), call_id).await.map(drop),
            Op::EndAsInitiator(i) => w
                .domain
                .end_call_as_initiator(user(i), w.conversation_id, call_id)
                .await
                .map(drop),
            Op::Join(i) => w
                .domain
                .join_call(user(i), Some(w.conversation_id), call_id)
                .await
                .map(drop),
            Op::Timeout => w.domain.miss_call(call_id).await,
            Op::Signal(from, to) => {
                let raw_id = serde_json::value::to_raw_value(&call_id).expect("raw");
                let signal = serde_json::value::RawValue::from_string(r#"{"type":"offer"}"#.into())
                    .expect("raw");
                w.domain
                    .relay_signal(user(from), call_id, &raw_id, user(to).user_id, &signal)
                    .await
            }
            Op::Mute(i) => {
                w.domain
                    .toggle_media(user(i), call_id, Toggle::Mute(true))
                    .await
            }
        };
        let now = w
            .store
            .call_by_id(call_id)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .ok_or_else(|| TestCaseError::fail("the call vanished"))?;
        let events = event_types(&w.bus.take());

        // Legal states only, and terminal ones are for ever.
        if status.is_terminal() {
            prop_assert_eq!(now.status, status, "left a terminal state on {:?}", op);
        }
        if now.status != status {
            let action = action_of(op);
            prop_assert!(
                action
                    .is_some_and(|a| a.step().from.contains(&status) && a.step().to == now.status),
                "{:?} moved {:?} → {:?}",
                op,
                status,
                now.status
            );
            prop_assert!(outcome.is_ok(), "a transition happened but {:?} failed", op);
        }
        // A refused or failed op announces nothing.
        if outcome.is_err() {
            prop_assert!(events.is_empty(), "{:?} failed yet sent {:?}", op, events);
        }
        // Events match what happened.
        let has = |kind: &str| events.iter().any(|(_, t)| t == kind);
        let transitioned = now.status != status;
        prop_assert_eq!(
            has("new_message"),
            transitioned && now.status.is_terminal(),
            "call log iff the call just ended: {:?} {:?}",
            op,
            events
        );
        prop_assert_eq!(
            has("call_accepted"),
            transitioned && now.status == CallStatus::Active
        );
        if has("call_ended") {
            prop_assert!(transitioned && now.status.is_terminal());
        }
        if has("participant_joined") {
            prop_assert!(matches!(op, Op::Join(_)) && outcome.is_ok());
        }
        if let Op::Signal(from, to) = op {
            let outsider = from == 3 || to == 3;
            if outsider || status.is_terminal() {
                prop_assert!(outcome.is_err() && events.is_empty());
            }
            if outcome.is_ok() {
                prop_assert_eq!(
                    events.clone(),
                    vec![(Topic::Calls(w.users[to].user_id), "signal".into())]
                );
            }
        }
        // Stamps follow the state.
        ever_active |= now.status == CallStatus::Active;
        prop_assert_eq!(now.started_at.is_some(), ever_active);
        if now.ended_at.is_some() {
            prop_assert!(now.started_at.is_some() && now.status == CallStatus::Ended);
        }
        status = now.status;
    }

    // One call log exactly when the call is over.
    let logs = w
        .store
        .history(
            w.conversation_id,
            chatterly_store::HistoryPage::Before {
                before_id: None,
                limit: 100,
            },
        )
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .into_iter()
        .filter(|m| m.kind == MessageKind::Call)
        .count();
    prop_assert_eq!(logs, usize::from(status.is_terminal()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_actions_keep_the_call_lifecycle_legal(ops in proptest::collection::vec(op(), 1..14)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(ops))?;
    }
}
