//! Business rules: drafts are invisible to readers, publishing is recorded in the audit
//! trail, read state moves only forward.

use std::sync::Arc;
use std::time::Duration;

use crate::actions;
use chrono::Utc;
use keel_activity::{Action, Actor, Entry, record};
use keel_core::ApiError;
use keel_core::auth::Principal;
use keel_core::cache::Cache;
use keel_core::crud::{CrudBase, Listed, PageParams, Sort};
use keel_core::db::Db;
use keel_core::db::cached::QueryCache;
use serde_json::json;
use uuid::Uuid;

use crate::crud::{self, NoteCrud, NoteFilter};
use crate::errors::NoteError;
use crate::models::{
    Category, NewNote, Note, NoteChanges, NoteDraft, NoteEdit, NoteQuery, NoteSort, UnreadNotes,
};

/// Unread ids returned at most.
const UNREAD_IDS: i64 = 100;
/// Unread counts are cached per reader, versioned by the reader's read state and by the
/// set of published notes (see `Cache::get_or_compute_stamped`).
const UNREAD_TTL: Duration = Duration::from_secs(600);
const PUBLISHED_STAMP: &str = "release_notes:published";

/// List pages kept per replica (dropped on any change to `release_notes`).
const PAGES_KEPT: usize = 256;
const PAGES_TTL: Duration = Duration::from_secs(300);

/// What identifies a list page.
pub type PageKey = (NoteQuery, Sort<NoteSort>, PageParams);

/// keel-release-notes' service; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReleaseNoteService {
    db: Db,
    cache: Cache,
}

impl ReleaseNoteService {
    /// Unread counts go to `cache` (shared by replicas when it is Redis).
    pub fn new(db: Db, cache: Cache) -> Self {
        Self { db, cache }
    }

    /// A per-replica cache of list pages in whatever form the caller keeps them (routes
    /// keep them serialized), dropped by PostgreSQL's change notifications whenever a
    /// note changes.
    pub fn page_cache<V: Clone + Send + Sync + 'static>(&self) -> Arc<QueryCache<PageKey, V>> {
        Arc::new(QueryCache::new(
            "release_notes_list",
            self.db.changes().clone(),
            &["release_notes"],
            PAGES_TTL,
            PAGES_KEPT,
        ))
    }

    /// One page of the notes `query` selects.
    pub async fn list(
        &self,
        query: NoteQuery,
        sort: Sort<NoteSort>,
        page: PageParams,
    ) -> Result<Listed<Note>, ApiError> {
        let filter = NoteFilter {
            category: query.category.map(Category::as_str),
            published_only: !query.drafts,
        };
        let mut conn = self.db.conn().await?;
        Ok(NoteCrud::list(&mut conn, &filter, sort, page).await?)
    }

    /// One note; a draft is a 404 unless `drafts` (the caller may edit notes).
    pub async fn get(&self, id: Uuid, drafts: bool) -> Result<Note, ApiError> {
        let mut conn = self.db.conn().await?;
        let note = NoteCrud::get(&mut conn, id).await?;
        visible(note, drafts)
    }

    /// A new draft.
    pub async fn create(&self, author: &Principal, new: NoteDraft) -> Result<Note, ApiError> {
        let author = Actor::from(author);
        let note = NewNote {
            id: Uuid::now_v7(),
            version: new.version,
            title: new.title,
            body: new.body,
            category: new.category.as_str().to_owned(),
            author_id: Some(author.id),
            author_email: Some(author.email.clone()),
        };
        self.db
            .transaction(async move |conn| {
                let note = NoteCrud::create(conn, &note).await?;
                let summary = format!("{} drafted release notes {}", author.email, note.version);
                audit(conn, actions::RELEASE_NOTE_CREATED, author, &note, summary).await?;
                Ok(note)
            })
            .await
    }

    pub async fn update(
        &self,
        editor: &Principal,
        id: Uuid,
        edit: NoteEdit,
    ) -> Result<Note, ApiError> {
        let editor = Actor::from(editor);
        let changes = NoteChanges {
            version: edit.version,
            title: edit.title,
            body: edit.body,
            category: edit.category.map(|c| c.as_str().to_owned()),
            ..NoteChanges::default()
        };
        self.db
            .transaction(async move |conn| {
                let note = NoteCrud::update(conn, id, &changes).await?;
                let summary = format!("{} edited release notes {}", editor.email, note.version);
                audit(conn, actions::RELEASE_NOTE_UPDATED, editor, &note, summary).await?;
                Ok(note)
            })
            .await
    }

    /// Makes a draft visible to readers, as of now (so it is unread for everyone).
    pub async fn publish(&self, editor: &Principal, id: Uuid) -> Result<Note, ApiError> {
        self.set_published(editor, id, true).await
    }

    /// Hides a published note again; it becomes a draft.
    pub async fn unpublish(&self, editor: &Principal, id: Uuid) -> Result<Note, ApiError> {
        self.set_published(editor, id, false).await
    }

    /// Publishes or unpublishes; once committed, every reader's unread count is stale.
    async fn set_published(
        &self,
        editor: &Principal,
        id: Uuid,
        publish: bool,
    ) -> Result<Note, ApiError> {
        let editor = Actor::from(editor);
        let note = self
            .db
            .transaction(async move |conn| {
                let note = crud::lock(conn, id).await?;
                match (publish, note.is_published) {
                    (true, true) => return Err(NoteError::AlreadyPublished.into()),
                    (false, false) => return Err(NoteError::NotPublished.into()),
                    _ => {}
                }
                let changes = NoteChanges {
                    is_published: Some(publish),
                    published_at: Some(publish.then(Utc::now)),
                    ..NoteChanges::default()
                };
                let note = NoteCrud::update(conn, id, &changes).await?;
                let (action, verb) = if publish {
                    (actions::RELEASE_NOTE_PUBLISHED, "published")
                } else {
                    (actions::RELEASE_NOTE_UNPUBLISHED, "unpublished")
                };
                let summary = format!("{} {verb} release notes {}", editor.email, note.version);
                audit(conn, action, editor, &note, summary).await?;
                Ok::<_, ApiError>(note)
            })
            .await?;
        self.cache.bump(PUBLISHED_STAMP).await;
        Ok(note)
    }

    /// Deletes a draft; published notes must be unpublished first.
    pub async fn delete(&self, editor: &Principal, id: Uuid) -> Result<(), ApiError> {
        let editor = Actor::from(editor);
        self.db
            .transaction(async move |conn| {
                let note = crud::lock(conn, id).await?;
                if note.is_published {
                    return Err(NoteError::DeletePublished.into());
                }
                NoteCrud::delete(conn, id).await?;
                let summary = format!("{} deleted the draft {}", editor.email, note.version);
                audit(conn, actions::RELEASE_NOTE_DELETED, editor, &note, summary).await
            })
            .await
    }

    /// The caller's unread count and the newest unread ids.
    pub async fn unread(&self, reader: &Principal) -> Result<UnreadNotes, ApiError> {
        let user = reader.user_id;
        let load = || async move {
            let mut conn = self.db.conn().await?;
            let rows = crud::unread(&mut conn, user, UNREAD_IDS).await?;
            Ok::<_, ApiError>(UnreadNotes {
                count: rows
                    .first()
                    .map_or(0, |r| u64::try_from(r.total).unwrap_or(0)),
                newest: rows.into_iter().map(|r| r.id).collect(),
            })
        };
        self.cache
            .get_or_compute_stamped(
                &format!("release_notes:unread:{user}"),
                &[&reader_stamp(user), PUBLISHED_STAMP],
                UNREAD_TTL,
                load,
            )
            .await
    }

    /// Marks a published note read; `editor`s see drafts, so theirs is a 409, not a 404.
    pub async fn mark_read(
        &self,
        reader: &Principal,
        id: Uuid,
        editor: bool,
    ) -> Result<(), ApiError> {
        let user = reader.user_id;
        let mut conn = self.db.conn().await?;
        let note = visible(NoteCrud::get(&mut conn, id).await?, editor)?;
        if !note.is_published {
            return Err(ApiError::StateConflict(
                "The note is a draft: only published notes can be marked read.".to_owned(),
            ));
        }
        let covered = match (crud::watermark(&mut conn, user).await?, note.published_at) {
            (Some(seen), Some(published)) => published <= seen,
            _ => false,
        };
        if !covered {
            crud::mark_read(&mut conn, user, id).await?;
            self.cache.bump(&reader_stamp(user)).await;
        }
        Ok(())
    }

    /// Marks everything published so far read: one row, however many notes.
    pub async fn mark_all_read(&self, reader: &Principal) -> Result<(), ApiError> {
        let user = reader.user_id;
        self.db
            .transaction(async move |conn| {
                crud::mark_all_read(conn, user, Utc::now()).await?;
                Ok::<_, ApiError>(())
            })
            .await?;
        self.cache.bump(&reader_stamp(user)).await;
        Ok(())
    }
}

/// The version of `user`'s read state.
fn reader_stamp(user: Uuid) -> String {
    format!("release_notes:reader:{user}")
}

/// `note`, or 404 when it is a draft and the caller may not see drafts.
fn visible(note: Note, drafts: bool) -> Result<Note, ApiError> {
    if note.is_published || drafts {
        Ok(note)
    } else {
        Err(ApiError::NotFound)
    }
}

async fn audit(
    conn: &mut diesel_async::AsyncPgConnection,
    action: Action,
    actor: Actor,
    note: &Note,
    summary: String,
) -> Result<(), ApiError> {
    let entry = Entry::new(action, "release_note", summary)
        .actor(actor)
        .entity(note.id)
        .metadata(json!({"version": note.version, "category": note.category}));
    Ok(record(conn, entry).await?)
}
