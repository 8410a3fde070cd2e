//! Business rules of keel-user. Each service function owns its transaction and, after it
//! commits, tells the authenticator what changed so the next request sees it.

mod account;
mod admin;
mod auth;
mod principals;
mod roles;
mod seed;

use std::sync::Arc;
use std::time::Duration;

use keel_core::ApiError;
use keel_core::auth::{Authenticator, PrincipalCache, TokenKeys};
use keel_core::db::Db;
use keel_core::http::context::RequestContext;
use keel_core::ratelimit::{RateLimiter, Rule};
use keel_core::settings::SecuritySettings;

pub use admin::{AdminOutcome, NewAccount};
pub use principals::DbPrincipals;
pub use seed::{SUPERUSER_ROLE, SeedReport, USER_ROLE, seed};

use crate::password::Passwords;

/// Everything keel-user's services need; cheap to clone.
#[derive(Clone, Debug)]
pub struct UserService {
    db: Db,
    passwords: Passwords,
    authenticator: Authenticator,
    limiter: Arc<dyn RateLimiter>,
    rules: Rules,
}

#[derive(Clone, Copy, Debug)]
struct Rules {
    refresh_ttl: Duration,
    failures_per_account: Rule,
    failures_per_ip: Rule,
}

impl UserService {
    /// Builds the service and the authenticator that resolves its tokens. Computes one
    /// password hash (the dummy for unknown accounts), so call it once at start.
    pub async fn new(
        db: Db,
        security: &SecuritySettings,
        limiter: Arc<dyn RateLimiter>,
    ) -> Result<Self, ApiError> {
        let passwords = Passwords::new(
            security.password_pepper.expose(),
            security.password_hash_concurrency,
        )
        .await?;
        let authenticator = Authenticator::new(
            TokenKeys::from_settings(security),
            Arc::new(PrincipalCache::new(security.auth_cache_ttl)),
            Arc::new(DbPrincipals::new(db.clone())),
        );
        let rules = Rules {
            refresh_ttl: security.refresh_token_ttl,
            failures_per_account: Rule {
                limit: security.login_max_failures_per_account,
                window: security.login_window,
            },
            failures_per_ip: Rule {
                limit: security.login_max_failures_per_ip,
                window: security.login_window,
            },
        };
        Ok(Self {
            db,
            passwords,
            authenticator,
            limiter,
            rules,
        })
    }

    /// Install it as request data (`.data(..)`) so `Auth` extractors can verify tokens.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Device details of the current request, stored with the sessions it opens.
#[derive(Debug, Default, Clone)]
struct Device {
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Device {
    fn current() -> Self {
        RequestContext::current()
            .map(|ctx| Self {
                ip: ctx.client_ip.map(|ip| ip.to_string()),
                user_agent: ctx.user_agent,
            })
            .unwrap_or_default()
    }
}
