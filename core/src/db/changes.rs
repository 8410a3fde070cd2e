//! Table change notifications from PostgreSQL, so a replica can cache what it reads and
//! still see every write at once, whoever made it: another replica, `keel-admin`, or a
//! person with `psql`.
//!
//! Tables opt in with the `keel_notify_change()` trigger (see the migrations): each
//! statement that changes one sends the table's name on [`CHANNEL`] when its transaction
//! commits. Each replica keeps one connection listening and counts changes per table;
//! a cache stores a value with the [`ChangeFeed::version`] it read before loading and
//! serves it only while the version is unchanged. While the listener is not connected
//! there is no version, so nothing is cached or served from a cache: a lost connection
//! costs speed, never correctness. A write committed through [`Db::transaction`]
//! invalidates this process's caches at once, so a client reads its own writes even
//! before the notification comes back.
//!
//! [`Db::transaction`]: super::Db::transaction

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::ErrorChain;
use crate::settings::Secret;
use crate::telemetry::metrics as names;

/// The notification channel the `keel_notify_change()` trigger sends on.
pub const CHANNEL: &str = "keel_table_changes";

/// How often the idle listener checks that its connection still answers: a silently
/// dropped connection would otherwise leave caches trusting a feed that no longer comes.
const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// Handles the payload of each notification on one channel; see
/// [`ChangeFeed::on_message`].
pub type MessageHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// Per-table change counters, shared by every cache of the process.
#[derive(Debug, Clone, Default)]
pub struct ChangeFeed(Arc<FeedState>);

/// The channels other than [`CHANNEL`] the listener follows, with their handlers;
/// `added` wakes a connected listener to follow one registered since.
#[derive(Default)]
struct Channels {
    handlers: RwLock<HashMap<String, MessageHandler>>,
    added: Notify,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        f.debug_set().entries(handlers.keys()).finish()
    }
}

#[derive(Debug, Default)]
struct FeedState {
    live: AtomicBool,
    /// Bumped on every (re)connect: changes made while nobody listened are unknown.
    epoch: AtomicU64,
    tables: RwLock<HashMap<String, u64>>,
    /// Woken by a change of their table, see [`ChangeFeed::watch`].
    watchers: RwLock<HashMap<String, Arc<Notify>>>,
    channels: Channels,
}

impl ChangeFeed {
    /// A token that changes whenever one of `tables` changes; `None` while the listener
    /// is not connected, when nothing may be cached.
    pub fn version(&self, tables: &[&str]) -> Option<u64> {
        if !self.0.live.load(Ordering::Acquire) {
            return None;
        }
        let epoch = self.0.epoch.load(Ordering::Acquire);
        let counts = self.0.tables.read().unwrap_or_else(|e| e.into_inner());
        // Counters only grow, so any change makes the sum grow.
        let version = tables
            .iter()
            .filter_map(|table| counts.get(*table))
            .fold(epoch, |sum, count| sum.wrapping_add(*count));
        // A disconnect while we read means the counts may already be stale.
        self.0.live.load(Ordering::Acquire).then_some(version)
    }

    pub fn is_live(&self) -> bool {
        self.0.live.load(Ordering::Acquire)
    }

    /// Notified (one stored wake-up) whenever a change of `table` is heard, from any
    /// replica: for one waiter, e.g. the task outbox relay. It must still poll: a change
    /// made while the listener was down is never heard.
    pub fn watch(&self, table: &str) -> Arc<Notify> {
        let mut watchers = self.0.watchers.write().unwrap_or_else(|e| e.into_inner());
        watchers.entry(table.to_owned()).or_default().clone()
    }

    /// Hands the payload of every notification on `channel` (sent with
    /// [`Db::notify`](super::Db::notify), from any replica) to `handler`, from the
    /// moment the listener follows it (at once if it is connected, else when it
    /// connects). Notifications sent while it isn't connected are lost.
    pub fn on_message(&self, channel: &str, handler: MessageHandler) {
        let channels = &self.0.channels;
        channels
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.to_owned(), handler);
        channels.added.notify_one();
    }

    /// LISTENs on every registered channel not in `listened` yet.
    async fn follow_channels(
        &self,
        conn: &mut AsyncPgConnection,
        listened: &mut HashSet<String>,
    ) -> diesel::QueryResult<()> {
        let new: Vec<String> = {
            let handlers = self
                .0
                .channels
                .handlers
                .read()
                .unwrap_or_else(|e| e.into_inner());
            handlers
                .keys()
                .filter(|c| !listened.contains(*c))
                .cloned()
                .collect()
        };
        for channel in new {
            conn.batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "\"\"")))
                .await?;
            listened.insert(channel);
        }
        Ok(())
    }

    fn heard(&self, channel: &str, payload: &str) {
        if channel == CHANNEL {
            return self.changed(payload);
        }
        let handler = {
            let handlers = self
                .0
                .channels
                .handlers
                .read()
                .unwrap_or_else(|e| e.into_inner());
            handlers.get(channel).cloned()
        };
        if let Some(handler) = handler {
            handler(payload);
        }
    }

    /// This process just committed a write: drop what every cache holds now, so the
    /// writer's next read never waits on its own notification to arrive.
    pub(crate) fn committed_here(&self) {
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn changed(&self, table: &str) {
        let mut counts = self.0.tables.write().unwrap_or_else(|e| e.into_inner());
        *counts.entry(table.to_owned()).or_default() += 1;
        drop(counts);
        let watchers = self.0.watchers.read().unwrap_or_else(|e| e.into_inner());
        if let Some(watcher) = watchers.get(table) {
            watcher.notify_one();
        }
    }

    fn connected(&self) {
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
        self.0.live.store(true, Ordering::Release);
        metrics::gauge!(names::DB_CHANGE_LISTENER_UP).set(1.0);
    }

    fn disconnected(&self) {
        self.0.live.store(false, Ordering::Release);
        metrics::gauge!(names::DB_CHANGE_LISTENER_UP).set(0.0);
    }

    /// Keeps a connection listening on [`CHANNEL`], reconnecting with backoff, until the
    /// returned guard is dropped.
    pub fn listen(&self, url: &Secret) -> Listener {
        let (feed, url) = (self.clone(), url.clone());
        Listener(tokio::spawn(async move {
            let mut backoff = RECONNECT_MIN;
            loop {
                match feed.listen_once(&url).await {
                    Ok(()) => backoff = RECONNECT_MIN,
                    Err(err) => {
                        tracing::warn!(error = %ErrorChain(&*err), retry_in = ?backoff, "table change listener down; caches bypassed");
                    }
                }
                feed.disconnected();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }))
    }

    /// Connects, listens and relays notifications until the connection fails.
    async fn listen_once(
        &self,
        url: &Secret,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut conn = AsyncPgConnection::establish(url.expose()).await?;
        conn.batch_execute(&format!(
            "SET application_name = 'keel-change-listener'; LISTEN {CHANNEL}"
        ))
        .await?;
        let mut listened = HashSet::new();
        self.follow_channels(&mut conn, &mut listened).await?;
        self.connected();
        tracing::debug!("listening for table changes");
        loop {
            let next = {
                let mut notifications = pin!(conn.notifications_stream());
                tokio::select! {
                    next = tokio::time::timeout(PING_EVERY, notifications.next()) => Some(next),
                    () = self.0.channels.added.notified() => None,
                }
            };
            let Some(next) = next else {
                self.follow_channels(&mut conn, &mut listened).await?;
                continue;
            };
            match next {
                Ok(Some(Ok(note))) => self.heard(&note.channel, &note.payload),
                Ok(Some(Err(err))) => return Err(err.into()),
                Ok(None) => return Err("the listening connection closed".into()),
                Err(_idle) => {
                    tokio::time::timeout(PING_TIMEOUT, conn.batch_execute("SELECT 1"))
                        .await
                        .map_err(|_| "the listening connection stopped answering")??;
                }
            }
        }
    }
}

/// Stops the listener when dropped.
#[derive(Debug)]
pub struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}
