//! The closed set of things the audit trail records. A feature that records something
//! new adds its line here, so every action a reader can filter by is listed in one
//! place and in the OpenAPI document.

use poem_openapi::Enum;

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What happened, stored as `noun.verb`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
        pub enum Action {
            $($(#[$doc])* #[oai(rename = $name)] $variant,)*
        }

        impl Action {
            /// The stored name, e.g. `user.registered`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    UserRegistered = "user.registered",
    LoginSucceeded = "auth.login_succeeded",
    /// Wrong password, unknown email, or a deactivated account.
    LoginFailed = "auth.login_failed",
    Logout = "auth.logout",
    LogoutAll = "auth.logout_all",
    /// A rotated refresh token was presented again; its session family was revoked.
    RefreshReused = "auth.refresh_reused",
    PasswordChanged = "auth.password_changed",
    SessionRevoked = "auth.session_revoked",
    ProfileUpdated = "user.profile_updated",
    AvatarChanged = "user.avatar_changed",
    AvatarRemoved = "user.avatar_removed",
    UserCreated = "user.created",
    UserUpdated = "user.updated",
    UserActivated = "user.activated",
    UserDeactivated = "user.deactivated",
    UserRolesChanged = "user.roles_changed",
    /// An administrator signed the user out everywhere.
    UserSessionsRevoked = "user.sessions_revoked",
    /// An administrative action on an account was refused (403): the delegation rule,
    /// or a role the actor can't grant. The metadata says what and why.
    UserActionRefused = "user.action_refused",
    /// `keel-admin create-admin --promote` made an existing account a superuser.
    UserPromoted = "user.promoted",
    RoleCreated = "role.created",
    RoleUpdated = "role.updated",
    RoleDeleted = "role.deleted",
    RolePermissionsChanged = "role.permissions_changed",
    ReleaseNoteCreated = "release_note.created",
    ReleaseNoteUpdated = "release_note.updated",
    ReleaseNotePublished = "release_note.published",
    ReleaseNoteUnpublished = "release_note.unpublished",
    ReleaseNoteDeleted = "release_note.deleted",
    /// A background task was given up on (permanent error or attempts used up).
    TaskDeadLettered = "task.dead_lettered",
}
