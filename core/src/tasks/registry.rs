//! Every task this process knows, by name, and running one of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use metrics::{counter, histogram};
use uuid::Uuid;

use super::periodic::{Job, Periodic};
use super::{Envelope, RetryPolicy, Task, TaskContext, TaskError};
use crate::telemetry::metrics::{TASK_DURATION, TASKS_FAILED, TASKS_SUCCEEDED};

/// Decodes a payload and runs it with the services registered for its task.
type RunFn = Arc<
    dyn Fn(serde_json::Value, Uuid, u32) -> BoxFuture<'static, Result<(), TaskError>> + Send + Sync,
>;

/// Called once a task is given up on (dead-lettered) with the task and the last
/// error, e.g. to record it in the audit trail.
pub type DeadLetterHook = Arc<dyn Fn(Envelope, String) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
struct Handler {
    name: &'static str,
    queue: &'static str,
    policy: RetryPolicy,
    timeout: Duration,
    run: RunFn,
}

/// The tasks of every feature, registered in one place (keel-app) and shared by the API
/// and the worker.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Handler>,
    jobs: Vec<Job>,
    on_dead: Vec<DeadLetterHook>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("Registry").field("tasks", &names).finish()
    }
}

/// What became of one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    /// Publish `next` after `delay`.
    Retry {
        next: Envelope,
        delay: Duration,
        error: String,
    },
    /// Given up: a permanent error, the last attempt, or a task nobody here knows.
    Dead {
        error: String,
    },
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `T`, run with `services`. Two tasks with one name are a programming error,
    /// refused at start.
    ///
    /// # Panics
    /// If a task with `T::NAME` is already registered.
    pub fn register<T: Task>(&mut self, services: T::Services) -> &mut Self {
        let run: RunFn = Arc::new(move |payload, task_id, attempt| {
            let ctx = TaskContext::new::<T>(services.clone(), task_id, attempt);
            Box::pin(run_typed::<T>(payload, ctx))
        });
        let handler = Handler {
            name: T::NAME,
            queue: T::QUEUE,
            policy: T::retry_policy(),
            timeout: T::TIMEOUT,
            run,
        };
        let previous = self.handlers.insert(T::NAME, handler);
        assert!(previous.is_none(), "two tasks are named {:?}", T::NAME);
        self
    }

    /// Adds `T` and schedules it (see [`Periodic`]).
    ///
    /// # Panics
    /// As [`Registry::register`], or if `T::SCHEDULE` is not a cron expression.
    pub fn register_periodic<T: Periodic>(&mut self, services: T::Services) -> &mut Self {
        self.register::<T>(services);
        self.jobs.push(Job::of::<T>());
        self
    }

    /// The periodic jobs, for a [`super::Scheduler`].
    pub fn periodic_jobs(&self) -> Vec<Job> {
        self.jobs.clone()
    }

    /// Runs `hook` whenever a task is dead-lettered (after the hooks added before it).
    pub fn on_dead_letter(&mut self, hook: DeadLetterHook) -> &mut Self {
        self.on_dead.push(hook);
        self
    }

    /// Runs every dead-letter hook for `envelope`, given up on with `error`, in turn.
    pub async fn dead_lettered(&self, envelope: &Envelope, error: &str) {
        for hook in &self.on_dead {
            hook(envelope.clone(), error.to_owned()).await;
        }
    }

    /// The queues of the registered tasks, sorted.
    pub fn queues(&self) -> Vec<&'static str> {
        let mut queues: Vec<_> = self.handlers.values().map(|h| h.queue).collect();
        queues.sort_unstable();
        queues.dedup();
        queues
    }

    pub fn task_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.handlers.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Runs the task `envelope` carries, a panic included, and says what to do next.
    pub async fn run(&self, envelope: &Envelope) -> Outcome {
        let Some(handler) = self.handlers.get(envelope.task.as_str()).cloned() else {
            counter!(TASKS_FAILED, "task" => envelope.task.clone()).increment(1);
            return Outcome::Dead {
                error: format!("no task named {:?} is registered", envelope.task),
            };
        };
        let started = Instant::now();
        // Its own tokio task, so a panic ends that task, not the worker.
        let run = (handler.run)(envelope.payload.clone(), envelope.id, envelope.attempt);
        let mut running = AbortOnDrop(tokio::spawn(run));
        let joined = tokio::time::timeout(handler.timeout, &mut running.0).await;
        histogram!(TASK_DURATION, "task" => handler.name).record(started.elapsed().as_secs_f64());
        let error = match joined {
            Ok(Ok(Ok(()))) => {
                counter!(TASKS_SUCCEEDED, "task" => handler.name).increment(1);
                return Outcome::Succeeded;
            }
            Ok(Ok(Err(error))) => error,
            Ok(Err(join)) if join.is_panic() => {
                TaskError::retry(format!("the handler panicked: {}", panic_text(join)))
            }
            Ok(Err(_)) => TaskError::retry("the handler was cancelled"),
            Err(_) => TaskError::retry(format!("timed out after {:?}", handler.timeout)),
        };
        counter!(TASKS_FAILED, "task" => handler.name).increment(1);
        tracing::warn!(
            task = handler.name, task_id = %envelope.id, attempt = envelope.attempt,
            error = %error, "task failed"
        );
        if error.is_retryable() && handler.policy.allows_another(envelope.attempt) {
            Outcome::Retry {
                next: envelope.next_attempt(),
                delay: handler.policy.delay_before(envelope.attempt + 1),
                error: error.message().to_owned(),
            }
        } else {
            Outcome::Dead {
                error: error.message().to_owned(),
            }
        }
    }
}

async fn run_typed<T: Task>(
    payload: serde_json::Value,
    ctx: TaskContext<T::Services>,
) -> Result<(), TaskError> {
    let task: T = serde_json::from_value(payload)
        .map_err(|err| TaskError::permanent(format!("the payload does not decode: {err}")))?;
    task.run(ctx).await
}

/// The handler's own tokio task, aborted when the run is dropped: at its timeout, or
/// when a stopping worker gives up on it (the message is redelivered; the handler must
/// not go on beside the redelivered copy).
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), TaskError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    let panic = join.into_panic();
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
