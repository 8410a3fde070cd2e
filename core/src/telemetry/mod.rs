//! Logs and metrics: the process-wide observers, installed once at start.

pub mod logging;
pub mod metrics;
pub mod outage;
