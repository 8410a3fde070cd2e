//! A circuit breaker: after a few failures in a row the cache is left alone for a
//! while, so a Redis that is down costs requests nothing instead of a timeout each.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row that open the breaker.
const FAILURES_TO_OPEN: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// Every call is refused until `until`; then one call probes.
    Open {
        until: Instant,
    },
    /// One probe is out; the rest are refused until it reports (or, if it was
    /// cancelled and never reports, until `since + cooldown`).
    Probing {
        since: Instant,
    },
}

/// What `/health/ready` and the `cache_breaker_state` gauge show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The gauge value: 0 closed, 1 half open, 2 open.
    pub fn level(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    cooldown: Duration,
}

impl Breaker {
    /// `cooldown`: how long an open breaker refuses calls before one probes.
    pub fn new(cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go out now; a `true` must be followed by
    /// [`Breaker::succeeded`] or [`Breaker::failed`].
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        let refused = match *state {
            State::Closed { .. } => return true,
            State::Open { until } => now < until,
            State::Probing { since } => now < since + self.cooldown,
        };
        if refused {
            return false;
        }
        *state = State::Probing { since: now };
        true
    }

    pub fn succeeded(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    pub fn failed(&self) {
        let mut state = self.lock();
        *state = match *state {
            State::Closed { failures } if failures + 1 < FAILURES_TO_OPEN => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: Instant::now() + self.cooldown,
            },
        };
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::Probing { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_then_lets_one_probe_through() {
        let breaker = Breaker::new(Duration::from_millis(30));
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert!(breaker.allow());
            breaker.failed();
        }
        // A success resets the count.
        assert!(breaker.allow());
        breaker.succeeded();
        for _ in 0..FAILURES_TO_OPEN {
            assert!(breaker.allow());
            breaker.failed();
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.allow());

        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow(), "the probe");
        assert!(!breaker.allow(), "only one probe at a time");
        breaker.failed();
        assert_eq!(breaker.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow());
        breaker.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.allow());
    }

    #[test]
    fn a_probe_that_never_reports_does_not_close_the_door_forever() {
        let breaker = Breaker::new(Duration::from_millis(20));
        for _ in 0..FAILURES_TO_OPEN {
            breaker.failed();
        }
        std::thread::sleep(Duration::from_millis(25));
        assert!(breaker.allow()); // e.g. the request was cancelled mid-probe
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(25));
        assert!(breaker.allow());
    }
}
