//! keel-worker: runs the background tasks keel-api enqueues, from RabbitMQ
//! (`AMQP_URL`, required; without a broker keel-api runs tasks itself). Run as many as
//! you like: they share the queues. SIGTERM or Ctrl-C stops taking tasks and lets
//! running ones finish within `TASK_SHUTDOWN_GRACE`; unfinished ones are redelivered.

use std::process::ExitCode;
use std::sync::Arc;

use keel_app::tasks;
use keel_core::cache::Cache;
use keel_core::db::Db;
use keel_core::http::server::shutdown_signal;
use keel_core::settings::Settings;
use keel_core::storage::Storage;
use keel_core::tasks::{Broker, Worker};
use keel_core::telemetry::{logging, metrics};

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("keel-worker: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("keel-worker: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("keel-worker: {err}");
            ExitCode::FAILURE
        }
    }
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
    metrics::install()?;
    let db = Db::new(&database_url, &settings.database, "keel-worker");
    let cache = Cache::from_settings(&settings.cache)?;
    let storage = Storage::from_settings(
        &settings.storage,
        settings.security.password_pepper.expose().as_bytes(),
    );
    let registry = Arc::new(tasks::registry());
    tracing::info!(tasks = ?registry.task_names(), "keel-worker starting");
    let worker = Worker::new(
        Arc::new(Broker::new(&settings.tasks, &amqp_url)),
        registry,
        tasks::services(db, cache, storage, &settings),
        settings.tasks.prefetch,
        settings.tasks.shutdown_grace,
    );
    let stopped = worker.run(shutdown_signal()).await;
    tracing::info!(drained = stopped.drained, "keel-worker stopped");
    Ok(())
}
