//! What operators do with a task queue: its numbers, and its dead letters read,
//! requeued or purged (`keel-admin tasks`).

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeleteOptions, QueuePurgeOptions};
use lapin::types::AMQPValue;
use lapin::{Channel, Connection};

use super::topology::short;
use super::{Broker, BrokerError};
use crate::tasks::Envelope;

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
        // Dead-lettered by RabbitMQ itself (a quorum queue's delivery limit), not by a
        // worker: its own header says why.
        let error = match text("x-keel-error") {
            error if error.is_empty() && !text("x-first-death-reason").is_empty() => format!(
                "dead-lettered by rabbitmq ({}) from {}",
                text("x-first-death-reason"),
                text("x-first-death-queue")
            ),
            error => error,
        };
        Self {
            envelope: Envelope::from_bytes(&delivery.data).ok(),
            error,
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

impl Broker {
    /// Depth, consumers and dead letters of each of `queues` (declaring them if new).
    pub async fn stats(&self, queues: &[&str]) -> Result<Vec<QueueStats>, BrokerError> {
        let conn = self.connect("keel-monitor").await?;
        let channel = conn.create_channel().await?;
        let mut stats = Vec::with_capacity(queues.len());
        for queue in queues {
            let (work, dead) = self.topology.declare(&channel, queue).await?;
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
