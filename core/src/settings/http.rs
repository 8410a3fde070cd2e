//! `APP_HOST`, `APP_PORT`, `HTTP_*`, `CORS_ALLOWED_ORIGINS`, `TRUSTED_*`: how keel-api serves.

use std::net::IpAddr;
use std::time::Duration;

use super::reader::Reader;
use crate::net::IpNetwork;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: IpAddr,
    pub port: u16,
    /// Requests with a larger body get 413.
    pub body_limit: usize,
    /// A request still running after this gets 503 and is cancelled.
    pub request_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM before the process exits anyway.
    pub shutdown_grace: Duration,
    /// Browser origins allowed by CORS; empty disables CORS (same-origin only).
    pub cors_origins: Vec<String>,
    /// Accepted `Host` header values; empty accepts any host.
    pub trusted_hosts: Vec<String>,
    /// Peers whose `X-Forwarded-For` we believe (our load balancers).
    pub trusted_proxies: Vec<IpNetwork>,
}

impl HttpSettings {
    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        Self {
            host: r.parse("APP_HOST", IpAddr::from([127, 0, 0, 1]), "0.0.0.0"),
            port: r.parse("APP_PORT", 8000, "8000"),
            body_limit: r.byte_size("HTTP_BODY_LIMIT", 1024 * 1024, "1MiB"),
            request_timeout: r.duration("HTTP_REQUEST_TIMEOUT", Duration::from_secs(30), "30s"),
            shutdown_grace: r.duration("SHUTDOWN_GRACE_PERIOD", Duration::from_secs(20), "20s"),
            cors_origins: r.origins("CORS_ALLOWED_ORIGINS"),
            trusted_hosts: r.list("TRUSTED_HOSTS"),
            trusted_proxies: r.networks("TRUSTED_PROXIES"),
        }
    }
}
