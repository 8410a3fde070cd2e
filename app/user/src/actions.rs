//! What keel-user records in the audit trail (`noun.verb`); [`ALL`] is what its
//! [`keel_core::Feature::audit_actions`] declares.

use keel_activity::Action;

pub const USER_REGISTERED: Action = Action::new("user.registered");
pub const LOGIN_SUCCEEDED: Action = Action::new("auth.login_succeeded");
/// Wrong password, unknown email, or a deactivated account.
pub const LOGIN_FAILED: Action = Action::new("auth.login_failed");
pub const LOGOUT: Action = Action::new("auth.logout");
pub const LOGOUT_ALL: Action = Action::new("auth.logout_all");
/// A rotated refresh token was presented again; its session family was revoked.
pub const REFRESH_REUSED: Action = Action::new("auth.refresh_reused");
pub const PASSWORD_CHANGED: Action = Action::new("auth.password_changed");
pub const SESSION_REVOKED: Action = Action::new("auth.session_revoked");
pub const PROFILE_UPDATED: Action = Action::new("user.profile_updated");
pub const AVATAR_CHANGED: Action = Action::new("user.avatar_changed");
pub const AVATAR_REMOVED: Action = Action::new("user.avatar_removed");
pub const USER_CREATED: Action = Action::new("user.created");
pub const USER_UPDATED: Action = Action::new("user.updated");
pub const USER_ACTIVATED: Action = Action::new("user.activated");
pub const USER_DEACTIVATED: Action = Action::new("user.deactivated");
pub const USER_ROLES_CHANGED: Action = Action::new("user.roles_changed");
/// An administrator signed the user out everywhere.
pub const USER_SESSIONS_REVOKED: Action = Action::new("user.sessions_revoked");
/// An administrative action on an account was refused (403): the delegation rule,
/// or a role the actor can't grant. The metadata says what and why.
pub const USER_ACTION_REFUSED: Action = Action::new("user.action_refused");
/// `keel-admin create-admin --promote` made an existing account a superuser.
pub const USER_PROMOTED: Action = Action::new("user.promoted");
pub const ROLE_CREATED: Action = Action::new("role.created");
pub const ROLE_UPDATED: Action = Action::new("role.updated");
pub const ROLE_DELETED: Action = Action::new("role.deleted");
pub const ROLE_PERMISSIONS_CHANGED: Action = Action::new("role.permissions_changed");

/// Every action above.
pub const ALL: &[Action] = &[
    USER_REGISTERED,
    LOGIN_SUCCEEDED,
    LOGIN_FAILED,
    LOGOUT,
    LOGOUT_ALL,
    REFRESH_REUSED,
    PASSWORD_CHANGED,
    SESSION_REVOKED,
    PROFILE_UPDATED,
    AVATAR_CHANGED,
    AVATAR_REMOVED,
    USER_CREATED,
    USER_UPDATED,
    USER_ACTIVATED,
    USER_DEACTIVATED,
    USER_ROLES_CHANGED,
    USER_SESSIONS_REVOKED,
    USER_ACTION_REFUSED,
    USER_PROMOTED,
    ROLE_CREATED,
    ROLE_UPDATED,
    ROLE_DELETED,
    ROLE_PERMISSIONS_CHANGED,
];
