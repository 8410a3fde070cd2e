//! keel-user: accounts, sign-in with rotating refresh tokens, roles and permissions.
//!
//! The reference feature crate: every later feature copies its layout (see
//! docs/adding-a-feature.md): [`UserService`] is its [`keel_core::Feature`].

pub mod actions;
pub mod crud;
pub mod errors;
pub mod fields;
pub mod models;
pub mod password;
pub mod permissions;
pub mod routes;
pub mod schemas;
pub mod services;
pub mod settings;
pub mod tasks;
pub mod tokens;

use keel_core::db::Db;
use keel_core::feature::Endpoint;
use keel_core::tasks::Registry;
use keel_core::{ApiError, Context};
use poem::EndpointExt;

pub use permissions::UserPermission;
pub use services::UserService;

/// keel-user as keel-app lists it.
pub type Feature = UserService;

impl keel_core::Feature for UserService {
    const NAME: &'static str = "user";
    type Api = (
        routes::AuthApi,
        routes::UsersApi,
        routes::RolesApi,
        routes::PermissionsApi,
    );

    type Settings = settings::UserSettings;

    const TOKEN_PATH: Option<&'static str> = Some("/auth/token");

    async fn build(ctx: &Context, settings: Self::Settings) -> Result<Self, ApiError> {
        Self::new(ctx, &settings).await
    }

    fn api(&self) -> Self::Api {
        (
            routes::AuthApi::new(self.clone()),
            routes::UsersApi::new(self.clone()),
            routes::RolesApi::new(self.clone()),
            routes::PermissionsApi::new(self.clone()),
        )
    }

    fn permissions() -> Vec<(String, String)> {
        keel_core::auth::declared::<UserPermission>()
    }

    fn audit_actions() -> Vec<&'static str> {
        keel_activity::actions::names(actions::ALL)
    }

    fn tasks(&self, registry: &mut Registry) {
        registry
            .register::<tasks::SendWelcomeEmail>(self.clone())
            .register_periodic::<tasks::PurgeSessions>(self.clone());
    }

    /// Every declared permission, the superuser role holding them all, the user role.
    async fn seed(db: &Db, declared: &[(String, String)]) -> Result<Vec<String>, ApiError> {
        Ok(services::seed(db, declared.to_vec()).await?.changes())
    }

    /// `Auth` extractors verify tokens with the authenticator found as request data.
    fn wrap(&self, endpoint: Endpoint) -> Endpoint {
        endpoint.data(self.authenticator().clone()).boxed()
    }
}
