//! The audit tables. `tx_id` is left out: PostgreSQL fills it, and only the chain
//! queries (raw SQL in `crud::chain`) read it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::actions::Action;

diesel::table! {
    activity_entries (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        actor_id -> Nullable<Uuid>,
        actor_email -> Nullable<Text>,
        action -> Text,
        entity_type -> Text,
        entity_id -> Nullable<Text>,
        summary -> Text,
        metadata -> Jsonb,
        request_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    activity_seals (position) {
        position -> Int8,
        entry_id -> Int8,
        hash -> Bytea,
        sealed_at -> Timestamptz,
    }
}

/// A recorded entry as read back.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = activity_entries, check_for_backend(diesel::pg::Pg))]
pub struct EntryRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_email: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub summary: String,
    pub metadata: serde_json::Value,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// `None` is written as NULL (what those columns default to anyway), not as DEFAULT:
/// one SQL text for every entry, so the insert stays prepared on each connection.
#[derive(Debug, Insertable)]
#[diesel(table_name = activity_entries, treat_none_as_default_value = false)]
pub struct NewEntry<'a> {
    pub actor_id: Option<Uuid>,
    pub actor_email: Option<&'a str>,
    pub action: &'static str,
    pub entity_type: &'static str,
    pub entity_id: Option<&'a str>,
    pub summary: &'a str,
    pub metadata: &'a serde_json::Value,
    pub request_id: Option<&'a str>,
    pub ip: Option<String>,
    pub user_agent: Option<&'a str>,
}

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
    /// Words of the summary, case-insensitive; `word*` matches words starting so.
    pub text: Option<String>,
}
