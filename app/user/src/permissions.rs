//! The permissions keel-user declares. Seeding stores them (code and description) and
//! gives them all to the `superuser` role; operations list the one they need as an
//! OAuth2 scope in OpenAPI.

use poem_openapi::OAuthScopes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, OAuthScopes)]
pub enum UserPermission {
    /// List and read user accounts.
    #[oai(rename = "users:read")]
    UsersRead,
    /// Create and edit accounts, (de)activate them, sign them out, set their roles.
    #[oai(rename = "users:write")]
    UsersWrite,
    /// List roles and their permissions.
    #[oai(rename = "roles:read")]
    RolesRead,
    /// Create, edit and delete roles and set their permissions.
    #[oai(rename = "roles:write")]
    RolesWrite,
    /// List the permissions the features declare.
    #[oai(rename = "permissions:read")]
    PermissionsRead,
}
