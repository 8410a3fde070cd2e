//! keel-user integration tests, against real PostgreSQL: one binary for all of them.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers abort the test on a failed step"
)]

mod admin;
mod audit;
mod auth;
mod delegation;
mod hostile;
mod races;
mod support;
mod tokens;
