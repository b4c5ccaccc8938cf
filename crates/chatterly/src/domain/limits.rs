//! Rate limits on login/register (per client address) and message sends (per
//! user), answered with 429. In memory per instance, which bounds abuse per
//! instance; switched off entirely by `--rate-limits off`.

use std::net::IpAddr;
use std::num::NonZeroU32;

use chatterly_store::Id;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::{DomainError, DomainResult};
use crate::config::RateLimits;

pub struct RateLimiter {
    auth: DefaultKeyedRateLimiter<IpAddr>,
    sends: DefaultKeyedRateLimiter<Id>,
    /// `@channel` / `@here` per conversation.
    broadcasts: DefaultKeyedRateLimiter<Id>,
}

/// `@channel` and `@here` mentions one conversation may take in a row; after
/// that, one per [`BROADCAST_EVERY`]. They notify every member (or every one
/// online), so they are admin-only and scarce.
pub const BROADCAST_BURST: u32 = 2;
pub const BROADCAST_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        let auth = Quota::per_minute(non_zero(limits.auth_per_minute));
        let sends = Quota::per_second(non_zero(limits.sends_per_second)).allow_burst(non_zero(
            limits.sends_per_second.saturating_add(limits.send_burst),
        ));
        let broadcasts = Quota::with_period(BROADCAST_EVERY)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(non_zero(BROADCAST_BURST));
        RateLimiter {
            auth: DefaultKeyedRateLimiter::keyed(auth),
            sends: DefaultKeyedRateLimiter::keyed(sends),
            broadcasts: DefaultKeyedRateLimiter::keyed(broadcasts),
        }
    }

    /// One `@channel` / `@here` in the conversation.
    pub fn check_broadcast(&self, conversation_id: Id) -> DomainResult<()> {
        self.broadcasts.check_key(&conversation_id).map_err(|_| {
            DomainError::RateLimited(
                "Too many @channel or @here mentions in this conversation. Try again in a minute."
                    .into(),
            )
        })
    }

    pub fn check_auth(&self, client: IpAddr) -> DomainResult<()> {
        self.auth.check_key(&client).map_err(|_| {
            DomainError::RateLimited("Too many attempts. Try again in a minute.".into())
        })
    }

    pub fn check_send(&self, user_id: Id) -> DomainResult<()> {
        self.sends
            .check_key(&user_id)
            .map_err(|_| DomainError::RateLimited("Too many messages. Slow down.".into()))
    }

    /// Drops the state of keys that are back to a full allowance.
    pub fn forget_idle(&self) {
        self.auth.retain_recent();
        self.sends.retain_recent();
        self.broadcasts.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_burst_and_keys_separately() {
        let limiter = RateLimiter::new(RateLimits {
            auth_per_minute: 2,
            sends_per_second: 1,
            send_burst: 1,
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(limiter.check_auth(ip).is_ok());
        assert!(limiter.check_auth(ip).is_ok());
        assert!(matches!(
            limiter.check_auth(ip),
            Err(DomainError::RateLimited(_))
        ));
        assert!(limiter.check_auth([127, 0, 0, 2].into()).is_ok());
        assert!(limiter.check_send(1).is_ok());
        assert!(limiter.check_send(1).is_ok());
        assert!(limiter.check_send(1).is_err());
        assert!(limiter.check_send(2).is_ok());
        for _ in 0..BROADCAST_BURST {
            assert!(limiter.check_broadcast(9).is_ok());
        }
        assert!(matches!(
            limiter.check_broadcast(9),
            Err(DomainError::RateLimited(_))
        ));
        assert!(limiter.check_broadcast(10).is_ok());
    }
}
