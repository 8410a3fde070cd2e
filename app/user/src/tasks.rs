//! keel-user's background tasks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_core::tasks::{Missed, Periodic, RetryPolicy, Task, TaskContext, TaskError};
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
    /// An SMTP exchange takes seconds (each step at most `SMTP_TIMEOUT`, 10 s by
    /// default); a run cut short (a killed worker) is taken over by the next run 15 s
    /// after this.
    const TIMEOUT: Duration = Duration::from_secs(60);
    type Services = UserService;

    /// Patient enough to outlast the lease after a kill (the redelivered task waits for
    /// the dead run's lease to pass), and an SMTP relay down for minutes.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        }
    }

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
