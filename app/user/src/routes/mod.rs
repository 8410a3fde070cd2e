//! Thin handlers: extract, call a service, map to a response.

mod auth;
mod roles;
mod users;

pub use auth::AuthApi;
pub use roles::{PermissionsApi, RolesApi};
pub use users::UsersApi;

use keel_core::problem_statuses;
use poem_openapi::{ApiResponse, Tags};

// What the permission-guarded admin operations (users, roles, permissions) can answer.
problem_statuses!(pub(crate) GuardedProblems = [401, 403, 503]);
problem_statuses!(pub(crate) ListProblems = [400, 401, 403, 422, 503]);
problem_statuses!(pub(crate) ReadProblems = [400, 401, 403, 404, 422, 503]);
problem_statuses!(pub(crate) CreateProblems = [400, 401, 403, 409, 413, 415, 422, 503]);
problem_statuses!(pub(crate) EditProblems = [400, 401, 403, 404, 409, 413, 415, 422, 503]);
// State changes without a body: deactivation, deletion.
problem_statuses!(pub(crate) StateProblems = [400, 401, 403, 404, 409, 422, 503]);

#[derive(Debug, Tags)]
pub(crate) enum UserTags {
    /// Registration, sign-in, tokens and the signed-in user's own account.
    Auth,
    /// Account administration.
    Users,
    /// Roles and the permissions they grant.
    Roles,
}

/// A list of checked text (role names, permission codes) as the services take it.
fn strings(items: Vec<impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

#[derive(Debug, ApiResponse)]
pub(crate) enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}
