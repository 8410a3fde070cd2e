//! A task that does nothing, to prove (and time) the whole path: outbox, relay,
//! broker, worker.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Task, TaskContext, TaskError};

/// The longest a ping may hold its worker.
const MAX_HOLD_MS: u64 = 60_000;

/// Enqueued by `keel-admin tasks ping` and by the task benchmark.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Ping {
    /// How long the run takes (capped at a minute): a held ping shows what a worker
    /// does with a task in flight when it is stopped or killed.
    #[serde(default)]
    pub hold_ms: u64,
}

impl Task for Ping {
    const NAME: &'static str = "system.ping";

    async fn run(self, ctx: TaskContext) -> Result<(), TaskError> {
        if self.hold_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.hold_ms.min(MAX_HOLD_MS))).await;
        }
        tracing::info!(task_id = %ctx.task_id(), attempt = ctx.attempt(), "pong");
        Ok(())
    }
}
