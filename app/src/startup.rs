//! Building and running the HTTP application.

use std::net::SocketAddr;
use std::sync::Arc;

use keel_core::Context;
use keel_core::db::changes::Listener;
use keel_core::db::{Db, migrate};
use keel_core::feature::{FeatureError, Features, Running};
use keel_core::http::contract;
use keel_core::http::health::Checks;
use keel_core::http::server::Bound;
use keel_core::http::system::SystemApi;
use keel_core::settings::{AppEnv, Secret, Settings};
use keel_core::storage::links;
use keel_core::tasks::routes::TasksApi;
use keel_core::tasks::{RelayHandle, RelayTarget, Scheduler, SchedulerHandle};
use keel_core::telemetry::metrics::{self, PrometheusHandle};
use poem::endpoint::BoxEndpoint;
use poem::{EndpointExt, Response};

use crate::api;
use crate::root::{self, Root, RootError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database migration failed: {0}")]
    Migrate(#[from] migrate::MigrateError),
    #[error("{0}")]
    Metrics(String),
    #[error("{0}")]
    Root(#[from] RootError),
    #[error("cannot seed roles and permissions ({feature}): {source}")]
    Seed {
        feature: &'static str,
        source: keel_core::ApiError,
    },
    #[error("cannot set up {what}: {source}")]
    Setup {
        what: &'static str,
        source: keel_core::ApiError,
    },
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
    /// Keeps query caches in step with the database while the application lives.
    _changes: Listener,
    /// The features' background work (keel-activity's sealer).
    _running: Vec<Running>,
    /// Hands committed tasks to the broker (or runs them here without one).
    _relay: RelayHandle,
    /// Enqueues periodic jobs when there is no broker (keel-worker does it otherwise).
    _scheduler: Option<SchedulerHandle>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.bound.local_addr())
            .finish_non_exhaustive()
    }
}

/// Seeds roles and permissions. With the database down the API still starts (and says
/// so on /health/ready); seeding then retries in the background until it succeeds.
async fn seed_or_retry(context: &Arc<Context>) -> Result<(), StartError> {
    const RETRY: std::time::Duration = std::time::Duration::from_secs(5);
    match seed(context).await {
        Ok(()) => Ok(()),
        Err(FeatureError {
            source: keel_core::ApiError::Unavailable { .. },
            ..
        }) => {
            tracing::warn!(retry_in = ?RETRY, "database unavailable: seeding later");
            let context = context.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RETRY).await;
                    match seed(&context).await {
                        Ok(()) => break,
                        Err(err) => tracing::warn!(error = %err, "seeding failed; retrying"),
                    }
                }
            });
            Ok(())
        }
        Err(FeatureError { feature, source }) => Err(StartError::Seed { feature, source }),
    }
}

/// Says in the log whether the role keel-api signs in as could rewrite the audit trail
/// (it owns the append-only tables or may update them): then the trail is only as
/// trustworthy as that role's credentials, and `DATABASE_OWNER_URL` is the remedy.
fn report_trail_guard(db: Db) {
    tokio::spawn(async move {
        let exposed = match db.conn().await {
            Ok(mut conn) => keel_core::db::privileges::append_only_exposed(&mut conn).await,
            Err(_) => return, // readiness reports the database; checked on the next start
        };
        match exposed {
            Ok(true) => tracing::warn!(
                "the audit trail is only as strong as the database role keel-api signs in as: \
                 it owns the append-only tables (or may update them), so it could switch their \
                 guards off and rewrite entries; set DATABASE_OWNER_URL (docs/activity.md)"
            ),
            Ok(false) => tracing::info!(
                "audit trail: keel-api's database role may only read and append to it"
            ),
            Err(err) => tracing::warn!(error = %err, "cannot check the audit trail's privileges"),
        }
    });
}

async fn seed(context: &Context) -> Result<(), FeatureError> {
    let changes = root::seed(context).await?;
    if !changes.is_empty() {
        tracing::info!(?changes, "seeded");
    }
    Ok(())
}

impl Application {
    /// Migrates (when enabled), wires the app and binds `APP_HOST:APP_PORT` (port 0
    /// picks a free one; see [`Application::local_addr`]).
    pub async fn build(settings: &Settings, database_url: &Secret) -> Result<Self, StartError> {
        if settings.database.migrate_on_start {
            let applied =
                migrate::run_with_roles(database_url, settings.database.owner_url.as_ref()).await?;
            if applied.is_empty() {
                tracing::debug!("database schema is up to date");
            } else {
                tracing::info!(?applied, "applied database migrations");
            }
        }
        let metrics = metrics::install().map_err(StartError::Metrics)?;
        let root = Root::new(settings, database_url, "keel-api").await?;
        let db = root.context.db.clone();
        report_trail_guard(db.clone());
        let changes = db.listen_for_changes();
        seed_or_retry(&root.context).await?;
        tracing::info!(backend = root.context.cache.backend(), "cache");
        let storage = root.context.storage.clone();
        tracing::info!(backend = storage.backend(), "object storage");
        let features = &root.features;
        let running = features.spawn();
        let relay = root.relay();
        let relay_target = relay.target().clone();
        let task_api = TasksApi::new(relay.clone(), &root.registry);
        let relay = relay.spawn();
        let scheduler = matches!(relay_target, RelayTarget::Local(_))
            .then(|| Scheduler::new(db.clone(), root.registry.periodic_jobs()).spawn());
        // Nothing works without the database. Without the cache, requests go to the
        // database; without storage, only uploads and downloads fail; without the
        // broker, tasks wait in the outbox: each of those only degrades the service.
        let mut checks = Checks::default()
            .required("database", db.clone())
            .optional("cache", root.context.cache.clone());
        if storage.backend() == "s3" {
            checks = checks.optional("storage", storage.clone());
        }
        if let RelayTarget::Broker(broker) = &relay_target {
            checks = checks.optional("broker", broker.clone());
        }
        let system = SystemApi::new(checks, metrics.clone()).on_scrape(move || db.record_metrics());
        let document_error = |e: String| StartError::Setup {
            what: "the OpenAPI document",
            source: keel_core::ApiError::internal(e),
        };
        let (routes, document) = api::routes(
            api::service(system, api::v1(features, task_api)),
            &root.context.declared,
        )
        .map_err(document_error)?;
        let document: serde_json::Value = serde_json::from_str(&document)
            .map_err(|e| document_error(format!("the published document: {e}")))?;
        let routes = features.wrap(routes.at("/storage/*key", links::endpoint(storage)).boxed());
        // Under test, an operation answering a status its entry doesn't declare fails.
        let endpoint = keel_core::http::stack(
            contract::hold(routes, &document, settings.env == AppEnv::Test),
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
            _changes: changes,
            _running: running,
            _relay: relay,
            _scheduler: scheduler,
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
