//! What every feature is built from: one per process.

use std::sync::Arc;

use crate::cache::{Cache, INVALIDATIONS_CHANNEL};
use crate::db::Db;
use crate::mail::{MailError, Mailer};
use crate::settings::Settings;
use crate::storage::Storage;

/// The process's shared services. keel-app's composition root builds it once (keel-api,
/// keel-worker, keel-admin and the spec all go through that one function) and features
/// build their services from it; task handlers run with their feature's service.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub cache: Cache,
    pub storage: Storage,
    pub mailer: Mailer,
    /// What the application's features declare, for the features acting on all of
    /// them (seeding the permissions, filtering the audit trail by action).
    pub declared: Arc<Declared>,
}

/// Everything the application declares across its features.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// `(code, description)`: seeded, published as OAuth2 scopes and as the enum of
    /// [`crate::http::formats::PermissionCode`].
    pub permissions: Vec<(String, String)>,
    /// `noun.verb`: the enum of [`crate::http::formats::ActionName`].
    pub audit_actions: Vec<&'static str>,
    /// The OAuth2 password flow's `tokenUrl` (see [`crate::Feature::TOKEN_PATH`]).
    pub token_url: Option<String>,
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
        if cache.is_shared() {
            share_invalidations(&cache, &db);
        }
        Ok(Self {
            mailer: Mailer::from_settings(&settings.mail)?,
            storage,
            cache,
            db,
            settings: Arc::new(settings),
            declared: Arc::default(),
        })
    }

    /// The same context, with the application's declarations.
    pub fn declaring(self, declared: Declared) -> Self {
        Self {
            declared: Arc::new(declared),
            ..self
        }
    }

    /// A context that reaches nothing: the database refuses every connection, the
    /// cache is in memory. Enough to build every feature and generate the OpenAPI
    /// document on a machine with no services (`keel-admin openapi`).
    pub fn offline(settings: Settings) -> Result<Self, MailError> {
        let db = Db::offline();
        Self::new(settings, db, Cache::memory("offline", 1))
    }
}

/// The replicas tell each other, through PostgreSQL, the invalidations one of them
/// can't send to Redis (see `keel_core::cache`), so none reads Redis before they land.
fn share_invalidations(cache: &Cache, db: &Db) {
    let sender = db.clone();
    let heard = cache.share_invalidations(Arc::new(move |message: String| {
        let db = sender.clone();
        Box::pin(async move {
            db.notify(INVALIDATIONS_CHANNEL, &message)
                .await
                .map_err(|err| err.to_string())
        })
    }));
    db.changes()
        .on_message(INVALIDATIONS_CHANNEL, Arc::new(heard));
}
