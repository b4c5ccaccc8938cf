//! Names in Redis, all under one configurable prefix (`--redis-prefix`), so
//! several deployments (or test runs) can share one Redis without seeing each
//! other's bus, presence or denylist.

use std::fmt::Display;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct RedisKeys(Arc<str>);

impl RedisKeys {
    pub fn new(prefix: &str) -> RedisKeys {
        RedisKeys(Arc::from(prefix))
    }

    /// `<prefix>:<name>`.
    pub fn key(&self, name: impl Display) -> String {
        format!("{}:{name}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let keys = RedisKeys::new("chatterly");
        assert_eq!(keys.key("bus"), "chatterly:bus");
        assert_eq!(
            keys.key(format_args!("presence:count:{}", 7)),
            "chatterly:presence:count:7"
        );
    }
}
