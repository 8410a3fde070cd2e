//! `JWT_*`, `PASSWORD_PEPPER` and token lifetimes. Plain data: auth builds (and checks)
//! the signing keys from it.

use std::fmt;
use std::time::Duration;

use super::Secret;
use super::reader::Reader;

/// Development-only secret values; refused when `APP_ENV=production`.
const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-change-me-0123456789abcdef";
const DEV_PASSWORD_PEPPER: &str = "dev-only-password-pepper-change-me-0123456789";

/// The signing algorithms keel accepts in `JWT_ALGORITHM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `JWT_SECRET`: every verifier holds the signing secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl std::str::FromStr for JwtAlgorithm {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "HS256" => Ok(Self::Hs256),
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            "EdDSA" => Ok(Self::EdDsa),
            _ => Err("expected HS256, RS256, ES256 or EdDSA"),
        }
    }
}

/// How access tokens are signed, as configured.
#[derive(Debug, Clone)]
pub enum JwtKeys {
    /// HS256 with `JWT_SECRET`: every verifier holds the signing secret.
    Secret(Secret),
    /// An asymmetric `JWT_ALGORITHM` with the contents of the PEM files.
    Pair(KeyPair),
}

/// A PEM key pair as read from `JWT_PRIVATE_KEY_FILE` and `JWT_PUBLIC_KEY_FILE`.
#[derive(Clone)]
pub struct KeyPair {
    pub algorithm: JwtAlgorithm,
    private_pem: Vec<u8>,
    pub public_pem: Vec<u8>,
}

impl KeyPair {
    /// The private key; read it only to build the signing key, never to log it.
    pub fn private_pem(&self) -> &[u8] {
        &self.private_pem
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Signs and verifies access tokens: `JWT_SECRET` (HS256) or the key pair in
    /// `JWT_PRIVATE_KEY_FILE`/`JWT_PUBLIC_KEY_FILE` (`JWT_ALGORITHM`). Plain data: auth
    /// builds the keys (and checks the pair) from it.
    pub jwt_keys: JwtKeys,
    pub password_pepper: Secret,
    /// `iss` of the access tokens we issue and the only one we accept.
    pub jwt_issuer: String,
    /// `aud` of the access tokens we issue and the only one we accept.
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token; each rotation starts a new one.
    pub refresh_token_ttl: Duration,
    /// How long a replica may serve an authenticated principal from memory before it
    /// re-reads it; bounds staleness across replicas that share no cache.
    pub auth_cache_ttl: Duration,
}

/// HS256 with `JWT_SECRET`, or the PEM key pair an asymmetric `JWT_ALGORITHM` names
/// (read here; whether the keys parse and belong together is auth's to check).
fn jwt_keys(r: &mut Reader<'_>, prod: bool) -> JwtKeys {
    let algorithm = r.parse("JWT_ALGORITHM", JwtAlgorithm::Hs256, "EdDSA");
    if algorithm == JwtAlgorithm::Hs256 {
        return JwtKeys::Secret(r.secret("JWT_SECRET", DEV_JWT_SECRET, prod));
    }
    let why = "when JWT_ALGORITHM is not HS256";
    let private = r.required_file("JWT_PRIVATE_KEY_FILE", why, "/run/secrets/jwt-private.pem");
    let public = r.required_file("JWT_PUBLIC_KEY_FILE", why, "/run/secrets/jwt-public.pem");
    match (private, public) {
        (Some(private_pem), Some(public_pem)) => JwtKeys::Pair(KeyPair {
            algorithm,
            private_pem,
            public_pem,
        }),
        // The missing file is already reported.
        _ => JwtKeys::Secret(Secret::new(DEV_JWT_SECRET)),
    }
}

impl SecuritySettings {
    pub(super) fn read(r: &mut Reader<'_>, prod: bool) -> Self {
        let jwt_keys = jwt_keys(r, prod);
        Self {
            jwt_keys,
            password_pepper: r.secret("PASSWORD_PEPPER", DEV_PASSWORD_PEPPER, prod),
            jwt_issuer: r.string("JWT_ISSUER", "keel"),
            jwt_audience: r.string("JWT_AUDIENCE", "keel-api"),
            access_token_ttl: r.duration_within(
                "ACCESS_TOKEN_TTL",
                Duration::from_secs(15 * 60),
                "15m",
                Duration::from_secs(10)..=Duration::from_secs(24 * 3600),
            ),
            refresh_token_ttl: r.duration_within(
                "REFRESH_TOKEN_TTL",
                Duration::from_secs(30 * 86_400),
                "30d",
                Duration::from_secs(60)..=Duration::from_secs(365 * 86_400),
            ),
            auth_cache_ttl: r.duration_within(
                "AUTH_CACHE_TTL",
                Duration::from_secs(30),
                "30s",
                Duration::ZERO..=Duration::from_secs(3600),
            ),
        }
    }
}
