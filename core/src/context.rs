//! What every feature and every task handler is built from: one per process.

use std::sync::Arc;

use crate::cache::Cache;
use crate::db::Db;
use crate::mail::{MailError, Mailer};
use crate::settings::Settings;
use crate::storage::Storage;

/// The process's shared services. keel-app's composition root builds it once (keel-api,
/// keel-worker, keel-admin and the spec all go through that one function), features
/// build their services from it, and task handlers run with it.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub cache: Cache,
    pub storage: Storage,
    pub mailer: Mailer,
}

impl Context {
    /// The context for `settings` on `db`, with the cache `cache`: storage signs its
    /// links with a key derived from the password pepper (so every replica agrees on it
    /// and rotating the pepper voids outstanding links); the mailer is the configured
    /// SMTP relay or the mail directory. Fails only on mail settings lettre refuses.
    pub fn new(settings: Settings, db: Db, cache: Cache) -> Result<Self, MailError> {
        let storage = Storage::from_settings(
            &settings.storage,
            settings.security.password_pepper.expose().as_bytes(),
        );
        Ok(Self {
            mailer: Mailer::from_settings(&settings.mail)?,
            storage,
            cache,
            db,
            settings: Arc::new(settings),
        })
    }

    /// A context that reaches nothing: the database refuses every connection, the
    /// cache is in memory. Enough to build every feature and generate the OpenAPI
    /// document on a machine with no services (`keel-admin openapi`).
    pub fn offline(settings: Settings) -> Result<Self, MailError> {
        let db = Db::offline();
        Self::new(settings, db, Cache::memory("offline", 1))
    }
}
