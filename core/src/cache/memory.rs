//! The in-process backend: a bounded map (moka, TinyLFU eviction) with a deadline per
//! entry. The zero-config default, and exact for one replica; with several replicas each
//! has its own view, which is why production sets `REDIS_URL`.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::ops::compute::Op;
use moka::sync::Cache;

use super::backlog::{Pending, fresh_token};
use super::{Counter, Reserve};

#[derive(Debug, Clone)]
enum Value {
    Bytes(Arc<[u8]>),
    Count(u64),
    /// A decoded value, never encoded: only this process reads it (see `stamped`).
    Held(Arc<dyn Any + Send + Sync>),
}

#[derive(Debug, Clone)]
struct Stored {
    value: Value,
    expires_at: Instant,
}

/// Each entry lives until its own deadline.
#[derive(Debug)]
struct UntilDeadline;

impl Expiry<String, Stored> for UntilDeadline {
    fn expire_after_create(&self, _: &String, stored: &Stored, now: Instant) -> Option<Duration> {
        Some(stored.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        stored: &Stored,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(stored.expires_at.saturating_duration_since(now))
    }
}

#[derive(Debug, Clone)]
pub(super) struct MemoryStore {
    entries: Cache<String, Stored>,
    /// Makes a reservation's check of every counter and its counting one step.
    reserving: Arc<Mutex<()>>,
}

impl MemoryStore {
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilDeadline)
                .build(),
            reserving: Arc::new(Mutex::new(())),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let stored = self.entries.get(key)?;
        match stored.value {
            Value::Bytes(bytes) if stored.expires_at > Instant::now() => Some(bytes),
            _ => None,
        }
    }

    pub(super) fn set(&self, key: &str, bytes: &[u8], ttl: Duration) {
        self.entries.insert(
            key.to_owned(),
            Stored {
                value: Value::Bytes(bytes.into()),
                expires_at: Instant::now() + ttl,
            },
        );
    }

    /// The token of the stamp `key`, created fresh (for `ttl`) when it has none, so a
    /// value is never kept under an absent stamp: a stamp evicted (or deleted) after its
    /// bump would otherwise read as absent again and make such a value current.
    pub(super) fn stamp(&self, key: &str, ttl: Duration) -> Arc<[u8]> {
        if let Some(token) = self.get(key) {
            return token;
        }
        let now = Instant::now();
        let result = self
            .entries
            .entry(key.to_owned())
            .and_compute_with(|current| match current.map(|entry| entry.into_value()) {
                // Created by a racing read in between: share it.
                Some(Stored {
                    value: Value::Bytes(_),
                    expires_at,
                }) if expires_at > now => Op::Nop,
                _ => Op::Put(Stored {
                    value: Value::Bytes(fresh_token().into()),
                    expires_at: now + ttl,
                }),
            });
        match result.into_entry().map(|entry| entry.into_value().value) {
            Some(Value::Bytes(token)) => token,
            // Either arm above leaves a token behind.
            _ => fresh_token().into(),
        }
    }

    /// The value [`MemoryStore::hold`] kept under `key`.
    pub(super) fn held(&self, key: &str) -> Option<Arc<dyn Any + Send + Sync>> {
        let stored = self.entries.get(key)?;
        match stored.value {
            Value::Held(value) if stored.expires_at > Instant::now() => Some(value),
            _ => None,
        }
    }

    /// Keeps `value` as it is, for `ttl`.
    pub(super) fn hold(&self, key: &str, value: Arc<dyn Any + Send + Sync>, ttl: Duration) {
        self.entries.insert(
            key.to_owned(),
            Stored {
                value: Value::Held(value),
                expires_at: Instant::now() + ttl,
            },
        );
    }

    pub(super) fn delete(&self, key: &str) {
        self.entries.invalidate(key);
    }

    pub(super) fn delete_prefix(&self, prefix: &str) {
        for (key, _) in self.entries.iter() {
            if key.starts_with(prefix) {
                self.entries.invalidate(key.as_str());
            }
        }
    }

    pub(super) fn apply(&self, invalidation: &Pending) {
        match invalidation {
            Pending::Delete(key) => self.delete(key),
            Pending::DeletePrefix(prefix) => self.delete_prefix(prefix),
            Pending::Bump(key, ttl) => self.set(key, &fresh_token(), *ttl),
        }
    }

    /// A counter's value and the time left in its window; zero when there is none.
    pub(super) fn count(&self, key: &str) -> (u64, Duration) {
        let now = Instant::now();
        match self.entries.get(key) {
            Some(Stored {
                value: Value::Count(n),
                expires_at,
            }) if expires_at > now => (n, expires_at - now),
            _ => (0, Duration::ZERO),
        }
    }

    /// Counts one more in the window that started with the key's first count; returns
    /// the count and the time left in the window.
    pub(super) fn incr(&self, key: &str, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        let result = self
            .entries
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let next = match current.map(|entry| entry.into_value()) {
                    Some(Stored {
                        value: Value::Count(n),
                        expires_at,
                    }) if expires_at > now => Stored {
                        value: Value::Count(n.saturating_add(1)),
                        expires_at,
                    },
                    _ => Stored {
                        value: Value::Count(1),
                        expires_at: now + window,
                    },
                };
                Op::Put(next)
            });
        match result.into_entry().map(|entry| entry.into_value()) {
            Some(Stored {
                value: Value::Count(n),
                expires_at,
            }) => (n, expires_at.saturating_duration_since(now)),
            // `Op::Put` always leaves a count behind.
            _ => (1, window),
        }
    }
}

impl MemoryStore {
    /// Counts one under every counter, unless one of them is already at its limit; the
    /// check and the counting are one step for concurrent callers in this process.
    pub(super) fn reserve(&self, counters: &[Counter<'_>]) -> Reserve {
        let _one_at_a_time = self.reserving.lock().unwrap_or_else(|e| e.into_inner());
        let full = counters
            .iter()
            .filter_map(|c| {
                let (count, left) = self.count(c.key);
                (count >= c.limit && !left.is_zero()).then_some(left)
            })
            .max();
        if let Some(retry_after) = full {
            return Reserve::Full { retry_after };
        }
        for counter in counters {
            self.incr(counter.key, counter.window);
        }
        Reserve::Taken
    }

    /// Takes back one count from `key`'s current window, if it has any.
    pub(super) fn refund(&self, key: &str) {
        let _one_at_a_time = self.reserving.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        self.entries
            .entry(key.to_owned())
            .and_compute_with(|current| match current.map(|entry| entry.into_value()) {
                Some(Stored {
                    value: Value::Count(n),
                    expires_at,
                }) if n > 0 && expires_at > now => Op::Put(Stored {
                    value: Value::Count(n - 1),
                    expires_at,
                }),
                _ => Op::Nop,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_at_their_own_deadline() {
        let store = MemoryStore::new(100);
        store.set("short", b"1", Duration::from_millis(20));
        store.set("long", b"2", Duration::from_secs(60));
        assert_eq!(store.get("short").as_deref(), Some(&b"1"[..]));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(store.get("short"), None);
        assert_eq!(store.get("long").as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn counts_run_in_fixed_windows() {
        let store = MemoryStore::new(100);
        let window = Duration::from_millis(40);
        assert_eq!(store.incr("k", window).0, 1);
        let (n, left) = store.incr("k", window);
        assert_eq!(n, 2);
        assert!(left <= window);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(store.incr("k", window).0, 1, "a new window");
    }

    #[test]
    fn prefixes_are_deleted_together_and_size_is_bounded() {
        let store = MemoryStore::new(50);
        for i in 0..10 {
            store.set(&format!("a:{i}"), b"x", Duration::from_secs(60));
        }
        store.set("b:1", b"y", Duration::from_secs(60));
        store.delete_prefix("a:");
        assert!((0..10).all(|i| store.get(&format!("a:{i}")).is_none()));
        assert!(store.get("b:1").is_some());

        for i in 0..1000 {
            store.set(&format!("c:{i}"), b"z", Duration::from_secs(60));
        }
        store.entries.run_pending_tasks();
        assert!(store.entries.entry_count() <= 50);
    }
}
