//! A task that does nothing, to prove (and time) the whole path: outbox, relay,
//! broker, worker.

use serde::{Deserialize, Serialize};

use super::{Task, TaskContext, TaskError};

/// Enqueued by `keel-admin tasks ping` and by the task benchmark.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Ping {}

impl Task for Ping {
    const NAME: &'static str = "system.ping";

    async fn run(self, ctx: TaskContext) -> Result<(), TaskError> {
        tracing::debug!(task_id = %ctx.task_id(), "pong");
        Ok(())
    }
}
