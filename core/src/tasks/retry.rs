//! How a failed task is retried: exponential backoff with jitter, up to a number of
//! attempts.

use std::time::Duration;

/// Attempt `n` (the first retry is attempt 2) waits a random time between half and all
/// of `base × 2^(n-2)`, capped at `max`: the jitter keeps tasks that failed together
/// (a dependency outage) from all coming back in the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs in all, the first included; 1 means never retried.
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 5 runs over about a minute: 2, 4, 8, 16 s (each halved at random by the jitter).
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(2),
            max: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Whether a task that just failed its `attempt`-th run gets another.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The wait before run `next` (2 or more).
    pub fn delay_before(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(31);
        let full = self.base.saturating_mul(1 << doublings).min(self.max);
        // Uniform in [full/2, full]; without randomness (never on Linux), the full wait.
        let fraction =
            getrandom::u32().map_or(1.0, |r| 0.5 + f64::from(r) / f64::from(u32::MAX) / 2.0);
        full.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_their_jitter_and_stop_at_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        for (next, full) in [(2, 1), (3, 2), (4, 4), (5, 5), (9, 5)] {
            let full = Duration::from_secs(full);
            for _ in 0..50 {
                let delay = policy.delay_before(next);
                assert!(delay >= full / 2 && delay <= full, "{next}: {delay:?}");
            }
        }
        assert!(policy.allows_another(9));
        assert!(!policy.allows_another(10));
    }
}
