//! Thin handlers: extract, call a service, map to a response.

mod auth;
mod roles;
mod users;

pub use auth::AuthApi;
pub use roles::{PermissionsApi, RolesApi};
pub use users::UsersApi;

use poem_openapi::{ApiResponse, Tags};

#[derive(Debug, Tags)]
pub(crate) enum UserTags {
    /// Registration, sign-in, tokens and the signed-in user's own account.
    Auth,
    /// Account administration.
    Users,
    /// Roles and the permissions they grant.
    Roles,
}

#[derive(Debug, ApiResponse)]
pub(crate) enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}
