//! keel-testkit: what integration tests need to run against real services.
//!
//! - [`TestDb`]: a fresh PostgreSQL database per test, cloned from a template that is
//!   migrated once per migration set (not once per test), dropped when the test ends;
//!   leftovers of crashed runs are swept.
//! - [`settings`]: settings for a test process, pointing at a test database.
//! - [`TestServer`]: any endpoint behind keel's middleware stack on a random port.
//! - [`redis_settings`]: the local Redis, under a key prefix of the test's own.
//! - [`Proxy`]: a TCP proxy a test can cut or stall, to take a service away mid-run.
//!
//! Setup failures panic with a message: a test can't continue without its database.
#![expect(
    clippy::expect_used,
    reason = "test harness: a failed setup must abort the test with its message"
)]

mod db;
mod proxy;
mod server;

pub use db::TestDb;
pub use proxy::{Link, Proxy};
pub use server::TestServer;

use keel_core::settings::Settings;

/// Settings for a test: `APP_ENV=test`, a random port, the given database, no migration
/// at start (test databases are cloned from a migrated template), then `overrides`.
pub fn settings(database_url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut vars = vec![
        ("APP_ENV", "test"),
        ("APP_PORT", "0"),
        ("DATABASE_URL", database_url),
        ("DATABASE_MIGRATE_ON_START", "false"),
        ("LOG_LEVEL", "warn"),
    ];
    vars.extend_from_slice(overrides);
    Settings::from_vars(vars).expect("test settings are valid")
}

/// The Redis tests use: `KEEL_TEST_REDIS_URL`, else the local one.
pub fn redis_url() -> String {
    std::env::var("KEEL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// `REDIS_URL` plus a `CACHE_KEY_PREFIX` no other test shares, as settings overrides.
/// Keys a test leaves behind expire with their TTLs.
pub fn redis_settings() -> [(&'static str, String); 2] {
    [
        ("REDIS_URL", redis_url()),
        (
            "CACHE_KEY_PREFIX",
            format!("keel-test-{}", uuid::Uuid::now_v7().simple()),
        ),
    ]
}
