//! Thin handlers: extract, call a service, map to a response.

mod auth;

pub use auth::AuthApi;

use poem_openapi::Tags;

#[derive(Debug, Tags)]
pub(crate) enum UserTags {
    /// Registration, sign-in, tokens and the signed-in user's own account.
    Auth,
}
