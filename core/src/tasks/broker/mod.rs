//! RabbitMQ: publishing with confirms ([`Broker`]), the queues a task queue is made of
//! ([`topology`]) and what operators do with dead letters ([`admin`]).
//!
//! For each task queue `Q` (names start with `TASK_QUEUE_PREFIX`):
//! - `{prefix}.Q`: the work queue workers consume;
//! - `{prefix}.Q.delay.{N}s`: where a failed task waits before its next run. Its
//!   messages expire after their own backoff and are dead-lettered back to the work
//!   queue. A queue expires only its oldest message, so waits are sorted into tiers of
//!   powers of two (a wait of 5 s goes to the 4 s tier): a message never waits behind
//!   one more than twice its own wait;
//! - `{prefix}.Q.dead`: tasks given up on, with the last error and the attempts in the
//!   `x-keel-error` and `x-keel-attempts` headers.
//!
//! Everything is durable and every message persistent; with `TASK_QUORUM_QUEUES` the
//! queues are quorum queues (replicated in a RabbitMQ cluster).

mod admin;
mod topology;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use metrics::counter;
use tokio::sync::Mutex;

pub use admin::{DeadLetter, QueueStats};
pub use topology::Topology;

use self::topology::short;
use super::Envelope;
use crate::health::{Check, CheckError};
use crate::settings::{Secret, TaskSettings};
use crate::telemetry::metrics::{TASKS_DEAD_LETTERED, TASKS_PUBLISHED, TASKS_RETRIED};

/// The longest an error text in a dead letter's header gets.
const MAX_ERROR_HEADER: usize = 2000;
/// The largest task a message carries: RabbitMQ 4's default `max_message_size`. A larger
/// one is refused before anything of its batch is sent.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("rabbitmq: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("no answer from rabbitmq within {0:?}")]
    Timeout(Duration),
    #[error("rabbitmq refused the message (nack)")]
    Nacked,
    #[error("rabbitmq could not route the message to queue {0:?}")]
    Unroutable(String),
    #[error("{0:?} is not a valid queue name")]
    BadName(String),
    #[error("the task is {0} bytes; a message carries at most {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// RabbitMQ refused the arguments keel declares the queue with: most often it
    /// exists with others.
    #[error(
        "rabbitmq refused the arguments of queue {queue:?} ({reply}); if it exists with \
         other arguments (an earlier keel's, or the other TASK_QUORUM_QUEUES), move its \
         messages and delete it, see docs/tasks.md (\"Queue arguments\")"
    )]
    Inequivalent { queue: String, reply: String },
    /// The broker won't declare the queue as this keel asks (it exists with other
    /// arguments, permissions, a node down): every message for it waits, none is to blame.
    #[error("rabbitmq refused to declare queue {queue:?}: {source}")]
    Declare {
        queue: String,
        #[source]
        source: Box<BrokerError>,
    },
}

impl BrokerError {
    /// Whether the broker refused this message for what it is (a channel error on its
    /// publish, a name it can't carry): another message may well pass. A refusal of a
    /// whole queue (not declared, not routable) or of everything (a nack under a
    /// resource alarm, a lost connection, no answer) is not.
    pub fn is_about_the_message(&self) -> bool {
        match self {
            Self::BadName(_) | Self::TooLarge(_) => true,
            Self::Amqp(err) => err.is_amqp_soft_error(),
            Self::Timeout(_)
            | Self::Nacked
            | Self::Unroutable(_)
            | Self::Declare { .. }
            | Self::Inequivalent { .. } => false,
        }
    }

    /// Whether no later attempt can pass: the message itself is over the limit.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::TooLarge(_))
    }
}

/// A publishing connection: opened on first use, reopened after any failure.
#[derive(Debug)]
pub struct Broker {
    url: Secret,
    topology: Topology,
    timeout: Duration,
    link: Mutex<Option<Link>>,
}

#[derive(Debug)]
struct Link {
    _conn: Connection,
    channel: Channel,
    declared: HashSet<String>,
}

/// Where one message goes and what it carries besides the envelope.
enum Route<'a> {
    Work,
    Delay(Duration),
    Dead { error: &'a str },
}

impl Broker {
    pub fn new(settings: &TaskSettings, url: &Secret) -> Self {
        Self {
            url: url.clone(),
            topology: Topology::new(&settings.queue_prefix, settings.quorum_queues),
            timeout: settings.broker_timeout,
            link: Mutex::new(None),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A new connection of its own (a consumer, an admin command); bounded by the
    /// broker timeout. `name` shows in RabbitMQ's connection list.
    pub async fn connect(&self, name: &str) -> Result<Connection, BrokerError> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        tokio::time::timeout(
            self.timeout,
            Connection::connect(self.url.expose(), properties),
        )
        .await
        .map_err(|_| BrokerError::Timeout(self.timeout))?
        .map_err(BrokerError::from)
    }

    /// Publishes `envelopes` to their work queues and waits for every confirm.
    pub async fn publish(&self, envelopes: &[Envelope]) -> Result<(), BrokerError> {
        let messages: Vec<_> = envelopes.iter().map(|e| (e, Route::Work)).collect();
        self.send(messages).await?;
        for envelope in envelopes {
            counter!(TASKS_PUBLISHED, "task" => envelope.task.clone()).increment(1);
        }
        Ok(())
    }

    /// Publishes `next` to wait `delay` before its run.
    pub async fn retry(&self, next: &Envelope, delay: Duration) -> Result<(), BrokerError> {
        self.send(vec![(next, Route::Delay(delay))]).await?;
        counter!(TASKS_RETRIED, "task" => next.task.clone()).increment(1);
        Ok(())
    }

    /// Publishes `envelope` to its queue's dead letters with `error`.
    pub async fn dead_letter(&self, envelope: &Envelope, error: &str) -> Result<(), BrokerError> {
        self.send(vec![(envelope, Route::Dead { error })]).await?;
        counter!(TASKS_DEAD_LETTERED, "task" => envelope.task.clone()).increment(1);
        Ok(())
    }

    async fn send(&self, messages: Vec<(&Envelope, Route<'_>)>) -> Result<(), BrokerError> {
        let mut link = self.link.lock().await;
        let sent = tokio::time::timeout(self.timeout * 4, async {
            let link = match link.take() {
                Some(open) => link.insert(open),
                None => link.insert(self.open().await?),
            };
            // Every message sized and every queue declared before any message goes: a
            // message too large, or a queue the broker refuses to declare, then sends
            // nothing, rather than part of the batch.
            let mut routed = Vec::with_capacity(messages.len());
            for (envelope, route) in messages {
                let body = envelope.to_bytes();
                if body.len() > MAX_MESSAGE_BYTES {
                    return Err(BrokerError::TooLarge(body.len()));
                }
                routed.push((body, self.route(link, envelope, &route).await?));
            }
            let mut confirms = Vec::new();
            for (body, (queue, properties)) in routed {
                let confirm = link
                    .channel
                    .basic_publish(
                        "".into(),
                        short(&queue)?,
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        properties,
                    )
                    .await?;
                confirms.push((queue, confirm));
            }
            for (queue, confirm) in confirms {
                match confirm.await? {
                    Confirmation::Ack(None) | Confirmation::NotRequested => {}
                    Confirmation::Ack(Some(_)) => return Err(BrokerError::Unroutable(queue)),
                    Confirmation::Nack(_) => return Err(BrokerError::Nacked),
                }
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(BrokerError::Timeout(self.timeout * 4)));
        if sent.is_err() {
            *link = None; // reopened (and re-declared) by the next send
        }
        sent
    }

    async fn open(&self) -> Result<Link, BrokerError> {
        let conn = self.connect("keel-publisher").await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Link {
            _conn: conn,
            channel,
            declared: HashSet::new(),
        })
    }

    /// The queue a message goes to, declared on first use, and its properties.
    async fn route(
        &self,
        link: &mut Link,
        envelope: &Envelope,
        route: &Route<'_>,
    ) -> Result<(String, BasicProperties), BrokerError> {
        let queue = envelope.queue.as_str();
        if !link.declared.contains(queue) {
            let declared = self.topology.declare(&link.channel, queue).await;
            declared.map_err(|source| BrokerError::Declare {
                queue: queue.to_owned(),
                source: Box::new(source),
            })?;
            link.declared.insert(queue.to_owned());
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into())
            .with_message_id(short(&envelope.id.to_string())?)
            .with_type(short(&envelope.task).unwrap_or_else(|_| "task".into()))
            .with_timestamp(u64::try_from(envelope.enqueued_at.timestamp()).unwrap_or(0));
        let target = match route {
            Route::Work => self.topology.work(queue),
            Route::Delay(delay) => {
                // Declared once per connection, like the work queues.
                let target = self.topology.delay(queue, Topology::tier(*delay));
                if !link.declared.contains(&target) {
                    self.topology
                        .declare_delay(&link.channel, queue, &target)
                        .await?;
                    link.declared.insert(target.clone());
                }
                let millis = delay.as_millis().max(1).to_string();
                properties = properties.with_expiration(millis.as_str().into());
                target
            }
            Route::Dead { error } => {
                let mut headers = FieldTable::default();
                let error: String = error.chars().take(MAX_ERROR_HEADER).collect();
                headers.insert(
                    "x-keel-error".into(),
                    AMQPValue::LongString(LongString::from(error)),
                );
                headers.insert(
                    "x-keel-attempts".into(),
                    AMQPValue::LongLongInt(i64::from(envelope.attempt)),
                );
                headers.insert(
                    "x-keel-failed-at".into(),
                    AMQPValue::LongString(chrono::Utc::now().to_rfc3339().into()),
                );
                properties = properties.with_headers(headers);
                self.topology.dead(queue)
            }
        };
        Ok((target, properties))
    }

    /// Whether the publishing connection is up, opening it if not.
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let mut link = self.link.lock().await;
        if link
            .as_ref()
            .is_some_and(|l| l.channel.status().connected())
        {
            return Ok(());
        }
        let opened = tokio::time::timeout(self.timeout, self.open())
            .await
            .map_err(|_| BrokerError::Timeout(self.timeout))?;
        *link = Some(opened?);
        Ok(())
    }
}

impl Check for Arc<Broker> {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move { Ok(self.ping().await?) })
    }
}
