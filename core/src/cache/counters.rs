//! Fixed-window counters (login and registration limits), shared through Redis.

use std::time::Duration;

use super::{Cache, CacheError, Store};

/// One fixed-window counter a [`Cache::reserve`] counts under.
#[derive(Debug, Clone, Copy)]
pub struct Counter<'a> {
    pub key: &'a str,
    /// Counts the window holds; a reservation is refused once one counter has them.
    pub limit: u64,
    /// Starts with the key's first count.
    pub window: Duration,
}

/// What a [`Cache::reserve`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Counted under every counter.
    Taken,
    /// A counter is at its limit: nothing was counted; its window ends in `retry_after`.
    Full { retry_after: Duration },
}

impl Cache {
    /// Counts one more under `key` in a fixed window of `window` that starts with the
    /// first count; returns the count and the time left. An error means the count is
    /// unknown: the caller decides what to do without it (see `ratelimit`).
    pub async fn incr(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError> {
        let key = self.key(key);
        match &self.inner.store {
            Store::Memory(memory) => Ok(memory.incr(&key, window)),
            Store::Redis(redis) => self.run("incr", redis.incr(&key, window)).await,
        }
    }

    /// Counts one attempt under every counter at once, unless one of them has already
    /// reached its limit (then nothing is counted): the check and the count are one
    /// step (a Lua script in Redis), so N concurrent callers take at most the limit.
    /// Give back an attempt that turned out not to count with [`Cache::refund`].
    pub async fn reserve(&self, counters: &[Counter<'_>]) -> Result<Reserve, CacheError> {
        let keyed: Vec<String> = counters.iter().map(|c| self.key(c.key)).collect();
        let counters: Vec<Counter<'_>> = counters
            .iter()
            .zip(&keyed)
            .map(|(c, key)| Counter { key, ..*c })
            .collect();
        match &self.inner.store {
            Store::Memory(memory) => Ok(memory.reserve(&counters)),
            Store::Redis(redis) => self.run("reserve", redis.reserve(&counters)).await,
        }
    }

    /// Takes back one count under `key` in its current window (none if it has none).
    pub async fn refund(&self, key: &str) -> Result<(), CacheError> {
        let key = self.key(key);
        match &self.inner.store {
            Store::Memory(memory) => {
                memory.refund(&key);
                Ok(())
            }
            Store::Redis(redis) => self.run("refund", redis.refund(&key)).await,
        }
    }

    /// The count [`Cache::incr`] keeps under `key` and the time left in its window,
    /// without counting; `(0, 0)` when no window is running.
    pub async fn count(&self, key: &str) -> Result<(u64, Duration), CacheError> {
        let key = self.key(key);
        match &self.inner.store {
            Store::Memory(memory) => Ok(memory.count(&key)),
            Store::Redis(redis) => self.run("count", redis.count(&key)).await,
        }
    }
}
