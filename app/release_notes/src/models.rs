//! The release-notes tables and their rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
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
