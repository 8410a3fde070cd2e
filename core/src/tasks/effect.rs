//! [`Effect`]: a task's effect outside the database, started once per task.
//!
//! An email can't join a transaction, so "send, then record" sends again whenever the
//! record fails (the database restarting mid-send): every redelivery greets the same
//! person once more. An effect records its start first, in its own short statement,
//! and holds no connection while it runs; a redelivery that finds the start recorded
//! does nothing while that run may still be alive.
//!
//! The start is a lease as long as the task's [`Task::TIMEOUT`](super::Task::TIMEOUT)
//! and a margin (half that, at most 15 s): no run lives longer (it is cancelled at its
//! timeout), so a start older than that with no end recorded belongs to a run that
//! died mid-way (a kill, a crash). The next run takes it over and starts the effect
//! again: nothing is lost to a crash, and what a crash can still repeat (an email the
//! server took just before the process died) carries the same [`Effect::id`], so the
//! receiver can tell it is the same message. A run records its end only while the
//! start is still its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::OptionalExtension;
use diesel::sql_types;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::TaskError;
use crate::db::{Db, fixed};

/// How long an ended effect keeps trying to record how it ended while the database is
/// away: past it, a finished effect is merely unrecorded, but a failed one that can't
/// release its start would never be retried.
const RECORD_FOR: Duration = Duration::from_secs(30);
/// The most added to the task's timeout to make the lease (half the timeout, up to
/// this): a cancelled run stops at its next `.await`, and a paused process (a stopped
/// VM, a starved CPU) may still be mid-way.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// One enqueued task's effect outside the database; get it from
/// [`TaskContext::effect`](super::TaskContext::effect).
#[derive(Debug, Clone, Copy)]
pub struct Effect {
    task: &'static str,
    task_id: Uuid,
    /// How long a recorded start without an end is taken for a run still under way.
    lease: Duration,
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
    /// No end recorded yet: still running elsewhere, or cut short (a crash, a kill, a
    /// cancelled run) less than the lease ago. Treat the task as not done and retry:
    /// once the lease has passed, a run takes the effect over.
    Unfinished,
}

impl Effect {
    /// The effect of a task whose runs are cancelled at `timeout`.
    pub(super) fn new(task: &'static str, task_id: Uuid, timeout: Duration) -> Self {
        Self {
            task,
            task_id,
            lease: timeout + (timeout / 2).min(LEASE_MARGIN),
        }
    }

    /// The same for every attempt and redelivery of the task: an email's Message-ID, an
    /// idempotency key for an API, so any duplicate that still happens is recognisable.
    pub fn id(&self) -> Uuid {
        self.task_id
    }

    /// Runs `effect` unless a run of this task has started it before and may still be
    /// running or has ended. Its start is committed before it runs, and no connection is
    /// held while it runs. A retryable failure releases the start, so the task's next
    /// attempt runs it again; a permanent one keeps it.
    pub async fn run_once<F>(&self, db: &Db, effect: F) -> Result<Ran, TaskError>
    where
        F: AsyncFnOnce() -> Result<(), TaskError>,
    {
        let started = match self.start(db).await? {
            Start::Ours(started) => started,
            Start::Theirs(earlier) => {
                if earlier == Earlier::Unfinished {
                    tracing::info!(task = self.task, task_id = %self.task_id, "effect started by a run that hasn't ended yet; not repeated while its lease runs");
                }
                return Ok(Ran::Before(earlier));
            }
        };
        let outcome = effect().await;
        match &outcome {
            Err(err) if err.is_retryable() => {
                if !self.record(db, Record::Release, started).await {
                    tracing::error!(
                        task = self.task, task_id = %self.task_id, error = %err,
                        "an effect failed and its start can't be released: it is retried once its lease has run out"
                    );
                }
            }
            _ => {
                let end = if outcome.is_ok() {
                    Record::Finish
                } else {
                    Record::Fail
                };
                if !self.record(db, end, started).await {
                    tracing::warn!(
                        task = self.task, task_id = %self.task_id,
                        "an effect ended but its end can't be recorded: a run after its lease repeats it, under the same id"
                    );
                }
            }
        }
        outcome.map(|()| Ran::Now)
    }

    /// Records the start, or takes over one whose lease has run out.
    async fn start(&self, db: &Db) -> Result<Start, TaskError> {
        let mut conn = db.conn().await.map_err(TaskError::retry)?;
        let inserted: Option<Started> = fixed(
            "INSERT INTO task_effects (task_id, task) VALUES ($1, $2) ON CONFLICT DO NOTHING \
             RETURNING started_at",
        )
        .bind::<sql_types::Uuid, _>(self.task_id)
        .bind::<sql_types::Text, _>(self.task)
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(TaskError::retry)?;
        if let Some(started) = inserted {
            return Ok(Start::Ours(started.started_at));
        }
        // One statement, so of runs racing for an abandoned start exactly one moves it:
        // the others re-read the row and find it fresh.
        let taken: Option<Started> = fixed(
            "UPDATE task_effects SET started_at = clock_timestamp() \
             WHERE task_id = $1 AND finished_at IS NULL \
               AND started_at < now() - make_interval(secs => $2) \
             RETURNING started_at",
        )
        .bind::<sql_types::Uuid, _>(self.task_id)
        .bind::<sql_types::Double, _>(self.lease.as_secs_f64())
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(TaskError::retry)?;
        if let Some(started) = taken {
            tracing::warn!(
                task = self.task, task_id = %self.task_id, lease = ?self.lease,
                "effect started by a run that died without recording its end; starting it again \
                 (if that run got through, this repeats it under the same id)"
            );
            return Ok(Start::Ours(started.started_at));
        }
        let earlier: Ended = fixed(
            "SELECT finished_at IS NOT NULL AS finished, failed FROM task_effects \
             WHERE task_id = $1",
        )
        .bind::<sql_types::Uuid, _>(self.task_id)
        .get_result(&mut conn)
        .await
        .map_err(TaskError::retry)?;
        Ok(Start::Theirs(match (earlier.finished, earlier.failed) {
            (false, _) => Earlier::Unfinished,
            (true, false) => Earlier::Done,
            (true, true) => Earlier::Failed,
        }))
    }

    /// Records how the effect ended, retrying for [`RECORD_FOR`] while the database is
    /// away; `false` if it never could. Only while the start is still this run's
    /// (`started`): a run that outlived its lease doesn't touch its successor's.
    async fn record(&self, db: &Db, record: Record, started: DateTime<Utc>) -> bool {
        let sql = match record {
            Record::Finish => {
                "UPDATE task_effects SET finished_at = now() \
                 WHERE task_id = $1 AND started_at = $2"
            }
            Record::Fail => {
                "UPDATE task_effects SET finished_at = now(), failed = true \
                 WHERE task_id = $1 AND started_at = $2"
            }
            Record::Release => {
                "DELETE FROM task_effects \
                 WHERE task_id = $1 AND started_at = $2 AND finished_at IS NULL"
            }
        };
        let deadline = tokio::time::Instant::now() + RECORD_FOR;
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = async {
                let mut conn = db.conn().await.map_err(|e| e.to_string())?;
                fixed(sql)
                    .bind::<sql_types::Uuid, _>(self.task_id)
                    .bind::<sql_types::Timestamptz, _>(started)
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

/// Whose start it is.
enum Start {
    /// This run's, begun at this instant (its token in every record it makes).
    Ours(DateTime<Utc>),
    /// Another run's, ended or not.
    Theirs(Earlier),
}

#[derive(diesel::QueryableByName)]
struct Started {
    #[diesel(sql_type = sql_types::Timestamptz)]
    started_at: DateTime<Utc>,
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
