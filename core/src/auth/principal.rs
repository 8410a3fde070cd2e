//! Who is calling: the user behind a verified access token, with their permissions.

use std::collections::BTreeSet;

use poem_openapi::OAuthScopes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

/// An authenticated user in an active session, as loaded once and then cached: what
/// authorization needs, and the email the audit trail names the actor by. Profile
/// data (name, avatar) is the user feature's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub email: String,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// `resource:action` codes granted through the roles.
    pub permissions: BTreeSet<String>,
}

impl Principal {
    pub fn has(&self, code: &str) -> bool {
        self.permissions.contains(code)
    }

    /// 403 unless the principal holds `permission`: for checks beyond the operation's
    /// own scopes, which [`super::Auth`] already enforces.
    pub fn require(&self, permission: impl OAuthScopes) -> Result<(), ApiError> {
        let code = permission.name();
        if self.has(code) {
            Ok(())
        } else {
            Err(forbidden(code))
        }
    }
}

/// The 403 of a caller without the permission `code`.
pub(super) fn forbidden(code: &str) -> ApiError {
    ApiError::Forbidden(format!("This operation requires the permission {code}."))
}

/// The `(code, description)` pairs a feature's permission enum declares, for seeding.
pub fn declared<P: OAuthScopes>() -> Vec<(String, String)> {
    P::meta()
        .into_iter()
        .map(|scope| {
            (
                scope.name.to_owned(),
                scope.description.unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
