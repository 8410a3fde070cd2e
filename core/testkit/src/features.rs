//! Features served the way keel-api serves them, without keel-app: for a feature
//! crate's own integration tests (keel-app depends on the features, not the reverse).

use std::sync::Arc;

use keel_core::Context;
use keel_core::cache::Cache;
use keel_core::db::Db;
use keel_core::db::changes::Listener;
use keel_core::feature::{Features, Running};
use keel_core::http::contract::{self, rules};
use keel_core::http::versioned::V1;
use poem::{EndpointExt, Route};
use poem_openapi::OpenApiService;

use crate::{Client, TestDb, TestServer};

/// The features `F` (a tuple, as keel-app lists them) on a fresh test database: seeded,
/// built on a [`Context`] with the in-memory cache, their operations behind the
/// middleware stack and the contract guards keel-api runs under test (a status an
/// operation doesn't declare fails; bodies are held to their schema).
pub struct FeatureApp<F: Features> {
    server: TestServer,
    pub features: F,
    pub context: Arc<Context>,
    pub client: Client,
    _changes: Listener,
    _running: Vec<Running>,
    // Last: the database outlives the server and the pool.
    pub db: TestDb,
}

impl<F: Features> std::fmt::Debug for FeatureApp<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureApp")
            .field("features", &F::names())
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl<F: Features> FeatureApp<F> {
    /// Serves `F` with the test settings plus `overrides`.
    pub async fn spawn(overrides: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let settings = crate::settings(db.url(), overrides);
        let pool = Db::new(&db.secret_url(), &settings.database, "keel-test");
        let changes = pool.listen_for_changes();
        let declared = F::declared();
        F::seed(&pool, &declared.permissions)
            .await
            .expect("the features seed");
        let context = Context::new(settings.clone(), pool, Cache::memory("test", 10_000))
            .expect("the mail settings are valid")
            .declaring(declared.clone());
        let features = F::build(&context).await.expect("the features build");
        let running = features.spawn();
        let api = OpenApiService::new(V1(features.api()), "keel-test", "test");
        let mut document: serde_json::Value =
            serde_json::from_str(&api.spec()).expect("the spec reads");
        let codes: Vec<&str> = declared
            .permissions
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        rules::declare(&mut document, &codes, &declared.audit_actions);
        let routes = features.wrap(Route::new().nest("/", api).boxed());
        let endpoint = contract::hold(routes, &document, true);
        let server = TestServer::start(endpoint, &settings).await;
        let client = Client::new(server.url(""));
        Self {
            server,
            features,
            context: Arc::new(context),
            client,
            _changes: changes,
            _running: running,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
}
