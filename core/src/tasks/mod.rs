//! Background tasks: declared by features, enqueued in the business transaction, run by
//! `keel-worker` with retries and dead letters.
//!
//! - A feature declares a task as a serde payload type implementing [`Task`] (a stable
//!   name, a queue, a retry policy, an async handler); keel-app registers every task in
//!   one [`Registry`], used by the API (to run them in-process without a broker) and by
//!   the worker.
//! - A service enqueues with its transaction connection ([`enqueue`]): the task is a row
//!   of the `task_outbox` table, so it exists if and only if the change commits.
//! - The [`Relay`] (in every keel-api) hands committed rows to the broker with publisher
//!   confirms and deletes them once confirmed; several relays share the work
//!   (`FOR UPDATE SKIP LOCKED`). Without `AMQP_URL` it runs them in this process instead
//!   (see [`local`]).
//! - The [`Worker`] consumes, acks after the handler succeeds, re-publishes a failure to
//!   a delay queue until its attempts run out, then to the queue's dead letters.
//!
//! Delivery is at least once: a handler may run again after a crash or a lost ack, so
//! handlers are idempotent (the task id, [`TaskContext::task_id`], is stable across
//! retries and redeliveries).

mod broker;
mod effect;
mod envelope;
pub mod local;
mod outbox;
pub mod periodic;
mod registry;
mod retry;
pub mod routes;
mod system;
mod worker;

use std::future::Future;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::db::fixed;

pub use broker::{Broker, BrokerError, DeadLetter, MAX_MESSAGE_BYTES, QueueStats, Topology};
pub use effect::{Earlier, Effect, Ran};
pub use envelope::Envelope;
pub use outbox::{Relay, RelayError, RelayHandle, RelayTarget, enqueue};
pub use periodic::{Missed, Periodic, Scheduler, SchedulerHandle};
pub use registry::{DeadLetterHook, Outcome, Registry};
pub use retry::RetryPolicy;
pub use system::{Ping, PurgeTasksDone};
pub use worker::{Worker, WorkerStopped};

/// A kind of background work: the payload is the task itself.
///
/// `NAME` is what the queue carries, so it must stay the same across releases (rename
/// the type freely, never the name, while messages with it may be queued).
pub trait Task: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable and unique among the registered tasks, e.g. `"user.send_welcome_email"`.
    const NAME: &'static str;
    /// The queue it is published to; workers consume the queues of the tasks they know.
    const QUEUE: &'static str = "default";
    /// How long one run may take: past it the run is cancelled (at its next `.await`)
    /// and counted as a retryable failure, freeing its worker slot instead of holding it
    /// until the broker redelivers the task while it still runs. Keep it under
    /// RabbitMQ's `consumer_timeout` (30 minutes by default).
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

    /// What the handler runs with: its feature's service (or whatever it needs),
    /// handed to [`Registry::register`] when the feature registers the task.
    type Services: Clone + Send + Sync + 'static;

    /// How often and how patiently a failure is retried.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Does the work. An `Err` is retried unless it is [`TaskError::permanent`] or the
    /// attempts are used up; a panic counts as a retryable failure.
    fn run(
        self,
        ctx: TaskContext<Self::Services>,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// Why a run failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    message: String,
    retryable: bool,
}

impl TaskError {
    /// A failure that may pass on a later attempt (a service down, a timeout).
    pub fn retry(err: impl std::fmt::Display) -> Self {
        Self {
            message: err.to_string(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (bad payload, a row that no longer exists): the task
    /// goes straight to the dead letters.
    pub fn permanent(err: impl std::fmt::Display) -> Self {
        Self {
            message: err.to_string(),
            retryable: false,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a handler runs with (`services`, the task's [`Task::Services`]) and which run
/// this is.
#[derive(Debug, Clone)]
pub struct TaskContext<S> {
    pub services: S,
    task: &'static str,
    task_id: Uuid,
    attempt: u32,
    /// The task's [`Task::TIMEOUT`]: no run of it lives longer.
    timeout: std::time::Duration,
}

impl<S> TaskContext<S> {
    /// A context for running task `T` directly (tests, a one-off command).
    pub fn new<T: Task<Services = S>>(services: S, task_id: Uuid, attempt: u32) -> Self {
        Self {
            services,
            task: T::NAME,
            task_id,
            attempt,
            timeout: T::TIMEOUT,
        }
    }

    /// The same for every attempt and redelivery of one enqueued task: the key to make
    /// a handler idempotent.
    pub fn task_id(&self) -> Uuid {
        self.task_id
    }

    /// 1 on the first run.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// This task's effect outside the database (an email): started once however often
    /// the task runs, again only if the run that started it died without a word, and
    /// always under an id stable across its runs.
    pub fn effect(&self) -> Effect {
        Effect::new(self.task, self.task_id, self.timeout)
    }

    /// Claims this task id on `conn`, which must be the transaction holding the
    /// handler's database effects: `true` the first time, `false` when a committed run
    /// already claimed it (a redelivery or a duplicate publish) — then do nothing.
    /// Effects outside the database (an email) can't join the transaction: run them
    /// through [`TaskContext::effect`] instead.
    pub async fn claim(&self, conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
        let claimed =
            fixed("INSERT INTO tasks_done (task_id, task) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind::<diesel::sql_types::Uuid, _>(self.task_id)
                .bind::<diesel::sql_types::Text, _>(&self.task)
                .execute(conn)
                .await?;
        Ok(claimed == 1)
    }
}
