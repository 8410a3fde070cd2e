//! Queue names and arguments: each task queue's work queue, delay tiers and dead
//! letters (see the module above).

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Queue};

use super::BrokerError;

/// The longest wait tier: 2^16 s, about 18 hours.
const MAX_TIER_EXPONENT: u32 = 16;

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

    pub(super) fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if self.quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
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
        let work = declare(channel, &self.work(queue), self.arguments()).await?;
        let dead = declare(channel, &self.dead(queue), self.arguments()).await?;
        Ok((work, dead))
    }

    /// Declares `name`, a delay tier of `queue` (idempotent).
    pub(super) async fn declare_delay(
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
        declare(channel, name, args).await?;
        Ok(())
    }

    /// Every queue of `queue` this topology may have made, for tests and teardown.
    pub fn all_queue_names(&self, queue: &str) -> Vec<String> {
        let mut names = vec![self.work(queue), self.dead(queue)];
        names.extend((0..=MAX_TIER_EXPONENT).map(|e| self.delay(queue, 1 << e)));
        names
    }
}

/// Declares the durable queue `name` (idempotent).
async fn declare(channel: &Channel, name: &str, args: FieldTable) -> Result<Queue, BrokerError> {
    Ok(channel.queue_declare(short(name)?, durable(), args).await?)
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
