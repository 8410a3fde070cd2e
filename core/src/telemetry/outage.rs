//! [`Outage`]: one log line when a dependency goes away and one when it is back, however
//! many retries fall in between, so an alert on WARN counts incidents, not attempts.

use std::time::Instant;

/// The state of one dependency as seen by one retrying loop (the task relay, a worker).
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
    failures: u32,
    cause: String,
}

impl Outage {
    /// Records a failed attempt: a WARN naming `what` and the cause when it starts an
    /// incident or its cause changes, a DEBUG line otherwise. Returns whether it started
    /// one.
    pub fn failed(&mut self, what: &'static str, cause: &dyn std::fmt::Display) -> bool {
        self.failures += 1;
        let cause = cause.to_string();
        let changed = cause != self.cause;
        self.cause.clone_from(&cause);
        if self.since.is_some() {
            if changed {
                tracing::warn!(error = %cause, failures = self.failures, "{what}: still failing, now for another reason");
            } else {
                tracing::debug!(error = %cause, failures = self.failures, "{what}: still failing");
            }
            return false;
        }
        self.since = Some(Instant::now());
        tracing::warn!(error = %cause, "{what}: failing; retrying until it works again");
        true
    }

    /// Records a successful attempt: an INFO line with the incident's length and
    /// attempts when it ends one. Returns whether it ended one.
    pub fn recovered(&mut self, what: &'static str) -> bool {
        let Some(since) = self.since.take() else {
            return false;
        };
        tracing::info!(
            after = ?since.elapsed(),
            failures = std::mem::take(&mut self.failures),
            "{what}: working again"
        );
        self.cause.clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Outage;

    #[test]
    fn an_incident_starts_once_and_ends_once() {
        let mut outage = Outage::default();
        assert!(!outage.recovered("broker"), "nothing to end");
        assert!(outage.failed("broker", &"refused"));
        for _ in 0..5 {
            assert!(!outage.failed("broker", &"refused"), "the same incident");
        }
        assert!(outage.recovered("broker"));
        assert!(!outage.recovered("broker"));
        assert!(outage.failed("broker", &"refused"), "a new incident");
    }
}
