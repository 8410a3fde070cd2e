//! Queue names and arguments: each task queue's work queue, delay tiers and dead
//! letters (see the module above).

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Queue};

use super::BrokerError;

/// The longest wait tier: 2^16 s, about 18 hours.
const MAX_TIER_EXPONENT: u32 = 16;
/// Deliveries of one task (a worker killed mid-run each time, a task returned again
/// and again) after which a quorum work queue dead-letters it instead of handing it
/// out again. RabbitMQ 4 drops such a message unless the queue names where it goes.
pub const DELIVERY_LIMIT: i64 = 20;
/// The dead letters' own limit: never reached, however often operators peek at them
/// (each peek returns what it read, and RabbitMQ 4 counts that as a delivery).
const DEAD_DELIVERY_LIMIT: i64 = i32::MAX as i64;
/// AMQP's reply code for a declaration that doesn't match the queue as it exists.
const PRECONDITION_FAILED: u16 = 406;

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

    pub(super) fn delay(&self, queue: &str, tier_secs: u64) -> String {
        format!("{}.{queue}.delay.{tier_secs}s", self.prefix)
    }

    /// The tier a wait of `delay` goes to, in seconds.
    pub(super) fn tier(delay: Duration) -> u64 {
        let secs = delay.as_secs().max(1);
        let exponent = (u64::BITS - 1 - secs.leading_zeros()).min(MAX_TIER_EXPONENT);
        1 << exponent
    }

    /// What every queue is declared with: its type.
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

    /// A queue whose messages are dead-lettered to `target`: at least once in quorum
    /// mode (a dead letter is removed from its queue only once `target` has it, which
    /// needs publishes refused, not old messages dropped, when the queue is full).
    fn dead_lettering_to(&self, target: &str) -> FieldTable {
        let mut args = self.arguments();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(target.into()),
        );
        if self.quorum {
            args.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        args
    }

    /// The work queue: in quorum mode a task delivered [`DELIVERY_LIMIT`] times goes to
    /// the dead letters (classic queues count no deliveries).
    pub(super) fn work_arguments(&self, queue: &str) -> FieldTable {
        if !self.quorum {
            return self.arguments();
        }
        let mut args = self.dead_lettering_to(&self.dead(queue));
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        args
    }

    fn dead_arguments(&self) -> FieldTable {
        let mut args = self.arguments();
        if self.quorum {
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(DEAD_DELIVERY_LIMIT),
            );
        }
        args
    }

    /// Declares the work and dead-letter queues of `queue` (idempotent), which answers
    /// with their counts. A publishing link remembers what it declared under these names
    /// (and the delay tiers' own).
    pub(crate) async fn declare(
        &self,
        channel: &Channel,
        queue: &str,
    ) -> Result<(Queue, Queue), BrokerError> {
        let work = declare(channel, &self.work(queue), self.work_arguments(queue)).await?;
        let dead = declare(channel, &self.dead(queue), self.dead_arguments()).await?;
        Ok((work, dead))
    }

    /// Declares `name`, a delay tier of `queue` (idempotent).
    pub(super) async fn declare_delay(
        &self,
        channel: &Channel,
        queue: &str,
        name: &str,
    ) -> Result<(), BrokerError> {
        declare(channel, name, self.dead_lettering_to(&self.work(queue))).await?;
        Ok(())
    }

    /// Every queue of `queue` this topology may have made, for tests and teardown.
    pub fn all_queue_names(&self, queue: &str) -> Vec<String> {
        let mut names = vec![self.work(queue), self.dead(queue)];
        names.extend((0..=MAX_TIER_EXPONENT).map(|e| self.delay(queue, 1 << e)));
        names
    }
}

/// Declares the durable queue `name` (idempotent). A queue that exists with other
/// arguments (made by an earlier keel, or before `TASK_QUORUM_QUEUES` changed) is
/// refused by RabbitMQ, which closes the channel: [`BrokerError::Inequivalent`].
async fn declare(channel: &Channel, name: &str, args: FieldTable) -> Result<Queue, BrokerError> {
    channel
        .queue_declare(short(name)?, durable(), args)
        .await
        .map_err(|err| match err.kind() {
            lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == PRECONDITION_FAILED => {
                BrokerError::Inequivalent {
                    queue: name.to_owned(),
                    reply: amqp.get_message().to_string(),
                }
            }
            _ => BrokerError::Amqp(err),
        })
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

pub(super) fn short(name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name).map_err(|_| BrokerError::BadName(name.to_owned()))
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
