//! Who is asking: the request id and path, reachable from any code a request runs. A
//! leaf: it imports nothing of keel-core, so errors and audit records can read it.
//!
//! The observe middleware sets it for the whole request, so error rendering, audit records
//! and logs pick it up without every function passing it by hand.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Longest incoming `X-Request-Id` we accept; anything longer is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A request's correlation id: the caller's `X-Request-Id` if sane, otherwise a fresh UUIDv7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// Accepts an incoming id only if it is short printable ASCII that is safe in logs
    /// and headers; otherwise generates one, so a client can't inject into log lines.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(id) if is_sane(id) => Self(id.into()),
            _ => Self::generate(),
        }
    }

    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_sane(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the rest of the code may want to know about the request being served.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: RequestId,
    /// The request path (no query string), used as a problem's `instance`.
    pub path: String,
    /// The client's address: the peer, or what a trusted proxy says it is.
    pub client_ip: Option<IpAddr>,
    /// The `User-Agent` header, truncated.
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// The context of the request this task is serving, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this context as the current one.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

#[cfg(test)]
mod tests {
    use super::RequestId;

    #[test]
    fn keeps_sane_ids_and_replaces_the_rest() {
        assert_eq!(
            RequestId::from_header(Some("abc-123_x.y:z")).as_str(),
            "abc-123_x.y:z"
        );
        for bad in ["", "has space", "new\nline", "ünïcode", &"x".repeat(129)] {
            let id = RequestId::from_header(Some(bad));
            assert_ne!(id.as_str(), bad);
            assert_eq!(id.as_str().len(), 36, "a UUID replaces {bad:?}");
        }
    }
}
