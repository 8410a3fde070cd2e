//! Access tokens: short-lived JWTs, signed with one pinned algorithm.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::verified::VerifiedTokens;
use crate::settings::{JwtAlgorithm, JwtKeys, Problem, SecuritySettings, SettingsError};

/// jsonwebtoken's name for a configured algorithm.
fn algorithm_of(algorithm: JwtAlgorithm) -> Algorithm {
    match algorithm {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

/// The keys that sign and verify access tokens, checked to belong together when built.
#[derive(Clone)]
pub struct SigningKeys {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// HS256 with a shared secret.
    pub fn hmac(secret: &[u8]) -> Self {
        Self {
            algorithm: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// An asymmetric algorithm with a PEM private key (PKCS#8, or PKCS#1 for RSA) and
    /// the matching PEM public key. Fails, saying which, when a key doesn't parse for
    /// `algorithm` or the public key doesn't verify what the private key signs.
    pub fn from_pem(
        algorithm: JwtAlgorithm,
        private_pem: &[u8],
        public_pem: &[u8],
    ) -> Result<Self, KeyError> {
        let (encoding, decoding) = match algorithm {
            JwtAlgorithm::Hs256 => return Err(KeyError::NotAsymmetric),
            JwtAlgorithm::Rs256 => (
                EncodingKey::from_rsa_pem(private_pem),
                DecodingKey::from_rsa_pem(public_pem),
            ),
            JwtAlgorithm::Es256 => (
                EncodingKey::from_ec_pem(private_pem),
                DecodingKey::from_ec_pem(public_pem),
            ),
            JwtAlgorithm::EdDsa => (
                EncodingKey::from_ed_pem(private_pem),
                DecodingKey::from_ed_pem(public_pem),
            ),
        };
        let keys = Self {
            algorithm: algorithm_of(algorithm),
            encoding: encoding.map_err(KeyError::Private)?,
            decoding: decoding.map_err(KeyError::Public)?,
        };
        // A key of the wrong type parses but fails at first use; a public key from
        // another pair verifies nothing. Find out now, not at the first login.
        let probe = b"keel key check";
        let signature = jsonwebtoken::crypto::sign(probe, &keys.encoding, keys.algorithm)
            .map_err(KeyError::Private)?;
        match jsonwebtoken::crypto::verify(&signature, probe, &keys.decoding, keys.algorithm) {
            Ok(true) => Ok(keys),
            Ok(false) => Err(KeyError::Mismatch),
            Err(err) => Err(KeyError::Public(err)),
        }
    }

    /// The keys `JWT_*` names, checked to belong together; a problem names the variable
    /// to fix, as settings problems do.
    pub fn from_settings(keys: &JwtKeys) -> Result<Self, Problem> {
        match keys {
            JwtKeys::Secret(secret) => Ok(Self::hmac(secret.expose().as_bytes())),
            JwtKeys::Pair(pair) => {
                Self::from_pem(pair.algorithm, pair.private_pem(), &pair.public_pem).map_err(
                    |err| {
                        let variable = match err {
                            KeyError::Private(_) => "JWT_PRIVATE_KEY_FILE",
                            _ => "JWT_PUBLIC_KEY_FILE",
                        };
                        Problem::new(
                            variable,
                            format!("{err} (JWT_ALGORITHM={:?})", pair.algorithm),
                            "a PEM key made with `openssl genpkey -algorithm ed25519` for EdDSA",
                        )
                    },
                )
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Why a key pair from settings can't be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("HS256 uses JWT_SECRET, not a key pair")]
    NotAsymmetric,
    #[error("the private key is not usable for this algorithm: {0}")]
    Private(jsonwebtoken::errors::Error),
    #[error("the public key is not usable for this algorithm: {0}")]
    Public(jsonwebtoken::errors::Error),
    #[error("the public key does not belong to the private key")]
    Mismatch,
}

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
    keys: SigningKeys,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
    /// Shared by clones: what any of them verified, all of them know.
    verified: Arc<VerifiedTokens>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithm", &self.keys.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// The keys and claims from settings. Verification accepts the configured algorithm
    /// only, with our `iss` and `aud`, and requires every claim keel relies on. Fails
    /// when the configured key pair is unusable, naming the variable.
    pub fn from_settings(security: &SecuritySettings) -> Result<Self, SettingsError> {
        let keys = SigningKeys::from_settings(&security.jwt_keys)
            .map_err(|problem| SettingsError::new(vec![problem]))?;
        let mut validation = Validation::new(keys.algorithm);
        validation.set_issuer(&[&security.jwt_issuer]);
        validation.set_audience(&[&security.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        Ok(Self {
            keys,
            validation,
            issuer: security.jwt_issuer.clone(),
            audience: security.jwt_audience.clone(),
            ttl: security.access_token_ttl,
            verified: Arc::default(),
        })
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
        jsonwebtoken::encode(
            &Header::new(self.keys.algorithm),
            claims,
            &self.keys.encoding,
        )
        .map_err(TokenError::Sign)
    }

    /// Checks signature, algorithm, expiry, issuer, audience and type. A token verified
    /// before is only held to its expiry again (see [`VerifiedTokens`]).
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
        if let Some(claims) = self.verified.get(token, now) {
            return Ok(claims);
        }
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &self.keys.decoding, &self.validation)?;
        if data.claims.typ != ACCESS_TYPE {
            return Err(TokenError::WrongType(data.claims.typ));
        }
        self.verified
            .keep(token, &data.claims, LEEWAY_SECS.cast_signed(), now);
        Ok(data.claims)
    }
}
