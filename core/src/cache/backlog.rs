//! Invalidations made while Redis was unreachable, kept and sent before this replica
//! reads from Redis again (a cache must not serve what a change already replaced).

use std::sync::Mutex;
use std::time::Duration;

use super::CacheError;
use super::redis::RedisStore;

/// Invalidations kept for replay while Redis is unreachable; past this many, the whole
/// namespace is dropped on recovery instead.
const MAX_PENDING: usize = 10_000;

/// An invalidation that has to reach Redis before this replica trusts it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pending {
    Delete(String),
    DeletePrefix(String),
    /// A fresh random token under the key, for `ttl`.
    Bump(String, Duration),
}

impl Pending {
    pub(super) fn op(&self) -> &'static str {
        match self {
            Self::Delete(_) => "delete",
            Self::DeletePrefix(_) => "delete_prefix",
            Self::Bump(..) => "bump",
        }
    }
}

/// The value a bump writes: new every time.
pub(super) fn fresh_token() -> Vec<u8> {
    format!("\"{}\"", uuid::Uuid::now_v7()).into_bytes()
}

/// The invalidations kept, and the lock that makes every other call wait while they are
/// sent.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    pending: Mutex<Vec<Pending>>,
    /// Held while kept invalidations are sent: other calls wait, so none reads Redis
    /// before the invalidations made before it have reached it.
    replaying: tokio::sync::Mutex<()>,
}

impl Backlog {
    /// Keeps `what` for the replay; past [`MAX_PENDING`], everything under `prefix`
    /// (the whole namespace) is dropped on recovery instead.
    pub(super) fn keep(&self, what: Pending, prefix: &str) {
        let mut pending = self.lock();
        if pending.len() >= MAX_PENDING {
            pending.clear();
            pending.push(Pending::DeletePrefix(prefix.to_owned()));
        } else if !pending.contains(&what) {
            pending.push(what);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what was kept, in order; on a failure keeps the rest for the next call.
    pub(super) async fn replay(&self, redis: &RedisStore) -> Result<(), CacheError> {
        // Nothing kept and no replay under way: the common case, without waiting.
        if self.lock().is_empty() && self.replaying.try_lock().is_ok() {
            return Ok(());
        }
        let _replaying = self.replaying.lock().await;
        let pending = std::mem::take(&mut *self.lock());
        if pending.is_empty() {
            return Ok(());
        }
        for (i, what) in pending.iter().enumerate() {
            if let Err(err) = redis.apply(what).await {
                let mut left = self.lock();
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
}
