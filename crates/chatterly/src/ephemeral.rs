//! State that never touches the database: who is online.
//!
//! Counted per user across devices and instances, so a user goes offline only
//! when their last connection anywhere goes (contract 7 REC). One instance
//! keeps the counts in memory. Several instances keep them in Redis:
//! `<prefix>:presence:count:<user>` (connections anywhere), `…:presence:instance:<id>`
//! (this instance's share, so its connections can be subtracted if it dies),
//! `presence:online` (the set of online users) and `presence:instances`
//! (heartbeats). An instance whose heartbeat stops for the presence TTL
//! (`--presence-ttl`) is
//! reaped by another: its users' counts drop and those left with none go
//! offline, with the usual event.
//!
//! Every instance also keeps the online set in memory, updated by
//! `PresenceChanged` bus messages, so rendering `online` costs no round trip.

use std::time::Duration;

use chatterly_store::Id;
use dashmap::{DashMap, DashSet};
use redis::aio::ConnectionManager;

use crate::bus::{BusMessage, Deliver};
use crate::redis_keys::RedisKeys;

struct Shared {
    redis: ConnectionManager,
    instance: String,
    keys: RedisKeys,
    /// How long an instance may miss heartbeats before it counts as dead.
    ttl: Duration,
}

impl Shared {
    fn online_set(&self) -> String {
        self.keys.key("presence:online")
    }
    fn instances(&self) -> String {
        self.keys.key("presence:instances")
    }
    fn count_key(&self, user_id: Id) -> String {
        self.keys.key(format!("presence:count:{user_id}"))
    }
    fn instance_key(&self, instance: &str) -> String {
        self.keys.key(format!("presence:instance:{instance}"))
    }
}

pub struct Presence {
    /// This instance's live connections per user.
    local: DashMap<Id, u32>,
    /// Users online anywhere.
    online: DashSet<Id>,
    shared: Option<Shared>,
}

impl Default for Presence {
    fn default() -> Presence {
        Presence {
            local: DashMap::new(),
            online: DashSet::new(),
            shared: None,
        }
    }
}

impl Presence {
    /// Presence shared through Redis; loads who is online now.
    pub async fn shared(
        redis: ConnectionManager,
        instance: &str,
        keys: RedisKeys,
        ttl: Duration,
    ) -> redis::RedisResult<Presence> {
        let shared = Shared {
            redis,
            instance: instance.to_owned(),
            keys,
            ttl,
        };
        let mut conn = shared.redis.clone();
        let online: Vec<Id> = redis::cmd("SMEMBERS")
            .arg(shared.online_set())
            .query_async(&mut conn)
            .await?;
        let presence = Presence {
            local: DashMap::new(),
            online: online.into_iter().collect(),
            shared: Some(shared),
        };
        presence.heartbeat().await?;
        Ok(presence)
    }

    pub fn is_online(&self, user_id: Id) -> bool {
        self.online.contains(&user_id)
    }

    /// Users online anywhere (as this instance sees it).
    pub fn online_count(&self) -> usize {
        self.online.len()
    }

    pub fn online_user_ids(&self) -> Vec<Id> {
        let mut ids: Vec<Id> = self.online.iter().map(|id| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// Counts a new connection; true when the user just came online anywhere.
    pub async fn connect(&self, user_id: Id) -> bool {
        let first_here = {
            let mut count = self.local.entry(user_id).or_insert(0);
            *count += 1;
            *count == 1
        };
        let came_online = match &self.shared {
            None => first_here,
            Some(shared) => {
                let mut conn = shared.redis.clone();
                let result: redis::RedisResult<(i64, i64)> = redis::pipe()
                    .atomic()
                    .cmd("HINCRBY")
                    .arg(shared.instance_key(&shared.instance))
                    .arg(user_id)
                    .arg(1)
                    .cmd("INCR")
                    .arg(shared.count_key(user_id))
                    .query_async(&mut conn)
                    .await;
                match result {
                    Ok((_, anywhere)) => {
                        if anywhere == 1 {
                            let _: redis::RedisResult<()> = redis::cmd("SADD")
                                .arg(shared.online_set())
                                .arg(user_id)
                                .query_async(&mut conn)
                                .await;
                        }
                        anywhere == 1
                    }
                    Err(error) => {
                        tracing::warn!(%error, "presence update in Redis failed");
                        first_here
                    }
                }
            }
        };
        if came_online {
            self.online.insert(user_id);
        }
        came_online
    }

    /// Counts a connection gone; true when it was the user's last anywhere.
    pub async fn disconnect(&self, user_id: Id) -> bool {
        let last_here = self
            .local
            .remove_if_mut(&user_id, |_, count| {
                *count = count.saturating_sub(1);
                *count == 0
            })
            .is_some();
        let went_offline = match &self.shared {
            None => last_here,
            Some(shared) => {
                let mut conn = shared.redis.clone();
                let result: redis::RedisResult<(i64, i64)> = redis::pipe()
                    .atomic()
                    .cmd("HINCRBY")
                    .arg(shared.instance_key(&shared.instance))
                    .arg(user_id)
                    .arg(-1)
                    .cmd("DECR")
                    .arg(shared.count_key(user_id))
                    .query_async(&mut conn)
                    .await;
                match result {
                    Ok((here, anywhere)) => {
                        if here <= 0 {
                            let _: redis::RedisResult<()> = redis::cmd("HDEL")
                                .arg(shared.instance_key(&shared.instance))
                                .arg(user_id)
                                .query_async(&mut conn)
                                .await;
                        }
                        if anywhere <= 0 {
                            self.forget(shared, &mut conn, user_id).await;
                        }
                        anywhere <= 0
                    }
                    Err(error) => {
                        tracing::warn!(%error, "presence update in Redis failed");
                        last_here
                    }
                }
            }
        };
        if went_offline {
            self.online.remove(&user_id);
        }
        went_offline
    }

    async fn forget(&self, shared: &Shared, conn: &mut ConnectionManager, user_id: Id) {
        let _: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(shared.count_key(user_id))
            .ignore()
            .cmd("SREM")
            .arg(shared.online_set())
            .arg(user_id)
            .ignore()
            .query_async(conn)
            .await;
    }

    /// Records that this instance is alive (shared mode only).
    pub async fn heartbeat(&self) -> redis::RedisResult<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let mut conn = shared.redis.clone();
        let now = chrono::Utc::now().timestamp_millis();
        redis::cmd("ZADD")
            .arg(shared.instances())
            .arg(now)
            .arg(&shared.instance)
            .query_async(&mut conn)
            .await
    }

    /// Subtracts the connections of instances whose heartbeat stopped; returns
    /// the users that have no connection left anywhere (now offline).
    pub async fn reap_dead_instances(&self) -> redis::RedisResult<Vec<Id>> {
        let Some(shared) = &self.shared else {
            return Ok(Vec::new());
        };
        let mut conn = shared.redis.clone();
        let horizon = chrono::Utc::now().timestamp_millis() - shared.ttl.as_millis() as i64;
        let dead: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(shared.instances())
            .arg("-inf")
            .arg(horizon)
            .query_async(&mut conn)
            .await?;
        let mut offline = Vec::new();
        for instance in dead {
            // Only one live instance reaps a dead one.
            let claimed: Option<String> = redis::cmd("SET")
                .arg(shared.keys.key(format!("presence:reap:{instance}")))
                .arg(&shared.instance)
                .arg("NX")
                .arg("EX")
                .arg(120)
                .query_async(&mut conn)
                .await?;
            if claimed.is_none() {
                continue;
            }
            let counts: Vec<(Id, i64)> = redis::cmd("HGETALL")
                .arg(shared.instance_key(&instance))
                .query_async(&mut conn)
                .await?;
            for (user_id, count) in counts {
                let left: i64 = redis::cmd("DECRBY")
                    .arg(shared.count_key(user_id))
                    .arg(count)
                    .query_async(&mut conn)
                    .await?;
                if left <= 0 {
                    self.forget(shared, &mut conn, user_id).await;
                    self.online.remove(&user_id);
                    offline.push(user_id);
                }
            }
            let _: () = redis::pipe()
                .cmd("DEL")
                .arg(shared.instance_key(&instance))
                .ignore()
                .cmd("ZREM")
                .arg(shared.instances())
                .arg(&instance)
                .ignore()
                .query_async(&mut conn)
                .await?;
            tracing::info!(
                instance,
                went_offline = offline.len(),
                "reaped a dead instance's presence"
            );
        }
        Ok(offline)
    }
}

impl Deliver for Presence {
    fn deliver(&self, message: &BusMessage) {
        if let BusMessage::PresenceChanged { user_id, online } = message {
            if *online {
                self.online.insert(*user_id);
            } else {
                self.online.remove(user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offline_only_when_the_last_connection_goes() {
        let presence = Presence::default();
        assert!(presence.connect(7).await);
        assert!(!presence.connect(7).await);
        assert!(!presence.disconnect(7).await);
        assert!(presence.is_online(7));
        assert!(presence.disconnect(7).await);
        assert!(!presence.is_online(7));
        assert!(!presence.disconnect(7).await);
    }

    #[test]
    fn follows_presence_changes_from_other_instances() {
        let presence = Presence::default();
        presence.deliver(&BusMessage::PresenceChanged {
            user_id: 3,
            online: true,
        });
        assert_eq!(presence.online_user_ids(), vec![3]);
        presence.deliver(&BusMessage::PresenceChanged {
            user_id: 3,
            online: false,
        });
        assert!(!presence.is_online(3));
    }
}
