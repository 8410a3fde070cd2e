//! A cache that never fails a request: Redis when `REDIS_URL` is set (shared by every
//! replica), otherwise a bounded in-process map.
//!
//! Every read that can't reach Redis is a miss and every write is skipped, so a Redis
//! that is down makes requests slower, not failed. After a few failures in a row a
//! circuit breaker stops calling Redis for a while (one probe at a time tests it), so
//! requests don't each pay a timeout; `/health/ready` shows the cache as degraded until
//! it answers again. Invalidations that could not be sent are kept and sent first
//! when Redis answers again, before this replica reads from it.
//!
//! Keys are namespaced by `CACHE_KEY_PREFIX`; values are JSON with a time to live.

mod breaker;
mod memory;
mod near;
mod redis;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use metrics::{counter, gauge, histogram};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use breaker::BreakerState;

use self::breaker::Breaker;
use self::memory::MemoryStore;
use self::near::{FORGET_ALL, Near};
use self::redis::RedisStore;
use crate::health::Check;
use crate::settings::CacheSettings;
use crate::telemetry::metrics::{
    CACHE_BREAKER_STATE, CACHE_HITS, CACHE_MISSES, CACHE_OPERATION_DURATION, CACHE_OPERATIONS,
};

/// How long an open breaker leaves Redis alone before one call probes it.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(2);

/// How long a version stamp lives after its last bump. It must outlive every value
/// stored under it, or an expired stamp could make an old value look current again.
const STAMP_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a stamped value is kept (half the stamp's life, for margin).
const MAX_STAMPED_TTL: Duration = Duration::from_secs(12 * 3600);

/// A value with the version stamps it was computed under.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Stamped<T> {
    stamps: Vec<Option<String>>,
    value: T,
}

/// Invalidations kept for replay while Redis is unreachable; past this many, the whole
/// namespace is dropped on recovery instead.
const MAX_PENDING: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid cache settings: {0}")]
    Config(String),
    #[error("redis: {0}")]
    Unavailable(String),
    #[error("no answer from redis within {0:?}")]
    Timeout(Duration),
    #[error("redis is skipped while the circuit breaker is open")]
    BreakerOpen,
    #[error("cannot encode the value: {0}")]
    Encode(String),
}

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

#[derive(Debug)]
enum Store {
    Memory(MemoryStore),
    Redis(Box<RedisStore>),
}

/// An invalidation that has to reach Redis before this replica trusts it again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Delete(String),
    DeletePrefix(String),
    /// A fresh random token under the key, for `ttl`.
    Bump(String, Duration),
}

impl Pending {
    fn op(&self) -> &'static str {
        match self {
            Self::Delete(_) => "delete",
            Self::DeletePrefix(_) => "delete_prefix",
            Self::Bump(..) => "bump",
        }
    }
}

/// The value a bump writes: new every time.
fn fresh_token() -> Vec<u8> {
    format!("\"{}\"", uuid::Uuid::now_v7()).into_bytes()
}

/// A cheap handle (clone it freely) to one cache.
#[derive(Debug, Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    /// `"{CACHE_KEY_PREFIX}:"`.
    prefix: String,
    timeout: Duration,
    breaker: Breaker,
    pending: Mutex<Vec<Pending>>,
    /// Held while kept invalidations are sent: other calls wait, so none reads Redis
    /// before the invalidations made before it have reached it.
    replaying: tokio::sync::Mutex<()>,
    /// Stamped values kept in this process while the Redis invalidation feed is up.
    near: Option<Arc<Near>>,
    /// The task following that feed; stopped with the cache.
    feed: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(feed) = &self.feed {
            feed.abort();
        }
    }
}

impl Cache {
    /// Redis when `REDIS_URL` is set, else memory. Fails only on settings Redis can't
    /// use; a Redis that is down at start only makes the cache degraded.
    pub fn from_settings(settings: &CacheSettings) -> Result<Self, CacheError> {
        let Some(url) = &settings.redis_url else {
            return Ok(Self::with_store(
                Store::Memory(MemoryStore::new(settings.memory_capacity)),
                &settings.key_prefix,
                settings.redis_timeout,
            ));
        };
        let channel = format!("{}:stamps", settings.key_prefix);
        let store = RedisStore::new(
            url.expose(),
            settings.redis_pool_size,
            settings.redis_timeout,
            channel.clone(),
        )?;
        let mut cache = Self::with_store(
            Store::Redis(Box::new(store)),
            &settings.key_prefix,
            settings.redis_timeout,
        );
        // The feed needs a runtime to run on; without one (a synchronous tool) every
        // stamped read goes to Redis.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = ::redis::Client::open(url.expose())
                .map_err(|err| CacheError::Config(err.to_string()))?;
            let near = Arc::new(Near::new(settings.memory_capacity));
            let feed = runtime.spawn(near::follow(
                near.clone(),
                client,
                channel,
                settings.redis_timeout,
            ));
            if let Some(inner) = Arc::get_mut(&mut cache.inner) {
                inner.near = Some(near);
                inner.feed = Some(feed);
            }
        }
        Ok(cache)
    }

    /// An in-process cache of at most `capacity` entries.
    pub fn memory(prefix: &str, capacity: u64) -> Self {
        Self::with_store(
            Store::Memory(MemoryStore::new(capacity)),
            prefix,
            Duration::from_secs(1),
        )
    }

    fn with_store(store: Store, prefix: &str, timeout: Duration) -> Self {
        if matches!(store, Store::Redis(_)) {
            gauge!(CACHE_BREAKER_STATE).set(BreakerState::Closed.level());
        }
        Self {
            inner: Arc::new(Inner {
                store,
                prefix: format!("{prefix}:"),
                timeout,
                breaker: Breaker::new(BREAKER_COOLDOWN),
                pending: Mutex::new(Vec::new()),
                replaying: tokio::sync::Mutex::new(()),
                near: None,
                feed: None,
            }),
        }
    }

    /// `redis` or `memory`.
    pub fn backend(&self) -> &'static str {
        match self.inner.store {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// Whether every replica sees the same entries (Redis), so they can share
    /// invalidations and counts through it.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.store, Store::Redis(_))
    }

    /// Whether this replica hears every stamp bump right now (Redis's feed), and so
    /// serves stamped values it already fetched from memory.
    pub fn follows_bumps(&self) -> bool {
        self.inner.near.as_ref().is_some_and(|near| near.is_live())
    }

    pub fn breaker_state(&self) -> BreakerState {
        match self.inner.store {
            Store::Memory(_) => BreakerState::Closed,
            Store::Redis(_) => self.inner.breaker.state(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// The value under `key`; `None` when absent, expired, undecodable (e.g. written by
    /// an older release) or when the cache can't be reached.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let key = self.key(key);
        match &self.inner.store {
            Store::Memory(memory) => decode(memory.get(&key).as_deref()),
            Store::Redis(redis) => match self.run("get", redis.get(&key)).await {
                Ok(bytes) => decode(bytes.as_deref()),
                Err(_) => None,
            },
        }
    }

    /// The raw values under `keys`, in one round trip; `None` when the cache can't be
    /// reached.
    async fn fetch_many(&self, keys: &[String]) -> Option<Vec<Option<Vec<u8>>>> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        match &self.inner.store {
            Store::Memory(memory) => Some(
                keys.iter()
                    .map(|key| memory.get(key).map(|bytes| bytes.to_vec()))
                    .collect(),
            ),
            Store::Redis(redis) => self.run("get_many", redis.get_many(&keys)).await.ok(),
        }
    }

    /// The value under `key` if the version `stamps` it was computed under are still
    /// current, else `compute`'s, stored with the stamps read *before* computing. A
    /// change bumps a stamp ([`Cache::bump`]) after it commits, so a value computed
    /// before the change — even one a racing request stores after it — is never served
    /// again. One round trip (MGET of the value and its stamps); without a reachable
    /// cache, every call computes.
    pub async fn get_or_compute_stamped<T, E, F, Fut>(
        &self,
        key: &str,
        stamps: &[&str],
        ttl: Duration,
        compute: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let near = self.inner.near.as_deref();
        let full_key = self.key(key);
        if let Some(bytes) = near.and_then(|near| near.get(&full_key, stamps))
            && let Some(entry) = decode_quiet::<Stamped<T>>(Some(&bytes))
        {
            counter!(CACHE_HITS).increment(1);
            return Ok(entry.value);
        }
        let ticket = near.map(Near::ticket);
        let mut keys = Vec::with_capacity(stamps.len() + 1);
        keys.push(key.to_owned());
        keys.extend(stamps.iter().map(|s| format!("stamp:{s}")));
        let Some(mut found) = self.fetch_many(&keys).await else {
            counter!(CACHE_MISSES).increment(1);
            return compute().await;
        };
        let current: Vec<Option<String>> = found[1..]
            .iter()
            .map(|slot| decode_quiet(slot.as_deref()))
            .collect();
        // Remembered in this process with the stamps it was fetched under (Redis only).
        let remember = |bytes: Arc<[u8]>| {
            if let (Some(near), Some(ticket)) = (near, ticket) {
                let stamped = keys[1..].iter().map(|k| self.key(k)).zip(current.clone());
                near.remember(ticket, &full_key, stamps, stamped.collect(), bytes, ttl);
            }
        };
        if let Some(bytes) = found[0].take()
            && let Some(entry) =
                decode_quiet::<Stamped<T>>(Some(&bytes)).filter(|entry| entry.stamps == current)
        {
            counter!(CACHE_HITS).increment(1);
            remember(bytes.into());
            return Ok(entry.value);
        }
        counter!(CACHE_MISSES).increment(1);
        let entry = Stamped {
            stamps: current.clone(),
            value: compute().await?,
        };
        match serde_json::to_vec(&entry) {
            Ok(bytes) => {
                let bytes: Arc<[u8]> = bytes.into();
                self.set_bytes(&full_key, &bytes, ttl.min(MAX_STAMPED_TTL))
                    .await;
                remember(bytes);
            }
            Err(err) => tracing::error!(key, error = %err, "cache: value not encodable"),
        }
        Ok(entry.value)
    }

    /// Stores `value` for `ttl`; skipped (and counted) when the cache can't be reached.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T, ttl: Duration) {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.set_bytes(&self.key(key), &bytes, ttl).await,
            Err(err) => tracing::error!(key, error = %err, "cache: value not encodable"),
        }
    }

    async fn set_bytes(&self, key: &str, bytes: &[u8], ttl: Duration) {
        match &self.inner.store {
            Store::Memory(memory) => memory.set(key, bytes, ttl),
            Store::Redis(redis) => {
                let _ = self.run("set", redis.set(key, bytes, ttl)).await;
            }
        }
    }

    /// Removes `key`. If Redis can't be reached the removal is kept and sent before
    /// this replica reads from Redis again.
    pub async fn delete(&self, key: &str) {
        self.invalidate(Pending::Delete(self.key(key))).await;
    }

    /// Removes every key that starts with `prefix` (SCAN + UNLINK on Redis: cost grows
    /// with the keyspace, so use it for rare invalidations such as a publish).
    pub async fn delete_prefix(&self, prefix: &str) {
        self.invalidate(Pending::DeletePrefix(self.key(prefix)))
            .await;
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

    async fn invalidate(&self, what: Pending) {
        // Forgotten here before and after Redis has the change: a read that fetched the
        // old token in between would otherwise store it after the first forget and
        // serve it on this replica until the bump's own message came back.
        let forget = || {
            if let Some(near) = &self.inner.near {
                match &what {
                    Pending::Bump(stamp, _) => near.forget(stamp),
                    Pending::DeletePrefix(_) => near.forget(FORGET_ALL),
                    Pending::Delete(_) => {}
                }
            }
        };
        forget();
        self.apply_or_keep(&what).await;
        forget();
    }

    /// Sends `what` to the store, or keeps it for replay while Redis is unreachable.
    async fn apply_or_keep(&self, what: &Pending) {
        let what = what.clone();
        match &self.inner.store {
            Store::Memory(memory) => memory.apply(&what),
            Store::Redis(redis) => {
                if self.run(what.op(), redis.apply(&what)).await.is_err() {
                    let mut pending = self.lock_pending();
                    if pending.len() >= MAX_PENDING {
                        pending.clear();
                        pending.push(Pending::DeletePrefix(self.inner.prefix.clone()));
                    } else if !pending.contains(&what) {
                        pending.push(what);
                    }
                }
            }
        }
    }

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

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One Redis call through the breaker, under the timeout, with its metrics; sends
    /// any invalidation left over from an outage first.
    async fn run<R>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<R, CacheError>>,
    ) -> Result<R, CacheError> {
        let Store::Redis(redis) = &self.inner.store else {
            return call.await;
        };
        let breaker = &self.inner.breaker;
        if !breaker.allow() {
            counter!(CACHE_OPERATIONS, "op" => op, "result" => "skipped").increment(1);
            return Err(CacheError::BreakerOpen);
        }
        let started = Instant::now();
        let timeout = self.inner.timeout;
        let result = match tokio::time::timeout(timeout, async {
            self.replay(redis).await?;
            call.await
        })
        .await
        {
            Ok(result) => result,
            Err(_) => Err(CacheError::Timeout(timeout)),
        };
        histogram!(CACHE_OPERATION_DURATION, "op" => op).record(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => {
                breaker.succeeded();
                counter!(CACHE_OPERATIONS, "op" => op, "result" => "ok").increment(1);
            }
            Err(err) => {
                redis.reset();
                breaker.failed();
                counter!(CACHE_OPERATIONS, "op" => op, "result" => "error").increment(1);
                tracing::warn!(op, error = %err, "cache: redis call failed");
            }
        }
        gauge!(CACHE_BREAKER_STATE).set(breaker.state().level());
        result
    }

    async fn replay(&self, redis: &RedisStore) -> Result<(), CacheError> {
        // Nothing kept and no replay under way: the common case, without waiting.
        if self.lock_pending().is_empty() && self.inner.replaying.try_lock().is_ok() {
            return Ok(());
        }
        let _replaying = self.inner.replaying.lock().await;
        let pending = std::mem::take(&mut *self.lock_pending());
        if pending.is_empty() {
            return Ok(());
        }
        for (i, what) in pending.iter().enumerate() {
            if let Err(err) = redis.apply(what).await {
                let mut left = self.lock_pending();
                left.extend(pending[i..].iter().cloned());
                return Err(err);
            }
        }
        tracing::info!(
            count = pending.len(),
            "cache: invalidations from the outage sent"
        );
        Ok(())
    }

    /// Round trip to the backend, past the breaker: the readiness probe is what tells
    /// an operator whether Redis is back.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &self.inner.store {
            Store::Memory(_) => Ok(()),
            Store::Redis(redis) => {
                let timeout = self.inner.timeout;
                let pinged = tokio::time::timeout(timeout, redis.ping())
                    .await
                    .unwrap_or(Err(CacheError::Timeout(timeout)));
                if pinged.is_err() {
                    redis.reset();
                }
                pinged
            }
        }
    }
}

fn decode_quiet<T: DeserializeOwned>(bytes: Option<&[u8]>) -> Option<T> {
    bytes.and_then(|bytes| match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::debug!(error = %err, "cache: stored value does not decode; a miss");
            None
        }
    })
}

/// A hit or a miss, counted; a value that doesn't decode counts as a miss.
fn decode<T: DeserializeOwned>(bytes: Option<&[u8]>) -> Option<T> {
    let decoded = decode_quiet(bytes);
    if decoded.is_some() {
        counter!(CACHE_HITS).increment(1);
    } else {
        counter!(CACHE_MISSES).increment(1);
    }
    decoded
}

/// The cache is optional: down, it marks the service degraded, not unready.
impl Check for Cache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn required(&self) -> bool {
        false
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.ping().await.map_err(|err| match self.breaker_state() {
                BreakerState::Closed => err.to_string(),
                state => format!("{err} (breaker {})", state.as_str()),
            })
        })
    }
}
