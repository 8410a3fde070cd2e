//! Stamped values kept in this process between bumps, so a hot stamped read (the
//! principal behind every request) costs no round trip to Redis.
//!
//! Each bump is published on a Redis channel in the same transaction that writes the new
//! stamp; every replica subscribes and forgets the stamp when its message arrives, which
//! makes the values computed under it misses again. An entry is only trusted while the
//! subscription is up: when it drops, or misses a heartbeat, everything is forgotten and
//! reads go to Redis until it is back (messages sent in between are lost).
//!
//! The race this guards against: a read fetches the old stamp from Redis, a bump lands
//! and its message is handled, then the read stores what it fetched. Every message moves
//! a sequence number, and a read stores only if the number hasn't moved since before
//! its fetch.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use metrics::gauge;
use moka::sync::Cache;

use crate::telemetry::metrics::CACHE_NEAR_FEED_UP;

/// The longest a value is served from this process without Redis seeing the read; a
/// bound for the case a lost subscription is not yet noticed.
const NEAR_TTL: Duration = Duration::from_secs(30);
/// How often the subscription is pinged; a ping unanswered within the Redis timeout
/// counts as a lost subscription.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The longest wait between attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The message that forgets every stamp (a namespace-wide delete).
pub(super) const FORGET_ALL: &str = "*";

/// A value as fetched with its stamps' tokens, decoded.
#[derive(Debug)]
struct Entry {
    /// The stamps as the caller named them: a read under other stamps is a miss.
    names: Vec<String>,
    /// Full key and token of each.
    stamps: Vec<(String, Option<String>)>,
    value: Arc<dyn Any + Send + Sync>,
    expires_at: Instant,
}

#[derive(Debug)]
pub(super) struct Near {
    /// Whether the subscription is up. The sequence moves under its write lock and
    /// stores happen under its read lock, so no store slips past a message.
    live: RwLock<bool>,
    /// Moved by every message and every change of the subscription.
    seq: AtomicU64,
    values: Cache<String, Arc<Entry>>,
    /// The token each stamp had when last fetched; absent once a bump of it arrived.
    stamps: Cache<String, Option<String>>,
    /// Each message as it is handled, for a bump waiting on its own echo.
    heard: tokio::sync::broadcast::Sender<Arc<str>>,
}

/// What a read saw before it fetched: store only if nothing moved since.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket(u64);

impl Near {
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            live: RwLock::new(false),
            seq: AtomicU64::new(0),
            values: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(NEAR_TTL)
                .build(),
            stamps: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(NEAR_TTL)
                .build(),
            heard: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// The messages handled from now on (a lagging receiver has missed some).
    pub(super) fn echoes(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.heard.subscribe()
    }

    /// The value stored under `key` if it was fetched under the stamps `names` and
    /// every one of those is still at the token this process last heard of.
    pub(super) fn get(&self, key: &str, names: &[&str]) -> Option<Arc<dyn Any + Send + Sync>> {
        if !*self.live.read().unwrap_or_else(|e| e.into_inner()) {
            return None;
        }
        let entry = self.values.get(key)?;
        let current = entry.expires_at > Instant::now()
            && entry
                .names
                .iter()
                .map(String::as_str)
                .eq(names.iter().copied())
            && entry
                .stamps
                .iter()
                .all(|(stamp, token)| self.stamps.get(stamp).as_ref() == Some(token));
        current.then(|| entry.value.clone())
    }

    /// Taken before fetching a value that [`Near::remember`] may store.
    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.seq.load(Ordering::Acquire))
    }

    /// Keeps a fetched value with the stamps it was fetched with, unless a bump (or a
    /// change of the subscription) came in since `ticket` was taken.
    pub(super) fn remember(
        &self,
        ticket: Ticket,
        key: &str,
        names: &[&str],
        stamps: Vec<(String, Option<String>)>,
        value: Arc<dyn Any + Send + Sync>,
        ttl: Duration,
    ) {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        if !*live || self.seq.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        for (stamp, token) in &stamps {
            self.stamps.insert(stamp.clone(), token.clone());
        }
        let expires_at = Instant::now() + ttl.min(NEAR_TTL);
        self.values.insert(
            key.to_owned(),
            Arc::new(Entry {
                names: names.iter().map(|&name| name.to_owned()).collect(),
                stamps,
                value,
                expires_at,
            }),
        );
    }

    /// A bump of `stamp` (full key), here or on another replica; [`FORGET_ALL`] forgets
    /// every stamp.
    pub(super) fn forget(&self, stamp: &str) {
        let _live = self.live.write().unwrap_or_else(|e| e.into_inner());
        self.seq.fetch_add(1, Ordering::AcqRel);
        if stamp == FORGET_ALL {
            self.stamps.invalidate_all();
            self.values.invalidate_all();
        } else {
            self.stamps.invalidate(stamp);
        }
    }

    /// Subscribed (`true`) or not: either way, nothing known before is trusted.
    fn set_live(&self, live: bool) {
        let mut is_live = self.live.write().unwrap_or_else(|e| e.into_inner());
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.stamps.invalidate_all();
        self.values.invalidate_all();
        *is_live = live;
        gauge!(CACHE_NEAR_FEED_UP).set(if live { 1.0 } else { 0.0 });
        // Nothing will come back on a feed that dropped: don't keep waiters waiting.
        let _ = self.heard.send(FORGET_ALL.into());
    }

    pub(super) fn is_live(&self) -> bool {
        *self.live.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps `near` subscribed to `channel` for as long as it runs (spawn it, abort it):
/// forgets the stamp each message names, pings every [`HEARTBEAT`], and on any failure
/// drops everything and subscribes again with backoff.
pub(super) async fn follow(
    near: Arc<Near>,
    hooks: Arc<super::BumpHooks>,
    client: redis::Client,
    channel: String,
    timeout: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe(&client, &channel, timeout).await {
            Ok((mut sink, mut messages)) => {
                near.set_live(true);
                let mut heartbeat = tokio::time::interval(HEARTBEAT);
                heartbeat.tick().await; // the first tick is immediate
                let lost = loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => {
                                let stamp = message
                                    .get_payload::<String>()
                                    .unwrap_or_else(|_| FORGET_ALL.to_owned());
                                near.forget(&stamp);
                                hooks.bumped(&stamp);
                                let _ = near.heard.send(stamp.into());
                            }
                            None => break "the subscription closed".to_owned(),
                        },
                        _ = heartbeat.tick() => {
                            // Subscribed, Redis answers a PING with ["pong", ""].
                            match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                                // Up for a heartbeat: a later loss backs off afresh.
                                Ok(Ok(_)) => backoff = Duration::from_millis(100),
                                Ok(Err(err)) => break err.to_string(),
                                Err(_) => break format!("no pong within {timeout:?}"),
                            }
                        }
                    }
                };
                near.set_live(false);
                tracing::warn!(reason = %lost, "cache: invalidation feed lost; reading through to redis");
            }
            Err(err) => {
                tracing::debug!(error = %err, "cache: cannot subscribe to the invalidation feed");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), String> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(split)) => Ok(split),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Near {
        let near = Near::new(100);
        near.set_live(true);
        near
    }

    /// Keeps `v` under key `k`, fetched under stamp `s` at `token`, with `ticket`.
    fn keep(near: &Near, ticket: Ticket, token: &str, ttl: Duration) {
        let stamps = vec![("s".to_owned(), Some(token.to_owned()))];
        near.remember(ticket, "k", &["s"], stamps, Arc::new("v"), ttl);
    }

    /// What `near` serves under key `k` read with the stamps `names`.
    fn served(near: &Near, names: &[&str]) -> Option<&'static str> {
        near.get("k", names)
            .and_then(|value| value.downcast_ref::<&'static str>().copied())
    }

    #[test]
    fn a_remembered_value_is_served_until_its_stamp_is_bumped() {
        let near = live();
        keep(&near, near.ticket(), "1", NEAR_TTL);
        assert_eq!(served(&near, &["s"]), Some("v"));
        assert_eq!(served(&near, &["s", "t"]), None, "kept under other stamps");
        near.forget("s");
        assert_eq!(served(&near, &["s"]), None);
    }

    #[test]
    fn a_fetch_that_raced_a_bump_is_not_remembered() {
        let near = live();
        let ticket = near.ticket();
        near.forget("s"); // the bump's message arrives while the fetch is in flight
        keep(&near, ticket, "old", NEAR_TTL);
        assert_eq!(served(&near, &["s"]), None);
    }

    #[test]
    fn nothing_is_trusted_without_the_subscription() {
        let near = Near::new(100);
        keep(&near, near.ticket(), "1", NEAR_TTL);
        assert_eq!(served(&near, &["s"]), None, "not live yet");

        let near = live();
        keep(&near, near.ticket(), "1", NEAR_TTL);
        near.set_live(false);
        near.set_live(true);
        assert_eq!(
            served(&near, &["s"]),
            None,
            "forgotten when the feed dropped"
        );
    }

    #[test]
    fn an_entry_lives_no_longer_than_its_ttl() {
        let near = live();
        keep(&near, near.ticket(), "1", Duration::ZERO);
        assert_eq!(served(&near, &["s"]), None);
    }
}
