//! System endpoints: liveness, readiness and the Prometheus scrape.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use super::health::{Checks, OverallStatus, Readiness};

#[derive(Tags)]
enum SystemTag {
    /// Probes and metrics for orchestrators and monitoring.
    System,
}

#[derive(Debug, Object)]
pub struct Liveness {
    /// Always `ok`: answering at all is the signal.
    pub status: String,
}

#[derive(Debug, ApiResponse)]
pub enum LiveResponse {
    /// The process is up.
    #[oai(status = 200)]
    Ok(Json<Liveness>, #[oai(header = "Cache-Control")] String),
}

#[derive(Debug, ApiResponse)]
pub enum ReadyResponse {
    /// Every required component answers (optional ones may be degraded).
    #[oai(status = 200)]
    Ready(Json<Readiness>, #[oai(header = "Cache-Control")] String),
    /// A required component is down; take this instance out of rotation.
    #[oai(status = 503)]
    NotReady(Json<Readiness>, #[oai(header = "Cache-Control")] String),
}

#[derive(Debug, ApiResponse)]
pub enum MetricsResponse {
    /// Prometheus text exposition format.
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PlainText<String>),
}

/// Probes must see the state now, never a cached answer.
fn no_store() -> String {
    "no-store".to_owned()
}

/// Runs before each scrape to refresh gauges sampled from a component (pool sizes...).
pub type ScrapeHook = Arc<dyn Fn() + Send + Sync>;

/// Health probes and `/metrics`; mounted at the root, outside `/api/v1`.
#[derive(Clone)]
pub struct SystemApi {
    checks: Checks,
    metrics: PrometheusHandle,
    scrape_hooks: Vec<ScrapeHook>,
}

impl std::fmt::Debug for SystemApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemApi")
            .field("checks", &self.checks)
            .field("scrape_hooks", &self.scrape_hooks.len())
            .finish_non_exhaustive()
    }
}

impl SystemApi {
    pub fn new(checks: Checks, metrics: PrometheusHandle) -> Self {
        Self {
            checks,
            metrics,
            scrape_hooks: Vec::new(),
        }
    }

    pub fn on_scrape(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.scrape_hooks.push(Arc::new(hook));
        self
    }
}

#[OpenApi(tag = "SystemTag::System")]
impl SystemApi {
    /// Liveness: the process is up and serving HTTP. Checks no dependency.
    #[oai(path = "/health/live", method = "get", operation_id = "health_live")]
    async fn live(&self) -> LiveResponse {
        LiveResponse::Ok(
            Json(Liveness {
                status: "ok".to_owned(),
            }),
            no_store(),
        )
    }

    /// Readiness: checks every dependency now, with per-component status and latency.
    #[oai(path = "/health/ready", method = "get", operation_id = "health_ready")]
    async fn ready(&self) -> ReadyResponse {
        let report = self.checks.run().await;
        if report.status == OverallStatus::Down {
            ReadyResponse::NotReady(Json(report), no_store())
        } else {
            ReadyResponse::Ready(Json(report), no_store())
        }
    }

    /// Prometheus metrics for this process.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self) -> MetricsResponse {
        for hook in &self.scrape_hooks {
            hook();
        }
        MetricsResponse::Ok(PlainText(self.metrics.render()))
    }
}
