//! The transactional outbox: tasks are rows written with the change that enqueues them,
//! and the relay hands committed rows on and deletes them once they are safe.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Jsonb, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use metrics::{counter, gauge};
use uuid::Uuid;

use super::local::LocalRunner;
use super::{Broker, BrokerError, Envelope, Task};
use crate::db::{Db, fixed};
use crate::error::{ApiError, ErrorChain};
use crate::telemetry::metrics::{
    TASK_OUTBOX_BACKLOG, TASK_OUTBOX_DEAD_LETTERED, TASK_OUTBOX_OLDEST_AGE,
};
use crate::telemetry::outage::Outage;

/// How long the relay sleeps when nothing wakes it: the bound on a task's wait when
/// the change feed is down.
const POLL: Duration = Duration::from_secs(1);
/// The longest pause between attempts while the broker or the database is away: low,
/// so tasks move again within about this long of its return (an attempt is one
/// connect and one short transaction).
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Failed publishes of one row, each refused for what the row is, before it is set aside
/// in `task_outbox_dead` so it stops holding up the rows behind it.
const MAX_PUBLISH_FAILURES: i32 = 5;
/// How often the backlog gauges are refreshed, on their own timer: an outage, when the
/// relay can't move anything, is when they matter.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

diesel::table! {
    task_outbox (id) {
        id -> Int8,
        task_id -> Uuid,
        task -> Text,
        queue -> Text,
        payload -> Jsonb,
        enqueued_at -> Timestamptz,
    }
}

/// Enqueues `task` on `conn`, which should be the transaction of the change it follows
/// from: the task is published only if that transaction commits. Returns the task id.
pub async fn enqueue<T: Task>(conn: &mut AsyncPgConnection, task: &T) -> QueryResult<Uuid> {
    let payload = serde_json::to_value(task)
        .map_err(|err| diesel::result::Error::SerializationError(Box::new(err)))?;
    let id = Uuid::now_v7();
    diesel::insert_into(task_outbox::table)
        .values((
            task_outbox::task_id.eq(id),
            task_outbox::task.eq(T::NAME),
            task_outbox::queue.eq(T::QUEUE),
            task_outbox::payload.eq(payload),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// Where the relay hands tasks: the broker, or this process's runner.
#[derive(Debug, Clone)]
pub enum RelayTarget {
    Broker(Arc<Broker>),
    Local(Arc<LocalRunner>),
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("database: {0}")]
    Pool(#[from] ApiError),
}

/// Moves committed outbox rows on, a batch per transaction. Several relays (one per
/// API replica) share the rows without waiting on each other: each locks the rows it
/// takes and skips the ones another holds.
#[derive(Debug, Clone)]
pub struct Relay {
    db: Db,
    target: RelayTarget,
    batch: i64,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    task_id: Uuid,
    #[diesel(sql_type = Text)]
    task: String,
    #[diesel(sql_type = Text)]
    queue: String,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    enqueued_at: DateTime<Utc>,
}

impl Relay {
    pub fn new(db: Db, target: RelayTarget, batch: u32) -> Self {
        Self {
            db,
            target,
            batch: i64::from(batch),
        }
    }

    pub fn target(&self) -> &RelayTarget {
        &self.target
    }

    /// Hands on up to one batch; returns how many rows it moved. A row is deleted only
    /// after the broker confirmed it (so a failure leaves it for the next try) and may
    /// be published twice if the commit after the confirm fails.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let (target, batch) = (self.target.clone(), self.batch);
        // Untracked: moving outbox rows must not empty this process's query caches.
        self.db
            .transaction_untracked(async move |conn| {
                let rows: Vec<Row> = fixed(
                    "SELECT id, task_id, task, queue, payload, enqueued_at FROM task_outbox \
                         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                )
                .bind::<BigInt, _>(batch)
                .load(conn)
                .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
                let envelopes: Vec<Envelope> = rows
                    .into_iter()
                    .map(|row| Envelope {
                        id: row.task_id,
                        task: row.task,
                        queue: row.queue,
                        attempt: 1,
                        enqueued_at: row.enqueued_at,
                        payload: row.payload,
                    })
                    .collect();
                let published = match &target {
                    RelayTarget::Broker(broker) => match broker.publish(&envelopes).await {
                        Ok(()) => ids,
                        Err(err) if err.is_about_the_message() => {
                            one_by_one(conn, broker, &ids, &envelopes).await?
                        }
                        Err(err) => return Err(err.into()),
                    },
                    RelayTarget::Local(runner) => {
                        runner.start_all(envelopes.clone());
                        ids
                    }
                };
                fixed("DELETE FROM task_outbox WHERE id = ANY($1)")
                    .bind::<Array<BigInt>, _>(&published)
                    .execute(conn)
                    .await?;
                Ok::<_, RelayError>(published.len())
            })
            .await
    }

    /// Relays until the returned guard is dropped: woken by the change feed when a
    /// transaction that enqueued commits, polling every second otherwise, backing off
    /// (up to [`BACKOFF_MAX`]) while the broker or the database is down. The backlog
    /// gauges are refreshed every [`GAUGE_EVERY`] meanwhile.
    pub fn spawn(self) -> RelayHandle {
        let gauges = tokio::spawn({
            let relay = self.clone();
            async move {
                let mut every = tokio::time::interval(GAUGE_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    relay.update_gauges().await;
                }
            }
        });
        let relaying = tokio::spawn(async move {
            const WHAT: &str = "task relay (tasks wait in the outbox)";
            let mut backoff = Duration::from_millis(200);
            let mut outage = Outage::default();
            let committed = self.db.changes().watch("task_outbox");
            loop {
                match self.relay_once().await {
                    Ok(moved) => {
                        outage.recovered(WHAT);
                        backoff = Duration::from_millis(200);
                        if moved as i64 >= self.batch {
                            continue; // more are waiting
                        }
                        let _ = tokio::time::timeout(POLL, committed.notified()).await;
                    }
                    Err(err) => {
                        outage.failed(WHAT, &ErrorChain(&err));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        });
        RelayHandle { relaying, gauges }
    }

    /// Rows waiting and the age of the oldest, for the gauges and the admin endpoint.
    pub async fn backlog(&self) -> Result<(u64, Duration), RelayError> {
        #[derive(QueryableByName)]
        struct Backlog {
            #[diesel(sql_type = BigInt)]
            rows: i64,
            #[diesel(sql_type = Double)]
            oldest: f64,
        }
        let mut conn = self.db.conn().await?;
        let backlog: Backlog = fixed(
            "SELECT count(*) AS rows, \
             coalesce(extract(epoch FROM now() - min(enqueued_at)), 0)::float8 AS oldest \
             FROM task_outbox",
        )
        .get_result(&mut conn)
        .await?;
        Ok((
            u64::try_from(backlog.rows).unwrap_or(0),
            Duration::from_secs_f64(backlog.oldest.max(0.0)),
        ))
    }

    async fn update_gauges(&self) {
        if let Ok((rows, oldest)) = self.backlog().await {
            gauge!(TASK_OUTBOX_BACKLOG).set(rows as f64);
            gauge!(TASK_OUTBOX_OLDEST_AGE).set(oldest.as_secs_f64());
        }
    }
}

/// Publishes a batch the broker refused, one row at a time, so the row it refuses doesn't
/// hold up the others; returns the ids it published. Each refused row counts a failure,
/// and one refused [`MAX_PUBLISH_FAILURES`] times is set aside in `task_outbox_dead`.
/// A failure that isn't about the row (the broker went away) stops the pass.
async fn one_by_one(
    conn: &mut AsyncPgConnection,
    broker: &Broker,
    ids: &[i64],
    envelopes: &[Envelope],
) -> Result<Vec<i64>, RelayError> {
    let mut published = Vec::new();
    for (id, envelope) in ids.iter().zip(envelopes) {
        match broker.publish(std::slice::from_ref(envelope)).await {
            Ok(()) => published.push(*id),
            Err(err) if err.is_about_the_message() => refused(conn, *id, envelope, &err).await?,
            Err(_) => break,
        }
    }
    Ok(published)
}

/// Counts one refusal of row `id`, and sets the row aside at the last one (at once when
/// no attempt can pass: a task too large for a message).
async fn refused(
    conn: &mut AsyncPgConnection,
    id: i64,
    envelope: &Envelope,
    err: &BrokerError,
) -> Result<(), RelayError> {
    let error = ErrorChain(err).to_string();
    let failures: i32 = fixed(
        "UPDATE task_outbox SET publish_failures = publish_failures + 1, last_error = $2 \
         WHERE id = $1 RETURNING publish_failures",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(&error)
    .get_result::<Failures>(conn)
    .await?
    .publish_failures;
    if failures < MAX_PUBLISH_FAILURES && !err.is_final() {
        tracing::warn!(task = %envelope.task, task_id = %envelope.id, failures, error, "task relay: the broker refused a task; the others go on");
        return Ok(());
    }
    set_aside(conn, id, envelope, &error).await
}

/// Moves row `id` to `task_outbox_dead` with `why` (replacing a record of the same task
/// set aside before and moved back), logged and counted for alerts.
async fn set_aside(
    conn: &mut AsyncPgConnection,
    id: i64,
    envelope: &Envelope,
    why: &str,
) -> Result<(), RelayError> {
    fixed(
        "WITH dead AS (DELETE FROM task_outbox WHERE id = $1 RETURNING *) \
         INSERT INTO task_outbox_dead \
           (id, task_id, task, queue, payload, enqueued_at, publish_failures, last_error) \
         SELECT id, task_id, task, queue, payload, enqueued_at, publish_failures, $2 \
         FROM dead \
         ON CONFLICT (task_id) DO UPDATE SET id = EXCLUDED.id, \
           publish_failures = EXCLUDED.publish_failures, last_error = EXCLUDED.last_error, \
           payload = EXCLUDED.payload, dead_at = now()",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(why)
    .execute(conn)
    .await?;
    counter!(TASK_OUTBOX_DEAD_LETTERED, "task" => envelope.task.clone()).increment(1);
    tracing::error!(
        task = %envelope.task, task_id = %envelope.id, reason = why,
        "task relay: a task that can't be published is set aside in task_outbox_dead"
    );
    Ok(())
}

#[derive(QueryableByName)]
struct Failures {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    publish_failures: i32,
}

/// Stops the relay (and its gauges) when dropped.
#[derive(Debug)]
pub struct RelayHandle {
    relaying: tokio::task::JoinHandle<()>,
    gauges: tokio::task::JoinHandle<()>,
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.relaying.abort();
        self.gauges.abort();
    }
}
