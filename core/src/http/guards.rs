//! Request guards that protect every route: body size, deadline, and accepted hosts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use poem::http::header;
use poem::{Body, Endpoint, Request, Response, Result};

use super::around::{Around, around_middleware, respond};
use crate::error::ApiError;

/// Refuses bodies larger than `limit` bytes with 413, whether the client declared the
/// length up front, streams a chunked body that turns out to be too large, or sends a
/// small compressed body that unpacks to more.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub limit: usize,
}

around_middleware!(BodyLimit);

impl Around for BodyLimit {
    async fn around<E: Endpoint>(&self, inner: &E, mut req: Request) -> Result<Response> {
        let too_large = ApiError::PayloadTooLarge { limit: self.limit };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limit as u64) {
            return Err(too_large.into());
        }
        // Count the bytes as the handler reads them, whatever was declared: a compressed
        // body (`Content-Encoding`) is unpacked on the way in, so its declared length
        // says nothing about what arrives here. Remember whether the limit cut the body
        // short, so the handler's read error becomes 413.
        let exceeded = Arc::new(AtomicBool::new(false));
        let limit = self.limit;
        let flag = Arc::clone(&exceeded);
        let mut seen = 0usize;
        let stream = req.take_body().into_bytes_stream().map(move |chunk| {
            let chunk = chunk?;
            seen = seen.saturating_add(chunk.len());
            if seen > limit {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("request body too large"));
            }
            Ok(chunk)
        });
        req.set_body(Body::from_bytes_stream(stream));
        let result = respond(inner, req).await;
        if exceeded.load(Ordering::Relaxed) {
            return Err(too_large.into());
        }
        result
    }
}

/// Cancels a request that runs longer than `timeout` and answers 503.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub timeout: Duration,
}

around_middleware!(Deadline);

impl Around for Deadline {
    async fn around<E: Endpoint>(&self, inner: &E, req: Request) -> Result<Response> {
        match tokio::time::timeout(self.timeout, respond(inner, req)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "request cancelled at its deadline");
                Err(ApiError::unavailable(format!(
                    "The request did not complete within {} ms and was cancelled.",
                    self.timeout.as_millis()
                ))
                .into())
            }
        }
    }
}

/// Accepts only requests whose `Host` is listed (`example.com`, or `*.example.com` for
/// any subdomain), so forged hosts can't poison absolute URLs or caches.
#[derive(Debug, Clone)]
pub struct TrustedHosts {
    hosts: Arc<[String]>,
}

around_middleware!(TrustedHosts);

impl TrustedHosts {
    pub fn new(hosts: &[String]) -> Self {
        Self {
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    fn allows(&self, host: &str) -> bool {
        let host = strip_port(host).to_ascii_lowercase();
        self.hosts.iter().any(|allowed| {
            allowed == "*"
                || *allowed == host
                || allowed
                    .strip_prefix("*.")
                    .is_some_and(|domain| host.ends_with(&format!(".{domain}")))
        })
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8000
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

impl Around for TrustedHosts {
    async fn around<E: Endpoint>(&self, inner: &E, req: Request) -> Result<Response> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or_default();
        if self.allows(host) {
            respond(inner, req).await
        } else {
            Err(ApiError::BadRequest(
                "The Host header is not one this server answers to.".to_owned(),
            )
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TrustedHosts;

    #[test]
    fn trusted_hosts_match_names_ports_and_wildcards() {
        let hosts = TrustedHosts::new(&["api.example.com".into(), "*.internal".into()]);
        assert!(hosts.allows("api.example.com"));
        assert!(hosts.allows("API.example.com:8443"));
        assert!(hosts.allows("svc.internal"));
        assert!(!hosts.allows("internal"));
        assert!(!hosts.allows("evil.com"));
        assert!(!hosts.allows("api.example.com.evil.com"));
        assert!(TrustedHosts::new(&["::1".into()]).allows("[::1]:8000"));
    }
}
