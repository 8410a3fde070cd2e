//! Tasks without a broker (no `AMQP_URL`): the relay hands them to this process, which
//! runs them with the same retries, in the background.
//!
//! Enqueuing is as safe as with a broker (the outbox row commits with the change), but
//! once the relay has taken a task it lives only in this process: a task waiting for a
//! retry, or running, when the process stops is lost. Tasks given up on are logged
//! (and reported to the dead-letter hook) instead of kept in a queue. Fine for
//! development and one-box deployments; production sets `AMQP_URL` and runs
//! keel-worker.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use metrics::counter;
use tokio::task::JoinSet;

use super::{Envelope, Outcome, Registry};
use crate::telemetry::metrics::{TASKS_DEAD_LETTERED, TASKS_PUBLISHED, TASKS_RETRIED};

/// How many given-up tasks are remembered for the admin overview.
const RECENT_DEAD: usize = 50;

#[derive(Debug)]
pub struct LocalRunner {
    registry: Arc<Registry>,
    running: std::sync::Mutex<JoinSet<()>>,
    dead: Arc<std::sync::Mutex<VecDeque<GivenUp>>>,
}

/// A task this process gave up on.
#[derive(Debug, Clone)]
pub struct GivenUp {
    pub envelope: Envelope,
    pub error: String,
    pub at: DateTime<Utc>,
}

impl LocalRunner {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            running: std::sync::Mutex::new(JoinSet::new()),
            dead: Arc::default(),
        }
    }

    /// The last tasks given up on, newest first.
    pub fn recent_dead(&self) -> Vec<GivenUp> {
        let dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        dead.iter().rev().cloned().collect()
    }

    /// Starts each task in the background (their retries included).
    pub fn start_all(&self, envelopes: Vec<Envelope>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while running.try_join_next().is_some() {} // forget the finished ones
        for envelope in envelopes {
            counter!(TASKS_PUBLISHED, "task" => envelope.task.clone()).increment(1);
            running.spawn(run_to_the_end(
                self.registry.clone(),
                self.dead.clone(),
                envelope,
            ));
        }
    }

    /// Tasks started and not yet finished (retries waiting included).
    pub fn in_flight(&self) -> usize {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while running.try_join_next().is_some() {}
        running.len()
    }
}

async fn run_to_the_end(
    registry: Arc<Registry>,
    dead: Arc<std::sync::Mutex<VecDeque<GivenUp>>>,
    mut envelope: Envelope,
) {
    loop {
        match registry.run(&envelope).await {
            Outcome::Succeeded => return,
            Outcome::Retry { next, delay, .. } => {
                counter!(TASKS_RETRIED, "task" => next.task.clone()).increment(1);
                tokio::time::sleep(delay).await;
                envelope = next;
            }
            Outcome::Dead { error } => {
                counter!(TASKS_DEAD_LETTERED, "task" => envelope.task.clone()).increment(1);
                tracing::error!(
                    task = %envelope.task, task_id = %envelope.id, attempts = envelope.attempt,
                    error = %error, "task given up (no broker: not kept)"
                );
                {
                    let mut dead = dead.lock().unwrap_or_else(|e| e.into_inner());
                    if dead.len() == RECENT_DEAD {
                        dead.pop_front();
                    }
                    dead.push_back(GivenUp {
                        envelope: envelope.clone(),
                        error: error.clone(),
                        at: Utc::now(),
                    });
                }
                registry.dead_lettered(&envelope, &error).await;
                return;
            }
        }
    }
}
