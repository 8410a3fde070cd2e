//! Refresh tokens: 256 random bits, handed out once, stored only as a SHA-256 digest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_core::ApiError;
use sha2::{Digest, Sha256};

/// A new refresh token and the digest to store for it.
#[derive(Debug)]
pub struct RefreshToken {
    pub token: String,
    pub hash: Vec<u8>,
}

impl RefreshToken {
    pub fn generate() -> Result<Self, ApiError> {
        let token = encode(&random::<32>()?);
        let hash = digest(&token);
        Ok(Self { token, hash })
    }
}

/// `N` bytes from the operating system's secure random source.
pub fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(format!("no randomness available: {e}")))?;
    Ok(bytes)
}

/// The stored form of a presented token. A fast hash is right here: the token has 256
/// bits of entropy, so there is nothing to brute-force.
pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
