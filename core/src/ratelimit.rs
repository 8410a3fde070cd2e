//! Counting attempts per key in fixed windows (failed logins per account and per IP).
//!
//! Counts live in the cache, so with Redis every replica shares them. When Redis can't
//! be reached the limiter counts in this process instead: limits keep holding per
//! replica, but an attacker spreading attempts over N replicas gets up to N times the
//! limit until Redis is back, and the counts made meanwhile are not merged into Redis.
//! Failing closed (refusing every login) would turn a cache outage into a login outage.

use std::time::Duration;

use crate::cache::Cache;

/// At most `limit` counted attempts per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u32,
    pub window: Duration,
}

/// Keys not yet expired that the in-process fallback keeps.
const LOCAL_CAPACITY: u64 = 100_000;

/// A rate limiter over string keys such as `login:ip:203.0.113.9`; cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cache: Cache,
    /// Used while `cache` (Redis) can't be reached; the same cache when it is memory.
    local: Cache,
}

impl RateLimiter {
    pub fn new(cache: Cache) -> Self {
        let local = if cache.is_shared() {
            Cache::memory("ratelimit", LOCAL_CAPACITY)
        } else {
            cache.clone()
        };
        Self { cache, local }
    }

    /// Counts in this process only (one replica, or tools such as keel-admin).
    pub fn in_memory() -> Self {
        Self::new(Cache::memory("ratelimit", LOCAL_CAPACITY))
    }

    fn key(key: &str) -> String {
        format!("ratelimit:{key}")
    }

    /// `Some(retry_after)` when `key` has used up `rule` in the current window.
    pub async fn blocked(&self, key: &str, rule: Rule) -> Option<Duration> {
        let key = Self::key(key);
        let (count, left) = match self.cache.count(&key).await {
            Ok(counted) => counted,
            Err(_) => self.local.count(&key).await.unwrap_or_default(),
        };
        (count >= u64::from(rule.limit) && !left.is_zero()).then_some(left)
    }

    /// Counts one attempt against `key`.
    pub async fn hit(&self, key: &str, rule: Rule) {
        let key = Self::key(key);
        if self.cache.incr(&key, rule.window).await.is_err() {
            let _ = self.local.incr(&key, rule.window).await;
        }
    }

    /// Forgets `key` (e.g. the account's failures after a successful login).
    pub async fn reset(&self, key: &str) {
        let key = Self::key(key);
        self.cache.delete(&key).await;
        if self.cache.is_shared() {
            self.local.delete(&key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_after_the_limit_until_the_window_ends() {
        let limiter = RateLimiter::in_memory();
        let rule = Rule {
            limit: 2,
            window: Duration::from_millis(50),
        };
        for _ in 0..2 {
            assert_eq!(limiter.blocked("k", rule).await, None);
            limiter.hit("k", rule).await;
        }
        let retry = limiter.blocked("k", rule).await;
        assert!(retry.is_some_and(|r| r <= rule.window), "{retry:?}");
        assert_eq!(limiter.blocked("other", rule).await, None);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(limiter.blocked("k", rule).await, None);
        limiter.hit("k", rule).await;
        limiter.hit("k", rule).await;
        limiter.reset("k").await;
        assert_eq!(limiter.blocked("k", rule).await, None);
    }
}
