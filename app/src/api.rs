//! The OpenAPI surface: system endpoints at the root and every feature under `/api/v1`.

use keel_activity::ActivityService;
use keel_core::cache::Cache;
use keel_core::db::Db;
use keel_core::http::health::Checks;
use keel_core::http::system::SystemApi;
use keel_core::settings::Settings;
use keel_core::storage::Storage;
use keel_core::tasks::Relay;
use keel_core::tasks::routes::{TaskPermission, TasksApi};
use keel_release_notes::ReleaseNoteService;
use keel_user::UserService;
use poem::Route;
use poem::web::Html;
use poem_openapi::{ApiResponse, OpenApi, OpenApiService};

use crate::tasks;

/// The feature services the versioned API is built from.
#[derive(Debug, Clone)]
pub struct Features {
    pub users: UserService,
    pub activity: ActivityService,
    pub release_notes: ReleaseNoteService,
    pub tasks: TasksApi,
}

/// The versioned API: one entry per feature crate. Each feature's `#[OpenApi]` declares
/// `prefix_path = "/api/v1/<feature>"`, so this tuple is the only place a feature is
/// mounted (nest tuples beyond 16 entries).
fn v1(features: &Features) -> impl OpenApi + use<> {
    (
        keel_user::api(&features.users),
        keel_activity::api(&features.activity),
        keel_release_notes::api(&features.release_notes),
        features.tasks.clone(),
    )
}

/// Every permission the features declare, for seeding.
pub fn declared_permissions() -> Vec<(String, String)> {
    [
        keel_user::declared_permissions(),
        keel_activity::declared_permissions(),
        keel_release_notes::declared_permissions(),
        keel_core::auth::declared::<TaskPermission>(),
    ]
    .concat()
}

/// The service that serves every operation and generates the spec from the same types.
pub fn service(system: SystemApi, features: &Features) -> OpenApiService<impl OpenApi + use<>, ()> {
    OpenApiService::new(
        (Root, system, v1(features)),
        "keel",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "keel backend API. Errors are RFC 9457 `application/problem+json` documents \
             carrying a `request_id`; quote it when reporting a problem. Sign in with \
             Authorize (email as username); each operation lists the permission it needs \
             as an OAuth2 scope.",
    )
}

/// The OpenAPI document as JSON, without a database: the pool is never used.
pub async fn spec() -> Result<String, String> {
    let metrics = keel_core::telemetry::metrics::install()?;
    let settings =
        Settings::from_vars(std::iter::empty::<(String, String)>()).map_err(|e| e.to_string())?;
    let url = keel_core::settings::Secret::new(keel_core::db::local::DEFAULT_URL);
    let db = Db::new(&url, &settings.database, "keel-admin");
    let activity = ActivityService::new(db.clone());
    let cache = Cache::memory("spec", 1);
    let release_notes = ReleaseNoteService::new(db.clone(), cache.clone());
    let storage = Storage::from_settings(&settings.storage, b"spec");
    let registry = tasks::registry();
    let task_services = tasks::services(db.clone(), cache.clone(), storage.clone(), &settings)
        .map_err(|e| e.to_string())?;
    let relay = Relay::new(
        db.clone(),
        tasks::relay_target(&settings, registry.clone(), task_services),
        1,
    );
    let users = UserService::new(db, &settings, &cache, storage)
        .await
        .map_err(|e| e.to_string())?;
    let service = service(
        SystemApi::new(Checks::default(), metrics),
        &Features {
            users,
            activity,
            release_notes,
            tasks: TasksApi::new(relay, &registry),
        },
    );
    document(&service.spec())
}

/// What the OAuth2 scheme says to readers of the document (the Authorize dialog).
const OAUTH2_DESCRIPTION: &str = "Sign in with your email as the username and your \
     password; send the access token as `Authorization: Bearer <token>`. Each operation \
     lists the permission it needs as a scope.";

/// The published document: poem-openapi's, with the OAuth2 password flow listing every
/// permission the features declare as a scope (the scheme is declared in keel-core,
/// which knows no feature's permissions; OpenAPI requires the list), and the rules
/// keel's request guards enforce ([`keel_core::http::contract::rules`]).
pub fn document(generated: &str) -> Result<String, String> {
    let mut document: serde_json::Value =
        serde_json::from_str(generated).map_err(|e| format!("the generated spec: {e}"))?;
    let scheme = &mut document["components"]["securitySchemes"]["OAuth2"];
    if !scheme.is_object() {
        return Err("the generated spec has no OAuth2 security scheme".to_owned());
    }
    let permissions = declared_permissions();
    let codes: Vec<String> = permissions.iter().map(|(code, _)| code.clone()).collect();
    let scopes: serde_json::Map<String, serde_json::Value> = permissions
        .into_iter()
        .map(|(code, description)| (code, serde_json::Value::String(description)))
        .collect();
    scheme["flows"]["password"]["scopes"] = serde_json::Value::Object(scopes);
    scheme["description"] = OAUTH2_DESCRIPTION.into();
    keel_core::http::contract::rules::declare(&mut document, &codes);
    serde_json::to_string_pretty(&document).map_err(|e| e.to_string())
}

/// All routes — docs, spec, system endpoints and the versioned API — and the published
/// [`document`] the docs pages and `/openapi.json` serve.
pub fn routes(
    service: OpenApiService<impl OpenApi + 'static, ()>,
) -> Result<(Route, String), String> {
    let generated = service.spec();
    let published = document(&generated)?;
    let served = published.clone();
    // The UI pages embed the document verbatim: swap in the published one.
    let swagger = service
        .swagger_ui_html()
        .replacen(&generated, &published, 1);
    let redoc = service.redoc_html().replacen(&generated, &published, 1);
    let route = Route::new()
        .at(
            "/docs",
            poem::endpoint::make_sync(move |_| Html(swagger.clone())),
        )
        .at(
            "/redoc",
            poem::endpoint::make_sync(move |_| Html(redoc.clone())),
        )
        .at(
            "/openapi.json",
            poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json; charset=utf-8")
                    .body(served.clone())
            }),
        )
        .nest("/", service);
    Ok((route, published))
}

/// `GET /` sends people to the interactive docs. It is an (undocumented) operation of
/// the service rather than a separate route because the service is mounted at `/`.
struct Root;

#[derive(Debug, ApiResponse)]
enum RootResponse {
    #[oai(status = 307)]
    Redirect(#[oai(header = "Location")] String),
}

#[OpenApi]
impl Root {
    #[oai(path = "/", method = "get", hidden)]
    async fn root(&self) -> RootResponse {
        RootResponse::Redirect("/docs".to_owned())
    }
}
