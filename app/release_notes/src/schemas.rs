//! Request and response bodies. Bodies are Markdown, stored and returned exactly as
//! written and never rendered to HTML here: clients render them with a sanitising
//! renderer, so no server-made HTML can carry a script.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use uuid::Uuid;

pub use crate::models::Category;
use crate::models::{Note, NoteDraft, NoteEdit, UnreadNotes};

keel_core::text_rule! {
    /// A release's version: `MAJOR.MINOR.PATCH`, optionally `-pre.release`.
    pub Version = VersionRule("version", r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,40})?$");
}

#[derive(Debug, Clone, Object)]
pub struct CreateNote {
    /// `MAJOR.MINOR.PATCH`, optionally `-pre.release`; unique.
    #[oai(validator(max_length = 70))]
    pub version: Version,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: String,
    /// Markdown, returned exactly as given.
    #[oai(validator(min_length = 1, max_length = 20000))]
    pub body: String,
    pub category: Category,
}

/// A partial edit; omitted fields stay as they are.
#[derive(Debug, Clone, Object)]
pub struct UpdateNote {
    #[oai(validator(max_length = 70))]
    pub version: Option<Version>,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: Option<String>,
    #[oai(validator(min_length = 1, max_length = 20000))]
    pub body: Option<String>,
    pub category: Option<Category>,
}

#[derive(Debug, Clone, Object)]
pub struct NoteOut {
    pub id: Uuid,
    pub version: String,
    pub title: String,
    /// Markdown, exactly as written: render it client-side with a sanitising renderer.
    pub body: String,
    pub category: Category,
    pub is_published: bool,
    #[oai(skip_serializing_if_is_none)]
    pub published_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub author_email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Note> for NoteOut {
    fn from(note: Note) -> Self {
        Self {
            id: note.id,
            version: note.version,
            title: note.title,
            body: note.body,
            category: Category::from_stored(&note.category),
            is_published: note.is_published,
            published_at: note.published_at,
            author_email: note.author_email,
            created_at: note.created_at,
            updated_at: note.updated_at,
        }
    }
}

/// The caller's unread published notes.
#[derive(Debug, Clone, Object)]
pub struct Unread {
    pub unread: u64,
    /// The newest unread notes' ids (at most 100), to mark them in a list.
    pub unread_ids: Vec<Uuid>,
}

impl From<UnreadNotes> for Unread {
    fn from(notes: UnreadNotes) -> Self {
        Self {
            unread: notes.count,
            unread_ids: notes.newest,
        }
    }
}

impl From<CreateNote> for NoteDraft {
    fn from(new: CreateNote) -> Self {
        Self {
            version: new.version.into(),
            title: new.title,
            body: new.body,
            category: new.category,
        }
    }
}

impl From<UpdateNote> for NoteEdit {
    fn from(edit: UpdateNote) -> Self {
        Self {
            version: edit.version.map(String::from),
            title: edit.title,
            body: edit.body,
            category: edit.category,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_semver_with_an_optional_pre_release() {
        for kept in ["1.2.3", "0.0.0", "10.20.30-rc.1", "1.0.0-alpha-2"] {
            assert!(Version::new(kept).is_ok(), "{kept:?}");
        }
        for refused in [
            "1.2",
            "v1.2.3",
            "1.2.3-",
            "1.2.3+build",
            "1.2.3\n",
            "1234567890.0.0",
        ] {
            assert!(Version::new(refused).is_err(), "{refused:?}");
        }
    }
}
