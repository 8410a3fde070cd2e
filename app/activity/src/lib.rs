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

mod dead_letters;

use keel_core::feature::Running;
use keel_core::tasks::Registry;
use keel_core::{ApiError, Context};

pub use actions::Action;
pub use permissions::ActivityPermission;
pub use record::{Actor, Entry, record, redact};
pub use services::ActivityService;

/// keel-activity as keel-app lists it.
pub type Feature = ActivityService;

impl keel_core::Feature for ActivityService {
    const NAME: &'static str = "activity";
    type Api = routes::ActivityApi;

    type Settings = ();

    async fn build(ctx: &Context, (): ()) -> Result<Self, ApiError> {
        Ok(Self::new(ctx.db.clone()).recording(&ctx.declared.audit_actions))
    }

    fn api(&self) -> Self::Api {
        routes::ActivityApi::new(self.clone())
    }

    fn permissions() -> Vec<(String, String)> {
        keel_core::auth::declared::<ActivityPermission>()
    }

    fn audit_actions() -> Vec<&'static str> {
        actions::names(actions::ALL)
    }

    /// A task given up on becomes an audit entry: someone has to look at it.
    fn tasks(&self, registry: &mut Registry) {
        let db = self.db().clone();
        registry.on_dead_letter(std::sync::Arc::new(move |envelope, error| {
            dead_letters::record(db.clone(), envelope, error)
        }));
    }

    /// The sealer, which chains committed entries.
    fn spawn(&self) -> Vec<Running> {
        vec![Box::new(self.spawn_sealer())]
    }
}
