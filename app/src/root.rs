//! The composition root: the one place a keel process gets its [`Context`] and task
//! [`Registry`]. keel-api, keel-worker, keel-admin and the OpenAPI document start here.

use std::sync::Arc;

use keel_core::cache::{Cache, CacheError};
use keel_core::db::Db;
use keel_core::feature::{FeatureError, Features};
use keel_core::mail::MailError;
use keel_core::settings::{Secret, SettingsError};
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
    #[error("{0}")]
    Settings(#[from] SettingsError),
}

/// A process's shared services and the tasks it knows.
#[derive(Debug, Clone)]
pub struct Root {
    pub context: Arc<Context>,
    pub registry: Arc<Registry>,
}

impl Root {
    /// The process `process` (its connections' `application_name`) on the database at
    /// `database_url`, with the configured cache, storage and mailer. Connects to
    /// nothing yet: a dependency that is down shows on `/health/ready`.
    pub fn new(
        settings: &Settings,
        database_url: &Secret,
        process: &str,
    ) -> Result<Self, RootError> {
        let db = Db::new(database_url, &settings.database, process);
        let cache = Cache::from_settings(&settings.cache)?;
        Ok(Self::of(Context::new(settings.clone(), db, cache)?))
    }

    /// The default settings on [`Context::offline`]: what the OpenAPI document is
    /// generated from, on a machine with no services.
    pub fn offline() -> Result<Self, RootError> {
        let settings = Settings::from_vars(std::iter::empty::<(String, String)>())?;
        Ok(Self::of(Context::offline(settings)?))
    }

    fn of(context: Context) -> Self {
        Self {
            context: Arc::new(context.declaring(crate::api::declared())),
            registry: Arc::new(registry()),
        }
    }

    /// Every feature, built on this context.
    pub async fn features(&self) -> Result<All, FeatureError> {
        All::build(&self.context).await
    }

    /// The outbox relay: to RabbitMQ when `AMQP_URL` is set, otherwise into this
    /// process (not durable past the outbox; see `keel_core::tasks::local`).
    pub fn relay(&self) -> Relay {
        let settings = &self.context.settings;
        let target = match &settings.tasks.amqp_url {
            Some(url) => RelayTarget::Broker(Arc::new(Broker::new(&settings.tasks, url))),
            None => RelayTarget::Local(Arc::new(LocalRunner::new(
                self.registry.clone(),
                self.context.clone(),
            ))),
        };
        Relay::new(self.context.db.clone(), target, settings.tasks.relay_batch)
    }
}

/// keel-core's own tasks and every feature's.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<Ping>()
        .register_periodic::<PurgeTasksDone>();
    All::tasks(&mut registry);
    registry
}
