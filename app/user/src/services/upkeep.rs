//! keel-user's background work: greeting new accounts and purging ended sign-ins.

use keel_core::ApiError;
use keel_core::mail::Email;
use keel_core::tasks::{Earlier, Effect, Ran, TaskError};
use uuid::Uuid;

use super::UserService;
use crate::crud::{sessions, users};

/// Accounts whose ended sign-ins are deleted per statement, so a large backlog never
/// holds locks for long.
const PURGE_BATCH: i64 = 5_000;

impl UserService {
    /// Greets `user_id` once, as the task's `send` [`Effect`]: a redelivery, or a retry
    /// after the database went away mid-send, finds the send started and sends nothing,
    /// and no connection is held while the SMTP server takes its time. The account
    /// records the greeting in `users.welcome_sent_at`, checked first. A gone account
    /// or a refused address is permanent.
    pub async fn send_welcome_email(&self, user_id: Uuid, send: Effect) -> Result<(), TaskError> {
        let state = {
            let mut conn = self.db.conn().await.map_err(TaskError::retry)?;
            users::welcome_state(&mut conn, user_id)
                .await
                .map_err(TaskError::retry)?
        };
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
            id: Some(send.id()),
        };
        let sent = send.run_once(&self.db, async || {
            self.mailer.send(&email).await.map_err(|err| {
                if err.is_permanent() {
                    TaskError::permanent(err)
                } else {
                    TaskError::retry(err)
                }
            })
        });
        match sent.await? {
            Ran::Now | Ran::Before(Earlier::Done) => {}
            Ran::Before(Earlier::Failed) => {
                return Err(TaskError::permanent("an earlier run's send was refused"));
            }
            Ran::Before(Earlier::Unfinished) => {
                return Err(TaskError::retry(
                    "an earlier run started the send and hasn't said how it ended",
                ));
            }
        }
        let mut conn = self.db.conn().await.map_err(TaskError::retry)?;
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
