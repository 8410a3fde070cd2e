//! `GET /api/v1/activity` (everyone's trail, `activity:read`) and
//! `GET /api/v1/auth/me/activity` (the caller's own). There is no write endpoint.

use chrono::{DateTime, Utc};
use keel_core::auth::Auth;
use keel_core::crud::{Cursor, CursorPage, CursorParams};
use keel_core::http::formats::ActionName;
use keel_core::http::json::SerdeJson;
use keel_core::http::problems::Problems;
use keel_core::problem_statuses;
use poem_openapi::param::Query;

use poem_openapi::{OpenApi, Tags};
use uuid::Uuid;

use crate::models::ActivityFilter;
use crate::permissions::ActivityPermission;
use crate::schemas::ActivityOut;
use crate::services::ActivityService;

problem_statuses!(ListProblems = [400, 401, 403, 422, 503]);
problem_statuses!(OwnProblems = [400, 401, 422, 503]);

#[derive(Debug, Tags)]
enum ActivityTags {
    /// The append-only audit trail.
    Activity,
}

/// The audit trail's read operations.
#[derive(Debug, Clone)]
pub struct ActivityApi {
    service: ActivityService,
}

impl ActivityApi {
    pub fn new(service: ActivityService) -> Self {
        Self { service }
    }
}

#[OpenApi(tag = "ActivityTags::Activity")]
impl ActivityApi {
    /// Audit trail
    ///
    /// Newest first. Filters combine; `search` finds entries whose summary has all the
    /// words given (case-insensitive; end a word with `*` to match its beginning).
    /// Pages by cursor: pass `next_cursor` back as `cursor` until it is absent.
    #[oai(path = "/activity", method = "get", operation_id = "activity_list")]
    #[expect(clippy::too_many_arguments, reason = "one parameter per query field")]
    async fn list(
        &self,
        #[oai(scope = "ActivityPermission::ActivityRead")] _auth: Auth,
        actor_id: Query<Option<Uuid>>,
        action: Query<Option<ActionName>>,
        #[oai(validator(max_length = 50))] entity_type: Query<Option<String>>,
        #[oai(validator(max_length = 200))] entity_id: Query<Option<String>>,
        /// From this instant (inclusive), RFC 3339.
        since: Query<Option<DateTime<Utc>>>,
        /// Before this instant (exclusive), RFC 3339.
        until: Query<Option<DateTime<Utc>>>,
        #[oai(validator(max_length = 200))] search: Query<Option<String>>,
        /// `next_cursor` of the page before, as given.
        cursor: Query<Option<Cursor>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] size: Query<Option<u32>>,
    ) -> Result<SerdeJson<CursorPage<ActivityOut>>, Problems<ListProblems>> {
        let page = CursorParams::new(cursor.as_deref(), size.0)?;
        let filter = ActivityFilter {
            actor_id: actor_id.0,
            action: action
                .as_deref()
                .map(|name| self.service.action("action", name))
                .transpose()?,
            entity_type: entity_type.0,
            entity_id: entity_id.0,
            since: since.0,
            until: until.0,
            text: search.0,
        };
        let entries = self.service.list(&filter, page).await?;
        Ok(SerdeJson(entries.map(ActivityOut::from).into()))
    }

    /// My activity
    ///
    /// The signed-in user's own trail, newest first, paged by cursor.
    #[oai(
        path = "/auth/me/activity",
        method = "get",
        operation_id = "auth_my_activity"
    )]
    async fn mine(
        &self,
        auth: Auth,
        action: Query<Option<ActionName>>,
        /// `next_cursor` of the page before, as given.
        cursor: Query<Option<Cursor>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] size: Query<Option<u32>>,
    ) -> Result<SerdeJson<CursorPage<ActivityOut>>, Problems<OwnProblems>> {
        let page = CursorParams::new(cursor.as_deref(), size.0)?;
        let filter = ActivityFilter {
            actor_id: Some(auth.user_id),
            action: action
                .as_deref()
                .map(|name| self.service.action("action", name))
                .transpose()?,
            ..ActivityFilter::default()
        };
        let entries = self.service.list(&filter, page).await?;
        Ok(SerdeJson(entries.map(ActivityOut::from).into()))
    }
}
