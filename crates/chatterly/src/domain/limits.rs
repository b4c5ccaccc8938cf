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
}

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        let auth = Quota::per_minute(non_zero(limits.auth_per_minute));
        let sends = Quota::per_second(non_zero(limits.sends_per_second)).allow_burst(non_zero(
            limits.sends_per_second.saturating_add(limits.send_burst),
        ));
        RateLimiter {
            auth: DefaultKeyedRateLimiter::keyed(auth),
            sends: DefaultKeyedRateLimiter::keyed(sends),
        }
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
    }
}
