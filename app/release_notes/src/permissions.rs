//! The permission keel-release-notes declares. Reading needs only a signed-in user.

use poem_openapi::OAuthScopes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, OAuthScopes)]
pub enum ReleaseNotesPermission {
    /// Write, publish, unpublish and delete release notes, and see drafts.
    #[oai(rename = "release_notes:write")]
    Write,
}
