//! A task on its way: what the outbox row holds and what a message body carries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The message body (JSON). The payload is the task's own serialisation; the rest says
/// which run this is, so a retry or a redelivery carries the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    pub task: String,
    pub queue: String,
    /// 1 for the first run; a retry is published with the next number.
    pub attempt: u32,
    pub enqueued_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

impl Envelope {
    /// The same task for its next run.
    pub fn next_attempt(&self) -> Self {
        Self {
            attempt: self.attempt + 1,
            ..self.clone()
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // An envelope of plain JSON values always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|err| format!("not a task envelope: {err}"))
    }
}
