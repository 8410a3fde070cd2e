//! What readers of the trail receive.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use uuid::Uuid;

use crate::models::EntryRow;

/// One audit entry.
#[derive(Debug, Clone, Object)]
pub struct ActivityOut {
    /// Increases with every entry recorded (entries are listed by `occurred_at`, then id).
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    /// Absent for anonymous or system actions.
    #[oai(skip_serializing_if_is_none)]
    pub actor_id: Option<Uuid>,
    /// The actor's email when the action happened.
    #[oai(skip_serializing_if_is_none)]
    pub actor_email: Option<String>,
    /// `noun.verb`, one of the `action` filter's values.
    pub action: String,
    pub entity_type: String,
    #[oai(skip_serializing_if_is_none)]
    pub entity_id: Option<String>,
    pub summary: String,
    /// Extra facts; secrets were removed before storing.
    pub metadata: serde_json::Value,
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub ip: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub user_agent: Option<String>,
}

impl From<EntryRow> for ActivityOut {
    fn from(row: EntryRow) -> Self {
        Self {
            id: row.id,
            occurred_at: row.occurred_at,
            actor_id: row.actor_id,
            actor_email: row.actor_email,
            action: row.action,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            summary: row.summary,
            metadata: row.metadata,
            request_id: row.request_id,
            ip: row.ip,
            user_agent: row.user_agent,
        }
    }
}
