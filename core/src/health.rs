//! What the readiness probe asks of a dependency. A leaf: it imports nothing of
//! keel-core, so every component (database, cache, storage, broker) implements it without
//! depending on the HTTP layer that serves the probe (`http::health`).

use futures_util::future::BoxFuture;

/// A dependency the readiness probe checks; keel-app adds the ones a process uses.
pub trait Check: Send + Sync {
    /// The key in the readiness report, e.g. `database`.
    fn name(&self) -> &'static str;
    /// A required component being down makes the whole service unready (503); an
    /// optional one only marks it degraded.
    fn required(&self) -> bool;
    /// `Err` carries the cause for the log (which has the probe's request id); the
    /// probe's answer, which anyone may read, says only up or down.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}
