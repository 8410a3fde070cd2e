//! Tasks given up on, in the audit trail (the registry's dead-letter hook).

use futures_util::future::BoxFuture;
use keel_core::ApiError;
use keel_core::db::Db;
use keel_core::tasks::Envelope;
use serde_json::json;

use crate::{Entry, actions};

/// Records `envelope`, given up on with `error`, as a `task.dead_lettered` entry; a
/// failure to record is logged (the task is already lost to retries).
pub fn record(db: Db, envelope: Envelope, error: String) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let entry = Entry::new(
            actions::TASK_DEAD_LETTERED,
            "task",
            format!(
                "task {} given up after {} attempt(s): {error}",
                envelope.task, envelope.attempt
            ),
        )
        .entity(envelope.id)
        .metadata(json!({
            "task": envelope.task,
            "queue": envelope.queue,
            "attempts": envelope.attempt,
            "error": error,
            "enqueued_at": envelope.enqueued_at,
        }));
        let recorded = db
            .transaction(async move |conn| {
                crate::record(conn, entry).await?;
                Ok::<_, ApiError>(())
            })
            .await;
        if let Err(err) = recorded {
            tracing::error!(error = %err, task_id = %envelope.id, "cannot record a dead-lettered task in the audit trail");
        }
    })
}
