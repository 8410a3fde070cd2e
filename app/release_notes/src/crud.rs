//! Data access: notes through `CrudBase`, plus the read-state queries.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_core::crud::Sort;
use keel_core::db::fixed;
use keel_core::impl_crud;
use uuid::Uuid;

use crate::models::{
    NewNote, Note, NoteChanges, NoteSort, release_note_reads, release_note_watermarks,
    release_notes,
};

#[derive(Debug)]
pub struct NoteCrud;

/// Each `Some` narrows the list.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct NoteFilter {
    pub category: Option<&'static str>,
    /// Readers see only published notes; editors may include drafts.
    pub published_only: bool,
}

impl_crud! {
    NoteCrud {
        table: release_notes::table,
        id: release_notes::id => Uuid,
        row: Note,
        new: NewNote,
        changes: NoteChanges,
        filter: NoteFilter => filter_notes,
        sort: NoteSort => sort_notes,
    }
}

fn filter_notes<'a>(
    mut query: release_notes::BoxedQuery<'a, Pg>,
    filter: &'a NoteFilter,
) -> release_notes::BoxedQuery<'a, Pg> {
    if let Some(category) = filter.category {
        query = query.filter(release_notes::category.eq(category));
    }
    if filter.published_only {
        query = query.filter(release_notes::is_published.eq(true));
    }
    query
}

fn sort_notes(
    query: release_notes::BoxedQuery<'_, Pg>,
    sort: Sort<NoteSort>,
) -> release_notes::BoxedQuery<'_, Pg> {
    match sort.key {
        NoteSort::PublishedAt => sort.apply(query, release_notes::published_at),
        NoteSort::CreatedAt => sort.apply(query, release_notes::created_at),
    }
}

/// Locks the note for the rest of the transaction; `NotFound` when there is none.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Note> {
    release_notes::table
        .find(id)
        .select(Note::as_select())
        .for_update()
        .first(conn)
        .await
}

#[derive(Debug, QueryableByName)]
pub struct UnreadRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub total: i64,
}

/// The newest `limit` unread published notes of `user`, each carrying the total count.
/// Only notes published after the user's watermark are looked at.
pub async fn unread(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    limit: i64,
) -> QueryResult<Vec<UnreadRow>> {
    fixed(
        "SELECT n.id, count(*) OVER () AS total FROM release_notes n \
         WHERE n.is_published \
           AND n.published_at > coalesce( \
               (SELECT seen_up_to FROM release_note_watermarks WHERE user_id = $1), '-infinity') \
           AND NOT EXISTS (SELECT 1 FROM release_note_reads r WHERE r.user_id = $1 AND r.note_id = n.id) \
         ORDER BY n.published_at DESC, n.id LIMIT $2",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// The user's watermark: everything published at or before it is read.
pub async fn watermark(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Option<DateTime<Utc>>> {
    release_note_watermarks::table
        .find(user)
        .select(release_note_watermarks::seen_up_to)
        .first(conn)
        .await
        .optional()
}

pub async fn mark_read(conn: &mut AsyncPgConnection, user: Uuid, note: Uuid) -> QueryResult<()> {
    diesel::insert_into(release_note_reads::table)
        .values((
            release_note_reads::user_id.eq(user),
            release_note_reads::note_id.eq(note),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(drop)
}

/// Moves the watermark to `at` (never back) and drops the markers it now covers.
pub async fn mark_all_read(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(release_note_watermarks::table)
        .values((
            release_note_watermarks::user_id.eq(user),
            release_note_watermarks::seen_up_to.eq(at),
        ))
        .on_conflict(release_note_watermarks::user_id)
        .do_update()
        .set(release_note_watermarks::seen_up_to.eq(diesel::dsl::sql::<
            diesel::sql_types::Timestamptz,
        >(
            "greatest(release_note_watermarks.seen_up_to, excluded.seen_up_to)",
        )))
        .execute(conn)
        .await?;
    diesel::delete(
        release_note_reads::table
            .filter(release_note_reads::user_id.eq(user))
            .filter(
                release_note_reads::note_id.eq_any(
                    release_notes::table
                        .filter(release_notes::published_at.le(at))
                        .select(release_notes::id),
                ),
            ),
    )
    .execute(conn)
    .await
    .map(drop)
}
