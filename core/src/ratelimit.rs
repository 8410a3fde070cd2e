//! Counting attempts per key in fixed windows (failed logins per account and per IP).
//!
//! Counts live in the cache, so with Redis every replica shares them. When Redis can't
//! be reached the limiter counts in this process instead: limits keep holding per
//! replica, but an attacker spreading attempts over N replicas gets up to N times the
//! limit until Redis is back, and the counts made meanwhile are not merged into Redis.
//! Failing closed (refusing every login) would turn a cache outage into a login outage.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use crate::cache::{Cache, Counter, Reserve};

/// How a client address is counted: an IPv4 address alone, an IPv6 address by its
/// network of `v6_prefix` bits (`2001:db8:1:2::/64`), since one host can use every
/// address in its allocation. IPv4-mapped IPv6 addresses count as IPv4.
pub fn client_key(ip: IpAddr, v6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u32::from(v6_prefix.clamp(1, 128));
                let mask = u128::MAX << (128 - prefix);
                let network = Ipv6Addr::from(u128::from(v6) & mask);
                format!("{network}/{prefix}")
            }
        },
    }
}

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

    /// Reserves one attempt under every `(key, rule)` before the work it guards, or
    /// answers how long until the first full one frees up. Reserving is one atomic step
    /// (check and count together), so N concurrent attempts get at most the limit
    /// through, whatever their outcome; give back an attempt that must not count
    /// (a successful login) with [`RateLimiter::refund`].
    pub async fn reserve(&self, limits: &[(&str, Rule)]) -> Result<(), Duration> {
        let keys: Vec<String> = limits.iter().map(|(key, _)| Self::key(key)).collect();
        let counters: Vec<Counter<'_>> = limits
            .iter()
            .zip(&keys)
            .map(|((_, rule), key)| Counter {
                key,
                limit: u64::from(rule.limit),
                window: rule.window,
            })
            .collect();
        let reserved = match self.cache.reserve(&counters).await {
            Ok(reserved) => reserved,
            Err(_) => self
                .local
                .reserve(&counters)
                .await
                .unwrap_or(Reserve::Taken),
        };
        match reserved {
            Reserve::Taken => Ok(()),
            Reserve::Full { retry_after } => Err(retry_after.max(Duration::from_secs(1))),
        }
    }

    /// Gives back one attempt reserved under `key`.
    pub async fn refund(&self, key: &str) {
        let key = Self::key(key);
        if self.cache.refund(&key).await.is_err() || self.cache.is_shared() {
            let _ = self.local.refund(&key).await;
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

    const RULE: Rule = Rule {
        limit: 2,
        window: Duration::from_millis(200),
    };

    #[test]
    fn ipv6_clients_are_counted_per_network() {
        let key = |ip: &str, prefix| client_key(ip.parse().unwrap(), prefix);
        assert_eq!(key("203.0.113.9", 64), "203.0.113.9");
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(key("2001:db8:1:3::1", 64), "2001:db8:1:3::/64");
        assert_eq!(key("2001:db8:1:2::1", 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(key("::ffff:198.51.100.7", 64), "198.51.100.7");
    }

    #[tokio::test]
    async fn reserves_up_to_the_limit_until_the_window_ends() {
        let limiter = RateLimiter::in_memory();
        assert_eq!(limiter.reserve(&[("k", RULE)]).await, Ok(()));
        assert_eq!(limiter.reserve(&[("k", RULE)]).await, Ok(()));
        let retry = limiter.reserve(&[("k", RULE)]).await;
        assert!(
            retry.is_err_and(|r| r <= Duration::from_secs(1)),
            "{retry:?}"
        );
        assert_eq!(limiter.reserve(&[("other", RULE)]).await, Ok(()));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(limiter.reserve(&[("k", RULE)]).await, Ok(()));
        limiter.reset("k").await;
        assert_eq!(limiter.reserve(&[("k", RULE)]).await, Ok(()));
    }

    #[tokio::test]
    async fn a_refund_gives_one_back_and_a_full_key_counts_nothing_elsewhere() {
        let limiter = RateLimiter::in_memory();
        for _ in 0..2 {
            assert_eq!(limiter.reserve(&[("a", RULE), ("b", RULE)]).await, Ok(()));
        }
        limiter.refund("b").await;
        // `a` is full: `b` is not counted, so it still has one left afterwards.
        assert!(limiter.reserve(&[("a", RULE), ("b", RULE)]).await.is_err());
        assert_eq!(limiter.reserve(&[("b", RULE)]).await, Ok(()));
        assert!(limiter.reserve(&[("b", RULE)]).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_take_at_most_the_limit() {
        let rule = Rule {
            limit: 5,
            window: Duration::from_secs(60),
        };
        for trial in 0..20 {
            let limiter = RateLimiter::in_memory();
            let key = format!("k{trial}");
            let attempts = (0..40).map(|_| {
                let (limiter, key) = (limiter.clone(), key.clone());
                tokio::spawn(async move { limiter.reserve(&[(&key, rule)]).await.is_ok() })
            });
            let mut taken = 0;
            for attempt in attempts.collect::<Vec<_>>() {
                taken += usize::from(attempt.await.unwrap_or(false));
            }
            assert_eq!(taken, 5, "trial {trial}");
        }
    }
}
