//! Access tokens already verified, so a client sending the same token with each request
//! pays for its signature and its JSON once, not every time.
//!
//! Only what verification accepted is kept, under the token's exact text: a hit is a
//! token with the same bytes, checked with the same keys and rules, whose claims can't
//! have changed. Time is the one thing that moves, so a hit is still held to `exp`
//! (with the leeway): past it, the token is verified again and refused as expired.
//! Revocation is not this cache's business: the session is looked up on every request
//! all the same.

use std::collections::HashMap;
use std::sync::RwLock;

use super::jwt::AccessClaims;
use crate::bounded::make_room;

/// How many tokens are kept: about 400 bytes each, so a few MiB at most (evicted by
/// [`make_room`]: a token evicted is verified again).
const CAPACITY: usize = 8192;

/// Verified tokens and the claims they carry, bounded by [`CAPACITY`].
#[derive(Debug, Default)]
pub(super) struct VerifiedTokens {
    // SipHash, keyed per process: tokens are the caller's bytes, so collisions can't be
    // aimed at.
    entries: RwLock<HashMap<Box<str>, Kept>>,
}

#[derive(Debug)]
struct Kept {
    claims: AccessClaims,
    /// The last second (Unix time) at which verification accepts the token.
    usable_until: i64,
}

impl VerifiedTokens {
    /// The claims of `token` if it was verified before and is still usable at `now`.
    pub(super) fn get(&self, token: &str, now: i64) -> Option<AccessClaims> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token)
            .filter(|kept| now <= kept.usable_until)
            .map(|kept| kept.claims.clone())
    }

    /// Keeps `claims` for `token`, which verification just accepted with `leeway`
    /// seconds of tolerance on `exp`.
    pub(super) fn keep(&self, token: &str, claims: &AccessClaims, leeway: i64, now: i64) {
        let usable_until = claims.exp.saturating_add(leeway);
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        make_room(&mut entries, CAPACITY, |kept| now <= kept.usable_until);
        entries.insert(
            token.into(),
            Kept {
                claims: claims.clone(),
                usable_until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            exp,
            iat: exp - 900,
            iss: "keel".to_owned(),
            aud: "keel".to_owned(),
            jti: Uuid::now_v7(),
            typ: "access".to_owned(),
        }
    }

    #[test]
    fn a_kept_token_is_usable_until_its_expiry_plus_leeway_and_only_by_its_exact_text() {
        let verified = VerifiedTokens::default();
        let kept = claims(1_000);
        verified.keep("a.b.c", &kept, 5, 900);
        assert_eq!(verified.get("a.b.c", 900), Some(kept.clone()));
        assert_eq!(verified.get("a.b.c", 1_005), Some(kept));
        assert_eq!(verified.get("a.b.c", 1_006), None);
        assert_eq!(verified.get("a.b.C", 900), None);
        assert_eq!(verified.get("a.b.c ", 900), None);
    }

    #[test]
    fn a_full_cache_drops_the_expired_first_and_never_grows_past_its_capacity() {
        let verified = VerifiedTokens::default();
        for n in 0..CAPACITY {
            // Every other token expired at 100.
            let exp = if n % 2 == 0 { 100 } else { 10_000 };
            verified.keep(&format!("t{n}"), &claims(exp), 0, 50);
        }
        verified.keep("new", &claims(10_000), 0, 200);
        assert_eq!(verified.get("t1", 200).map(|c| c.exp), Some(10_000));
        assert_eq!(verified.get("new", 200).map(|c| c.exp), Some(10_000));
        let len = verified.entries.read().map(|e| e.len()).unwrap_or(0);
        assert_eq!(len, CAPACITY / 2 + 1);

        // Too few expired (here none): the whole cache goes, rather than growing or
        // being scanned again at the next insertion.
        let fresh = VerifiedTokens::default();
        for n in 0..CAPACITY {
            fresh.keep(&format!("t{n}"), &claims(10_000), 0, 50);
        }
        fresh.keep("new", &claims(10_000), 0, 50);
        let len = fresh.entries.read().map(|e| e.len()).unwrap_or(0);
        assert_eq!(len, 1);
    }
}
