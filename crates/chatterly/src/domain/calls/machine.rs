//! The call state machine (contract 5.7, with 10.7's terminal states): which
//! actions move a call from which states, and what each transition stamps.
//! Pure: the store applies a [`Step`] as one compare-and-set, so the rules
//! live here once and the race is settled by the database.
//!
//! ```text
//! ringing ──accept──► active ──end──► ended
//!    │ ──decline──► declined                (terminal)
//!    │ ──timeout──► missed                  (terminal)
//!    └ ──end (cancel)──► ended              (started_at/ended_at stay null)
//! active ──join──► active                   (a late joiner becomes a participant)
//! ```
//!
//! `calling` is part of the wire enum but never entered (the reference creates
//! calls `ringing`); it is treated as ringing wherever it could appear.

use chatterly_store::{CallStatus, CallTransition, Id, Timestamp};

/// Something that can happen to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A ringing member picks up: the call becomes active.
    Accept,
    /// A ringing member refuses: the call is declined.
    Decline,
    /// Someone hangs up (or the caller cancels while it rings).
    End,
    /// Nobody answered in time (the missed-call job).
    Miss,
    /// A member joins a call that is already active.
    Join,
}

const RINGING: &[CallStatus] = &[CallStatus::Calling, CallStatus::Ringing];
const LIVE: &[CallStatus] = &[CallStatus::Calling, CallStatus::Ringing, CallStatus::Active];
const ACTIVE: &[CallStatus] = &[CallStatus::Active];

/// What an action does when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub from: &'static [CallStatus],
    pub to: CallStatus,
    /// The actor becomes a participant.
    pub adds_participant: bool,
    /// Stamps `started_at` (first time only).
    pub starts: bool,
    /// Stamps `ended_at` (only if it started).
    pub ends: bool,
    /// Writes the call log: every transition into a terminal state, which can
    /// happen once per call.
    pub logs: bool,
}

impl Action {
    pub fn step(self) -> Step {
        let (from, to, adds_participant) = match self {
            Action::Accept => (RINGING, CallStatus::Active, true),
            Action::Decline => (RINGING, CallStatus::Declined, false),
            Action::End => (LIVE, CallStatus::Ended, false),
            Action::Miss => (RINGING, CallStatus::Missed, false),
            Action::Join => (ACTIVE, CallStatus::Active, true),
        };
        Step {
            from,
            to,
            adds_participant,
            starts: to == CallStatus::Active,
            ends: to == CallStatus::Ended,
            logs: to.is_terminal(),
        }
    }

    /// Whether the action applies to a call in `status`.
    #[cfg(test)]
    pub fn applies_to(self, status: CallStatus) -> bool {
        self.step().from.contains(&status)
    }

    /// The store's compare-and-set for this action by `actor` on `call_id`.
    pub fn transition(self, call_id: Id, actor: Id, now: Timestamp) -> CallTransition {
        let step = self.step();
        CallTransition {
            call_id,
            from: step.from.to_vec(),
            to: step.to,
            participant: step.adds_participant.then_some(actor),
            start: step.starts,
            end: step.ends,
            log: step.logs,
            now,
        }
    }

    /// The 422 message when the action does not apply to the call's state.
    pub fn refusal(self) -> &'static str {
        match self {
            Action::Accept | Action::Decline | Action::Miss => "Call is no longer ringing",
            Action::End => "Call has already ended",
            Action::Join => "Call is not active",
        }
    }
}

/// Every status a call can be in, for tests and exhaustive checks.
#[cfg(test)]
pub const ALL_STATUSES: [CallStatus; 6] = [
    CallStatus::Calling,
    CallStatus::Ringing,
    CallStatus::Active,
    CallStatus::Ended,
    CallStatus::Declined,
    CallStatus::Missed,
];

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: [Action; 5] = [
        Action::Accept,
        Action::Decline,
        Action::End,
        Action::Miss,
        Action::Join,
    ];

    #[test]
    fn nothing_leaves_a_terminal_state() {
        for status in ALL_STATUSES.into_iter().filter(|s| s.is_terminal()) {
            for action in ACTIONS {
                assert!(!action.applies_to(status), "{action:?} from {status:?}");
            }
        }
    }

    #[test]
    fn only_terminal_transitions_log_and_only_active_ones_start() {
        for action in ACTIONS {
            let step = action.step();
            assert_eq!(step.logs, step.to.is_terminal(), "{action:?}");
            assert_eq!(step.starts, step.to == CallStatus::Active, "{action:?}");
            assert!(!step.from.iter().any(|s| s.is_terminal()), "{action:?}");
        }
    }

    #[test]
    fn the_contract_graph() {
        use CallStatus::*;
        assert!(Action::Accept.applies_to(Ringing));
        assert!(!Action::Accept.applies_to(Active));
        assert!(Action::Decline.applies_to(Ringing));
        assert!(!Action::Decline.applies_to(Active));
        assert!(Action::End.applies_to(Ringing));
        assert!(Action::End.applies_to(Active));
        assert!(Action::Miss.applies_to(Ringing));
        assert!(!Action::Miss.applies_to(Active));
        assert!(Action::Join.applies_to(Active));
        assert!(!Action::Join.applies_to(Ringing));
        let accept = Action::Accept.transition(31, 43, chatterly_store::now());
        assert_eq!(accept.participant, Some(43));
        assert!(accept.start && !accept.end && !accept.log);
        let end = Action::End.transition(31, 42, chatterly_store::now());
        assert_eq!(end.participant, None);
        assert!(end.end && end.log && !end.start);
    }
}
