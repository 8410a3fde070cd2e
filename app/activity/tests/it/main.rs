//! keel-activity integration tests against a real PostgreSQL: one binary for all.
#![expect(clippy::unwrap_used, reason = "a failed step aborts the test")]

mod chain;
mod query;
mod record;
mod support;
