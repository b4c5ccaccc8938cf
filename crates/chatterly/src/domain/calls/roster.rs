//! Who is in each live call, cached per instance, so relaying a WebRTC signal
//! or a mute costs no database round trip (signals come many per second per
//! call while it connects).
//!
//! Participants only ever join while a call is live, so a cached roster can
//! miss someone who joined on another instance but never holds someone who
//! should not be there: a lookup that does not find the users it needs reloads
//! once from the store. When a call ends or gains a participant (`CallChanged` on
//! the bus, published after the transition committed), every instance drops
//! its entry, so the fan-out of toggles reaches late joiners too; a reload
//! that raced the eviction is not kept (a generation counter, as in
//! `MembershipCache`). Entries also expire after [`TTL`], so a lost bus
//! message (Redis away) or a conversation deleted mid-call cannot keep a
//! roster alive for long.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatterly_store::{CallSession, Id, Store, StoreResult};
use dashmap::DashMap;

use crate::bus::{BusMessage, Deliver};

/// Beyond this many live calls cached, the cache starts over (entries are
/// small; calls end and are evicted, so this is only a backstop).
const MAX_ENTRIES: usize = 100_000;
/// How long a cached roster is trusted without asking the store.
const TTL: Duration = Duration::from_secs(30);

/// A live call and everyone who may signal in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Roster {
    pub call: CallSession,
    /// Participants, the initiator included.
    pub participants: Vec<Id>,
}

impl Roster {
    pub fn includes(&self, user_id: Id) -> bool {
        self.call.initiator_id == user_id || self.participants.contains(&user_id)
    }
}

#[derive(Default)]
pub struct RosterCache {
    calls: DashMap<Id, (Arc<Roster>, Instant)>,
    generation: AtomicU64,
}

impl RosterCache {
    /// The roster of a live call that includes every user of `needed`, or
    /// `None` if the call is over, missing, or does not include them.
    pub async fn live_with(
        &self,
        store: &dyn Store,
        call_id: Id,
        needed: &[Id],
    ) -> StoreResult<Option<Arc<Roster>>> {
        if let Some(entry) = self.calls.get(&call_id) {
            let (roster, cached_at) = &*entry;
            if cached_at.elapsed() < TTL && needed.iter().all(|u| roster.includes(*u)) {
                return Ok(Some(Arc::clone(roster)));
            }
        }
        let roster = self.reload(store, call_id).await?;
        Ok(roster.filter(|r| needed.iter().all(|u| r.includes(*u))))
    }

    /// Reads the call from the store; keeps it only while it is live.
    async fn reload(&self, store: &dyn Store, call_id: Id) -> StoreResult<Option<Arc<Roster>>> {
        let generation = self.generation.load(Ordering::Acquire);
        let Some(call) = store.call_by_id(call_id).await? else {
            self.calls.remove(&call_id);
            return Ok(None);
        };
        if call.status.is_terminal() {
            self.calls.remove(&call_id);
            return Ok(None);
        }
        let participants = store
            .call_participants(call_id)
            .await?
            .into_iter()
            .map(|p| p.user_id)
            .collect();
        let roster = Arc::new(Roster { call, participants });
        if self.calls.len() >= MAX_ENTRIES {
            self.calls.clear();
        }
        self.calls
            .insert(call_id, (Arc::clone(&roster), Instant::now()));
        if self.generation.load(Ordering::Acquire) != generation {
            self.calls.remove(&call_id);
        }
        Ok(Some(roster))
    }

    /// Forgets a call (it changed here, or it is over).
    pub fn forget(&self, call_id: Id) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.calls.remove(&call_id);
    }
}

impl Deliver for RosterCache {
    fn deliver(&self, message: &BusMessage) {
        if let BusMessage::CallChanged { call_id } = message {
            self.forget(*call_id);
        }
    }
}
