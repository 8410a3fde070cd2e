//! keel-release-notes: "What's new". Editors draft, publish and unpublish notes (each
//! recorded in the audit trail); every signed-in user reads the published ones and has
//! an unread count. Bodies are Markdown, never rendered on the server.

pub mod actions;
pub mod crud;
pub mod errors;
pub mod models;
pub mod permissions;
pub mod routes;
pub mod schemas;
pub mod services;

use keel_core::{ApiError, Context};

pub use permissions::ReleaseNotesPermission;
pub use services::ReleaseNoteService;

/// keel-release-notes as keel-app lists it.
pub type Feature = ReleaseNoteService;

impl keel_core::Feature for ReleaseNoteService {
    const NAME: &'static str = "release_notes";
    type Api = routes::ReleaseNotesApi;

    type Settings = ();

    async fn build(ctx: &Context, (): ()) -> Result<Self, ApiError> {
        Ok(Self::new(ctx.db.clone(), ctx.cache.clone()))
    }

    fn api(&self) -> Self::Api {
        routes::ReleaseNotesApi::new(self.clone())
    }

    fn permissions() -> Vec<(String, String)> {
        keel_core::auth::declared::<ReleaseNotesPermission>()
    }

    fn audit_actions() -> Vec<&'static str> {
        keel_activity::actions::names(actions::ALL)
    }
}
