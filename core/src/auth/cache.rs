//! The per-replica memory of who holds a session, so authenticating a request costs a
//! signature check and a map lookup instead of a database round trip.
//!
//! Correctness rests on invalidation: every change that must take effect on the next
//! request (logout, revocation, deactivation, role or permission changes) calls one of
//! the `invalidate_*` methods after its transaction commits. A load that raced with an
//! invalidation is not cached (the epoch check), so a stale principal can't be stored
//! after the change. Another replica learns of the change when its entry expires
//! (`AUTH_CACHE_TTL`); a shared cache backend is what makes that immediate.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::bounded::make_room;
use crate::error::ApiError;

use super::Principal;

/// Entries kept before the cache makes room ([`make_room`]).
const DEFAULT_CAPACITY: usize = 100_000;

/// What we know about a session: its principal, or that it is not (or no longer) valid.
#[derive(Debug, Clone)]
pub enum Cached {
    Valid(Arc<Principal>),
    /// Revoked, expired, or the user is gone or deactivated. Sessions never come back,
    /// so remembering the refusal is safe and spares the database a replayed token.
    Refused {
        user_id: Uuid,
    },
}

impl Cached {
    /// What a load from the source of truth means: a principal, or `None` (refused).
    pub fn loaded(user_id: Uuid, principal: Option<Principal>) -> Self {
        match principal {
            Some(principal) => Self::Valid(Arc::new(principal)),
            None => Self::Refused { user_id },
        }
    }

    fn user_id(&self) -> Uuid {
        match self {
            Self::Valid(p) => p.user_id,
            Self::Refused { user_id } => *user_id,
        }
    }
}

#[derive(Debug)]
struct Entry {
    value: Cached,
    expires: Instant,
}

/// Session id → principal, with a time to live and explicit invalidation.
#[derive(Debug)]
pub struct PrincipalCache {
    entries: RwLock<HashMap<Uuid, Entry>>,
    /// Bumped by every invalidation; a load started before a bump is not stored.
    epoch: AtomicU64,
    ttl: Duration,
    capacity: usize,
}

impl PrincipalCache {
    /// A zero `ttl` disables caching (every request loads the principal).
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            ttl,
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, session: Uuid) -> Option<Cached> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&session)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.value.clone())
    }

    /// The cached value for `session`, or `load`'s (stored unless an invalidation
    /// happened meanwhile).
    pub async fn get_or_load<F, Fut>(
        &self,
        session: Uuid,
        user_id: Uuid,
        load: F,
    ) -> Result<Cached, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Principal>, ApiError>>,
    {
        if let Some(cached) = self.get(session) {
            return Ok(cached);
        }
        let epoch = self.epoch();
        let loaded = Cached::loaded(user_id, load().await?);
        self.insert(session, loaded.clone(), epoch);
        Ok(loaded)
    }

    /// Call before loading; pass the value to [`PrincipalCache::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores a loaded value unless an invalidation happened since `epoch` was read.
    pub fn insert(&self, session: Uuid, value: Cached, epoch: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        // Invalidations bump the epoch while holding the write lock, so this check
        // can't interleave with one.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let now = Instant::now();
        make_room(&mut entries, self.capacity, |e| e.expires > now);
        entries.insert(
            session,
            Entry {
                value,
                expires: now + self.ttl,
            },
        );
    }

    pub fn invalidate_session(&self, session: Uuid) {
        self.invalidate(|entries| {
            entries.remove(&session);
        });
    }

    /// Every session of `user`: profile, roles, password or activity changed.
    pub fn invalidate_user(&self, user: Uuid) {
        self.invalidate(|entries| entries.retain(|_, e| e.value.user_id() != user));
    }

    /// Everything: a role's permissions changed, which may touch any user.
    pub fn invalidate_all(&self) {
        self.invalidate(HashMap::clear);
    }

    /// Applies `change` to the entries and bumps the epoch, under one write lock.
    fn invalidate(&self, change: impl FnOnce(&mut HashMap<Uuid, Entry>)) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        change(&mut entries);
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn principal(user: Uuid, session: Uuid) -> Arc<Principal> {
        Arc::new(Principal {
            user_id: user,
            session_id: session,
            email: "a@example.com".to_owned(),
            roles: Vec::new(),
            permissions: BTreeSet::new(),
        })
    }

    #[test]
    fn invalidation_removes_by_session_user_or_all() {
        let cache = PrincipalCache::new(Duration::from_secs(60));
        let (u1, u2) = (Uuid::now_v7(), Uuid::now_v7());
        let (s1, s2, s3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for (u, s) in [(u1, s1), (u1, s2), (u2, s3)] {
            cache.insert(s, Cached::Valid(principal(u, s)), cache.epoch());
        }
        cache.invalidate_session(s1);
        assert!(cache.get(s1).is_none());
        assert!(cache.get(s2).is_some());
        cache.invalidate_user(u1);
        assert!(cache.get(s2).is_none());
        assert!(cache.get(s3).is_some());
        cache.invalidate_all();
        assert!(cache.is_empty());
    }

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_stored() {
        let cache = PrincipalCache::new(Duration::from_secs(60));
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        let epoch = cache.epoch();
        cache.invalidate_user(u); // e.g. a logout commits while we read the database
        cache.insert(s, Cached::Valid(principal(u, s)), epoch);
        assert!(cache.get(s).is_none());
    }

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let cache = PrincipalCache::with_capacity(Duration::from_millis(1), 2);
        let (u, s) = (Uuid::now_v7(), Uuid::now_v7());
        cache.insert(s, Cached::Refused { user_id: u }, cache.epoch());
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get(s).is_none());
        for _ in 0..10 {
            cache.insert(
                Uuid::now_v7(),
                Cached::Refused { user_id: u },
                cache.epoch(),
            );
        }
        assert!(cache.len() <= 2);
        let off = PrincipalCache::new(Duration::ZERO);
        off.insert(s, Cached::Refused { user_id: u }, off.epoch());
        assert!(off.is_empty());
    }
}
