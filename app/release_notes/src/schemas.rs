//! Request and response bodies. Bodies are Markdown, stored and returned exactly as
//! written and never rendered to HTML here: clients render them with a sanitising
//! renderer, so no server-made HTML can carry a script.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::models::Note;

/// What kind of change a note announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Category {
    Feature,
    Improvement,
    Fix,
    Breaking,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Feature => "feature",
            Self::Improvement => "improvement",
            Self::Fix => "fix",
            Self::Breaking => "breaking",
        }
    }

    fn from_stored(stored: &str) -> Self {
        match stored {
            "feature" => Self::Feature,
            "fix" => Self::Fix,
            "breaking" => Self::Breaking,
            // The database's CHECK allows only these four.
            _ => Self::Improvement,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct CreateNote {
    /// `MAJOR.MINOR.PATCH`, optionally `-pre.release`; unique.
    #[oai(validator(
        max_length = 70,
        pattern = r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,40})?$"
    ))]
    pub version: String,
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
    #[oai(validator(
        max_length = 70,
        pattern = r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,40})?$"
    ))]
    pub version: Option<String>,
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
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Unread {
    pub unread: u64,
    /// The newest unread notes' ids (at most 100), to mark them in a list.
    pub unread_ids: Vec<Uuid>,
}
