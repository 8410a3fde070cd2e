//! `REDIS_*`, `CACHE_*`: the shared cache, or the in-process one.

use std::time::Duration;

use super::Secret;
use super::reader::Reader;

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `None`: the in-process memory cache, which only this replica sees.
    pub redis_url: Option<Secret>,
    /// Starts every key, so several apps (or test runs) can share one Redis.
    pub key_prefix: String,
    pub redis_pool_size: usize,
    /// Longest wait for a pooled connection, a new connection, or one command; past it
    /// the operation counts as failed and the request goes on without the cache.
    pub redis_timeout: Duration,
    /// Entries the memory cache keeps before evicting the least useful.
    pub memory_capacity: u64,
}

impl CacheSettings {
    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        Self {
            redis_url: r.url(
                "REDIS_URL",
                &["redis", "rediss"],
                "redis://localhost:6379/0",
            ),
            key_prefix: r.name_prefix("CACHE_KEY_PREFIX"),
            redis_pool_size: r.parse_where(
                "REDIS_POOL_SIZE",
                16,
                "16",
                |n: &usize| (1..=1000).contains(n),
                "must be between 1 and 1000",
            ),
            redis_timeout: r.duration_within(
                "REDIS_TIMEOUT",
                Duration::from_millis(250),
                "250ms",
                Duration::from_millis(1)..=Duration::from_secs(30),
            ),
            memory_capacity: r.parse_where(
                "CACHE_MEMORY_MAX_ENTRIES",
                100_000,
                "100000",
                |n: &u64| *n >= 1,
                "must be at least 1",
            ),
        }
    }
}
