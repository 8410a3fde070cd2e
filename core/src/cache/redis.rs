//! The shared backend: Redis through a deadpool connection pool, so every replica sees
//! the same values, counts and invalidations.

use std::sync::Mutex;
use std::time::Duration;

use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Script};

use super::backlog::{Pending, fresh_token};
use super::near::FORGET_ALL;
use super::{CacheError, Counter, Reserve};

/// INCR that starts a fixed window on the first count: returns the count and the
/// milliseconds left in the window, in one round trip.
const INCR_IN_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); left = tonumber(ARGV[1]) end
return {n, left}
";

/// A counter's value and milliseconds left, without counting.
const COUNT_IN_WINDOW: &str = r"
local n = redis.call('GET', KEYS[1])
if not n then return {0, 0} end
return {tonumber(n), math.max(redis.call('PTTL', KEYS[1]), 0)}
";

/// Counts one under every key (KEYS) unless one is at its limit, in one step: returns
/// `{1, 0}` when counted, `{0, ms left}` when a key is full. ARGV holds each key's
/// limit and window (ms), in pairs.
const RESERVE: &str = r"
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= tonumber(ARGV[2 * i - 1]) then
    local left = redis.call('PTTL', key)
    if left < 0 then left = tonumber(ARGV[2 * i]) end
    return {0, left}
  end
end
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 or redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[2 * i]) end
end
return {1, 0}
";

/// Takes back one count, keeping the window's expiry.
const REFUND: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 1
";

/// Keys unlinked per SCAN step of a prefix delete.
const SCAN_BATCH: usize = 500;

pub(super) struct RedisStore {
    pool: Pool,
    /// The connection single commands share. A multiplexed connection pipelines the
    /// commands of concurrent requests on one socket, so a request costs one round trip;
    /// checking out a pooled connection per command would cost two (deadpool-redis
    /// PINGs every connection it hands out). Taken from the pool — which bounds its
    /// creation by `REDIS_TIMEOUT` and health-checks it — and returned to it by
    /// [`RedisStore::reset`] after any failure.
    shared: Mutex<Option<Shared>>,
    /// Where bumps are announced, so every replica forgets what it kept of the stamp
    /// (see `near`).
    channel: String,
    incr: Script,
    count: Script,
    reserve: Script,
    refund: Script,
}

struct Shared {
    /// Holds the pool slot while the connection is shared.
    _pooled: deadpool_redis::Connection,
    conn: MultiplexedConnection,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("pool", &self.pool.status())
            .field("shared", &self.lock_shared().is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects lazily: a Redis that is down at start only makes the cache degraded.
    /// `timeout` bounds the wait for a pooled connection and the making of a new one.
    pub(super) fn new(
        url: &str,
        pool_size: usize,
        timeout: Duration,
        channel: String,
    ) -> Result<Self, CacheError> {
        let mut config = Config::from_url(url);
        config.pool = Some(PoolConfig {
            max_size: pool_size,
            timeouts: Timeouts {
                wait: Some(timeout),
                create: Some(timeout),
                recycle: Some(timeout),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|err| CacheError::Config(err.to_string()))?;
        Ok(Self {
            pool,
            shared: Mutex::new(None),
            channel,
            incr: Script::new(INCR_IN_WINDOW),
            count: Script::new(COUNT_IN_WINDOW),
            reserve: Script::new(RESERVE),
            refund: Script::new(REFUND),
        })
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Option<Shared>> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared connection, taking one from the pool if there is none.
    async fn conn(&self) -> Result<MultiplexedConnection, CacheError> {
        if let Some(shared) = &*self.lock_shared() {
            return Ok(shared.conn.clone());
        }
        let pooled = self.pooled().await?;
        let conn = MultiplexedConnection::clone(&pooled);
        let mut shared = self.lock_shared();
        if let Some(existing) = &*shared {
            return Ok(existing.conn.clone()); // another request got there first
        }
        *shared = Some(Shared {
            _pooled: pooled,
            conn: conn.clone(),
        });
        Ok(conn)
    }

    /// A connection of its own, for a command that runs long (a SCAN loop).
    async fn pooled(&self) -> Result<deadpool_redis::Connection, CacheError> {
        self.pool
            .get()
            .await
            .map_err(|err| CacheError::Unavailable(err.to_string()))
    }

    /// Gives the shared connection back after a failure; the next command gets one the
    /// pool has checked (or made anew).
    pub(super) fn reset(&self) {
        self.lock_shared().take();
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.conn().await?.get(key).await?)
    }

    pub(super) async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        Ok(redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn().await?)
            .await?)
    }

    pub(super) async fn set(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok(self.conn().await?.pset_ex(key, bytes, millis).await?)
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), CacheError> {
        Ok(self.conn().await?.unlink(key).await?)
    }

    /// SCAN + UNLINK in batches: no KEYS, so Redis never blocks on a big keyspace.
    pub(super) async fn delete_prefix(&self, prefix: &str) -> Result<(), CacheError> {
        let mut conn = self.pooled().await?;
        let pattern = format!("{}*", escape_glob(prefix));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let () = conn.unlink(keys).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    pub(super) async fn apply(&self, invalidation: &Pending) -> Result<(), CacheError> {
        match invalidation {
            Pending::Delete(key) => self.delete(key).await,
            Pending::DeletePrefix(prefix) => {
                self.delete_prefix(prefix).await?;
                self.announce(FORGET_ALL).await
            }
            Pending::Bump(key, ttl) => self.bump(key, *ttl).await,
        }
    }

    /// The new token and its announcement in one transaction: a replica that reads the
    /// old token before it is replaced gets the message after.
    async fn bump(&self, key: &str, ttl: Duration) -> Result<(), CacheError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let () = redis::pipe()
            .atomic()
            .pset_ex(key, fresh_token(), millis)
            .ignore()
            .publish(&self.channel, key)
            .ignore()
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    async fn announce(&self, message: &str) -> Result<(), CacheError> {
        let _receivers: u64 = self.conn().await?.publish(&self.channel, message).await?;
        Ok(())
    }

    pub(super) async fn incr(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<(u64, Duration), CacheError> {
        let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (count, left): (u64, u64) = self
            .incr
            .key(key)
            .arg(millis)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok((count, Duration::from_millis(left)))
    }

    pub(super) async fn count(&self, key: &str) -> Result<(u64, Duration), CacheError> {
        let (count, left): (u64, u64) = self
            .count
            .key(key)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok((count, Duration::from_millis(left)))
    }

    pub(super) async fn reserve(&self, counters: &[Counter<'_>]) -> Result<Reserve, CacheError> {
        let mut invocation = self.reserve.prepare_invoke();
        for counter in counters {
            let millis = u64::try_from(counter.window.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            invocation.key(counter.key).arg(counter.limit).arg(millis);
        }
        let (taken, left): (u8, u64) = invocation.invoke_async(&mut self.conn().await?).await?;
        Ok(if taken == 1 {
            Reserve::Taken
        } else {
            Reserve::Full {
                retry_after: Duration::from_millis(left),
            }
        })
    }

    pub(super) async fn refund(&self, key: &str) -> Result<(), CacheError> {
        let _: u8 = self
            .refund
            .key(key)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), CacheError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }
}

/// `prefix` matched literally by SCAN's glob.
fn escape_glob(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl From<redis::RedisError> for CacheError {
    fn from(err: redis::RedisError) -> Self {
        let unreachable = err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error();
        if unreachable {
            Self::Unavailable(err.to_string())
        } else {
            Self::Refused(err.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_match_literally() {
        assert_eq!(super::escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
