//! The tables keel-user owns and their row types.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use keel_core::auth::{IssuedToken, Principal};
use uuid::Uuid;

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        full_name -> Text,
        is_active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_login_at -> Nullable<Timestamptz>,
        avatar_key -> Nullable<Text>,
        welcome_sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    roles (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        is_system -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    permissions (code) {
        code -> Text,
        description -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    user_roles (user_id, role_id) {
        user_id -> Uuid,
        role_id -> Uuid,
        granted_at -> Timestamptz,
    }
}

diesel::table! {
    role_permissions (role_id, permission_code) {
        role_id -> Uuid,
        permission_code -> Text,
    }
}

diesel::table! {
    refresh_sessions (id) {
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        started_at -> Timestamptz,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoke_reason -> Nullable<Text>,
        replaced_by -> Nullable<Uuid>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
    }
}

diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(user_roles -> roles (role_id));
diesel::joinable!(role_permissions -> roles (role_id));
diesel::joinable!(role_permissions -> permissions (permission_code));
diesel::joinable!(refresh_sessions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    roles,
    permissions,
    user_roles,
    role_permissions,
    refresh_sessions
);

diesel::define_sql_function! {
    /// SQL `lower(text)`, to hit the case-insensitive email index.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Where the avatar is in object storage.
    pub avatar_key: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub is_active: bool,
}

/// `None` leaves a column unchanged.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub full_name: Option<String>,
    pub is_active: Option<bool>,
    /// `Some(None)` clears it.
    pub avatar_key: Option<Option<String>>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = roles, check_for_backend(diesel::pg::Pg))]
pub struct Role {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub is_system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = roles)]
pub struct NewRole {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub is_system: bool,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = roles)]
pub struct RoleChanges {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = permissions, check_for_backend(diesel::pg::Pg))]
pub struct Permission {
    pub code: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = refresh_sessions, check_for_backend(diesel::pg::Pg))]
pub struct RefreshSession {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub token_hash: Vec<u8>,
    pub started_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
    pub replaced_by: Option<Uuid>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Stored as given: a `None` is NULL (the columns have no defaults), which keeps the
/// INSERT one prepared statement instead of one per combination of present fields.
#[derive(Debug, Insertable)]
#[diesel(table_name = refresh_sessions, treat_none_as_default_value = false)]
pub struct NewRefreshSession {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub token_hash: Vec<u8>,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Why a refresh token stopped working; stored as text, checked by the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Rotated,
    Logout,
    LogoutAll,
    ReuseDetected,
    PasswordChanged,
    Deactivated,
    RevokedByUser,
    RevokedByAdmin,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rotated => "rotated",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::ReuseDetected => "reuse_detected",
            Self::PasswordChanged => "password_changed",
            Self::Deactivated => "deactivated",
            Self::RevokedByUser => "revoked_by_user",
            Self::RevokedByAdmin => "revoked_by_admin",
        }
    }
}

/// What the admin list of users filters on; each `Some` narrows it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct UserFilter {
    /// Case-insensitive substring of email or full name.
    pub search: Option<String>,
    /// Holds the role with this name.
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

keel_core::sort_keys! {
    /// The orders the admin list of users comes in.
    pub enum UserSort {
        Email = "email",
        FullName = "full_name",
        CreatedAt = "created_at",
        LastLoginAt = "last_login_at",
    }
}

/// What the list of roles filters on.
#[derive(Debug, Default)]
pub struct RoleFilter {
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
}

keel_core::sort_keys! {
    /// The orders the list of roles comes in.
    pub enum RoleSort { Name = "name", CreatedAt = "created_at" }
}

/// An account with the names of its roles: what administrators see of a user.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub roles: Vec<String>,
}

/// A role with the codes of the permissions it grants.
#[derive(Debug, Clone)]
pub struct RoleGrants {
    pub role: Role,
    pub permissions: Vec<String>,
}

/// What `/me` shows: the signed-in caller, their profile, and a fresh link to their
/// avatar.
#[derive(Debug, Clone)]
pub struct Profile {
    pub principal: Principal,
    pub details: ProfileDetails,
    pub avatar_url: Option<String>,
}

/// The part of an account its owner sees and edits; cached per user (so it is serde)
/// and dropped whenever the account changes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProfileDetails {
    pub full_name: String,
    pub created_at: DateTime<Utc>,
    pub avatar_key: Option<String>,
}

impl From<User> for ProfileDetails {
    fn from(user: User) -> Self {
        Self {
            full_name: user.full_name,
            created_at: user.created_at,
            avatar_key: user.avatar_key,
        }
    }
}

/// A fresh access token and the refresh token that replaces the presented one.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: IssuedToken,
    pub refresh: String,
}
