//! Query results kept in memory until PostgreSQL reports a change to a table they read
//! (see [`ChangeFeed`]), so hot reads skip the database without ever serving a result
//! older than the last committed write this replica has been told about (a few
//! milliseconds after commit).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::changes::ChangeFeed;
use crate::bounded::make_room;
use crate::telemetry::metrics as names;

/// A bounded map from query to result, valid while the tables it reads are unchanged.
#[derive(Debug)]
pub struct QueryCache<K, V> {
    name: &'static str,
    feed: ChangeFeed,
    tables: &'static [&'static str],
    /// A safety net: entries are dropped after this even without a change.
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<K, Entry<V>>>,
}

#[derive(Debug)]
struct Entry<V> {
    version: u64,
    expires: Instant,
    value: V,
}

impl<K: Hash + Eq, V: Clone> QueryCache<K, V> {
    /// A cache called `name` in metrics, for results that depend on `tables` only.
    pub fn new(
        name: &'static str,
        feed: ChangeFeed,
        tables: &'static [&'static str],
        ttl: Duration,
        capacity: usize,
    ) -> Self {
        Self {
            name,
            feed,
            tables,
            ttl,
            capacity: capacity.max(1),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached result for `key`, or `load`'s, which is kept if no watched table
    /// changed while it ran.
    pub async fn get_or_load<E>(
        &self,
        key: K,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        let version = self.feed.version(self.tables);
        if let Some(version) = version {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = entries.get(&key)
                && entry.version == version
                && entry.expires > Instant::now()
            {
                metrics::counter!(names::QUERY_CACHE_HITS, "cache" => self.name).increment(1);
                return Ok(entry.value.clone());
            }
        }
        metrics::counter!(names::QUERY_CACHE_MISSES, "cache" => self.name).increment(1);
        let value = load.await?;
        if let Some(version) = version
            && self.feed.version(self.tables) == Some(version)
        {
            self.store(key, version, value.clone());
        }
        Ok(value)
    }

    fn store(&self, key: K, version: u64, value: V) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !entries.contains_key(&key) {
            make_room(&mut entries, self.capacity, |e| {
                e.expires > now && e.version == version
            });
        }
        entries.insert(
            key,
            Entry {
                version,
                expires: now + self.ttl,
                value,
            },
        );
    }
}
