//! RabbitMQ: the queues a task queue is made of, and publishing with confirms.
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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use metrics::counter;
use tokio::sync::Mutex;

use super::Envelope;
use crate::health::Check;
use crate::settings::{Secret, TaskSettings};
use crate::telemetry::metrics::{TASKS_DEAD_LETTERED, TASKS_PUBLISHED, TASKS_RETRIED};

/// The longest wait tier: 2^16 s, about 18 hours.
const MAX_TIER_EXPONENT: u32 = 16;
/// The longest an error text in a dead letter's header gets.
const MAX_ERROR_HEADER: usize = 2000;

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
}

/// Queue names and arguments, from settings.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    quorum: bool,
}

impl Topology {
    pub fn new(prefix: &str, quorum: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            quorum,
        }
    }

    pub fn work(&self, queue: &str) -> String {
        format!("{}.{queue}", self.prefix)
    }

    pub fn dead(&self, queue: &str) -> String {
        format!("{}.{queue}.dead", self.prefix)
    }

    fn delay(&self, queue: &str, tier_secs: u64) -> String {
        format!("{}.{queue}.delay.{tier_secs}s", self.prefix)
    }

    /// The tier a wait of `delay` goes to, in seconds.
    fn tier(delay: Duration) -> u64 {
        let secs = delay.as_secs().max(1);
        let exponent = (u64::BITS - 1 - secs.leading_zeros()).min(MAX_TIER_EXPONENT);
        1 << exponent
    }

    fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if self.quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        args
    }

    /// Declares the work and dead-letter queues of `queue` (idempotent). A publishing
    /// link remembers what it declared under these names (and the delay tiers' own).
    pub(super) async fn declare(&self, channel: &Channel, queue: &str) -> Result<(), BrokerError> {
        for name in [self.work(queue), self.dead(queue)] {
            channel
                .queue_declare(short(&name)?, durable(), self.arguments())
                .await?;
        }
        Ok(())
    }

    /// Declares `name`, a delay tier of `queue` (idempotent).
    async fn declare_delay(
        &self,
        channel: &Channel,
        queue: &str,
        name: &str,
    ) -> Result<(), BrokerError> {
        let mut args = self.arguments();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.work(queue).into()),
        );
        channel.queue_declare(short(name)?, durable(), args).await?;
        Ok(())
    }

    /// Every queue of `queue` this topology may have made, for tests and teardown.
    pub fn all_queue_names(&self, queue: &str) -> Vec<String> {
        let mut names = vec![self.work(queue), self.dead(queue)];
        names.extend((0..=MAX_TIER_EXPONENT).map(|e| self.delay(queue, 1 << e)));
        names
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn short(name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name).map_err(|_| BrokerError::BadName(name.to_owned()))
}

/// A task given up on, as its dead letter tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// `None` when the message is not a task envelope.
    pub envelope: Option<Envelope>,
    pub error: String,
    pub attempts: i64,
    pub failed_at: String,
}

impl DeadLetter {
    fn read(delivery: &lapin::message::Delivery) -> Self {
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let text = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
            _ => String::new(),
        };
        let attempts = headers
            .inner()
            .get("x-keel-attempts")
            .and_then(AMQPValue::as_long_long_int)
            .unwrap_or(0);
        Self {
            envelope: Envelope::from_bytes(&delivery.data).ok(),
            error: text("x-keel-error"),
            attempts,
            failed_at: text("x-keel-failed-at"),
        }
    }
}

/// One queue's numbers, for monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: String,
    pub ready: u32,
    pub consumers: u32,
    pub dead: u32,
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
            let mut confirms = Vec::new();
            for (envelope, route) in messages {
                let (queue, properties) = self.route(link, envelope, &route).await?;
                let confirm = link
                    .channel
                    .basic_publish(
                        "".into(),
                        short(&queue)?,
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &envelope.to_bytes(),
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
            self.topology.declare(&link.channel, queue).await?;
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

    /// Depth, consumers and dead letters of each of `queues` (declaring them if new).
    pub async fn stats(&self, queues: &[&str]) -> Result<Vec<QueueStats>, BrokerError> {
        let conn = self.connect("keel-monitor").await?;
        let channel = conn.create_channel().await?;
        let mut stats = Vec::with_capacity(queues.len());
        for queue in queues {
            // Declaring (idempotent) answers with the counts.
            let work = channel
                .queue_declare(
                    short(&self.topology.work(queue))?,
                    durable(),
                    self.topology.arguments(),
                )
                .await?;
            let dead = channel
                .queue_declare(
                    short(&self.topology.dead(queue))?,
                    durable(),
                    self.topology.arguments(),
                )
                .await?;
            stats.push(QueueStats {
                queue: (*queue).to_owned(),
                ready: work.message_count(),
                consumers: work.consumer_count(),
                dead: dead.message_count(),
            });
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(stats)
    }

    /// Up to `limit` dead letters of `queue`, oldest first, left in place.
    pub async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let (conn, channel) = self.admin(queue).await?;
        let mut letters = Vec::new();
        while letters.len() < limit {
            // Unacked until the channel closes, which puts them all back.
            let Some(delivery) = self.next_dead(&channel, queue).await? else {
                break;
            };
            letters.push(DeadLetter::read(&delivery));
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(letters)
    }

    /// Moves up to `limit` dead letters of `queue` back to its work queue, each as a
    /// first attempt again (confirmed before it leaves the dead letters). Returns how
    /// many moved.
    pub async fn requeue_dead(&self, queue: &str, limit: usize) -> Result<usize, BrokerError> {
        let (conn, channel) = self.admin(queue).await?;
        let mut moved = 0;
        while moved < limit {
            let Some(delivery) = self.next_dead(&channel, queue).await? else {
                break;
            };
            match Envelope::from_bytes(&delivery.data) {
                Ok(envelope) => {
                    let again = Envelope {
                        attempt: 1,
                        ..envelope
                    };
                    self.publish(std::slice::from_ref(&again)).await?;
                    delivery.ack(BasicAckOptions::default()).await?;
                    moved += 1;
                }
                // Not a task: it stays where it is (and the loop stops, or it would
                // be fetched again and again).
                Err(_) => break,
            }
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(moved)
    }

    /// Drops every dead letter of `queue`; returns how many there were.
    pub async fn purge_dead(&self, queue: &str) -> Result<u32, BrokerError> {
        let (conn, channel) = self.admin(queue).await?;
        let purged = channel
            .queue_purge(
                short(&self.topology.dead(queue))?,
                QueuePurgeOptions::default(),
            )
            .await?;
        let _ = conn.close(200, "done".into()).await;
        Ok(purged)
    }

    /// A connection of its own for one operator command on `queue`, whose queues are
    /// declared first (so a queue nobody used yet reads as empty).
    async fn admin(&self, queue: &str) -> Result<(Connection, Channel), BrokerError> {
        let conn = self.connect("keel-admin").await?;
        let channel = conn.create_channel().await?;
        self.topology.declare(&channel, queue).await?;
        Ok((conn, channel))
    }

    /// The oldest dead letter of `queue`, unacknowledged.
    async fn next_dead(
        &self,
        channel: &Channel,
        queue: &str,
    ) -> Result<Option<lapin::message::Delivery>, BrokerError> {
        let dead = short(&self.topology.dead(queue))?;
        let message = channel.basic_get(dead, BasicGetOptions::default()).await?;
        Ok(message.map(|m| m.delivery))
    }

    /// Deletes every queue of `queue` (tests and teardown).
    pub async fn delete_queues(&self, queue: &str) -> Result<(), BrokerError> {
        let conn = self.connect("keel-admin").await?;
        let channel = conn.create_channel().await?;
        for name in self.topology.all_queue_names(queue) {
            channel
                .queue_delete(short(&name)?, QueueDeleteOptions::default())
                .await?;
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(())
    }
}

/// The broker is optional for the API: tasks wait in the outbox while it is down, so
/// it marks the service degraded, not unready.
impl Check for Arc<Broker> {
    fn name(&self) -> &'static str {
        "broker"
    }

    fn required(&self) -> bool {
        false
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.ping().await.map_err(|err| err.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_go_to_the_power_of_two_tier_below_them() {
        let tier = |ms| Topology::tier(Duration::from_millis(ms));
        assert_eq!(tier(10), 1);
        assert_eq!(tier(1_999), 1);
        assert_eq!(tier(2_000), 2);
        assert_eq!(tier(5_000), 4);
        assert_eq!(tier(3_600_000), 2048);
        assert_eq!(tier(u64::MAX / 2), 1 << MAX_TIER_EXPONENT);
    }
}
