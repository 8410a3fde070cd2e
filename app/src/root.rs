//! The composition root: the one place a keel process gets its [`Context`] and task
//! [`Registry`]. keel-api, keel-worker, keel-admin and the OpenAPI document start here.

use std::sync::Arc;

use keel_core::cache::{Cache, CacheError};
use keel_core::db::Db;
use keel_core::feature::{FeatureError, Features};
use keel_core::mail::MailError;
use keel_core::settings::Secret;
use keel_core::tasks::local::LocalRunner;
use keel_core::tasks::{Broker, Ping, PurgeTasksDone, Registry, Relay, RelayTarget};
use keel_core::{Context, Settings};

use crate::features::All;

/// Why a process could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{0}")]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Mail(#[from] MailError),
    #[error("cannot build feature {0}")]
    Feature(#[from] FeatureError),
}

/// A process's shared services, its features built on them, and the tasks they run.
#[derive(Debug)]
pub struct Root {
    pub context: Arc<Context>,
    pub features: All,
    pub registry: Arc<Registry>,
}

impl Root {
    /// The process `process` (its connections' `application_name`) on the database at
    /// `database_url`, with the configured cache, storage and mailer, and every feature
    /// built on them. Connects to nothing yet: a dependency that is down shows on
    /// `/health/ready`.
    pub async fn new(
        settings: &Settings,
        database_url: &Secret,
        process: &str,
    ) -> Result<Self, RootError> {
        let db = Db::new(database_url, &settings.database, process);
        let cache = Cache::from_settings(&settings.cache)?;
        Self::of(Context::new(settings.clone(), db, cache)?).await
    }

    /// `settings` on [`Context::offline`] (no database, the in-memory cache): what the
    /// OpenAPI document is generated from, and what commands that only need the task
    /// registry use, on a machine with no services.
    pub async fn offline(settings: Settings) -> Result<Self, RootError> {
        Self::of(Context::offline(settings)?).await
    }

    async fn of(context: Context) -> Result<Self, RootError> {
        let context = context.declaring(crate::api::declared());
        let features = All::build(&context).await?;
        let registry = registry(&context, &features);
        Ok(Self {
            context: Arc::new(context),
            features,
            registry: Arc::new(registry),
        })
    }

    /// The outbox relay: to RabbitMQ when `AMQP_URL` is set, otherwise into this
    /// process (not durable past the outbox; see `keel_core::tasks::local`).
    pub fn relay(&self) -> Relay {
        let settings = &self.context.settings;
        let target = match &settings.tasks.amqp_url {
            Some(url) => RelayTarget::Broker(Arc::new(Broker::new(&settings.tasks, url))),
            None => RelayTarget::Local(Arc::new(LocalRunner::new(self.registry.clone()))),
        };
        Relay::new(self.context.db.clone(), target, settings.tasks.relay_batch)
    }
}

/// Seeds every feature (roles, permissions) with what the context declares; returns what
/// changed. keel-api runs it at start, `keel-admin seed` on demand.
pub async fn seed(context: &Context) -> Result<Vec<String>, FeatureError> {
    All::seed(&context.db, &context.declared.permissions).await
}

/// keel-core's own tasks and every feature's, each with the services it runs with.
fn registry(context: &Context, features: &All) -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<Ping>(())
        .register_periodic::<PurgeTasksDone>(context.db.clone());
    features.tasks(&mut registry);
    registry
}
