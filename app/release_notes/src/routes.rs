//! `/api/v1/release-notes`: readers (any signed-in user) and editors
//! (`release_notes:write`).

use std::sync::Arc;

use keel_core::ApiError;
use keel_core::auth::Auth;
use keel_core::crud::{Page, PageParams, Sort, SortParam};
use keel_core::db::cached::QueryCache;
use keel_core::http::json::{CachedJson, JsonBody};
use keel_core::http::problems::Problems;
use keel_core::problem_statuses;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OAuthScopes, OpenApi, Tags};
use uuid::Uuid;

use crate::models::{NoteQuery, NoteSort};
use crate::permissions::ReleaseNotesPermission;
use crate::schemas::{Category, CreateNote, NoteOut, Unread, UpdateNote};
use crate::services::{PageKey, ReleaseNoteService};

problem_statuses!(ListProblems = [400, 401, 403, 422, 503]);
problem_statuses!(ReadProblems = [400, 401, 404, 422, 503]);
problem_statuses!(MarkReadProblems = [400, 401, 404, 409, 422, 503]);
problem_statuses!(SignedInProblems = [401, 503]);
problem_statuses!(CreateProblems = [400, 401, 403, 409, 413, 415, 422, 503]);
problem_statuses!(EditProblems = [400, 401, 403, 404, 409, 413, 415, 422, 503]);
problem_statuses!(StateProblems = [400, 401, 403, 404, 409, 422, 503]);

#[derive(Debug, Tags)]
enum NoteTags {
    /// "What's new": release notes and what each user has read.
    ReleaseNotes,
}

#[derive(Debug, ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Created(Json<NoteOut>),
}

#[derive(Debug, ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

/// The `/api/v1/release-notes` operations.
#[derive(Debug, Clone)]
pub struct ReleaseNotesApi {
    service: ReleaseNoteService,
    /// List pages, kept serialized: every reader of a page gets the same bytes.
    pages: Arc<QueryCache<PageKey, CachedJson<Page<NoteOut>>>>,
}

impl ReleaseNotesApi {
    pub fn new(service: ReleaseNoteService) -> Self {
        Self {
            pages: service.page_cache(),
            service,
        }
    }
}

#[OpenApi(prefix_path = "/release-notes", tag = "NoteTags::ReleaseNotes")]
impl ReleaseNotesApi {
    /// List release notes
    ///
    /// Published notes, newest first (`sort`: `published_at` or `created_at`, `-` for
    /// descending). Editors (`release_notes:write`) may pass `include_drafts=true`;
    /// anyone else asking for drafts gets 403.
    #[oai(path = "/", method = "get", operation_id = "release_notes_list")]
    async fn list(
        &self,
        auth: Auth,
        category: Query<Option<Category>>,
        #[oai(default)] include_drafts: Query<bool>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<
            Option<u32>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] size: Query<Option<u32>>,
        sort: Query<Option<SortParam<NoteSort>>>,
    ) -> Result<CachedJson<Page<NoteOut>>, Problems<ListProblems>> {
        if include_drafts.0 {
            auth.require(ReleaseNotesPermission::Write)?;
        }
        let page = PageParams::new(page.0, size.0)?;
        let sort = SortParam::resolve(sort.0, Sort::desc(NoteSort::PublishedAt))?;
        let query = NoteQuery {
            category: category.0,
            drafts: include_drafts.0,
        };
        let load = async {
            let listed = self.service.list(query, sort, page).await?;
            Ok::<_, ApiError>(CachedJson::new(&Page::from(listed.map(NoteOut::from))))
        };
        Ok(self.pages.get_or_load((query, sort, page), load).await?)
    }

    /// Unread count
    ///
    /// How many published notes the caller hasn't read, and the newest of their ids.
    #[oai(
        path = "/unread-count",
        method = "get",
        operation_id = "release_notes_unread"
    )]
    async fn unread(&self, auth: Auth) -> Result<Json<Unread>, Problems<SignedInProblems>> {
        Ok(Json(self.service.unread(&auth).await?.into()))
    }

    /// Mark all read
    #[oai(
        path = "/read-all",
        method = "post",
        operation_id = "release_notes_read_all"
    )]
    async fn read_all(&self, auth: Auth) -> Result<Done, Problems<SignedInProblems>> {
        self.service.mark_all_read(&auth).await?;
        Ok(Done::NoContent)
    }

    /// Get a release note
    ///
    /// Drafts are 404 to readers: they don't exist until published.
    #[oai(path = "/:id", method = "get", operation_id = "release_notes_get")]
    async fn get(
        &self,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Json<NoteOut>, Problems<ReadProblems>> {
        let editor = auth.has(ReleaseNotesPermission::Write.name());
        Ok(Json(self.service.get(id.0, editor).await?.into()))
    }

    /// Mark one read
    ///
    /// Only published notes are read: an editor marking a draft gets 409; anyone else
    /// gets 404, as drafts are hidden from them.
    #[oai(
        path = "/:id/read",
        method = "post",
        operation_id = "release_notes_read"
    )]
    async fn read(&self, auth: Auth, id: Path<Uuid>) -> Result<Done, Problems<MarkReadProblems>> {
        let editor = auth.has(ReleaseNotesPermission::Write.name());
        self.service.mark_read(&auth, id.0, editor).await?;
        Ok(Done::NoContent)
    }

    /// Draft a release note
    ///
    /// `version` is `MAJOR.MINOR.PATCH` with an optional pre-release (`3.0.0-rc.1`) and
    /// unique (409). The body is Markdown, stored and returned as written.
    #[oai(path = "/", method = "post", operation_id = "release_notes_create")]
    async fn create(
        &self,
        #[oai(scope = "ReleaseNotesPermission::Write")] auth: Auth,
        body: JsonBody<CreateNote>,
    ) -> Result<Created, Problems<CreateProblems>> {
        let note = self.service.create(&auth, body.0.into()).await?;
        Ok(Created::Created(Json(note.into())))
    }

    /// Edit a release note
    #[oai(path = "/:id", method = "patch", operation_id = "release_notes_update")]
    async fn update(
        &self,
        #[oai(scope = "ReleaseNotesPermission::Write")] auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<UpdateNote>,
    ) -> Result<Json<NoteOut>, Problems<EditProblems>> {
        let note = self.service.update(&auth, id.0, body.0.into()).await?;
        Ok(Json(note.into()))
    }

    /// Publish
    ///
    /// Readers see it from now on, as unread. Publishing a published note is 409.
    #[oai(
        path = "/:id/publish",
        method = "post",
        operation_id = "release_notes_publish"
    )]
    async fn publish(
        &self,
        #[oai(scope = "ReleaseNotesPermission::Write")] auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Json<NoteOut>, Problems<StateProblems>> {
        Ok(Json(self.service.publish(&auth, id.0).await?.into()))
    }

    /// Unpublish
    ///
    /// Back to a draft, hidden from readers. A draft is 409.
    #[oai(
        path = "/:id/unpublish",
        method = "post",
        operation_id = "release_notes_unpublish"
    )]
    async fn unpublish(
        &self,
        #[oai(scope = "ReleaseNotesPermission::Write")] auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Json<NoteOut>, Problems<StateProblems>> {
        Ok(Json(self.service.unpublish(&auth, id.0).await?.into()))
    }

    /// Delete a draft
    ///
    /// Published notes are 409: unpublish first.
    #[oai(
        path = "/:id",
        method = "delete",
        operation_id = "release_notes_delete"
    )]
    async fn delete(
        &self,
        #[oai(scope = "ReleaseNotesPermission::Write")] auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Done, Problems<StateProblems>> {
        self.service.delete(&auth, id.0).await?;
        Ok(Done::NoContent)
    }
}
