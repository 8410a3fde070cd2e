//! keel-user's background tasks.

use chrono::{DateTime, Utc};
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use keel_core::tasks::{Missed, Periodic, Registry, Task, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

/// Families deleted per statement, so a large backlog never holds locks for long.
const PURGE_BATCH: i64 = 5_000;

/// Registers keel-user's tasks (keel-app calls this).
pub fn register(registry: &mut Registry) {
    registry.register_periodic::<PurgeSessions>();
}

/// Every hour, deletes the refresh-token families (sign-ins) that ended more than a
/// day ago: every token in them revoked or expired. A live family keeps its rotated
/// tokens, which is what detects a replayed one; a dead family's tokens are refused
/// either way. The day of margin keeps recent sign-outs visible to investigators.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PurgeSessions {}

impl Task for PurgeSessions {
    const NAME: &'static str = "user.purge_sessions";

    async fn run(self, ctx: TaskContext) -> Result<(), TaskError> {
        let mut conn = ctx.services.db.conn().await.map_err(TaskError::retry)?;
        let mut purged = 0;
        loop {
            let deleted = diesel::sql_query(
                "WITH dead AS ( \
                     SELECT family_id FROM refresh_sessions GROUP BY family_id \
                     HAVING max(least(coalesce(revoked_at, expires_at), expires_at)) \
                            < now() - interval '1 day' \
                     LIMIT $1) \
                 DELETE FROM refresh_sessions s USING dead WHERE s.family_id = dead.family_id",
            )
            .bind::<BigInt, _>(PURGE_BATCH)
            .execute(&mut conn)
            .await
            .map_err(TaskError::retry)?;
            purged += deleted;
            if deleted == 0 {
                break;
            }
        }
        tracing::info!(purged, "purged ended refresh sessions");
        Ok(())
    }
}

impl Periodic for PurgeSessions {
    const SCHEDULE: &'static str = "0 0 * * * *";
    const MISSED: Missed = Missed::Skip;

    fn for_tick(_: DateTime<Utc>) -> Self {
        Self {}
    }
}
