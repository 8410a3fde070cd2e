//! keel-worker: runs the background tasks keel-api enqueues, from RabbitMQ
//! (`AMQP_URL`, required; without a broker keel-api runs tasks itself). Run as many as
//! you like: they share the queues. SIGTERM or Ctrl-C stops taking tasks and lets
//! running ones finish within `TASK_SHUTDOWN_GRACE`; unfinished ones are redelivered.
//! `/health/live`, `/health/ready` and `/metrics` are served on `WORKER_PORT`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use keel_app::Root;
use keel_app::process::{self, BoxError};
use keel_core::http::health::Checks;
use keel_core::http::server::{Bound, shutdown_signal};
use keel_core::http::system::SystemApi;
use keel_core::settings::Settings;
use keel_core::tasks::{Broker, Scheduler, Worker};
use keel_core::telemetry::{logging, metrics};
use poem::Route;
use poem_openapi::OpenApiService;
use tokio::sync::watch;

// mimalloc (see the workspace Cargo.toml for why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    process::run("keel-worker", run)
}

async fn run(settings: Settings) -> Result<(), BoxError> {
    let Some(amqp_url) = settings.tasks.amqp_url.clone() else {
        return Err("AMQP_URL is not set: keel-worker consumes from RabbitMQ \
                    (without a broker, keel-api runs tasks in its own process)"
            .into());
    };
    let Some(database_url) = settings.database.url.clone() else {
        return Err(
            "DATABASE_URL is not set: task handlers need the database keel-api uses".into(),
        );
    };
    let _log_guard = logging::init(&settings.log, "keel-worker")?;
    let metrics = metrics::install()?;
    let root = Root::new(&settings, &database_url, "keel-worker").await?;
    let db = root.context.db.clone();
    let broker = Arc::new(Broker::new(&settings.tasks, &amqp_url));
    let registry = root.registry.clone();

    let worker = Worker::new(
        broker,
        registry.clone(),
        settings.tasks.prefetch,
        settings.tasks.shutdown_grace,
    );
    // Probes and metrics: the database is required, and consuming too (a worker that
    // isn't has nothing to do); the cache is not.
    let checks = Checks::default()
        .required("database", db.clone())
        .required("consuming", worker.consuming())
        .optional("cache", root.context.cache.clone());
    let scraped = db.clone();
    let system =
        SystemApi::new(checks, metrics.clone()).on_scrape(move || scraped.record_metrics());
    let service = OpenApiService::new(system, "keel-worker", env!("CARGO_PKG_VERSION"));
    let addr = SocketAddr::new(settings.http.host, settings.tasks.worker_port);
    let bound = Bound::bind(addr).await.map_err(|err| {
        format!(
            "cannot listen on {addr} (WORKER_PORT): {err}; each keel-worker on a host needs \
             its own WORKER_PORT (0: any free port)"
        )
    })?;
    let addr = bound.local_addr();

    let (stop, stopping) = watch::channel(false);
    let stopped = |mut stopping: watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let upkeep = metrics::spawn_upkeep(metrics);
    // Every worker schedules; each tick is enqueued once (see tasks::periodic).
    let scheduler = Scheduler::new(db.clone(), registry.periodic_jobs()).spawn();
    let http = tokio::spawn(bound.serve(
        Route::new().nest("/", service),
        stopped(stopping.clone()),
        Duration::from_secs(5),
    ));
    tracing::info!(tasks = ?registry.task_names(), %addr, "keel-worker starting; health and metrics on {addr}");
    let outcome = worker.run(stopped(stopping)).await;
    drop(scheduler);
    upkeep.abort();
    let _ = http.await;
    tracing::info!(drained = outcome.drained, "keel-worker stopped");
    Ok(())
}
