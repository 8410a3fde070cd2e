//! Object keys that are safe everywhere: as S3 keys, as URL paths, and as paths under the
//! local storage root (they can never leave it).

use std::fmt;

/// Longest key accepted, in bytes.
const MAX_LEN: usize = 512;

/// A validated key such as `avatars/0192…/4f1c.png`: `/`-separated segments of ASCII
/// letters, digits, `.`, `_` and `-`, none empty, none starting with `.` (so no `..`, no
/// hidden files), at most 512 bytes. Anything else is refused, not cleaned up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct InvalidKey {
    pub key: String,
    pub reason: &'static str,
}

impl ObjectKey {
    pub fn new(raw: &str) -> Result<Self, InvalidKey> {
        let refuse = |reason| {
            Err(InvalidKey {
                key: raw.chars().take(80).collect(),
                reason,
            })
        };
        if raw.is_empty() || raw.len() > MAX_LEN {
            return refuse("must be 1 to 512 bytes");
        }
        for segment in raw.split('/') {
            if segment.is_empty() {
                return refuse("has an empty segment (leading, trailing or double '/')");
            }
            if segment.starts_with('.') {
                return refuse("has a segment starting with '.'");
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return refuse("may only hold ASCII letters, digits, '.', '_', '-' and '/'");
            }
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectKey;

    #[test]
    fn plain_keys_pass() {
        for key in ["a", "avatars/0192/4f1c.png", "x-y_z.tar.gz", "a/b/c/d"] {
            assert_eq!(ObjectKey::new(key).unwrap().as_str(), key);
        }
    }

    #[test]
    fn keys_that_could_escape_or_confuse_are_refused() {
        let long = "a".repeat(513);
        for key in [
            "",
            "/etc/passwd",
            "../secret",
            "a/../../b",
            "a/./b",
            "a//b",
            "a/",
            ".hidden",
            "a/.git/config",
            "a\\b",
            "a b",
            "a\0b",
            "ü",
            "a%2e%2e",
            "C:x",
            &long,
        ] {
            assert!(ObjectKey::new(key).is_err(), "{key:?} was accepted");
        }
    }
}
