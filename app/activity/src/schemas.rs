//! What readers of the trail receive.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use uuid::Uuid;

use crate::models::EntryRow;

/// One audit entry.
// Served by serde (`SerdeJson`): the document its `ToJSON` would write, keys in
// declaration order (see the test below).
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ActivityOut {
    /// Increases with every entry recorded (entries are listed by `occurred_at`, then id).
    pub id: i64,
    #[serde(serialize_with = "keel_core::http::json::rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// Absent for anonymous or system actions.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<Uuid>,
    /// The actor's email when the action happened.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_email: Option<String>,
    /// `noun.verb`, one of the `action` filter's values.
    pub action: String,
    pub entity_type: String,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    pub summary: String,
    /// Extra facts; secrets were removed before storing.
    pub metadata: serde_json::Value,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use keel_core::crud::CursorPage;
    use keel_core::http::json::serializes_as_documented;

    use super::*;

    /// Audit pages are written by serde: the same JSON document as their documented form,
    /// every optional field present or absent, with metadata of any shape.
    #[test]
    fn pages_are_served_as_documented() {
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 7, 18, 40).unwrap();
        let full = ActivityOut {
            id: i64::MAX,
            occurred_at: at + chrono::Duration::microseconds(1),
            actor_id: Some(Uuid::now_v7()),
            actor_email: Some("ada@example.com".to_owned()),
            action: "user.updated".to_owned(),
            entity_type: "user".to_owned(),
            entity_id: Some("42".to_owned()),
            summary: "Ada \"changed\" ☃ \\ \u{1}".to_owned(),
            metadata: serde_json::json!({"n": 1.5, "list": [null, true, {"k": "v"}]}),
            request_id: Some("r-1".to_owned()),
            ip: Some("10.0.0.1".to_owned()),
            user_agent: Some("curl/8".to_owned()),
        };
        let bare = ActivityOut {
            id: 1,
            occurred_at: at,
            actor_id: None,
            actor_email: None,
            entity_id: None,
            metadata: serde_json::json!({}),
            request_id: None,
            ip: None,
            user_agent: None,
            ..full.clone()
        };
        for next_cursor in [None, Some("0".repeat(32))] {
            let page = CursorPage {
                items: vec![full.clone(), bare.clone()],
                next_cursor,
            };
            assert!(serializes_as_documented(&page), "{page:?}");
        }
    }
}
