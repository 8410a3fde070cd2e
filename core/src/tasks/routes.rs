//! `GET /api/v1/admin/tasks` (`tasks:read`): what Flower shows the Python templates —
//! queue depths, consumers, dead letters, recent failures — plus the outbox backlog.

use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, OAuthScopes, Object, OpenApi, Tags};
use uuid::Uuid;

use super::{DeadLetter, Registry, Relay, RelayTarget};
use crate::ApiError;
use crate::auth::Auth;
use crate::http::problems::Problems;
use crate::problem_statuses;

/// Dead letters shown per queue.
const RECENT_PER_QUEUE: usize = 20;

problem_statuses!(TasksProblems = [401, 403, 503]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, OAuthScopes)]
pub enum TaskPermission {
    /// See background task queues, the outbox and failures.
    #[oai(rename = "tasks:read")]
    TasksRead,
}

#[derive(Debug, Tags)]
enum TaskTags {
    /// Background tasks.
    Tasks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum TaskBackend {
    /// RabbitMQ, run by keel-worker.
    Rabbitmq,
    /// Inside keel-api (no `AMQP_URL`).
    InProcess,
}

#[derive(Debug, Object)]
pub struct TasksOverview {
    pub backend: TaskBackend,
    pub outbox: OutboxOut,
    /// Per task queue; empty without a broker.
    pub queues: Vec<QueueOut>,
    /// Tasks given up on, newest known first: the dead letters at the head of each
    /// queue (with a broker), or the last ones this process gave up (without).
    pub recent_failures: Vec<FailureOut>,
}

#[derive(Debug, Object)]
pub struct OutboxOut {
    /// Committed tasks the relay has not handed on yet.
    pub waiting: u64,
    pub oldest_age_seconds: f64,
}

#[derive(Debug, Object)]
pub struct QueueOut {
    pub queue: String,
    /// Messages ready to run.
    pub ready: u32,
    pub consumers: u32,
    pub dead: u32,
}

#[derive(Debug, Object)]
pub struct FailureOut {
    pub queue: String,
    pub task: String,
    pub task_id: Option<Uuid>,
    pub attempts: i64,
    pub error: String,
    pub failed_at: Option<DateTime<Utc>>,
}

impl FailureOut {
    fn from_letter(queue: &str, letter: DeadLetter) -> Self {
        Self {
            queue: queue.to_owned(),
            task: letter
                .envelope
                .as_ref()
                .map_or_else(|| "(not a task)".to_owned(), |e| e.task.clone()),
            task_id: letter.envelope.as_ref().map(|e| e.id),
            attempts: letter.attempts,
            error: letter.error,
            failed_at: DateTime::parse_from_rfc3339(&letter.failed_at)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
        }
    }
}

/// The monitoring operation; keel-app mounts it with the relay and registry it runs.
#[derive(Debug, Clone)]
pub struct TasksApi {
    relay: Relay,
    queues: Vec<&'static str>,
}

impl TasksApi {
    pub fn new(relay: Relay, registry: &Registry) -> Self {
        Self {
            relay,
            queues: registry.queues(),
        }
    }
}

#[OpenApi(prefix_path = "/admin", tag = "TaskTags::Tasks")]
impl TasksApi {
    /// Task queues
    ///
    /// Outbox backlog, per-queue depth, consumers and dead letters, and recent failures
    /// with their error. With the broker down this answers 503; the outbox keeps the
    /// tasks meanwhile.
    #[oai(path = "/tasks", method = "get", operation_id = "tasks_overview")]
    async fn overview(
        &self,
        #[oai(scope = "TaskPermission::TasksRead")] _auth: Auth,
    ) -> Result<Json<TasksOverview>, Problems<TasksProblems>> {
        let (waiting, oldest) = self
            .relay
            .backlog()
            .await
            .map_err(|err| unreachable("the database", &err))?;
        let outbox = OutboxOut {
            waiting,
            oldest_age_seconds: oldest.as_secs_f64(),
        };
        let overview = match self.relay.target() {
            RelayTarget::Broker(broker) => {
                let unavailable = |err| unreachable("the task broker", &err);
                let stats = broker.stats(&self.queues).await.map_err(unavailable)?;
                let mut failures = Vec::new();
                for queue in &self.queues {
                    let letters = broker
                        .dead_letters(queue, RECENT_PER_QUEUE)
                        .await
                        .map_err(unavailable)?;
                    failures.extend(
                        letters
                            .into_iter()
                            .map(|l| FailureOut::from_letter(queue, l)),
                    );
                }
                failures.sort_by_key(|f| std::cmp::Reverse(f.failed_at));
                TasksOverview {
                    backend: TaskBackend::Rabbitmq,
                    outbox,
                    queues: stats
                        .into_iter()
                        .map(|s| QueueOut {
                            queue: s.queue,
                            ready: s.ready,
                            consumers: s.consumers,
                            dead: s.dead,
                        })
                        .collect(),
                    recent_failures: failures,
                }
            }
            RelayTarget::Local(runner) => TasksOverview {
                backend: TaskBackend::InProcess,
                outbox,
                queues: Vec::new(),
                recent_failures: runner
                    .recent_dead()
                    .into_iter()
                    .map(|dead| FailureOut {
                        queue: dead.envelope.queue.clone(),
                        task: dead.envelope.task.clone(),
                        task_id: Some(dead.envelope.id),
                        attempts: i64::from(dead.envelope.attempt),
                        error: dead.error,
                        failed_at: Some(dead.at),
                    })
                    .collect(),
            },
        };
        Ok(Json(overview))
    }
}

/// A 503 naming what is down; the cause goes to the log, not to the client.
fn unreachable(what: &str, err: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %err, "tasks overview: {what} is unreachable");
    ApiError::unavailable(format!("{what} is unreachable"))
}
