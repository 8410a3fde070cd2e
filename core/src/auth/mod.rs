//! Authentication and authorisation for every feature: verify the bearer token, find the
//! principal (from memory when possible), and check permissions.
//!
//! Handlers take an [`Auth`] parameter, which documents the bearer (OAuth2 password)
//! scheme in OpenAPI, answers 401 on its own, and holds the caller to the permissions
//! the operation lists as scopes (403), read from the published document
//! ([`RequiredScopes`]): the one declaration is both what clients see and what runs.
//!
//! ```ignore
//! async fn list(&self, #[oai(scope = "UserPermission::UsersRead")] _auth: Auth) -> .. {
//! ```
//! [`Principal::has`] and [`Principal::require`] serve checks that depend on the data
//! (drafts only editors see).
//! The feature that owns users (keel-user) provides the [`PrincipalSource`].

pub mod cache;
pub mod jwt;
mod principal;
pub mod shared;
mod verified;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use poem::{PathPattern, Request};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{Bearer, BearerAuthorization};
use uuid::Uuid;

pub use cache::{Cached, PrincipalCache};
pub use jwt::{AccessClaims, IssuedToken, KeyError, SigningKeys, TokenError, TokenKeys};
pub use principal::{Principal, declared};
pub use shared::SharedPrincipals;

use crate::cache::Cache;
use crate::error::ApiError;
use crate::http::contract::RequiredScopes;

/// Loads the principal of a verified token from the source of truth.
pub trait PrincipalSource: Send + Sync + 'static {
    /// `None` when the session is revoked or expired, or the user is gone or deactivated.
    fn load<'a>(
        &'a self,
        claims: &'a AccessClaims,
    ) -> BoxFuture<'a, Result<Option<Principal>, ApiError>>;
}

/// Where principals are remembered between requests.
#[derive(Debug)]
enum Sessions {
    /// In this process: one replica, or no Redis.
    Local(PrincipalCache),
    /// In Redis, so every replica sees every change at once.
    Shared(SharedPrincipals),
}

/// Verifies access tokens and resolves them to principals. Installed as request data
/// (`.data(authenticator)`) so the [`Auth`] extractor can reach it.
#[derive(Clone)]
pub struct Authenticator {
    /// Behind an `Arc` like the rest: installed as request data, an authenticator is
    /// cloned into every request, and the keys' own clone copies key material and sets.
    keys: Arc<TokenKeys>,
    sessions: Arc<Sessions>,
    source: Arc<dyn PrincipalSource>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Remembers principals for `ttl` in `cache` when it is shared (Redis), otherwise
    /// in this process.
    pub fn new(
        keys: TokenKeys,
        cache: &Cache,
        ttl: Duration,
        source: Arc<dyn PrincipalSource>,
    ) -> Self {
        let sessions = if cache.is_shared() {
            Sessions::Shared(SharedPrincipals::new(cache.clone(), ttl))
        } else {
            Sessions::Local(PrincipalCache::new(ttl))
        };
        Self {
            keys: Arc::new(keys),
            sessions: Arc::new(sessions),
            source,
        }
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// The principal behind `token`, or 401. The reason for a refusal is logged at debug
    /// and never told to the caller.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, ApiError> {
        let claims = self.keys.verify(token).map_err(|err| {
            tracing::debug!(error = %err, "access token refused");
            unauthorized()
        })?;
        let cached = match &*self.sessions {
            Sessions::Shared(shared) => {
                shared
                    .resolve(&claims, || self.source.load(&claims))
                    .await?
            }
            Sessions::Local(local) => {
                local
                    .get_or_load(claims.sid, claims.sub, || self.source.load(&claims))
                    .await?
            }
        };
        match cached {
            Cached::Valid(principal) if principal.user_id == claims.sub => Ok(principal),
            _ => {
                tracing::debug!(session = %claims.sid, "access token of an ended session");
                Err(unauthorized())
            }
        }
    }

    /// Makes a session's change visible to the next request, on every replica that
    /// shares the cache. Call it after the change commits.
    pub async fn session_changed(&self, session: Uuid) {
        match &*self.sessions {
            Sessions::Local(local) => local.invalidate_session(session),
            Sessions::Shared(shared) => shared.invalidate_session(session).await,
        }
    }

    pub async fn user_changed(&self, user: Uuid) {
        match &*self.sessions {
            Sessions::Local(local) => local.invalidate_user(user),
            Sessions::Shared(shared) => shared.invalidate_user(user).await,
        }
    }

    /// A role's permissions changed, which may touch any user.
    pub async fn everyone_changed(&self) {
        match &*self.sessions {
            Sessions::Local(local) => local.invalidate_all(),
            Sessions::Shared(shared) => shared.invalidate_all().await,
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::Unauthorized("The access token is missing, invalid, expired or revoked.".to_owned())
}

/// A signed-in caller. As an operation parameter it adds the bearer security
/// requirement to the operation and answers 401 when the token doesn't check out.
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "OAuth2",
    ty = "oauth2",
    // Named in the published document by the feature that issues tokens
    // (`Feature::TOKEN_PATH`); poem-openapi wants a value here.
    flows(password(token_url = "/token")),
    checker = "authenticate"
)]
/// Sign in with your email as username; the access token goes in
/// `Authorization: Bearer <token>`. Operations list the permission they need as a scope.
pub struct Auth(pub Arc<Principal>);

impl std::ops::Deref for Auth {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// The caller when the request carries a bearer token (which must then be valid), for
/// operations that also serve anonymous callers.
pub async fn optional_caller(req: &Request) -> Result<Option<Arc<Principal>>, ApiError> {
    if !req
        .headers()
        .contains_key(poem::http::header::AUTHORIZATION)
    {
        return Ok(None);
    }
    let bearer = <Bearer as BearerAuthorization>::from_request(req).map_err(|_| {
        ApiError::Unauthorized("The Authorization header is not a bearer token.".to_owned())
    })?;
    principal_of(req, &bearer.token).await.map(Some)
}

/// The `Auth` checker: the token's principal, held to every permission the operation
/// lists as its scope (403 naming the first it lacks).
async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<Arc<Principal>> {
    let principal = principal_of(req, &bearer.token).await?;
    if let Some(missing) = required_scopes(req)?
        .iter()
        .find(|scope| !principal.has(scope))
    {
        return Err(principal::forbidden(missing).into());
    }
    Ok(principal)
}

/// The scopes of the operation being served, from the [`RequiredScopes`] installed as
/// request data. Fails closed: without the table, or for an operation it doesn't know,
/// nothing is served.
fn required_scopes(req: &Request) -> Result<&[String], ApiError> {
    let table = req
        .data::<Arc<RequiredScopes>>()
        .ok_or_else(|| ApiError::internal("no RequiredScopes installed as request data"))?;
    let pattern = req
        .data::<PathPattern>()
        .ok_or_else(|| ApiError::internal("Auth used outside a routed operation"))?;
    table.of(req.method(), &pattern.0).ok_or_else(|| {
        let operation = format!("{} {}", req.method(), pattern.0);
        ApiError::internal(format!("{operation} is not in the OpenAPI document"))
    })
}

/// Resolves `token` with the [`Authenticator`] installed as request data.
async fn principal_of(req: &Request, token: &str) -> Result<Arc<Principal>, ApiError> {
    req.data::<Authenticator>()
        .ok_or_else(|| ApiError::internal("no Authenticator installed as request data"))?
        .authenticate(token)
        .await
}

#[cfg(test)]
mod tests {
    use poem::http::Method;

    use super::*;

    fn request(scopes: Option<serde_json::Value>, pattern: Option<&str>) -> Request {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri_str("/a/1")
            .finish();
        if let Some(document) = scopes {
            req.set_data(Arc::new(RequiredScopes::from_document(&document)));
        }
        if let Some(pattern) = pattern {
            req.set_data(PathPattern(pattern.into()));
        }
        req
    }

    /// A harness that forgot the table, or an operation the document doesn't have,
    /// serves nothing rather than skipping the permission check.
    #[test]
    fn the_scope_check_fails_closed() {
        let document = serde_json::json!(
            {"paths": {"/a/{id}": {"post": {"security": [{"OAuth2": ["a:write"]}]}}}}
        );
        let internal = |req: &Request| matches!(required_scopes(req), Err(ApiError::Internal(_)));
        assert!(internal(&request(None, Some("/a/:param0"))));
        assert!(internal(&request(Some(document.clone()), None)));
        assert!(internal(&request(
            Some(document.clone()),
            Some("/b/:param0")
        )));
        let served = request(Some(document), Some("/a/:param0"));
        assert_eq!(
            required_scopes(&served).ok(),
            Some(&["a:write".to_owned()][..])
        );
    }
}
