//! keel-app integration tests: the real application and binaries against PostgreSQL.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers abort the test on a failed step"
)]

mod activity;
mod avatar;
mod binaries;
mod cache;
mod contract;
mod faults;
mod helpers;
mod release_notes;
mod system;
mod tasks;
