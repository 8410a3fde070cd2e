//! keel-core integration tests: one binary (one link) for all of them.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers abort the test on a failed step"
)]

mod cache;
mod changes;
mod crud;
mod db;
mod http;
mod jwt;
mod local_db;
mod logging;
mod mail;
mod modules;
mod settings;
mod storage;
mod support;
mod tasks;
