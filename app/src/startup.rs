//! Building and running the HTTP application.

use std::net::SocketAddr;

use keel_core::db::{Db, migrate};
use keel_core::http::health::Checks;
use keel_core::http::server::Bound;
use keel_core::http::system::SystemApi;
use keel_core::settings::{Secret, Settings};
use keel_core::telemetry::metrics::{self, PrometheusHandle};
use poem::Response;
use poem::endpoint::BoxEndpoint;

use crate::api;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database migration failed: {0}")]
    Migrate(#[from] migrate::MigrateError),
    #[error("{0}")]
    Metrics(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A built keel API, bound to its port and ready to serve.
pub struct Application {
    bound: Bound,
    endpoint: BoxEndpoint<'static, Response>,
    metrics: PrometheusHandle,
    settings: Settings,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.bound.local_addr())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Migrates (when enabled), wires the app and binds `APP_HOST:APP_PORT` (port 0
    /// picks a free one; see [`Application::local_addr`]).
    pub async fn build(settings: &Settings, database_url: &Secret) -> Result<Self, StartError> {
        if settings.database.migrate_on_start {
            let applied = migrate::run(database_url).await?;
            if applied.is_empty() {
                tracing::debug!("database schema is up to date");
            } else {
                tracing::info!(?applied, "applied database migrations");
            }
        }
        let metrics = metrics::install().map_err(StartError::Metrics)?;
        let db = Db::new(database_url, &settings.database, "keel-api");
        let system = SystemApi::new(Checks::default().with(db.clone()), metrics.clone())
            .on_scrape(move || db.record_metrics());
        let endpoint = keel_core::http::stack(
            api::routes(api::service(system)),
            &settings.http,
            settings.env,
        );
        let addr = SocketAddr::new(settings.http.host, settings.http.port);
        let bound = Bound::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Self {
            bound,
            endpoint,
            metrics,
            settings: settings.clone(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.bound.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish within
    /// `SHUTDOWN_GRACE_PERIOD`.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let upkeep = metrics::spawn_upkeep(self.metrics);
        let result = self
            .bound
            .serve(self.endpoint, shutdown, self.settings.http.shutdown_grace)
            .await;
        upkeep.abort();
        result
    }
}
