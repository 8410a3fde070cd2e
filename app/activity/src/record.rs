//! Recording: one call, made on the caller's transaction connection, so an entry
//! commits or rolls back with the change it describes.

use diesel::pg::Pg;
use diesel_async::{AsyncConnectionCore, RunQueryDsl};
use keel_core::auth::Principal;
use keel_core::request::RequestContext;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::actions::Action;
use crate::models::{NewEntry, activity_entries};

/// Keys whose values are never stored, at any depth of the metadata (compared
/// case-insensitively, and as substrings: `new_password`, `refresh_token_hash`).
const SECRET_KEYS: &[&str] = &[
    "password",
    "token",
    "secret",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "private_key",
    "pepper",
];
const REDACTED: &str = "[redacted]";

/// Bytes kept of each string in the metadata, at any depth.
pub const MAX_METADATA_VALUE: usize = 1024;
/// Bytes of the whole metadata as stored; past it, later keys are dropped and
/// `"_truncated": true` says so. With the other clipped columns, no entry is larger
/// than a few KiB whatever a request sends.
pub const MAX_METADATA: usize = 4096;
/// Items kept of each array in the metadata.
const MAX_METADATA_ITEMS: usize = 50;
const TRUNCATED_KEY: &str = "_truncated";

const MAX_SUMMARY: usize = 1000;
const MAX_ENTITY_ID: usize = 200;
const MAX_EMAIL: usize = 254;
const MAX_USER_AGENT: usize = 512;

/// Who did it: a snapshot, kept when the account later changes or goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: Uuid,
    pub email: String,
}

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Self {
            id: p.user_id,
            email: p.email.clone(),
        }
    }
}

/// One audit entry. Request id, client IP and user agent come from the request being
/// served, so services never pass them by hand.
#[derive(Debug, Clone)]
pub struct Entry {
    action: Action,
    summary: String,
    actor: Option<Actor>,
    entity_type: &'static str,
    entity_id: Option<String>,
    metadata: Value,
}

impl Entry {
    /// `entity_type` is a lowercase noun such as `user`, `role` or `session`.
    pub fn new(action: Action, entity_type: &'static str, summary: impl Into<String>) -> Self {
        Self {
            action,
            summary: summary.into(),
            actor: None,
            entity_type,
            entity_id: None,
            metadata: Value::Object(Map::new()),
        }
    }

    pub fn actor(mut self, actor: impl Into<Actor>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn entity(mut self, id: impl ToString) -> Self {
        self.entity_id = Some(id.to_string());
        self
    }

    /// Extra facts as a JSON object; secrets are removed by key before storing.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Appends `entry` in the transaction `conn` belongs to. Any connection will do, a
/// shared `&AsyncPgConnection` included: a caller can pipeline the entry with the change
/// it describes (`keel_core::db::pipelined`), one round trip for both.
pub async fn record<C>(conn: &mut C, entry: Entry) -> diesel::QueryResult<()>
where
    C: AsyncConnectionCore<Backend = Pg>,
{
    let context = RequestContext::current();
    let metadata = bound(redact(entry.metadata));
    let row = NewEntry {
        actor_id: entry.actor.as_ref().map(|a| a.id),
        actor_email: entry.actor.as_ref().map(|a| clip(&a.email, MAX_EMAIL)),
        action: entry.action.as_str(),
        entity_type: entry.entity_type,
        entity_id: entry.entity_id.as_deref().map(|id| clip(id, MAX_ENTITY_ID)),
        summary: clip(&entry.summary, MAX_SUMMARY),
        metadata: &metadata,
        request_id: context.as_ref().map(|c| c.request_id.as_str()),
        ip: context
            .as_ref()
            .and_then(|c| c.client_ip)
            .map(|ip| ip.to_string()),
        user_agent: context
            .as_ref()
            .and_then(|c| c.user_agent.as_deref())
            .map(|ua| clip(ua, MAX_USER_AGENT)),
    };
    diesel::insert_into(activity_entries::table)
        .values(&row)
        .execute(conn)
        .await
        .map(drop)
}

/// `metadata` with every value under a secret-looking key replaced, recursively.
pub fn redact(metadata: Value) -> Value {
    match metadata {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let lower = key.to_ascii_lowercase();
                    if SECRET_KEYS.iter().any(|s| lower.contains(s)) {
                        (key, Value::String(REDACTED.to_owned()))
                    } else {
                        (key, redact(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

/// `metadata` cut to the caps above: long strings clipped, long arrays shortened, and
/// top-level keys past [`MAX_METADATA`] dropped. NULs (which PostgreSQL can't store)
/// become U+FFFD.
pub fn bound(metadata: Value) -> Value {
    let clipped = clip_values(metadata);
    if serde_json::to_vec(&clipped).map_or(0, |v| v.len()) <= MAX_METADATA {
        return clipped;
    }
    let Value::Object(map) = clipped else {
        return serde_json::json!({ TRUNCATED_KEY: true });
    };
    let mut kept = Map::new();
    kept.insert(TRUNCATED_KEY.to_owned(), Value::Bool(true));
    let mut size = serde_json::to_vec(&kept).map_or(0, |v| v.len());
    for (key, value) in map {
        let added = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len() + key.len() + 4);
        if size.saturating_add(added) > MAX_METADATA {
            continue;
        }
        size += added;
        kept.insert(key, value);
    }
    Value::Object(kept)
}

fn clip_values(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(storable(&text, MAX_METADATA_VALUE)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .take(MAX_METADATA_ITEMS)
                .map(clip_values)
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (storable(&key, MAX_METADATA_VALUE), clip_values(value)))
                .collect(),
        ),
        other => other,
    }
}

/// `text` clipped to `max` bytes with NULs replaced.
fn storable(text: &str, max: usize) -> String {
    clip(text, max).replace('\0', "\u{fffd}")
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let redacted = redact(json!({
            "email": "ada@example.com",
            "new_password": "hunter2",
            "nested": {"Refresh_Token": "abc", "list": [{"api_key": "k", "keep": 1}]},
        }));
        assert_eq!(
            redacted,
            json!({
                "email": "ada@example.com",
                "new_password": REDACTED,
                "nested": {"Refresh_Token": REDACTED, "list": [{"api_key": REDACTED, "keep": 1}]},
            })
        );
    }

    #[test]
    fn metadata_is_bounded_whatever_it_holds() {
        let huge = "x".repeat(900_000);
        let bounded = bound(json!({"email": huge, "reason": "wrong_password"}));
        assert_eq!(
            bounded["email"].as_str().map(str::len),
            Some(MAX_METADATA_VALUE)
        );
        assert_eq!(bounded["reason"], "wrong_password");

        let many: Map<String, Value> = (0..100)
            .map(|i| (format!("k{i:03}"), Value::String("y".repeat(500))))
            .collect();
        let bounded = bound(Value::Object(many));
        let size = serde_json::to_vec(&bounded).unwrap().len();
        assert!(size <= MAX_METADATA, "{size}");
        assert_eq!(bounded[TRUNCATED_KEY], true);
        assert!(bounded.get("k000").is_some(), "earlier keys are kept first");

        let nested = bound(json!({"list": vec!["z"; 1000], "nul": "a\u{0}b"}));
        assert_eq!(
            nested["list"].as_array().map(Vec::len),
            Some(MAX_METADATA_ITEMS)
        );
        assert_eq!(nested["nul"], "a\u{fffd}b");
        let small = json!({"changed": ["email"]});
        assert_eq!(bound(small.clone()), small);
    }

    #[test]
    fn clipping_keeps_characters_whole() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("short", 100), "short");
    }
}
