//! The permission keel-activity declares.

use poem_openapi::OAuthScopes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, OAuthScopes)]
pub enum ActivityPermission {
    /// Read everyone's audit trail.
    #[oai(rename = "activity:read")]
    ActivityRead,
}
