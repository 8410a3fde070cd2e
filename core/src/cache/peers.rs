//! Invalidations a replica could not send to Redis, told to the other replicas through
//! PostgreSQL, so that none of them reads Redis before the invalidations reach it.
//!
//! A replica cut off from Redis (a partition, a Redis that hangs) keeps its
//! invalidations for later; but the others may reach Redis first, and would serve what
//! a logout or a role change replaced until this one got through (or, if it died, until
//! the values expired). So it also tells them: each keeps what it hears like one of its
//! own invalidations, sent before its next Redis call, and applies it at once if Redis
//! answers. What one replica kept then outlives it as long as another heard it.

use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::backlog::Pending;

/// The PostgreSQL notification channel the replicas tell each other on.
pub const CHANNEL: &str = "keel_cache_invalidations";

/// Sends one message to every replica (and back to this one, which ignores it).
pub type Tell = Arc<dyn Fn(String) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// One kept invalidation, as told.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Told {
    /// The replica that kept it: it ignores its own messages.
    pub(super) from: Uuid,
    pub(super) what: Pending,
}

/// This replica's side of the sharing.
pub(super) struct Peers {
    pub(super) id: Uuid,
    tell: OnceLock<Tell>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("id", &self.id)
            .field("sharing", &self.tell.get().is_some())
            .finish()
    }
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            id: Uuid::new_v4(),
            tell: OnceLock::new(),
        }
    }
}

impl Peers {
    /// Tells through `tell` from now on (the first call wins).
    pub(super) fn share_through(&self, tell: Tell) {
        let _ = self.tell.set(tell);
    }

    /// Tells the others about `what`, in the background: the request that made the
    /// change doesn't wait on PostgreSQL, and a failure only leaves `what` kept here.
    pub(super) fn tell(&self, what: &Pending) {
        let Some(tell) = self.tell.get() else {
            return;
        };
        let told = Told {
            from: self.id,
            what: what.clone(),
        };
        let message = match serde_json::to_string(&told) {
            Ok(message) => message,
            Err(err) => {
                tracing::error!(error = %err, "cache: an invalidation can't be encoded");
                return;
            }
        };
        let sent = tell(message);
        tokio::spawn(async move {
            if let Err(err) = sent.await {
                tracing::warn!(error = %err, "cache: other replicas can't be told of an invalidation kept for redis");
            }
        });
    }
}
