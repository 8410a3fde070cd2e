//! Periodic jobs: tasks enqueued on a cron schedule, each tick once however many
//! schedulers run (one per keel-worker, or keel-api without a broker).
//!
//! A scheduler locks the job's row of `periodic_ticks`, enqueues the ticks due since
//! the last one into the outbox and moves the row on — all in one transaction, so a
//! second scheduler waiting on the lock then finds nothing due, and a crash enqueues
//! nothing. Ticks missed while no scheduler ran are skipped (only the latest runs) or
//! caught up (each runs, up to [`MAX_CATCH_UP`]), as the job declares.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::{RelayError, Task, enqueue};
use crate::db::{Db, fixed};
use crate::error::ErrorChain;

/// The most missed ticks one catch-up enqueues; older ones are dropped.
pub const MAX_CATCH_UP: usize = 100;
/// The longest a scheduler sleeps before looking again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What happens to ticks that passed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Run once for the latest missed tick (a cleanup that covers everything anyway).
    Skip,
    /// Run once for each missed tick, oldest first (a report per period).
    CatchUp,
}

/// A task that runs on a schedule.
pub trait Periodic: Task {
    /// A cron expression with seconds, in UTC: `sec min hour day-of-month month
    /// day-of-week`, e.g. `"0 0 * * * *"` for every hour on the hour.
    const SCHEDULE: &'static str;
    const MISSED: Missed = Missed::Skip;

    /// The task for one tick.
    fn for_tick(tick: DateTime<Utc>) -> Self;
}

type EnqueueFn = for<'c> fn(
    &'c mut AsyncPgConnection,
    DateTime<Utc>,
) -> BoxFuture<'c, diesel::QueryResult<Uuid>>;

/// A registered periodic job.
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    schedule: cron::Schedule,
    missed: Missed,
    enqueue: EnqueueFn,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("schedule", &self.schedule.to_string())
            .field("missed", &self.missed)
            .finish()
    }
}

impl Job {
    /// # Panics
    /// If `T::SCHEDULE` is not a valid cron expression: a programming error, refused
    /// when the registry is built (at start, and by keel-app's tests).
    pub(super) fn of<T: Periodic>() -> Self {
        let schedule = cron::Schedule::from_str(T::SCHEDULE).unwrap_or_else(|err| {
            panic!(
                "{}: schedule {:?} is not a cron expression: {err}",
                T::NAME,
                T::SCHEDULE
            )
        });
        Self {
            name: T::NAME,
            schedule,
            missed: T::MISSED,
            enqueue: enqueue_tick::<T>,
        }
    }

    /// The ticks after `last` up to `now` to enqueue, oldest first.
    fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut due = VecDeque::with_capacity(MAX_CATCH_UP);
        for tick in self.schedule.after(&last).take_while(|tick| *tick <= now) {
            if due.len() == MAX_CATCH_UP {
                due.pop_front();
            }
            due.push_back(tick);
        }
        match self.missed {
            Missed::Skip => due.pop_back().into_iter().collect(),
            Missed::CatchUp => due.into(),
        }
    }

    fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&now).next()
    }
}

fn enqueue_tick<T: Periodic>(
    conn: &mut AsyncPgConnection,
    tick: DateTime<Utc>,
) -> BoxFuture<'_, diesel::QueryResult<Uuid>> {
    Box::pin(async move { enqueue(conn, &T::for_tick(tick)).await })
}

/// Enqueues the periodic jobs' ticks as they come due.
#[derive(Debug, Clone)]
pub struct Scheduler {
    db: Db,
    jobs: Vec<Job>,
}

#[derive(QueryableByName)]
struct LastTick {
    #[diesel(sql_type = Timestamptz)]
    last_tick: DateTime<Utc>,
}

impl Scheduler {
    pub fn new(db: Db, jobs: Vec<Job>) -> Self {
        Self { db, jobs }
    }

    /// Enqueues every job's ticks due at `now` that no scheduler has enqueued yet;
    /// returns how many. A job seen for the first time starts now: its first run is at
    /// its next tick, not for its whole past.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<usize, RelayError> {
        let mut enqueued = 0;
        for job in &self.jobs {
            let job = job.clone();
            enqueued += self
                .db
                .transaction_untracked(async move |conn| {
                        fixed(
                            "INSERT INTO periodic_ticks (job, last_tick) VALUES ($1, $2) \
                             ON CONFLICT (job) DO NOTHING",
                        )
                        .bind::<Text, _>(job.name)
                        .bind::<Timestamptz, _>(now)
                        .execute(conn)
                        .await?;
                        let last: LastTick = fixed(
                            "SELECT last_tick FROM periodic_ticks WHERE job = $1 FOR UPDATE",
                        )
                        .bind::<Text, _>(job.name)
                        .get_result(conn)
                        .await?;
                        let due = job.due(last.last_tick, now);
                        let Some(&latest) = due.last() else {
                            return Ok::<_, RelayError>(0);
                        };
                        for tick in &due {
                            (job.enqueue)(conn, *tick).await?;
                        }
                        fixed("UPDATE periodic_ticks SET last_tick = $2 WHERE job = $1")
                            .bind::<Text, _>(job.name)
                            .bind::<Timestamptz, _>(latest)
                            .execute(conn)
                            .await?;
                        tracing::info!(job = job.name, ticks = due.len(), %latest, "periodic job enqueued");
                        Ok(due.len())
                    })
                .await?;
        }
        Ok(enqueued)
    }

    /// Runs until the returned guard is dropped: at each tick of any job (looking at
    /// least once a minute), backing off while the database is down.
    pub fn spawn(self) -> SchedulerHandle {
        SchedulerHandle(tokio::spawn(async move {
            if self.jobs.is_empty() {
                return;
            }
            let mut backoff = Duration::from_secs(1);
            loop {
                let now = Utc::now();
                match self.run_due(now).await {
                    Ok(_) => backoff = Duration::from_secs(1),
                    Err(err) => {
                        tracing::warn!(error = %ErrorChain(&err), retry_in = ?backoff, "periodic jobs: cannot enqueue due ticks");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_SLEEP);
                        continue;
                    }
                }
                let next = self.jobs.iter().filter_map(|job| job.next_after(now)).min();
                let wait = next
                    .and_then(|next| (next - Utc::now()).to_std().ok())
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_SLEEP);
                tokio::time::sleep(wait).await;
            }
        }))
    }
}

/// Stops the scheduler when dropped.
#[derive(Debug)]
pub struct SchedulerHandle(tokio::task::JoinHandle<()>);

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(schedule: &str, missed: Missed) -> Job {
        Job {
            name: "test",
            schedule: cron::Schedule::from_str(schedule).unwrap(),
            missed,
            enqueue: |_, _| Box::pin(async { Ok(Uuid::nil()) }),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn missed_ticks_are_skipped_or_caught_up_as_declared() {
        let last = at("2026-01-01T00:00:00Z");
        let now = at("2026-01-01T03:30:00Z");
        let hourly = "0 0 * * * *";
        assert_eq!(
            job(hourly, Missed::Skip).due(last, now),
            vec![at("2026-01-01T03:00:00Z")]
        );
        assert_eq!(
            job(hourly, Missed::CatchUp).due(last, now),
            vec![
                at("2026-01-01T01:00:00Z"),
                at("2026-01-01T02:00:00Z"),
                at("2026-01-01T03:00:00Z")
            ]
        );
        assert!(
            job(hourly, Missed::Skip).due(now, now).is_empty(),
            "nothing new"
        );
        let every_second = job("* * * * * *", Missed::CatchUp).due(last, now);
        assert_eq!(every_second.len(), MAX_CATCH_UP, "bounded");
        assert_eq!(every_second.last(), Some(&now), "the latest kept");
    }
}
