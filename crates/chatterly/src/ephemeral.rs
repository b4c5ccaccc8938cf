//! State that never touches the database: who is online. Counted per user
//! across devices, so a user goes offline only when the last connection goes.
//! In memory for one instance; the gateway keeps it current.

use chatterly_store::Id;
use dashmap::DashMap;

#[derive(Default)]
pub struct Presence {
    connections: DashMap<Id, u32>,
}

impl Presence {
    pub fn is_online(&self, user_id: Id) -> bool {
        self.connections.contains_key(&user_id)
    }

    /// Returns true when this is the user's first live connection.
    pub fn connect(&self, user_id: Id) -> bool {
        let mut count = self.connections.entry(user_id).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Returns true when this was the user's last live connection.
    pub fn disconnect(&self, user_id: Id) -> bool {
        self.connections
            .remove_if_mut(&user_id, |_, count| {
                *count = count.saturating_sub(1);
                *count == 0
            })
            .is_some()
    }

    pub fn online_user_ids(&self) -> Vec<Id> {
        let mut ids: Vec<Id> = self.connections.iter().map(|e| *e.key()).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_only_when_the_last_connection_goes() {
        let presence = Presence::default();
        assert!(presence.connect(7));
        assert!(!presence.connect(7));
        assert!(!presence.disconnect(7));
        assert!(presence.is_online(7));
        assert!(presence.disconnect(7));
        assert!(!presence.is_online(7));
        assert!(!presence.disconnect(7));
    }
}
