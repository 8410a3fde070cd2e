//! What the readiness probe asks of a dependency. A leaf: it imports nothing of
//! keel-core, so every component (database, cache, storage, broker) implements it without
//! depending on the HTTP layer that serves the probe (`http::health`).

use futures_util::future::BoxFuture;

/// Why a check failed, logged with its whole chain of causes.
pub type CheckError = Box<dyn std::error::Error + Send + Sync>;

/// A dependency the readiness probe checks. Its name in the report, and whether the
/// service can serve without it, are the process's to say when it registers the check
/// (`http::health::Checks`).
pub trait Check: Send + Sync {
    /// `Err` goes to the log (which has the probe's request id); the probe's answer,
    /// which anyone may read, says only up or down.
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>>;
}
