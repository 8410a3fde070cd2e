//! Every feature's background tasks, registered in one place for keel-api (which
//! enqueues them, and runs them itself without a broker) and keel-worker (which runs
//! them from RabbitMQ).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use keel_activity::{Action, Entry};
use keel_core::ApiError;
use keel_core::cache::Cache;
use keel_core::db::Db;
use keel_core::mail::{MailError, Mailer};
use keel_core::settings::Settings;
use keel_core::storage::Storage;
use keel_core::tasks::{
    Broker, Envelope, Ping, PurgeTasksDone, Registry, RelayTarget, Services, local::LocalRunner,
};
use serde_json::json;

/// The tasks of every feature. A feature with tasks adds its `register` call here.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<Ping>()
        .register_periodic::<PurgeTasksDone>()
        .on_dead_letter(Arc::new(record_dead_letter));
    keel_user::tasks::register(&mut registry);
    registry
}

/// The services a task handler gets; fails only on mail settings lettre refuses.
pub fn services(
    db: Db,
    cache: Cache,
    storage: Storage,
    settings: &Settings,
) -> Result<Arc<Services>, MailError> {
    Ok(Arc::new(Services {
        db,
        cache,
        storage,
        mailer: Mailer::from_settings(&settings.mail)?,
        settings: Arc::new(settings.clone()),
    }))
}

/// Where keel-api's relay hands committed tasks: RabbitMQ when `AMQP_URL` is set,
/// otherwise this process (not durable past the outbox; see `tasks::local`).
pub fn relay_target(
    settings: &Settings,
    registry: Registry,
    services: Arc<Services>,
) -> RelayTarget {
    match &settings.tasks.amqp_url {
        Some(url) => RelayTarget::Broker(Arc::new(Broker::new(&settings.tasks, url))),
        None => RelayTarget::Local(Arc::new(LocalRunner::new(Arc::new(registry), services))),
    }
}

/// A task given up on is an audit entry: someone has to look at it. (The dead-letter
/// hook of [`registry`].)
pub fn record_dead_letter(
    services: Arc<Services>,
    envelope: Envelope,
    error: String,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let entry = Entry::new(
            Action::TaskDeadLettered,
            "task",
            format!(
                "task {} given up after {} attempt(s): {error}",
                envelope.task, envelope.attempt
            ),
        )
        .entity(envelope.id)
        .metadata(json!({
            "task": envelope.task,
            "queue": envelope.queue,
            "attempts": envelope.attempt,
            "error": error,
            "enqueued_at": envelope.enqueued_at,
        }));
        let recorded = services
            .db
            .transaction(|conn| {
                Box::pin(async move {
                    keel_activity::record(conn, entry).await?;
                    Ok::<_, ApiError>(())
                })
            })
            .await;
        if let Err(err) = recorded {
            tracing::error!(error = %err, task_id = %envelope.id, "cannot record a dead-lettered task in the audit trail");
        }
    })
}
