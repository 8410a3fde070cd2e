//! keel-user's background tasks.

use chrono::{DateTime, Utc};
use keel_core::tasks::{Missed, Periodic, Task, TaskContext, TaskError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::UserService;

/// Greets a new account; enqueued in the registration's transaction.
///
/// Once per account (see [`UserService::send_welcome_email`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SendWelcomeEmail {
    pub user_id: Uuid,
}

impl Task for SendWelcomeEmail {
    const NAME: &'static str = "user.send_welcome_email";
    type Services = UserService;

    async fn run(self, ctx: TaskContext<UserService>) -> Result<(), TaskError> {
        ctx.services
            .send_welcome_email(self.user_id, ctx.effect())
            .await
    }
}

/// Every hour, deletes the refresh-token families (sign-ins) that ended more than a
/// day ago: every token in them revoked or expired. A live family keeps its rotated
/// tokens, which is what detects a replayed one; a dead family's tokens are refused
/// either way. The day of margin keeps recent sign-outs visible to investigators.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PurgeSessions {}

impl Task for PurgeSessions {
    const NAME: &'static str = "user.purge_sessions";
    type Services = UserService;

    async fn run(self, ctx: TaskContext<UserService>) -> Result<(), TaskError> {
        let purged = ctx
            .services
            .purge_ended_sessions()
            .await
            .map_err(TaskError::retry)?;
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
