//! Reading the trail: filters and keyset pages, newest first. Writes are
//! [`crate::record`] only: there is no update or delete, here or in the database.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_core::crud::{CursorParams, contains_pattern};
use uuid::Uuid;

use crate::actions::Action;
use crate::models::{EntryRow, activity_entries};

/// What a reader filters on; each `Some` narrows the list.
#[derive(Debug, Default, Clone)]
pub struct ActivityFilter {
    pub actor_id: Option<Uuid>,
    pub action: Option<Action>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// From this instant, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Before this instant, exclusive.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the summary.
    pub text: Option<String>,
}

/// One page (plus one row, to know whether more follow) of entries matching `filter`,
/// newest first by `(occurred_at, id)`, after the page's cursor.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &ActivityFilter,
    page: CursorParams,
) -> QueryResult<Vec<EntryRow>> {
    use activity_entries::dsl as e;
    let mut query = e::activity_entries.into_boxed();
    if let Some(actor) = filter.actor_id {
        query = query.filter(e::actor_id.eq(actor));
    }
    if let Some(action) = filter.action {
        query = query.filter(e::action.eq(action.as_str()));
    }
    if let Some(entity_type) = &filter.entity_type {
        query = query.filter(e::entity_type.eq(entity_type));
    }
    if let Some(entity_id) = &filter.entity_id {
        query = query.filter(e::entity_id.eq(entity_id));
    }
    if let Some(since) = filter.since {
        query = query.filter(e::occurred_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(e::occurred_at.lt(until));
    }
    if let Some(text) = filter
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        query = query.filter(e::summary.ilike(contains_pattern(text)));
    }
    if let Some(after) = page.after() {
        // A row comparison, so PostgreSQL seeks straight into the `(…, occurred_at, id)`
        // index instead of filtering.
        let at = DateTime::<Utc>::from_timestamp_micros(after.sort).unwrap_or_default();
        query = query.filter(
            sql::<Bool>("(activity_entries.occurred_at, activity_entries.id) < (")
                .bind::<Timestamptz, _>(at)
                .sql(", ")
                .bind::<BigInt, _>(after.id)
                .sql(")"),
        );
    }
    query
        .order((e::occurred_at.desc(), e::id.desc()))
        .limit(page.fetch())
        .select(EntryRow::as_select())
        .load(conn)
        .await
}
