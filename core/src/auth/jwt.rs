//! Access tokens: short-lived JWTs, signed with one pinned algorithm.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::settings::SecuritySettings;

/// The `typ` claim of access tokens; a token minted for another purpose is refused.
pub const ACCESS_TYPE: &str = "access";

/// Clock skew tolerated on `exp`/`iat` between replicas.
const LEEWAY_SECS: u64 = 5;

/// The claims of a keel access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    /// The session (refresh token family) the token belongs to; revoking it ends the token.
    pub sid: Uuid,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub aud: String,
    /// Unique per token, for logs and audit records.
    pub jti: Uuid,
    pub typ: String,
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

/// Why a token was refused. Callers answer 401 whatever the reason; the reason is logged.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token type is {0:?}, not an access token")]
    WrongType(String),
    #[error("cannot sign token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// Signs and verifies access tokens with the keys and claims from settings.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// HS256 with `JWT_SECRET`. Verification accepts HS256 only, with our `iss` and `aud`,
    /// and requires every claim keel relies on.
    pub fn from_settings(security: &SecuritySettings) -> Self {
        let secret = security.jwt_secret.expose().as_bytes();
        let algorithm = Algorithm::HS256;
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&security.jwt_issuer]);
        validation.set_audience(&[&security.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            algorithm,
            issuer: security.jwt_issuer.clone(),
            audience: security.jwt_audience.clone(),
            ttl: security.access_token_ttl,
        }
    }

    /// Signs an access token for `user` in `session`, valid for `ACCESS_TOKEN_TTL`.
    pub fn issue(&self, user: Uuid, session: Uuid) -> Result<IssuedToken, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = AccessClaims {
            sub: user,
            sid: session,
            iat: now,
            exp: now.saturating_add(ttl),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::now_v7(),
            typ: ACCESS_TYPE.to_owned(),
        };
        self.sign(&claims).map(|token| IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// Signs arbitrary claims with our key; `issue` is the normal way in.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.encoding)
            .map_err(TokenError::Sign)
    }

    /// Checks signature, algorithm, expiry, issuer, audience and type.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)?;
        if data.claims.typ != ACCESS_TYPE {
            return Err(TokenError::WrongType(data.claims.typ));
        }
        Ok(data.claims)
    }
}
