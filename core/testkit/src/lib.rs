//! keel-testkit: what integration tests need to run against real services.
//!
//! - [`TestDb`]: a fresh PostgreSQL database per test, cloned from a template that is
//!   migrated once per migration set (not once per test), dropped when the test ends;
//!   leftovers of crashed runs are swept.
//! - [`settings`]: settings for a test process, pointing at a test database.
//! - [`TestServer`]: any endpoint behind keel's middleware stack on a random port.
//! - [`FeatureApp`]: feature crates served as keel-api serves them, for their own tests.
//! - [`Client`]: the JSON client tests talk to a server through.
//! - [`redis_settings`]: the local Redis, under a key prefix of the test's own.
//! - [`Proxy`]: a TCP proxy a test can cut or stall, to take a service away mid-run.
//! - [`s3_settings`]: a fresh bucket on the local S3-compatible server (moto).
//!
//! Setup failures panic with a message: a test can't continue without its database.
#![expect(
    clippy::expect_used,
    reason = "test harness: a failed setup must abort the test with its message"
)]

mod client;
mod db;
mod features;
mod proxy;
mod server;

pub use client::{Answer, Client};
pub use db::{SplitRoles, TestDb};
pub use features::FeatureApp;
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
        // Suites register many accounts from 127.0.0.1; the limit has its own tests.
        ("REGISTER_MAX_PER_IP", "100000"),
    ];
    // Mail and uploads go to a scratch directory, never into the source tree.
    let (mail, storage) = (scratch("mail"), scratch("storage"));
    vars.extend([
        ("MAIL_DIR", mail.as_str()),
        ("STORAGE_DIR", storage.as_str()),
    ]);
    vars.extend_from_slice(overrides);
    Settings::from_vars(vars).expect("test settings are valid")
}

/// `KIND` under this process's scratch directory in the system's temp dir.
fn scratch(kind: &str) -> String {
    std::env::temp_dir()
        .join(format!("keel-tests-{}", std::process::id()))
        .join(kind)
        .to_string_lossy()
        .into_owned()
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

/// The RabbitMQ tests use: `KEEL_TEST_AMQP_URL`, else the local one (guest/guest).
pub fn amqp_url() -> String {
    std::env::var("KEEL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// `AMQP_URL` plus a `TASK_QUEUE_PREFIX` no other test shares, as settings overrides.
/// A test deletes its queues when done (`Broker::delete_queues`).
pub fn amqp_settings() -> [(&'static str, String); 2] {
    [
        ("AMQP_URL", amqp_url()),
        (
            "TASK_QUEUE_PREFIX",
            format!("keel-test-{}", uuid::Uuid::now_v7().simple()),
        ),
    ]
}

/// Settings overrides for SMTP to the test server `scripts/test.sh` starts (aiosmtpd on
/// 127.0.0.1:1025, no TLS), which keeps each message in [`maildir`].
pub fn smtp_settings() -> [(&'static str, String); 3] {
    [
        ("SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMTP_PORT", "1025".to_owned()),
        ("SMTP_SECURITY", "none".to_owned()),
    ]
}

/// Where the test SMTP server keeps what it receives (`KEEL_TEST_MAILDIR`).
pub fn maildir() -> std::path::PathBuf {
    std::env::var_os("KEEL_TEST_MAILDIR")
        .map_or_else(|| "/tmp/keel-test-maildir".into(), std::path::PathBuf::from)
}

/// The S3-compatible server tests use: `KEEL_TEST_S3_ENDPOINT`, else moto's server mode
/// on 127.0.0.1:5055 (`scripts/test.sh` starts it).
pub fn s3_endpoint() -> String {
    std::env::var("KEEL_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".to_owned())
}

/// Settings overrides for S3 storage in a bucket of the test's own, created here.
pub async fn s3_settings() -> Vec<(&'static str, String)> {
    let endpoint = s3_endpoint();
    let bucket = format!("keel-test-{}", uuid::Uuid::now_v7().simple());
    // moto accepts unsigned requests, so a plain PUT makes the bucket.
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|err| panic!("the S3 test server at {endpoint} is not answering ({err}); run scripts/test.sh, which starts moto"));
    assert!(
        created.status().is_success(),
        "creating bucket {bucket}: {}",
        created.status()
    );
    vec![
        ("S3_ENDPOINT", endpoint),
        ("S3_BUCKET", bucket),
        ("S3_REGION", "us-east-1".to_owned()),
        ("S3_ACCESS_KEY_ID", "test".to_owned()),
        ("S3_SECRET_ACCESS_KEY", "test".to_owned()),
    ]
}

/// Polls `done` every 20 ms until it holds or `within` has passed; whether it held.
/// For what happens in the background (a message delivered, a queue drained), never
/// for timing what is measured.
pub async fn eventually(within: std::time::Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
