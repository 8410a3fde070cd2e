//! The tasks keel-core ships: a no-op to prove (and time) the whole path — outbox,
//! relay, broker, worker — and the cleanup of the claims handlers make.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};

use super::{Missed, Periodic, Task, TaskContext, TaskError};
use crate::db::{Db, fixed};

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
    type Services = ();

    async fn run(self, ctx: TaskContext<()>) -> Result<(), TaskError> {
        if self.hold_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.hold_ms.min(MAX_HOLD_MS))).await;
        }
        tracing::info!(task_id = %ctx.task_id(), attempt = ctx.attempt(), "pong");
        Ok(())
    }
}

/// Daily, deletes task claims (`TaskContext::claim`) and effect records
/// (`TaskContext::effect`) older than a week: redeliveries and duplicate publishes come
/// within hours.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PurgeTasksDone {}

impl Task for PurgeTasksDone {
    const NAME: &'static str = "system.purge_tasks_done";
    type Services = Db;

    async fn run(self, ctx: TaskContext<Db>) -> Result<(), TaskError> {
        let mut conn = ctx.services.conn().await.map_err(TaskError::retry)?;
        let claims = fixed("DELETE FROM tasks_done WHERE done_at < now() - interval '7 days'")
            .execute(&mut conn)
            .await
            .map_err(TaskError::retry)?;
        let effects =
            fixed("DELETE FROM task_effects WHERE started_at < now() - interval '7 days'")
                .execute(&mut conn)
                .await
                .map_err(TaskError::retry)?;
        tracing::info!(claims, effects, "purged old task claims and effect records");
        Ok(())
    }
}

impl Periodic for PurgeTasksDone {
    const SCHEDULE: &'static str = "0 30 3 * * *";
    const MISSED: Missed = Missed::Skip;

    fn for_tick(_: DateTime<Utc>) -> Self {
        Self {}
    }
}
