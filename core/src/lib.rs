//! keel-core: the shared infrastructure every keel feature and binary builds on.
//!
//! Nothing here knows about a feature: features depend on core, never the reverse.

pub mod auth;
mod bounded;
pub mod cache;
pub mod context;
pub mod crud;
pub mod db;
pub mod error;
pub mod feature;
pub mod health;
pub mod hex;
pub mod http;
pub mod mail;
pub mod net;
pub mod ratelimit;
pub mod request;
pub mod settings;
pub mod storage;
pub mod tasks;
pub mod telemetry;

pub use context::Context;
pub use error::ApiError;
pub use feature::{Feature, Features};
pub use settings::Settings;
