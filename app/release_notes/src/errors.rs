//! keel-release-notes' domain errors and the one place they become HTTP answers.

use keel_core::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("already published")]
    AlreadyPublished,
    #[error("not published")]
    NotPublished,
    #[error("published notes can't be deleted")]
    DeletePublished,
}

impl From<NoteError> for ApiError {
    fn from(err: NoteError) -> Self {
        ApiError::StateConflict(
            match err {
                NoteError::AlreadyPublished => "This release note is already published.",
                NoteError::NotPublished => {
                    "This release note is a draft; there is nothing to unpublish."
                }
                NoteError::DeletePublished => {
                    "Published release notes can't be deleted; unpublish it first."
                }
            }
            .to_owned(),
        )
    }
}
