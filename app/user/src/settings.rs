//! keel-user's own settings: password hashing, sign-in and registration limits, and the
//! avatar size. Read and checked with keel-core's (see `keel_core::settings::Section`).

use std::time::Duration;

use keel_core::settings::{AppEnv, Reader, Section};

#[derive(Debug, Clone)]
pub struct UserSettings {
    /// Password hashes computed at once; the rest queue, then get 503.
    pub password_hash_concurrency: usize,
    /// Failed logins allowed per account, and per client IP, within `login_window`.
    pub login_max_failures_per_account: u32,
    pub login_max_failures_per_ip: u32,
    pub login_window: Duration,
    /// IPv6 clients are counted per network of this prefix length (one customer's
    /// allocation, typically a /64), since one host can use every address in it.
    pub ipv6_limit_prefix: u8,
    /// Registrations allowed per client IP (network, for IPv6) within
    /// `register_window`.
    pub register_max_per_ip: u32,
    pub register_window: Duration,
    /// Largest avatar upload accepted; larger ones get 413.
    pub avatar_max_bytes: usize,
}

/// One thread a core: the hashing threads run at the lowest priority, so request handling
/// preempts them at once and sign-in gets every cycle the rest leaves (scripts/bench.sh
/// measures both).
fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

impl Section for UserSettings {
    fn read(r: &mut Reader<'_>, _: AppEnv) -> Self {
        let at_least_one = |n: &u32| *n >= 1;
        let a_day = Duration::from_secs(1)..=Duration::from_secs(86_400);
        Self {
            password_hash_concurrency: r.parse_where(
                "PASSWORD_HASH_CONCURRENCY",
                default_hash_concurrency(),
                "1",
                |n: &usize| (1..=256).contains(n),
                "must be between 1 and 256",
            ),
            login_max_failures_per_account: r.parse_where(
                "LOGIN_MAX_FAILURES_PER_ACCOUNT",
                5,
                "5",
                at_least_one,
                "must be at least 1",
            ),
            login_max_failures_per_ip: r.parse_where(
                "LOGIN_MAX_FAILURES_PER_IP",
                50,
                "50",
                at_least_one,
                "must be at least 1",
            ),
            login_window: r.duration_within(
                "LOGIN_FAILURE_WINDOW",
                Duration::from_secs(15 * 60),
                "15m",
                a_day.clone(),
            ),
            ipv6_limit_prefix: r.parse_where(
                "RATE_LIMIT_IPV6_PREFIX",
                64,
                "64",
                |n: &u8| (1..=128).contains(n),
                "must be between 1 and 128",
            ),
            register_max_per_ip: r.parse_where(
                "REGISTER_MAX_PER_IP",
                10,
                "10",
                at_least_one,
                "must be at least 1",
            ),
            register_window: r.duration_within(
                "REGISTER_WINDOW",
                Duration::from_secs(3600),
                "1h",
                a_day,
            ),
            avatar_max_bytes: r.byte_size("AVATAR_MAX_BYTES", 1024 * 1024, "1MiB"),
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_core::Settings;

    use super::*;

    fn section(vars: &[(&str, &str)]) -> Result<UserSettings, String> {
        let settings = Settings::from_vars(vars.iter().copied()).map_err(|e| e.to_string())?;
        settings.section().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_safe() {
        let own = section(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(own.password_hash_concurrency >= 1);
        assert_eq!(own.login_max_failures_per_account, 5);
        assert_eq!(own.login_window, Duration::from_secs(15 * 60));
        assert_eq!(own.ipv6_limit_prefix, 64);
        assert_eq!(own.avatar_max_bytes, 1024 * 1024);
    }

    #[test]
    fn every_bad_value_is_named_at_once() {
        let err = section(&[
            ("PASSWORD_HASH_CONCURRENCY", "0"),
            ("LOGIN_MAX_FAILURES_PER_IP", "0"),
            ("LOGIN_FAILURE_WINDOW", "2d"),
            ("RATE_LIMIT_IPV6_PREFIX", "129"),
            ("REGISTER_MAX_PER_IP", "-1"),
            ("AVATAR_MAX_BYTES", "lots"),
        ])
        .err()
        .unwrap_or_default();
        assert!(err.contains("(6 problems)"), "{err}");
        for var in [
            "PASSWORD_HASH_CONCURRENCY",
            "LOGIN_MAX_FAILURES_PER_IP",
            "LOGIN_FAILURE_WINDOW",
            "RATE_LIMIT_IPV6_PREFIX",
            "REGISTER_MAX_PER_IP",
            "AVATAR_MAX_BYTES",
        ] {
            assert!(err.contains(&format!("{var}: ")), "{var} missing: {err}");
        }
    }
}
