//! A cache that never fails a request: Redis when `REDIS_URL` is set (shared by every
//! replica), otherwise a bounded in-process map.
//!
//! Every read that can't reach Redis is a miss and every write is skipped, so a Redis
//! that is down makes requests slower, not failed. After a few failures in a row a
//! circuit breaker stops calling Redis for a while (one probe at a time tests it), so
//! requests don't each pay a timeout; `/health/ready` shows the cache as degraded until
//! it answers again. Invalidations that could not be sent are kept and sent first
//! when Redis answers again, before this replica reads from it; the other replicas are
//! told of them through PostgreSQL and keep them too (see `peers`).
//!
//! Keys are namespaced by `CACHE_KEY_PREFIX`; values are JSON with a time to live,
//! except the stamped values this process keeps itself, which it keeps decoded.

mod backlog;
mod breaker;
mod counters;
mod memory;
mod near;
mod peers;
mod redis;
mod stamped;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use metrics::{counter, gauge, histogram};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use breaker::BreakerState;
pub use counters::{Counter, Reserve};
pub use peers::{CHANNEL as INVALIDATIONS_CHANNEL, Tell};

use self::backlog::{Backlog, Pending};
use self::breaker::Breaker;
use self::memory::MemoryStore;
use self::near::{FORGET_ALL, Near};
use self::peers::{Peers, Told};
use self::redis::RedisStore;
use crate::health::{Check, CheckError};
use crate::settings::CacheSettings;
use crate::telemetry::metrics::{
    CACHE_BREAKER_STATE, CACHE_HITS, CACHE_MISSES, CACHE_OPERATION_DURATION, CACHE_OPERATIONS,
};

/// One [`Cache::on_bump`] hook.
type BumpHook = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// What [`Cache::on_bump`] registered: each called with the stamp's own name.
struct BumpHooks {
    /// `"{prefix}:stamp:"`: what a full stamp key starts with.
    stamps: String,
    hooks: std::sync::RwLock<Vec<BumpHook>>,
}

impl std::fmt::Debug for BumpHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("BumpHooks")
            .field("hooks", &hooks.len())
            .finish()
    }
}

impl BumpHooks {
    fn new(prefix: &str) -> Self {
        Self {
            stamps: format!("{prefix}:stamp:"),
            hooks: std::sync::RwLock::default(),
        }
    }

    fn add(&self, hook: BumpHook) {
        self.hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// A bump of the full stamp key `key` ([`FORGET_ALL`]: of everything) was heard.
    fn bumped(&self, key: &str) {
        let stamp = if key == FORGET_ALL {
            None
        } else {
            match key.strip_prefix(&self.stamps) {
                Some(stamp) => Some(stamp),
                None => return,
            }
        };
        let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone();
        for hook in hooks {
            hook(stamp);
        }
    }
}

/// Whether an invalidation this replica keeps is told to the others: not when they
/// told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Share {
    Yes,
    No,
}

/// How long an open breaker leaves Redis alone before one call probes it.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid cache settings: {0}")]
    Config(String),
    /// Redis can't be reached (refused, dropped, no connection to be had).
    #[error("redis: {0}")]
    Unavailable(String),
    /// Redis answered with an error (out of memory, a read-only replica).
    #[error("redis refused the command: {0}")]
    Refused(String),
    #[error("no answer from redis within {0:?}")]
    Timeout(Duration),
    #[error("redis is skipped while the circuit breaker is open")]
    BreakerOpen,
    #[error("cannot encode the value: {0}")]
    Encode(String),
}

#[derive(Debug)]
enum Store {
    Memory(MemoryStore),
    Redis(Box<RedisStore>),
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
    /// Invalidations Redis hasn't had yet, sent before anything else reads it.
    backlog: Backlog,
    /// The other replicas, told of what `backlog` keeps.
    peers: Peers,
    /// Told of every bump made elsewhere (see [`Cache::on_bump`]).
    hooks: Arc<BumpHooks>,
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
                cache.inner.hooks.clone(),
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
                backlog: Backlog::default(),
                peers: Peers::default(),
                hooks: Arc::new(BumpHooks::new(prefix)),
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

    /// The raw values under `keys` in Redis, in one round trip; `None` when it can't be
    /// reached. (The in-process backend's stamped reads hold decoded values instead.)
    async fn fetch_many(
        &self,
        redis: &RedisStore,
        keys: &[String],
    ) -> Option<Vec<Option<Vec<u8>>>> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.run("get_many", redis.get_many(&keys)).await.ok()
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

    async fn invalidate(&self, what: Pending) {
        let cache = self.clone();
        // Spawned: a request cancelled after its change committed still invalidates.
        let _ = tokio::spawn(async move { cache.invalidate_now(&what, Share::Yes).await }).await;
    }

    async fn invalidate_now(&self, what: &Pending, share: Share) {
        // Forgotten here before and after Redis has the change: a read that fetched the
        // old token in between would otherwise store it after the first forget and
        // serve it on this replica until the bump's own message came back.
        let near = self.inner.near.as_deref().filter(|near| near.is_live());
        let announced = what.announced();
        let echoes = near.zip(announced).map(|(near, _)| near.echoes());
        let forget = || {
            if let (Some(near), Some(stamp)) = (near, announced) {
                near.forget(stamp);
            }
        };
        forget();
        let applied = self.apply_or_keep(what, share).await;
        forget();
        if let (true, Some(echoes), Some(stamp)) = (applied, echoes, announced) {
            self.await_echo(echoes, stamp).await;
        }
    }

    /// Waits, at most the Redis timeout, for this replica's feed to hand back the
    /// message `stamp`'s change sent. Redis writes a message to every subscriber at
    /// once, so by then the other replicas have it too: a client that takes the answer
    /// to another replica finds the change there, save that replica's own scheduling.
    async fn await_echo(
        &self,
        mut echoes: tokio::sync::broadcast::Receiver<Arc<str>>,
        stamp: &str,
    ) {
        let heard = async {
            loop {
                match echoes.recv().await {
                    Ok(message) if &*message == stamp || &*message == FORGET_ALL => return,
                    Ok(_) => {}
                    // Missed some: it may have been among them.
                    Err(_) => return,
                }
            }
        };
        if tokio::time::timeout(self.inner.timeout, heard)
            .await
            .is_err()
        {
            tracing::debug!(
                stamp,
                "cache: an invalidation's message didn't come back in time"
            );
        }
    }

    /// Sends `what` to the store, or keeps it for replay while Redis is unreachable
    /// (and, unless it came from them, tells the other replicas to keep it too);
    /// whether the store has it now.
    async fn apply_or_keep(&self, what: &Pending, share: Share) -> bool {
        match &self.inner.store {
            Store::Memory(memory) => {
                memory.apply(what);
                true
            }
            Store::Redis(redis) => {
                let Err(err) = self.run(what.op(), redis.apply(what)).await else {
                    return true;
                };
                self.inner.backlog.keep(what.clone(), &self.inner.prefix);
                // Only what others can do instead: not an answer Redis would give them
                // too (out of memory), nor a namespace delete each would scan again.
                let unreachable = !matches!(err, CacheError::Refused(_) | CacheError::Encode(_));
                if share == Share::Yes && unreachable && !matches!(what, Pending::DeletePrefix(_)) {
                    self.inner.peers.tell(what);
                }
                self.kick();
                false
            }
        }
    }

    /// Tells the other replicas, through `tell`, every invalidation this one has to keep
    /// because Redis can't be reached; returns what to hand each message heard on
    /// [`INVALIDATIONS_CHANNEL`]. `Context::new` wires both to PostgreSQL.
    pub fn share_invalidations(&self, tell: Tell) -> impl Fn(&str) + Send + Sync + 'static {
        self.inner.peers.share_through(tell);
        // Weak: the handler lives in the database's listener, which `tell` may hold.
        let inner = Arc::downgrade(&self.inner);
        move |message| {
            if let Some(inner) = inner.upgrade() {
                Cache { inner }.heard(message);
            }
        }
    }

    /// Another replica kept an invalidation: keep it here too (or apply it, if Redis
    /// answers), and drop what this replica holds in memory under it.
    fn heard(&self, message: &str) {
        let told: Told = match serde_json::from_str(message) {
            Ok(told) => told,
            Err(err) => {
                tracing::debug!(error = %err, "cache: a message from another replica doesn't decode");
                return;
            }
        };
        // Another app sharing the database keeps its own namespace.
        if told.from == self.inner.peers.id || !told.what.key().starts_with(&self.inner.prefix) {
            return;
        }
        if let Some(stamp) = told.what.announced() {
            self.inner.hooks.bumped(stamp);
        }
        let cache = self.clone();
        tokio::spawn(async move { cache.invalidate_now(&told.what, Share::No).await });
    }

    /// Calls `hook` with each stamp another replica bumps (`None`: every stamp, a
    /// namespace-wide delete), as this replica hears of it: through Redis's feed, or
    /// from a replica Redis can't reach. For what this replica keeps outside the cache
    /// while Redis is away (the principals of `auth::shared`).
    pub fn on_bump(&self, hook: impl Fn(Option<&str>) + Send + Sync + 'static) {
        self.inner.hooks.add(Arc::new(hook));
    }

    /// Sends what the backlog keeps in the background until it is empty, retrying with
    /// backoff while Redis is away: it lands even if this replica makes no other call.
    fn kick(&self) {
        if !self.inner.backlog.kick() {
            return;
        }
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            while let Some(inner) = inner.upgrade() {
                let cache = Cache { inner };
                if cache.inner.backlog.is_empty() {
                    if cache.inner.backlog.rest() {
                        return;
                    }
                    continue;
                }
                if cache.replay_backlog().await.is_err() {
                    drop(cache);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        });
    }

    /// Sends what the backlog keeps, in a task of its own: a caller's timeout or
    /// cancellation leaves it running (a namespace delete can take longer than one
    /// call may), and what it hasn't sent yet stays kept.
    async fn replay_backlog(&self) -> Result<(), CacheError> {
        if self.inner.backlog.is_idle() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let replay = tokio::spawn(async move {
            match &inner.store {
                Store::Redis(redis) => inner.backlog.replay(redis).await,
                Store::Memory(_) => Ok(()),
            }
        });
        replay
            .await
            .unwrap_or_else(|err| Err(CacheError::Unavailable(err.to_string())))
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
            self.replay_backlog().await?;
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

/// Down, it says whether the breaker has opened too.
impl Check for Cache {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move {
            self.ping().await.map_err(|err| match self.breaker_state() {
                BreakerState::Closed => err.into(),
                state => format!("{err} (breaker {})", state.as_str()).into(),
            })
        })
    }
}
