//! `AMQP_*`, `TASK_*`, `WORKER_PORT`: the broker, and how workers consume.

use std::time::Duration;

use super::Secret;
use super::reader::Reader;

#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// `None`: tasks run in the API process (see `tasks::local`), not durably.
    pub amqp_url: Option<Secret>,
    /// Starts every queue name, so several apps (or test runs) can share a broker.
    pub queue_prefix: String,
    /// Messages a worker holds unacknowledged at once: how many tasks it runs together.
    pub prefetch: u16,
    /// Declare quorum queues (replicated, for a RabbitMQ cluster) instead of classic ones.
    pub quorum_queues: bool,
    /// Longest wait to connect to RabbitMQ or for a publisher confirm.
    pub broker_timeout: Duration,
    /// How long a stopping worker lets running tasks finish before it exits.
    pub shutdown_grace: Duration,
    /// Outbox rows the relay publishes per transaction.
    pub relay_batch: u32,
    /// Where keel-worker serves `/health/*` and `/metrics` (on `APP_HOST`).
    pub worker_port: u16,
}

impl TaskSettings {
    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        Self {
            amqp_url: r.url(
                "AMQP_URL",
                &["amqp", "amqps"],
                "amqp://guest:guest@localhost:5672/%2f",
            ),
            queue_prefix: r.name_prefix("TASK_QUEUE_PREFIX"),
            prefetch: r.parse_where(
                "TASK_PREFETCH",
                32,
                "32",
                |n: &u16| *n >= 1,
                "must be between 1 and 65535",
            ),
            quorum_queues: r.parse("TASK_QUORUM_QUEUES", false, "true"),
            broker_timeout: r.duration_within(
                "AMQP_TIMEOUT",
                Duration::from_secs(5),
                "5s",
                Duration::from_millis(100)..=Duration::from_secs(60),
            ),
            shutdown_grace: r.duration_within(
                "TASK_SHUTDOWN_GRACE",
                Duration::from_secs(30),
                "30s",
                Duration::ZERO..=Duration::from_secs(3600),
            ),
            relay_batch: r.parse_where(
                "TASK_RELAY_BATCH",
                500,
                "500",
                |n: &u32| (1..=10_000).contains(n),
                "must be between 1 and 10000",
            ),
            // 0: any free port, logged at start (several workers on one host).
            worker_port: r.parse("WORKER_PORT", 8001, "8001"),
        }
    }
}
