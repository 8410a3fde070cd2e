//! keel-release-notes: "What's new". Editors draft, publish and unpublish notes (each
//! recorded in the audit trail); every signed-in user reads the published ones and has
//! an unread count. Bodies are Markdown, never rendered on the server.

pub mod crud;
pub mod errors;
pub mod models;
pub mod permissions;
pub mod routes;
pub mod schemas;
pub mod services;

use poem_openapi::OpenApi;

pub use permissions::ReleaseNotesPermission;
pub use services::ReleaseNoteService;

/// The permissions keel-release-notes declares, as `(code, description)` for seeding.
pub fn declared_permissions() -> Vec<(String, String)> {
    keel_core::auth::declared::<ReleaseNotesPermission>()
}

/// keel-release-notes' operations, mounted under `/api/v1` by keel-app.
pub fn api(service: &ReleaseNoteService) -> impl OpenApi + use<> {
    routes::ReleaseNotesApi::new(service.clone())
}
