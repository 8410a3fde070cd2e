//! keel-user's background tasks.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use keel_core::ApiError;
use keel_core::mail::Email;
use keel_core::tasks::{Missed, Periodic, Registry, Task, TaskContext, TaskError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Families deleted per statement, so a large backlog never holds locks for long.
const PURGE_BATCH: i64 = 5_000;

/// Registers keel-user's tasks (keel-app calls this).
pub fn register(registry: &mut Registry) {
    registry
        .register::<SendWelcomeEmail>()
        .register_periodic::<PurgeSessions>();
}

/// Greets a new account; enqueued in the registration's transaction.
///
/// Once per account: the send is recorded in `users.welcome_sent_at` and checked first,
/// so a redelivered task sends nothing. (A crash between the SMTP server accepting the
/// mail and that record can still send it twice: SMTP has no transaction to join.)
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SendWelcomeEmail {
    pub user_id: Uuid,
}

#[derive(QueryableByName)]
struct Recipient {
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    full_name: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    welcome_sent_at: Option<DateTime<Utc>>,
}

impl Task for SendWelcomeEmail {
    const NAME: &'static str = "user.send_welcome_email";

    async fn run(self, ctx: TaskContext) -> Result<(), TaskError> {
        let mut conn = ctx.services.db.conn().await.map_err(TaskError::retry)?;
        let recipient: Option<Recipient> =
            diesel::sql_query("SELECT email, full_name, welcome_sent_at FROM users WHERE id = $1")
                .bind::<diesel::sql_types::Uuid, _>(self.user_id)
                .get_result(&mut conn)
                .await
                .optional()
                .map_err(TaskError::retry)?;
        let Some(recipient) = recipient else {
            return Err(TaskError::permanent("the account no longer exists"));
        };
        if recipient.welcome_sent_at.is_some() {
            return Ok(());
        }
        let greeting = if recipient.full_name.is_empty() {
            "Hello".to_owned()
        } else {
            format!("Hello {}", recipient.full_name)
        };
        let email = Email {
            to: recipient.email.clone(),
            subject: "Welcome: your account is ready".to_owned(),
            text: format!(
                "{greeting},\n\nyour account {} is ready. Sign in any time.\n\n\
                 If you didn't create it, reply to this message and we'll remove it.\n",
                recipient.email
            ),
        };
        ctx.services.mailer.send(&email).await.map_err(|err| {
            if err.is_permanent() {
                TaskError::permanent(err)
            } else {
                TaskError::retry(err)
            }
        })?;
        diesel::sql_query("UPDATE users SET welcome_sent_at = now() WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(self.user_id)
            .execute(&mut conn)
            .await
            .map_err(TaskError::retry)?;
        Ok(())
    }
}

/// Every hour, deletes the refresh-token families (sign-ins) that ended more than a
/// day ago: every token in them revoked or expired. A live family keeps its rotated
/// tokens, which is what detects a replayed one; a dead family's tokens are refused
/// either way. The day of margin keeps recent sign-outs visible to investigators.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PurgeSessions {}

#[derive(QueryableByName)]
struct Owner {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

impl Task for PurgeSessions {
    const NAME: &'static str = "user.purge_sessions";

    async fn run(self, ctx: TaskContext) -> Result<(), TaskError> {
        let mut purged = 0;
        loop {
            // Token rows are changed only under their account's lock (see
            // `crud::users::lock`), taken before any of them: so here too, and accounts
            // busy right now (a refresh, a sign-out) are left for the next run.
            let deleted = ctx
                .services
                .db
                .transaction_untracked(|conn| {
                    Box::pin(async move {
                        // The limit counts accounts taken, after busy ones are skipped.
                        let owners: Vec<Owner> = diesel::sql_query(
                            "SELECT u.id FROM users u WHERE u.id IN ( \
                                 SELECT user_id FROM refresh_sessions \
                                 GROUP BY family_id, user_id \
                                 HAVING max(least(coalesce(revoked_at, expires_at), expires_at)) \
                                        < now() - interval '1 day') \
                             LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
                        )
                        .bind::<BigInt, _>(PURGE_BATCH)
                        .load(conn)
                        .await?;
                        let owners: Vec<Uuid> = owners.into_iter().map(|o| o.id).collect();
                        diesel::sql_query(
                            "DELETE FROM refresh_sessions \
                             WHERE user_id = ANY($1) AND family_id IN ( \
                                 SELECT family_id FROM refresh_sessions WHERE user_id = ANY($1) \
                                 GROUP BY family_id \
                                 HAVING max(least(coalesce(revoked_at, expires_at), expires_at)) \
                                        < now() - interval '1 day')",
                        )
                        .bind::<Array<SqlUuid>, _>(&owners)
                        .execute(conn)
                        .await
                        .map_err(ApiError::from)
                    })
                })
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
