//! Request and response bodies of keel-user's API. Request types hold only what a
//! client may set: roles, activity and timestamps are server-owned and have no field
//! here, so a body can't assign them.

use chrono::{DateTime, Utc};
use keel_core::http::formats::{EmailText, PermissionCode, PlainText};
use keel_core::text_rule;
use poem_openapi::{Enum, Object};
use uuid::Uuid;

use crate::models::{Account, Permission, Profile, RefreshSession, RoleGrants, Tokens};

text_rule! {
    /// A password being set: at least one character that isn't white space, and no NUL.
    pub NewPassword = PasswordRule("password", r"^[^\u0000]*[^\s\u0000][^\u0000]*$");
}

text_rule! {
    /// A role's name: lowercase letters, digits, `-` and `_`, starting with a letter.
    pub RoleName = RoleNameRule("role_name", "^[a-z][a-z0-9_-]{1,62}$");
}

#[derive(Debug, Clone, Object)]
pub struct RegisterRequest {
    #[oai(validator(max_length = 254))]
    pub email: EmailText,
    /// 10 to 128 characters, not only whitespace, not the email address.
    #[oai(validator(min_length = 10, max_length = 128))]
    pub password: NewPassword,
    /// Without control characters.
    #[oai(default, validator(max_length = 200))]
    pub full_name: PlainText,
}

#[derive(Debug, Clone, Object)]
pub struct Credentials {
    #[oai(validator(max_length = 254))]
    pub email: EmailText,
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

/// The one OAuth2 grant keel's token endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum GrantType {
    Password,
}

/// The OAuth2 password grant, as Swagger UI's Authorize dialog sends it; the same
/// limits as the credentials `POST /auth/login` takes.
#[derive(Debug, Clone, Object)]
pub struct PasswordGrant {
    pub grant_type: Option<GrantType>,
    /// The account's email.
    #[oai(validator(max_length = 254))]
    pub username: String,
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

#[derive(Debug, Clone, Object)]
pub struct RefreshRequest {
    #[oai(validator(max_length = 512))]
    pub refresh_token: String,
}

/// An optional refresh token: logout accepts it or just the bearer access token.
#[derive(Debug, Clone, Object)]
pub struct LogoutRequest {
    #[oai(validator(max_length = 512))]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct TokenPair {
    pub access_token: String,
    /// Opaque; present it once to `POST /auth/refresh`, which replaces it.
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<Tokens> for TokenPair {
    fn from(tokens: Tokens) -> Self {
        Self {
            access_token: tokens.access.token,
            refresh_token: tokens.refresh,
            token_type: "bearer".to_owned(),
            expires_in: tokens.access.expires_in.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct Accepted {
    pub detail: String,
}

/// The signed-in user, as `GET /auth/me` shows them.
// Served by serde (`SerdeJson`): the document its `ToJSON` would write, keys in
// declaration order (see the test below).
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    #[serde(serialize_with = "keel_core::http::json::rfc3339")]
    pub created_at: DateTime<Utc>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    /// A link to the avatar image, valid for 15 minutes; absent without an avatar.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

impl From<Profile> for Me {
    fn from(profile: Profile) -> Self {
        let (p, details) = (profile.principal, profile.details);
        Self {
            id: p.user_id,
            email: p.email,
            full_name: details.full_name,
            created_at: details.created_at,
            roles: p.roles,
            permissions: p.permissions.into_iter().collect(),
            avatar_url: profile.avatar_url,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct UpdateMe {
    /// Without control characters.
    #[oai(validator(max_length = 200))]
    pub full_name: Option<PlainText>,
}

#[derive(Debug, Clone, Object)]
pub struct ChangePassword {
    #[oai(validator(max_length = 1024))]
    pub current_password: String,
    /// 10 to 128 characters, not only whitespace, not the email address.
    #[oai(validator(min_length = 10, max_length = 128))]
    pub new_password: NewPassword,
}

/// One signed-in device.
#[derive(Debug, Clone, Object)]
pub struct SessionOut {
    /// The session id (`sid` in its access tokens).
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub user_agent: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub ip: Option<String>,
    /// The session this request was made with.
    pub current: bool,
}

impl SessionOut {
    pub fn new(row: RefreshSession, current: Uuid) -> Self {
        Self {
            id: row.family_id,
            started_at: row.started_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            user_agent: row.user_agent,
            ip: row.ip,
            current: row.family_id == current,
        }
    }
}

/// A user account as administrators see it.
#[derive(Debug, Clone, Object)]
pub struct UserOut {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub is_active: bool,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<Account> for UserOut {
    fn from(Account { user, roles }: Account) -> Self {
        Self {
            id: user.id,
            email: user.email,
            full_name: user.full_name,
            is_active: user.is_active,
            roles,
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_login_at: user.last_login_at,
        }
    }
}

// A registration's fields, plus roles.
#[derive(Debug, Clone, Object)]
pub struct CreateUser {
    #[oai(flatten)]
    pub account: RegisterRequest,
    /// Role names; default: the `user` role.
    #[oai(validator(max_items = 100, max_length = 63))]
    pub roles: Option<Vec<RoleName>>,
}

#[derive(Debug, Clone, Object)]
pub struct UpdateUser {
    #[oai(validator(max_length = 254))]
    pub email: Option<EmailText>,
    /// Without control characters.
    #[oai(validator(max_length = 200))]
    pub full_name: Option<PlainText>,
    /// Sets a new password (10 to 128 characters, not only whitespace, not the email
    /// address) and signs the user out everywhere.
    #[oai(validator(min_length = 10, max_length = 128))]
    pub password: Option<NewPassword>,
}

#[derive(Debug, Clone, Object)]
pub struct SetRoles {
    /// Role names; replaces the set the user holds.
    #[oai(validator(max_items = 100, max_length = 63))]
    pub roles: Vec<RoleName>,
}

#[derive(Debug, Clone, Object)]
pub struct RoleOut {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Seeded roles (`superuser`, `user`) can't be renamed or deleted.
    pub is_system: bool,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<RoleGrants> for RoleOut {
    fn from(RoleGrants { role, permissions }: RoleGrants) -> Self {
        Self {
            id: role.id,
            name: role.name,
            description: role.description,
            is_system: role.is_system,
            permissions,
            created_at: role.created_at,
            updated_at: role.updated_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct CreateRole {
    /// Lowercase letters, digits, `-` and `_`, starting with a letter (2–63 chars).
    #[oai(validator(max_length = 63))]
    pub name: RoleName,
    #[oai(default, validator(max_length = 500))]
    pub description: String,
    /// Permission codes the role grants.
    #[oai(default, validator(max_items = 200, max_length = 128))]
    pub permissions: Vec<PermissionCode>,
}

#[derive(Debug, Clone, Object)]
pub struct UpdateRole {
    /// Lowercase letters, digits, `-` and `_`, starting with a letter (2–63 chars).
    #[oai(validator(max_length = 63))]
    pub name: Option<RoleName>,
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct SetPermissions {
    #[oai(validator(max_items = 200, max_length = 128))]
    pub permissions: Vec<PermissionCode>,
}

#[derive(Debug, Clone, Object)]
pub struct PermissionOut {
    /// `resource:action`.
    pub code: String,
    pub description: String,
}

impl From<Permission> for PermissionOut {
    fn from(p: Permission) -> Self {
        Self {
            code: p.code,
            description: p.description,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use keel_core::http::json::serializes_as_documented;

    use super::*;

    /// `/me` is written by serde: the same JSON document as its documented form, with
    /// and without an avatar, for whole and fractional seconds and awkward text.
    #[test]
    fn me_is_served_as_documented() {
        let whole = Utc.with_ymd_and_hms(2026, 12, 3, 7, 18, 40).unwrap();
        for (created_at, avatar_url) in [
            (whole, None),
            (
                whole + chrono::Duration::microseconds(123_456),
                Some("https://s3.example.com/a?X-Amz=1&b=\"2\"".to_owned()),
            ),
            (whole + chrono::Duration::nanoseconds(7), None),
        ] {
            let me = Me {
                id: Uuid::now_v7(),
                email: "ada@example.com".to_owned(),
                full_name: "Ada \"King\" Lovelace ☃ \\ \u{7f}".to_owned(),
                created_at,
                roles: vec!["admin".to_owned(), "user".to_owned()],
                permissions: vec![],
                avatar_url,
            };
            assert!(serializes_as_documented(&me), "{me:?}");
        }
    }

    #[test]
    fn new_passwords_need_one_visible_character_and_no_nul() {
        for kept in ["correct horse", " padded ", "ünïcödé pass"] {
            assert!(NewPassword::new(kept).is_ok(), "{kept:?}");
        }
        for refused in ["", "          ", "\u{a0}\u{2003}\t\n", "nul\u{0}inside"] {
            assert!(NewPassword::new(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn role_names_are_lowercase_words() {
        for kept in ["user", "ops-team", "a1", "read_only"] {
            assert!(RoleName::new(kept).is_ok(), "{kept:?}");
        }
        for refused in ["a", "Admin", "1st", "-x", "x y", "x\n", &"a".repeat(64)] {
            assert!(RoleName::new(refused).is_err(), "{refused:?}");
        }
    }
}
