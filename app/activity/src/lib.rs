//! keel-activity: the append-only audit trail.
//!
//! Other features call [`record`] with their transaction's connection, so an entry
//! commits or rolls back with the change it describes; request id, client IP and user
//! agent are taken from the request being served. PostgreSQL refuses UPDATE, DELETE and
//! TRUNCATE on the trail, and [`chain`] seals committed entries into a hash chain that
//! `keel-admin activity verify` checks. See docs/activity.md for the guarantees.

pub mod actions;
pub mod chain;
pub mod crud;
pub mod models;
pub mod permissions;
mod record;
pub mod routes;
pub mod schemas;
pub mod services;

use poem_openapi::OpenApi;

pub use actions::Action;
pub use permissions::ActivityPermission;
pub use record::{Actor, Entry, record, redact};
pub use services::ActivityService;

/// The permissions keel-activity declares, as `(code, description)` for seeding.
pub fn declared_permissions() -> Vec<(String, String)> {
    keel_core::auth::declared::<ActivityPermission>()
}

/// keel-activity's operations, mounted under `/api/v1` by keel-app.
pub fn api(service: &ActivityService) -> impl OpenApi + use<> {
    routes::ActivityApi::new(service.clone())
}
