//! Business rules of keel-user. Each service function owns its transaction and, after it
//! commits, tells the authenticator what changed so the next request sees it.

mod account;
mod admin;
mod auth;
mod avatar;
mod principals;
mod roles;
mod seed;
mod upkeep;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use keel_core::ApiError;
use keel_core::Context;
use keel_core::auth::{Authenticator, TokenKeys};
use keel_core::cache::Cache;
use keel_core::db::Db;
use keel_core::mail::Mailer;
use keel_core::ratelimit::{self, RateLimiter, Rule};
use keel_core::request::RequestContext;
use keel_core::storage::Storage;

pub use admin::{AdminOutcome, NewAccount};
pub use avatar::ImageType;
pub use principals::DbPrincipals;
pub use seed::{SUPERUSER_ROLE, SeedReport, USER_ROLE, seed};

use diesel_async::AsyncPgConnection;
use keel_activity::{Action, Actor, Entry};
use keel_core::crud::CrudBase;
use uuid::Uuid;

use crate::crud::access;
use crate::crud::users::UserCrud;
use crate::fields::{self, Email};
use crate::models::{NewUser, User};
use crate::password::{self, Passwords};
use crate::settings::UserSettings;

/// Everything keel-user's services need; cheap to clone.
#[derive(Clone, Debug)]
pub struct UserService {
    db: Db,
    /// Admin list pages, dropped by PostgreSQL's change notifications.
    user_pages: Arc<admin::UserPages>,
    passwords: Passwords,
    authenticator: Authenticator,
    limiter: RateLimiter,
    rules: Rules,
    storage: Storage,
    mailer: Mailer,
    /// Profiles for `/me` (shared by replicas when it is Redis).
    cache: Cache,
    /// `AUTH_CACHE_TTL`, as for the principal: changes drop a profile at once on every
    /// replica that shares the cache (without Redis, on this one); zero: not cached.
    profile_ttl: Duration,
    avatar_max_bytes: usize,
}

/// Where `user`'s profile is kept, and the stamp that versions it.
fn profile_key(user: Uuid) -> String {
    format!("user:profile:{user}")
}

fn profile_stamp(user: Uuid) -> String {
    format!("user:{user}")
}

#[derive(Clone, Copy, Debug)]
struct Rules {
    refresh_ttl: Duration,
    failures_per_account: Rule,
    failures_per_ip: Rule,
    registrations_per_ip: Rule,
    ipv6_limit_prefix: u8,
}

impl UserService {
    /// Builds the service and the authenticator that resolves its tokens; login limits
    /// and principals live in the context's cache (shared by every replica when it is
    /// Redis). Computes one password hash (the dummy for unknown accounts), so call it
    /// once.
    pub async fn new(ctx: &Context, own: &UserSettings) -> Result<Self, ApiError> {
        let (db, cache) = (&ctx.db, &ctx.cache);
        let security = &ctx.settings.security;
        let passwords = Passwords::new(
            security.password_pepper.expose(),
            own.password_hash_concurrency,
        )
        .await?;
        let authenticator = Authenticator::new(
            TokenKeys::from_settings(security).map_err(ApiError::internal)?,
            cache,
            security.auth_cache_ttl,
            Arc::new(DbPrincipals::new(db.clone())),
        );
        let rules = Rules {
            refresh_ttl: security.refresh_token_ttl,
            failures_per_account: Rule {
                limit: own.login_max_failures_per_account,
                window: own.login_window,
            },
            failures_per_ip: Rule {
                limit: own.login_max_failures_per_ip,
                window: own.login_window,
            },
            registrations_per_ip: Rule {
                limit: own.register_max_per_ip,
                window: own.register_window,
            },
            ipv6_limit_prefix: own.ipv6_limit_prefix,
        };
        Ok(Self {
            user_pages: Arc::new(admin::user_pages(db)),
            db: db.clone(),
            passwords,
            authenticator,
            limiter: RateLimiter::new(cache.clone()),
            rules,
            storage: ctx.storage.clone(),
            mailer: ctx.mailer.clone(),
            cache: cache.clone(),
            profile_ttl: security.auth_cache_ttl,
            avatar_max_bytes: own.avatar_max_bytes,
        })
    }

    /// Install it as request data (`.data(..)`) so `Auth` extractors can verify tokens.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// After a change to `user` commits: every replica's next request sees the account
    /// as it is now (its principal and its profile).
    pub async fn user_changed(&self, user: Uuid) {
        self.authenticator.user_changed(user).await;
        self.cache.bump(&profile_stamp(user)).await;
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// An account as an audit actor: its id and current email.
impl From<&User> for Actor {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            email: user.email.clone(),
        }
    }
}

/// The audit entry for something a user did to their own account, summarised as
/// "<email> <did>" ("ada@example.com changed their avatar").
fn own_account_entry(action: Action, actor: impl Into<Actor>, did: &str) -> Entry {
    let actor = actor.into();
    Entry::new(action, "user", format!("{} {did}", actor.email))
        .entity(actor.id)
        .actor(actor)
}

/// Where a sign-in or registration comes from: the client's address (rate limits) and
/// user agent, stored with the sessions it opens. Routes take it from the request.
#[derive(Debug, Default, Clone)]
pub struct Device {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl From<&RequestContext> for Device {
    fn from(request: &RequestContext) -> Self {
        Self {
            ip: request.client_ip,
            user_agent: request.user_agent.clone(),
        }
    }
}

impl UserService {
    /// The rate-limit key of the current client under `scope` (`login`, `register`),
    /// if the request has a client address.
    fn client_limit_key(&self, scope: &str, device: &Device) -> Option<String> {
        device.ip.map(|ip| {
            let client = ratelimit::client_key(ip, self.rules.ipv6_limit_prefix);
            format!("{scope}:ip:{client}")
        })
    }
}

/// The parts of a new account that must be checked before any work: 422 listing every
/// broken rule (email syntax, name, password policy) at once.
fn check_new_account(
    email: &str,
    password: &str,
    full_name: &str,
) -> Result<(Email, String), ApiError> {
    let email = Email::parse("email", email);
    let full_name = fields::full_name("full_name", full_name);
    let policy = password::check_policy(
        "password",
        password,
        email.as_ref().map(Email::as_str).unwrap_or_default(),
    );
    match (email, full_name, policy) {
        (Ok(email), Ok(name), Ok(())) => Ok((email, name)),
        (email, name, policy) => Err(ApiError::Validation(
            [email.err(), name.err(), policy.err()]
                .into_iter()
                .flatten()
                .collect(),
        )),
    }
}

/// Inserts an active account holding the roles `role_ids`.
async fn insert_account(
    conn: &mut AsyncPgConnection,
    email: Email,
    password_hash: String,
    full_name: String,
    role_ids: &[Uuid],
) -> Result<User, ApiError> {
    let user = UserCrud::create(
        conn,
        &NewUser {
            id: Uuid::now_v7(),
            email: email.into_inner(),
            password_hash,
            full_name,
            is_active: true,
        },
    )
    .await?;
    access::grant_roles(conn, user.id, role_ids).await?;
    Ok(user)
}
