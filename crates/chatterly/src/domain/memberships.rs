//! A cache of who is a member of what, so the membership check in front of
//! every message read and send costs no store round trip.
//!
//! Only positive answers are kept. Every instance evicts on the bus messages
//! that end a membership (`MemberRemoved`, `ConversationDeleted`), which are
//! published after the removal committed. A lookup that raced an eviction
//! (read the row before the removal committed, would store it after the
//! eviction) is not stored: evictions bump a generation, and an answer is
//! cached only if the generation did not move while it was read. Entries
//! also expire after [`TTL`], so a bus message lost between instances (Redis
//! away) cannot keep a removed member in for long.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chatterly_store::{Id, Role, Store, StoreResult};
use dashmap::DashMap;

use crate::bus::{BusMessage, Deliver};

/// Beyond this many entries the cache starts over (a crude bound; entries
/// are ~40 bytes).
const MAX_ENTRIES: usize = 1_000_000;
/// How long a cached membership is trusted without asking the store.
const TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct MembershipCache {
    roles: DashMap<(Id, Id), (Role, Instant)>,
    generation: AtomicU64,
}

impl MembershipCache {
    /// The role of `user_id` in the conversation, or `None` if not a member.
    pub async fn role(
        &self,
        store: &dyn Store,
        conversation_id: Id,
        user_id: Id,
    ) -> StoreResult<Option<Role>> {
        if let Some(entry) = self.roles.get(&(conversation_id, user_id)) {
            let (role, cached_at) = *entry;
            if cached_at.elapsed() < TTL {
                return Ok(Some(role));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let role = store.membership(conversation_id, user_id).await?;
        if let Some(role) = role {
            if self.roles.len() >= MAX_ENTRIES {
                self.roles.clear();
            }
            self.roles
                .insert((conversation_id, user_id), (role, Instant::now()));
            // An eviction ran meanwhile: the answer may predate it.
            if self.generation.load(Ordering::Acquire) != generation {
                self.roles.remove(&(conversation_id, user_id));
            }
        }
        Ok(role)
    }

    fn evict(&self, keep: impl FnMut(&(Id, Id), &mut (Role, Instant)) -> bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.roles.retain(keep);
    }
}

impl Deliver for MembershipCache {
    fn deliver(&self, message: &BusMessage) {
        match message {
            BusMessage::MemberRemoved {
                conversation_id,
                user_id,
            } => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.roles.remove(&(*conversation_id, *user_id));
            }
            BusMessage::ConversationDeleted { conversation_id } => {
                self.evict(|(conversation, _), _| conversation != conversation_id)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evictions_drop_entries_and_move_the_generation() {
        let cache = MembershipCache::default();
        let now = Instant::now();
        cache.roles.insert((9, 1), (Role::Admin, now));
        cache.roles.insert((9, 2), (Role::Member, now));
        cache.roles.insert((10, 1), (Role::Member, now));
        cache.deliver(&BusMessage::MemberRemoved {
            conversation_id: 9,
            user_id: 2,
        });
        assert!(cache.roles.get(&(9, 2)).is_none());
        assert!(cache.roles.get(&(9, 1)).is_some());
        cache.deliver(&BusMessage::ConversationDeleted { conversation_id: 9 });
        assert!(cache.roles.get(&(9, 1)).is_none());
        assert!(cache.roles.get(&(10, 1)).is_some());
        assert_eq!(cache.generation.load(Ordering::Acquire), 2);
    }
}
