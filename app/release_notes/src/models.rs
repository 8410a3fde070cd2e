//! The release-notes tables, their rows, and the domain types the service takes and
//! returns.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use poem_openapi::Enum;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

diesel::table! {
    release_notes (id) {
        id -> Uuid,
        version -> Text,
        title -> Text,
        body -> Text,
        category -> Text,
        is_published -> Bool,
        published_at -> Nullable<Timestamptz>,
        author_id -> Nullable<Uuid>,
        author_email -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    release_note_watermarks (user_id) {
        user_id -> Uuid,
        seen_up_to -> Timestamptz,
    }
}

diesel::table! {
    release_note_reads (user_id, note_id) {
        user_id -> Uuid,
        note_id -> Uuid,
        read_at -> Timestamptz,
    }
}

diesel::joinable!(release_note_reads -> release_notes (note_id));
diesel::allow_tables_to_appear_in_same_query!(
    release_notes,
    release_note_reads,
    release_note_watermarks
);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = release_notes, check_for_backend(diesel::pg::Pg))]
pub struct Note {
    pub id: Uuid,
    pub version: String,
    pub title: String,
    pub body: String,
    pub category: String,
    pub is_published: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub author_id: Option<Uuid>,
    pub author_email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = release_notes)]
pub struct NewNote {
    pub id: Uuid,
    pub version: String,
    pub title: String,
    pub body: String,
    pub category: String,
    pub author_id: Option<Uuid>,
    pub author_email: Option<String>,
}

/// A partial edit; publishing state changes through its own operations.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = release_notes)]
pub struct NoteChanges {
    pub version: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub category: Option<String>,
    pub is_published: Option<bool>,
    pub published_at: Option<Option<DateTime<Utc>>>,
}

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

    pub fn from_stored(stored: &str) -> Self {
        match stored {
            "feature" => Self::Feature,
            "fix" => Self::Fix,
            "breaking" => Self::Breaking,
            // The database's CHECK allows only these four.
            _ => Self::Improvement,
        }
    }
}

keel_core::sort_keys! {
    /// How lists of notes may be ordered.
    pub enum NoteSort { PublishedAt = "published_at", CreatedAt = "created_at" }
}

/// Which notes a list holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoteQuery {
    pub category: Option<Category>,
    /// Drafts too (editors only); otherwise published notes alone.
    pub drafts: bool,
}

/// A new draft, as written.
#[derive(Debug, Clone)]
pub struct NoteDraft {
    pub version: String,
    pub title: String,
    pub body: String,
    pub category: Category,
}

/// An edit: what is `Some` changes.
#[derive(Debug, Clone, Default)]
pub struct NoteEdit {
    pub version: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub category: Option<Category>,
}

/// A reader's unread published notes (cached per reader, so it is serde).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnreadNotes {
    pub count: u64,
    /// The newest unread notes' ids, at most 100.
    pub newest: Vec<Uuid>,
}
