//! keel-user: accounts, sign-in with rotating refresh tokens, roles and permissions.
//!
//! The reference feature crate: every later feature copies its layout (see
//! docs/adding-a-feature.md). keel-app mounts [`api`], seeds [`declared_permissions`]
//! from every feature, and installs the service's authenticator as request data.

pub mod crud;
pub mod errors;
pub mod fields;
pub mod models;
pub mod password;
pub mod permissions;
pub mod routes;
pub mod schemas;
pub mod services;
pub mod tasks;
pub mod tokens;

use poem_openapi::OpenApi;

pub use permissions::UserPermission;
pub use services::UserService;

/// The permissions keel-user declares, as `(code, description)` for seeding.
pub fn declared_permissions() -> Vec<(String, String)> {
    keel_core::auth::declared::<UserPermission>()
}

/// keel-user's operations, mounted under `/api/v1` by keel-app.
pub fn api(service: &UserService) -> impl OpenApi + use<> {
    (
        routes::AuthApi::new(service.clone()),
        routes::UsersApi::new(service.clone()),
        routes::RolesApi::new(service.clone()),
        routes::PermissionsApi::new(service.clone()),
    )
}
