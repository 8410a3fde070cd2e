//! [`Effect`]: a task's effect outside the database, started at most once per task.
//!
//! An email can't join a transaction, so "send, then record" sends again whenever the
//! record fails (the database restarting mid-send, a crash): every redelivery greets
//! the same person once more. An effect records its start first, in its own short
//! statement, and holds no connection while it runs; a redelivery that finds the start
//! recorded does nothing. What is given up: an effect whose run died between that
//! record and its end (a crash, a kill, a cancelled run) is not tried again; the next
//! run learns it ([`Earlier::Unfinished`]), logs it, and should fail retryably, so the
//! task is dead-lettered where someone looks if that run never ends.

use std::time::Duration;

use diesel::sql_types;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::TaskError;
use crate::db::Db;

/// How long an ended effect keeps trying to record how it ended while the database is
/// away: past it, a finished effect is merely unrecorded, but a failed one that can't
/// release its start would never be retried.
const RECORD_FOR: Duration = Duration::from_secs(30);

/// One enqueued task's effect outside the database; get it from
/// [`TaskContext::effect`](super::TaskContext::effect).
#[derive(Debug, Clone, Copy)]
pub struct Effect {
    task: &'static str,
    task_id: Uuid,
}

/// What [`Effect::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// This call ran the effect, and it succeeded.
    Now,
    /// A run of the same task had started it already (a redelivery, a duplicate):
    /// nothing was done, and this is how that run ended.
    Before(Earlier),
}

/// How the earlier run of an effect ended, as far as anyone recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// It succeeded.
    Done,
    /// It was refused for good (a permanent error).
    Failed,
    /// No end recorded: still running elsewhere, or stopped mid-way (a crash, a kill,
    /// a cancelled run). It won't be started again; treat the task as not done, so it
    /// retries and, if that run never ends, is dead-lettered where someone looks.
    Unfinished,
}

impl Effect {
    pub(super) fn new(task: &'static str, task_id: Uuid) -> Self {
        Self { task, task_id }
    }

    /// The same for every attempt and redelivery of the task: an email's Message-ID, an
    /// idempotency key for an API, so any duplicate that still happens is recognisable.
    pub fn id(&self) -> Uuid {
        self.task_id
    }

    /// Runs `effect` unless a run of this task has started it before. Its start is
    /// committed before it runs, and no connection is held while it runs. A retryable
    /// failure releases the start, so the task's next attempt runs it again; a
    /// permanent one keeps it.
    pub async fn run_once<F>(&self, db: &Db, effect: F) -> Result<Ran, TaskError>
    where
        F: AsyncFnOnce() -> Result<(), TaskError>,
    {
        if let Some(earlier) = self.start(db).await? {
            if earlier == Earlier::Unfinished {
                tracing::warn!(task = self.task, task_id = %self.task_id, "effect started by an earlier run that hasn't ended (or never will); not repeated");
            }
            return Ok(Ran::Before(earlier));
        }
        let outcome = effect().await;
        match &outcome {
            Err(err) if err.is_retryable() => {
                if !self.record(db, Record::Release).await {
                    tracing::error!(
                        task = self.task, task_id = %self.task_id, error = %err,
                        "an effect failed and its start can't be released: it won't be retried"
                    );
                }
            }
            _ => {
                let end = if outcome.is_ok() {
                    Record::Finish
                } else {
                    Record::Fail
                };
                if !self.record(db, end).await {
                    tracing::warn!(
                        task = self.task, task_id = %self.task_id,
                        "an effect ended but its end can't be recorded (it won't be repeated)"
                    );
                }
            }
        }
        outcome.map(|()| Ran::Now)
    }

    /// Records the start; `Some` with how the earlier run ended when one was recorded
    /// before.
    async fn start(&self, db: &Db) -> Result<Option<Earlier>, TaskError> {
        let mut conn = db.conn().await.map_err(TaskError::retry)?;
        let inserted = diesel::sql_query(
            "INSERT INTO task_effects (task_id, task) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind::<sql_types::Uuid, _>(self.task_id)
        .bind::<sql_types::Text, _>(self.task)
        .execute(&mut conn)
        .await
        .map_err(TaskError::retry)?;
        if inserted == 1 {
            return Ok(None);
        }
        let earlier: Ended = diesel::sql_query(
            "SELECT finished_at IS NOT NULL AS finished, failed FROM task_effects \
             WHERE task_id = $1",
        )
        .bind::<sql_types::Uuid, _>(self.task_id)
        .get_result(&mut conn)
        .await
        .map_err(TaskError::retry)?;
        Ok(Some(match (earlier.finished, earlier.failed) {
            (false, _) => Earlier::Unfinished,
            (true, false) => Earlier::Done,
            (true, true) => Earlier::Failed,
        }))
    }

    /// Records how the effect ended, retrying for [`RECORD_FOR`] while the database is
    /// away; `false` if it never could.
    async fn record(&self, db: &Db, record: Record) -> bool {
        let sql = match record {
            Record::Finish => "UPDATE task_effects SET finished_at = now() WHERE task_id = $1",
            Record::Fail => {
                "UPDATE task_effects SET finished_at = now(), failed = true WHERE task_id = $1"
            }
            Record::Release => {
                "DELETE FROM task_effects WHERE task_id = $1 AND finished_at IS NULL"
            }
        };
        let deadline = tokio::time::Instant::now() + RECORD_FOR;
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = async {
                let mut conn = db.conn().await.map_err(|e| e.to_string())?;
                diesel::sql_query(sql)
                    .bind::<sql_types::Uuid, _>(self.task_id)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(_) => return true,
                Err(err) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(error = %err, "recording an effect's end; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(_) => return false,
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Record {
    Finish,
    Fail,
    Release,
}

#[derive(diesel::QueryableByName)]
struct Ended {
    #[diesel(sql_type = sql_types::Bool)]
    finished: bool,
    #[diesel(sql_type = sql_types::Bool)]
    failed: bool,
}
