//! keel-user's domain errors and the one place they become HTTP answers.

use keel_core::ApiError;
use keel_core::error::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Unknown email, wrong password, or a deactivated account with a wrong password:
    /// one answer for all, so it reveals nothing.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("account deactivated")]
    Deactivated,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("current password is wrong")]
    WrongCurrentPassword,
    #[error("cannot deactivate oneself")]
    DeactivateSelf,
    #[error("would remove the last active superuser")]
    LastSuperuser,
    #[error("system role is fixed")]
    SystemRole,
    #[error("cannot grant {0}")]
    CannotGrant(String),
    /// The delegation rule: the account holds what the actor doesn't.
    #[error("outranked: {0}")]
    Outranked(String),
    /// An administrator changing their own password or email through the admin route.
    #[error("own credentials through the admin route")]
    OwnCredentials,
    #[error("invalid field {}", .0.field)]
    Invalid(FieldError),
}

impl From<UserError> for ApiError {
    fn from(err: UserError) -> Self {
        match err {
            UserError::InvalidCredentials => {
                ApiError::Unauthorized("Incorrect email or password.".to_owned())
            }
            UserError::Deactivated => ApiError::Unauthorized(
                "This account is deactivated; contact an administrator.".to_owned(),
            ),
            UserError::InvalidRefreshToken => ApiError::Unauthorized(
                "The refresh token is invalid, expired or already used; sign in again.".to_owned(),
            ),
            UserError::WrongCurrentPassword => {
                ApiError::Forbidden("The current password is incorrect.".to_owned())
            }
            UserError::DeactivateSelf => {
                ApiError::Forbidden("You can't deactivate your own account.".to_owned())
            }
            UserError::LastSuperuser => ApiError::StateConflict(
                "This would leave no active superuser; promote another user first.".to_owned(),
            ),
            UserError::SystemRole => ApiError::StateConflict(
                "System roles (superuser, user) can't be renamed, deleted, or have their \
                 permissions changed here."
                    .to_owned(),
            ),
            UserError::CannotGrant(what) => ApiError::Forbidden(format!(
                "You can't grant {what}: you don't hold it yourself."
            )),
            UserError::Outranked(why) => ApiError::Forbidden(why),
            UserError::OwnCredentials => ApiError::Forbidden(
                "Change your own password at PUT /api/v1/auth/me/password, which asks for the \
                 current one; your own email, another administrator changes."
                    .to_owned(),
            ),
            UserError::Invalid(field) => ApiError::Validation(vec![field]),
        }
    }
}
