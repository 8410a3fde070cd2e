//! keel-testkit: what integration tests need to run against real services.
//!
//! - [`TestDb`]: a fresh PostgreSQL database per test, cloned from a template that is
//!   migrated once per migration set (not once per test), dropped when the test ends;
//!   leftovers of crashed runs are swept.
//! - [`settings`]: settings for a test process, pointing at a test database.
//! - [`TestServer`]: any endpoint behind keel's middleware stack on a random port.
//!
//! Setup failures panic with a message: a test can't continue without its database.
#![expect(
    clippy::expect_used,
    reason = "test harness: a failed setup must abort the test with its message"
)]

mod db;
mod server;

pub use db::TestDb;
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
