//! Principals kept in the shared cache (Redis), so a logout, revocation, deactivation or
//! role change made on one replica holds on every replica as soon as the bump's message
//! reaches it.
//!
//! Each entry is stamped ([`Cache::get_or_compute_stamped`]) with three versions — its
//! session's, its user's, everyone's — and each kind of change bumps one of them after
//! its transaction commits. A hot principal is served from this replica's memory while
//! it follows Redis's bump feed, otherwise with one round trip (MGET).
//!
//! While the breaker keeps Redis out, principals are remembered in this process for at
//! most [`OUTAGE_TTL`] instead of being loaded on every request: changes made on this
//! replica still apply at once, and so do those another replica makes that this one
//! hears of (through Redis's feed, or through PostgreSQL from a replica Redis can't
//! reach); others within that time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{AccessClaims, Cached, Principal, PrincipalCache};
use crate::cache::{BreakerState, Cache};
use crate::error::ApiError;

const EVERYONE: &str = "auth:everyone";

/// The longest a principal is served from this process's memory while Redis is out.
pub const OUTAGE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct SharedPrincipals {
    cache: Cache,
    ttl: Duration,
    /// Used only while the breaker is open.
    outage: Arc<PrincipalCache>,
}

impl SharedPrincipals {
    /// A zero `ttl` caches nothing: every request loads its principal.
    pub fn new(cache: Cache, ttl: Duration) -> Self {
        let outage = Arc::new(PrincipalCache::new(ttl.min(OUTAGE_TTL)));
        // A change another replica made, heard of through Redis's feed or from a
        // replica Redis can't reach, drops what this one keeps through an outage too.
        let kept = outage.clone();
        cache.on_bump(move |stamp| match stamp.map(parse_stamp) {
            Some(Some(Stamp::Session(session))) => kept.invalidate_session(session),
            Some(Some(Stamp::User(user))) => kept.invalidate_user(user),
            Some(None) => {}
            None | Some(Some(Stamp::Everyone)) => kept.invalidate_all(),
        });
        Self { cache, ttl, outage }
    }

    /// The session's principal, from the cache while nothing it depends on changed,
    /// otherwise from `load` (`None`: the session is refused).
    pub async fn resolve<F, Fut>(&self, claims: &AccessClaims, load: F) -> Result<Cached, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Principal>, ApiError>>,
    {
        let principal = if self.ttl.is_zero() {
            load().await?
        } else if self.cache.breaker_state() == BreakerState::Open {
            return self.outage.get_or_load(claims.sid, claims.sub, load).await;
        } else {
            self.cache
                .get_or_compute_stamped(
                    &format!("auth:principal:{}", claims.sid),
                    &[
                        &session_stamp(claims.sid),
                        &user_stamp(claims.sub),
                        EVERYONE,
                    ],
                    self.ttl,
                    load,
                )
                .await?
        };
        Ok(Cached::loaded(claims.sub, principal))
    }

    pub async fn invalidate_session(&self, session: Uuid) {
        self.outage.invalidate_session(session);
        self.cache.bump(&session_stamp(session)).await;
    }

    pub async fn invalidate_user(&self, user: Uuid) {
        self.outage.invalidate_user(user);
        self.cache.bump(&user_stamp(user)).await;
    }

    pub async fn invalidate_all(&self) {
        self.outage.invalidate_all();
        self.cache.bump(EVERYONE).await;
    }
}

/// A stamp of this module's, by what it versions.
enum Stamp {
    Session(Uuid),
    User(Uuid),
    Everyone,
}

/// `None` for another module's stamp.
fn parse_stamp(stamp: &str) -> Option<Stamp> {
    if stamp == EVERYONE {
        return Some(Stamp::Everyone);
    }
    if let Some(id) = stamp.strip_prefix("auth:session:") {
        return id.parse().ok().map(Stamp::Session);
    }
    let id = stamp.strip_prefix("auth:user:")?;
    id.parse().ok().map(Stamp::User)
}

fn session_stamp(session: Uuid) -> String {
    format!("auth:session:{session}")
}

fn user_stamp(user: Uuid) -> String {
    format!("auth:user:{user}")
}
