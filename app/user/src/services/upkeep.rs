//! keel-user's background work: greeting new accounts and purging ended sign-ins.

use keel_core::ApiError;
use keel_core::mail::Email;
use keel_core::tasks::TaskError;
use uuid::Uuid;

use super::UserService;
use crate::crud::{sessions, users};

/// Accounts whose ended sign-ins are deleted per statement, so a large backlog never
/// holds locks for long.
const PURGE_BATCH: i64 = 5_000;

impl UserService {
    /// Greets `user_id` once: the send is recorded in `users.welcome_sent_at` and
    /// checked first, so a redelivered task sends nothing. (A crash between the SMTP
    /// server accepting the mail and that record can still send it twice: SMTP has no
    /// transaction to join.) A gone account or a refused address is permanent.
    pub async fn send_welcome_email(&self, user_id: Uuid) -> Result<(), TaskError> {
        let mut conn = self.db.conn().await.map_err(TaskError::retry)?;
        let state = users::welcome_state(&mut conn, user_id)
            .await
            .map_err(TaskError::retry)?;
        let Some((address, full_name, welcomed)) = state else {
            return Err(TaskError::permanent("the account no longer exists"));
        };
        if welcomed.is_some() {
            return Ok(());
        }
        let greeting = if full_name.is_empty() {
            "Hello".to_owned()
        } else {
            format!("Hello {full_name}")
        };
        let email = Email {
            to: address.clone(),
            subject: "Welcome: your account is ready".to_owned(),
            text: format!(
                "{greeting},\n\nyour account {address} is ready. Sign in any time.\n\n\
                 If you didn't create it, reply to this message and we'll remove it.\n"
            ),
        };
        self.mailer.send(&email).await.map_err(|err| {
            if err.is_permanent() {
                TaskError::permanent(err)
            } else {
                TaskError::retry(err)
            }
        })?;
        users::mark_welcomed(&mut conn, user_id)
            .await
            .map_err(TaskError::retry)?;
        Ok(())
    }

    /// Deletes every sign-in (refresh-token family) that ended more than a day ago, in
    /// batches; returns how many token rows went.
    pub async fn purge_ended_sessions(&self) -> Result<usize, ApiError> {
        let mut purged = 0;
        loop {
            let deleted = self
                .db
                .transaction_untracked(async move |conn| {
                    Ok::<_, ApiError>(sessions::purge_ended(conn, PURGE_BATCH).await?)
                })
                .await?;
            purged += deleted;
            if deleted == 0 {
                return Ok(purged);
            }
        }
    }
}
