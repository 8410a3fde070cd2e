//! Consuming: run each delivered task, ack only once it is settled (succeeded, or
//! re-published for a retry or to the dead letters), survive broker restarts, and drain
//! on shutdown.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use metrics::gauge;
use tokio::task::JoinSet;

use super::{Broker, BrokerError, Envelope, Outcome, Registry};
use crate::health::{Check, CheckError};
use crate::telemetry::metrics::TASK_WORKER_CONNECTED;
use crate::telemetry::outage::Outage;
use futures_util::future::BoxFuture;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest pause between reconnection attempts: low, so a worker consumes again
/// within about this long of the broker's return (an attempt is one TCP connect).
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const WHAT: &str = "worker (tasks wait in their queues)";
/// How long a session must last before a reconnection after it starts with short pauses.
const STABLE: Duration = Duration::from_secs(10);
/// Before a message that could not be settled goes back to its queue.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Consumes the queues of the registered tasks.
#[derive(Debug, Clone)]
pub struct Worker {
    broker: Arc<Broker>,
    registry: Arc<Registry>,
    prefetch: u16,
    grace: Duration,
    consuming: Consuming,
}

/// keel-worker's readiness: up while the worker consumes, that is holds an open session
/// on the broker with its consumers started. A broker that answers while the worker
/// still waits out a reconnection pause is not enough.
#[derive(Debug, Clone, Default)]
pub struct Consuming(Arc<AtomicBool>);

impl Consuming {
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, up: bool) {
        self.0.store(up, Ordering::SeqCst);
        gauge!(TASK_WORKER_CONNECTED).set(if up { 1.0 } else { 0.0 });
    }
}

impl Check for Consuming {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        let up = self.is_up();
        Box::pin(async move {
            if up {
                Ok(())
            } else {
                Err("not consuming: the broker is unreachable or the worker is reconnecting".into())
            }
        })
    }
}

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStopped {
    /// Whether every running task finished within the grace period (the others are
    /// redelivered to another worker).
    pub drained: bool,
}

struct Session {
    conn: Connection,
    channel: Channel,
    tags: Vec<String>,
    deliveries: SelectAll<Consumer>,
}

enum Ended {
    Shutdown,
    Lost(String),
}

impl Worker {
    pub fn new(
        broker: Arc<Broker>,
        registry: Arc<Registry>,
        prefetch: u16,
        grace: Duration,
    ) -> Self {
        Self {
            broker,
            registry,
            prefetch,
            grace,
            consuming: Consuming::default(),
        }
    }

    /// Whether the worker is consuming: its readiness check.
    pub fn consuming(&self) -> Consuming {
        self.consuming.clone()
    }

    /// Consumes until `shutdown` resolves, reconnecting (and re-declaring the queues)
    /// with backoff whenever the broker connection is lost. On shutdown it stops taking
    /// messages and gives running tasks the grace period to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> WorkerStopped {
        let mut shutdown = pin!(shutdown);
        let mut running = JoinSet::new();
        let mut backoff = BACKOFF_MIN;
        let mut outage = Outage::default();
        loop {
            let session = tokio::select! {
                () = &mut shutdown => return self.drain(None, running).await,
                opened = self.open() => opened,
            };
            let mut session = match session {
                Ok(session) => session,
                Err(err) => {
                    outage.failed(WHAT, &crate::error::ErrorChain(&err));
                    tokio::select! {
                        () = &mut shutdown => return self.drain(None, running).await,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let opened = tokio::time::Instant::now();
            self.consuming.set(true);
            if !outage.recovered(WHAT) {
                tracing::info!(queues = ?self.registry.queues(), prefetch = self.prefetch, "worker: consuming");
            }
            let ended = loop {
                // At most `prefetch` runs at once, counting those of a lost session that
                // are still finishing: deliveries beyond wait in the consumer's buffer.
                let room = running.len() < usize::from(self.prefetch);
                tokio::select! {
                    () = &mut shutdown => break Ended::Shutdown,
                    delivery = session.deliveries.next(), if room => match delivery {
                        Some(Ok(delivery)) => {
                            running.spawn(self.clone().settle(delivery));
                        }
                        Some(Err(err)) => break Ended::Lost(err.to_string()),
                        None => break Ended::Lost("the broker cancelled the consumers".to_owned()),
                    },
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            };
            self.consuming.set(false);
            match ended {
                Ended::Shutdown => return self.drain(Some(session), running).await,
                Ended::Lost(reason) => {
                    // Tasks still running can't ack on the lost channel: the broker
                    // redelivers them, so they may run twice (handlers are idempotent).
                    outage.failed(WHAT, &reason);
                    // A session that lasted starts the pauses over; one that died at once
                    // (a broker that accepts, then drops) keeps them growing.
                    if opened.elapsed() >= STABLE {
                        backoff = BACKOFF_MIN;
                    }
                    tokio::select! {
                        () = &mut shutdown => return self.drain(None, running).await,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn open(&self) -> Result<Session, BrokerError> {
        let conn = self.broker.connect("keel-worker").await?;
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let mut deliveries = SelectAll::new();
        let mut tags = Vec::new();
        for queue in self.registry.queues() {
            let topology = self.broker.topology();
            topology.declare(&channel, queue).await?;
            let tag = format!("keel-worker-{}-{queue}", uuid::Uuid::now_v7().simple());
            let consumer = channel
                .basic_consume(
                    topology.work(queue).as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            deliveries.push(consumer);
            tags.push(tag);
        }
        Ok(Session {
            conn,
            channel,
            tags,
            deliveries,
        })
    }

    /// Runs the task, then acks once its outcome is safe with the broker.
    async fn settle(self, delivery: Delivery) {
        let envelope = match Envelope::from_bytes(&delivery.data) {
            Ok(envelope) => envelope,
            Err(err) => {
                // Not ours (or corrupt): kept in the dead letters of the queue it came
                // from, as text, rather than dropped.
                let queue = self.queue_of(&delivery);
                let kept = Envelope {
                    id: uuid::Uuid::now_v7(),
                    task: "(undecodable)".to_owned(),
                    queue,
                    attempt: 1,
                    enqueued_at: chrono::Utc::now(),
                    payload: String::from_utf8_lossy(&delivery.data).into_owned().into(),
                }
                .dead_letter_with(&self, &err)
                .await;
                self.finish(&delivery, kept).await;
                return;
            }
        };
        let settled = match self.registry.run(&envelope).await {
            Outcome::Succeeded => Ok(()),
            Outcome::Retry { next, delay, .. } => self.broker.retry(&next, delay).await,
            Outcome::Dead { error } => envelope.dead_letter_with(&self, &error).await,
        };
        self.finish(&delivery, settled).await;
    }

    /// Acks a settled delivery; one whose outcome could not be published goes back to
    /// its queue (after a pause, so a broker refusing publishes isn't hammered).
    async fn finish(&self, delivery: &Delivery, settled: Result<(), BrokerError>) {
        match settled {
            Ok(()) => {
                if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::debug!(error = %err, "worker: ack lost; the task will be redelivered");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "worker: could not re-publish a failed task; it goes back to its queue");
                tokio::time::sleep(REQUEUE_PAUSE).await;
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                let _ = delivery.nack(requeue).await;
            }
        }
    }

    /// The task queue a delivery came from (its routing key without the prefix).
    fn queue_of(&self, delivery: &Delivery) -> String {
        let work = delivery.routing_key.as_str();
        self.registry
            .queues()
            .into_iter()
            .find(|q| self.broker.topology().work(q) == work)
            .unwrap_or("default")
            .to_owned()
    }

    /// Stops consuming, waits up to the grace period for running tasks, then closes.
    async fn drain(&self, session: Option<Session>, mut running: JoinSet<()>) -> WorkerStopped {
        if let Some(session) = &session {
            for tag in &session.tags {
                let _ = session
                    .channel
                    .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await;
            }
        }
        tracing::info!(running = running.len(), grace = ?self.grace, "worker: stopping; finishing running tasks");
        let drained = tokio::time::timeout(self.grace, async {
            while running.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                left = running.len(),
                "worker: grace period over; unfinished tasks will be redelivered"
            );
            running.abort_all();
        }
        if let Some(session) = session {
            let _ = session.conn.close(200, "worker stopping".into()).await;
        }
        WorkerStopped { drained }
    }
}

impl Envelope {
    async fn dead_letter_with(&self, worker: &Worker, error: &str) -> Result<(), BrokerError> {
        worker.broker.dead_letter(self, error).await?;
        worker.registry.dead_lettered(self, error).await;
        Ok(())
    }
}
