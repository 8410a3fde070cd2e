//! Counting attempts per key in fixed windows (failed logins per account and per IP).
//!
//! The trait is what services use; [`MemoryLimiter`] is the single-replica backend,
//! and a shared backend (Redis `INCR` + `EXPIRE`) gives several replicas one count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::error::ApiError;

/// At most `limit` counted attempts per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u32,
    pub window: Duration,
}

/// A rate limiter over string keys such as `login:ip:203.0.113.9`.
pub trait RateLimiter: Send + Sync + std::fmt::Debug + 'static {
    /// `Some(retry_after)` when `key` has used up `rule` in the current window.
    fn blocked<'a>(
        &'a self,
        key: &'a str,
        rule: Rule,
    ) -> BoxFuture<'a, Result<Option<Duration>, ApiError>>;

    /// Counts one attempt against `key`.
    fn hit<'a>(&'a self, key: &'a str, rule: Rule) -> BoxFuture<'a, Result<(), ApiError>>;

    /// Forgets `key` (e.g. the account's failures after a successful login).
    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// Windows in process memory; correct for one replica, per-replica for several.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    count: u32,
    ends: Instant,
}

/// Above this many keys, expired windows are swept on the next hit.
const SWEEP_AT: usize = 10_000;

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blocked_now(&self, key: &str, rule: Rule) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .get(key)
            .filter(|w| w.ends > now && w.count >= rule.limit)
            .map(|w| w.ends - now)
    }

    fn hit_now(&self, key: &str, rule: Rule) {
        let now = Instant::now();
        let mut windows = self.lock();
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, w| w.ends > now);
        }
        let window = windows.entry(key.to_owned()).or_insert(Window {
            count: 0,
            ends: now + rule.window,
        });
        if window.ends <= now {
            *window = Window {
                count: 0,
                ends: now + rule.window,
            };
        }
        window.count = window.count.saturating_add(1);
    }
}

impl RateLimiter for MemoryLimiter {
    fn blocked<'a>(
        &'a self,
        key: &'a str,
        rule: Rule,
    ) -> BoxFuture<'a, Result<Option<Duration>, ApiError>> {
        Box::pin(async move { Ok(self.blocked_now(key, rule)) })
    }

    fn hit<'a>(&'a self, key: &'a str, rule: Rule) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            self.hit_now(key, rule);
            Ok(())
        })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            self.lock().remove(key);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_after_the_limit_until_the_window_ends() {
        let limiter = MemoryLimiter::new();
        let rule = Rule {
            limit: 2,
            window: Duration::from_millis(50),
        };
        for _ in 0..2 {
            assert_eq!(limiter.blocked("k", rule).await.unwrap(), None);
            limiter.hit("k", rule).await.unwrap();
        }
        let retry = limiter.blocked("k", rule).await.unwrap().unwrap();
        assert!(retry <= rule.window);
        assert_eq!(limiter.blocked("other", rule).await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(limiter.blocked("k", rule).await.unwrap(), None);
        limiter.hit("k", rule).await.unwrap();
        limiter.hit("k", rule).await.unwrap();
        limiter.reset("k").await.unwrap();
        assert_eq!(limiter.blocked("k", rule).await.unwrap(), None);
    }
}
