//! Readiness: which dependencies answer now, how fast, and whether the service can serve.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use poem_openapi::{Enum, Object};

use crate::error::ErrorChain;
use crate::health::Check;

/// A check that takes longer than this counts as down, so a probe never hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ComponentStatus {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum OverallStatus {
    /// Everything answers.
    Ok,
    /// Required components answer; an optional one does not.
    Degraded,
    /// A required component does not answer.
    Down,
}

#[derive(Debug, Clone, Object)]
pub struct ComponentHealth {
    pub status: ComponentStatus,
    pub required: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Object)]
pub struct Readiness {
    pub status: OverallStatus,
    pub components: BTreeMap<String, ComponentHealth>,
}

/// The set of checks run, concurrently, for every readiness probe.
#[derive(Clone, Default)]
pub struct Checks(Vec<Probe>);

/// One registered check: its key in the report and whether the service needs it.
#[derive(Clone)]
struct Probe {
    name: &'static str,
    required: bool,
    check: Arc<dyn Check>,
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|probe| probe.name))
            .finish()
    }
}

impl Checks {
    /// A dependency nothing works without: down, the service is unready (503).
    pub fn required(self, name: &'static str, check: impl Check + 'static) -> Self {
        self.probe(name, true, check)
    }

    /// A dependency only some requests need: down, the service is degraded but ready.
    pub fn optional(self, name: &'static str, check: impl Check + 'static) -> Self {
        self.probe(name, false, check)
    }

    fn probe(mut self, name: &'static str, required: bool, check: impl Check + 'static) -> Self {
        self.0.push(Probe {
            name,
            required,
            check: Arc::new(check),
        });
        self
    }

    pub async fn run(&self) -> Readiness {
        let results = join_all(self.0.iter().map(|probe| async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, probe.check.check()).await {
                Ok(answer) => answer.map_err(|cause| ErrorChain(cause.as_ref()).to_string()),
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            let status = match outcome {
                Ok(()) => ComponentStatus::Up,
                Err(cause) => {
                    tracing::warn!(component = probe.name, %cause, "readiness: component down");
                    ComponentStatus::Down
                }
            };
            let health = ComponentHealth {
                status,
                required: probe.required,
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            };
            (probe.name.to_owned(), health)
        }))
        .await;

        let down = |required: bool| {
            results
                .iter()
                .any(|(_, h)| h.required == required && h.status == ComponentStatus::Down)
        };
        let status = if down(true) {
            OverallStatus::Down
        } else if down(false) {
            OverallStatus::Degraded
        } else {
            OverallStatus::Ok
        };
        Readiness {
            status,
            components: results.into_iter().collect(),
        }
    }
}
