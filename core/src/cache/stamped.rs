//! Values versioned by stamps: read with the stamps they were computed under, stale as
//! soon as one is bumped. See [`Cache::get_or_compute_stamped`].
//!
//! What this process keeps itself (the in-process backend's entries, Redis's near copies)
//! it keeps decoded: a hit is a clone of the value, not a parse of its JSON.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backlog::Pending;
use super::memory::MemoryStore;
use super::near::Near;
use super::{Cache, Store, decode_quiet};
use crate::telemetry::metrics::{CACHE_HITS, CACHE_MISSES};

/// How long a version stamp lives after its last bump. It must outlive every value
/// stored under it, or an expired stamp could make an old value look current again.
const STAMP_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a stamped value is kept (half the stamp's life, for margin).
const MAX_STAMPED_TTL: Duration = Duration::from_secs(12 * 3600);

/// A value with the version stamps it was computed under.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) struct Stamped<T> {
    stamps: Vec<Option<String>>,
    value: T,
}

/// A value as the in-process backend holds it: decoded, with its stamps' tokens as they
/// were stored when it was computed (never absent: see [`MemoryStore::stamp`]).
struct Held<T> {
    tokens: Vec<Arc<[u8]>>,
    value: T,
}

impl Cache {
    /// The value under `key` if the version `stamps` it was computed under are still
    /// current, else `compute`'s, stored with the stamps read *before* computing. A
    /// change bumps a stamp ([`Cache::bump`]) after it commits, so a value computed
    /// before the change — even one a racing request stores after it — is never served
    /// again. One round trip (MGET of the value and its stamps); without a reachable
    /// cache, or with a zero `ttl` (caching switched off), every call computes.
    pub async fn get_or_compute_stamped<T, E, F, Fut>(
        &self,
        key: &str,
        stamps: &[&str],
        ttl: Duration,
        compute: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if ttl.is_zero() {
            return compute().await;
        }
        let full_key = self.key(key);
        let redis = match &self.inner.store {
            Store::Memory(memory) => {
                return self.held(memory, full_key, stamps, ttl, compute).await;
            }
            Store::Redis(redis) => redis,
        };
        let near = self.inner.near.as_deref();
        if let Some(value) = near
            .and_then(|near| near.get(&full_key, stamps))
            .and_then(|value| value.downcast_ref::<T>().cloned())
        {
            counter!(CACHE_HITS).increment(1);
            return Ok(value);
        }
        let ticket = near.map(Near::ticket);
        let mut keys = Vec::with_capacity(stamps.len() + 1);
        keys.push(key.to_owned());
        keys.extend(stamps.iter().map(|s| format!("stamp:{s}")));
        let Some(mut found) = self.fetch_many(redis, &keys).await else {
            counter!(CACHE_MISSES).increment(1);
            return compute().await;
        };
        let current: Vec<Option<String>> = found[1..]
            .iter()
            .map(|slot| decode_quiet(slot.as_deref()))
            .collect();
        // Remembered in this process with the stamps it was fetched under.
        let remember = |value: &T| {
            if let (Some(near), Some(ticket)) = (near, ticket) {
                let stamped = keys[1..].iter().map(|k| self.key(k)).zip(current.clone());
                let value = Arc::new(value.clone());
                near.remember(ticket, &full_key, stamps, stamped.collect(), value, ttl);
            }
        };
        if let Some(bytes) = found[0].take()
            && let Some(entry) =
                decode_quiet::<Stamped<T>>(Some(&bytes)).filter(|entry| entry.stamps == current)
        {
            counter!(CACHE_HITS).increment(1);
            remember(&entry.value);
            return Ok(entry.value);
        }
        counter!(CACHE_MISSES).increment(1);
        let entry = Stamped {
            stamps: current.clone(),
            value: compute().await?,
        };
        match serde_json::to_vec(&entry) {
            Ok(bytes) => {
                self.set_bytes(&full_key, &bytes, ttl.min(MAX_STAMPED_TTL))
                    .await;
                remember(&entry.value);
            }
            Err(err) => tracing::error!(key, error = %err, "cache: value not encodable"),
        }
        Ok(entry.value)
    }

    /// [`Cache::get_or_compute_stamped`] on the in-process backend: the stamps' tokens
    /// are read (or created) before computing, as with Redis, and the value is kept
    /// decoded beside them, so a hit costs a lookup per stamp and a clone.
    async fn held<T, E, F, Fut>(
        &self,
        memory: &MemoryStore,
        full_key: String,
        stamps: &[&str],
        ttl: Duration,
        compute: F,
    ) -> Result<T, E>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let tokens: Vec<Arc<[u8]>> = stamps
            .iter()
            .map(|stamp| memory.stamp(&self.key(&format!("stamp:{stamp}")), STAMP_TTL))
            .collect();
        if let Some(held) = memory.held(&full_key)
            && let Some(held) = held.downcast_ref::<Held<T>>()
            && held.tokens == tokens
        {
            counter!(CACHE_HITS).increment(1);
            return Ok(held.value.clone());
        }
        counter!(CACHE_MISSES).increment(1);
        let value = compute().await?;
        let held: Arc<dyn Any + Send + Sync> = Arc::new(Held {
            tokens,
            value: value.clone(),
        });
        memory.hold(&full_key, held, ttl.min(MAX_STAMPED_TTL));
        Ok(value)
    }

    /// Changes the version `stamp`: every value [`Cache::get_or_compute_stamped`]
    /// stored under it is stale from now on. Kept and resent like a delete when Redis
    /// can't be reached.
    pub async fn bump(&self, stamp: &str) {
        self.invalidate(Pending::Bump(
            self.key(&format!("stamp:{stamp}")),
            STAMP_TTL,
        ))
        .await;
    }
}
