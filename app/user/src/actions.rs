//! What keel-user records in the audit trail (`noun.verb`); [`ALL`] is what its
//! [`keel_core::Feature::audit_actions`] declares.

keel_activity::actions! {
    USER_REGISTERED = "user.registered",
    LOGIN_SUCCEEDED = "auth.login_succeeded",
    /// Wrong password, unknown email, or a deactivated account.
    LOGIN_FAILED = "auth.login_failed",
    LOGOUT = "auth.logout",
    LOGOUT_ALL = "auth.logout_all",
    /// A rotated refresh token was presented again; its session family was revoked.
    REFRESH_REUSED = "auth.refresh_reused",
    PASSWORD_CHANGED = "auth.password_changed",
    SESSION_REVOKED = "auth.session_revoked",
    PROFILE_UPDATED = "user.profile_updated",
    AVATAR_CHANGED = "user.avatar_changed",
    AVATAR_REMOVED = "user.avatar_removed",
    USER_CREATED = "user.created",
    USER_UPDATED = "user.updated",
    USER_ACTIVATED = "user.activated",
    USER_DEACTIVATED = "user.deactivated",
    USER_ROLES_CHANGED = "user.roles_changed",
    /// An administrator signed the user out everywhere.
    USER_SESSIONS_REVOKED = "user.sessions_revoked",
    /// An administrative action on an account was refused (403): the delegation rule,
    /// or a role the actor can't grant. The metadata says what and why.
    USER_ACTION_REFUSED = "user.action_refused",
    /// `keel-admin create-admin --promote` made an existing account a superuser.
    USER_PROMOTED = "user.promoted",
    ROLE_CREATED = "role.created",
    ROLE_UPDATED = "role.updated",
    ROLE_DELETED = "role.deleted",
    ROLE_PERMISSIONS_CHANGED = "role.permissions_changed",
}
