//! Invalidations made while Redis was unreachable, kept and sent before this replica
//! reads from Redis again (a cache must not serve what a change already replaced):
//! its own, and those other replicas told it of (see [`super::peers`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::CacheError;
use super::near::FORGET_ALL;
use super::redis::RedisStore;

/// Invalidations kept for replay while Redis is unreachable; past this many, the whole
/// namespace is dropped on recovery instead.
const MAX_PENDING: usize = 10_000;
/// The longest one kept invalidation may take to send (a namespace delete scans the
/// whole keyspace); past it the connection is dropped and the replay tried again.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// An invalidation that has to reach Redis before this replica trusts it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) enum Pending {
    Delete(String),
    DeletePrefix(String),
    /// A fresh random token under the key, for `ttl`.
    Bump(String, Duration),
}

impl Pending {
    /// The full key it changes (or the prefix it clears).
    pub(super) fn key(&self) -> &str {
        match self {
            Self::Delete(key) | Self::DeletePrefix(key) | Self::Bump(key, _) => key,
        }
    }

    /// What its change announces on the bump feed, whose listeners forget it: the
    /// stamp's key, or [`FORGET_ALL`] for a namespace delete; `None` for a plain delete.
    pub(super) fn announced(&self) -> Option<&str> {
        match self {
            Self::Bump(stamp, _) => Some(stamp),
            Self::DeletePrefix(_) => Some(FORGET_ALL),
            Self::Delete(_) => None,
        }
    }

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
    /// Set while a background task sends what is kept (see `Cache::kick`).
    kicked: AtomicBool,
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

    pub(super) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Claims the background replay; `false` if one is already running.
    pub(super) fn kick(&self) -> bool {
        !self.kicked.swap(true, Ordering::AcqRel)
    }

    /// The background replay is done; `false` if something was kept meanwhile, and it
    /// goes on.
    pub(super) fn rest(&self) -> bool {
        self.kicked.store(false, Ordering::Release);
        self.is_empty() || !self.kick()
    }

    /// Nothing kept and no replay under way: calls may go straight to Redis.
    pub(super) fn is_idle(&self) -> bool {
        self.lock().is_empty() && self.replaying.try_lock().is_ok()
    }

    /// Sends what was kept, in order. Each one leaves the list only once Redis has it, so
    /// a replay cut short (a failure, a cancelled caller) loses nothing: the rest is
    /// sent by the next call.
    pub(super) async fn replay(&self, redis: &RedisStore) -> Result<(), CacheError> {
        if self.is_idle() {
            return Ok(());
        }
        let _replaying = self.replaying.lock().await;
        let mut sent = 0;
        loop {
            // Taken off the list while it is sent, so an equal invalidation kept
            // meanwhile (a later bump of the same stamp) is sent again after it; put
            // back first if it isn't sent (a failure, or this task dropped).
            let Some(next) = InFlight::take(self) else {
                break;
            };
            match tokio::time::timeout(STEP_TIMEOUT, redis.apply(next.what())).await {
                Ok(Ok(())) => next.sent(),
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    redis.reset();
                    return Err(CacheError::Timeout(STEP_TIMEOUT));
                }
            }
            sent += 1;
        }
        if sent > 0 {
            tracing::info!(count = sent, "cache: invalidations from the outage sent");
        }
        Ok(())
    }
}

/// The invalidation a replay is sending: back at the head of the list unless sent.
struct InFlight<'a> {
    backlog: &'a Backlog,
    what: Pending,
    sent: bool,
}

impl<'a> InFlight<'a> {
    fn take(backlog: &'a Backlog) -> Option<Self> {
        let mut pending = backlog.lock();
        if pending.is_empty() {
            return None;
        }
        Some(Self {
            backlog,
            what: pending.remove(0),
            sent: false,
        })
    }

    fn what(&self) -> &Pending {
        &self.what
    }

    fn sent(mut self) {
        self.sent = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.backlog.lock().insert(0, self.what.clone());
        }
    }
}
