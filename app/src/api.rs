//! The OpenAPI surface: system endpoints at the root and every feature under `/api/v1`.

use keel_core::context::Declared;
use keel_core::feature::Features;
use keel_core::http::health::Checks;
use keel_core::http::system::SystemApi;
use keel_core::http::versioned::V1;
use keel_core::tasks::routes::{TaskPermission, TasksApi};
use poem::Route;
use poem::web::Html;
use poem_openapi::{ApiResponse, OpenApi, OpenApiService};

use crate::features::All;

/// The versioned API: every feature, then the task overview, under `/api/v1` (each
/// `#[OpenApi]` declares its `prefix_path` relative to it).
pub fn v1(features: &All, tasks: TasksApi) -> impl OpenApi + use<> {
    V1((features.api(), tasks))
}

/// What the application declares: the features' permissions and `tasks:read`, and
/// the features' audit actions.
pub fn declared() -> Declared {
    let mut declared = All::declared();
    declared
        .permissions
        .extend(keel_core::auth::declared::<TaskPermission>());
    declared
}

/// The service that serves every operation and generates the spec from the same types.
pub fn service(system: SystemApi, v1: impl OpenApi) -> OpenApiService<impl OpenApi, ()> {
    OpenApiService::new((Index, system, v1), "keel", env!("CARGO_PKG_VERSION")).description(
        "keel backend API. Errors are RFC 9457 `application/problem+json` documents \
             carrying a `request_id`; quote it when reporting a problem. Sign in with \
             Authorize (email as username); each operation lists the permission it needs \
             as an OAuth2 scope.",
    )
}

/// The OpenAPI document as JSON, built from the offline context: no service is reached.
pub async fn spec() -> Result<String, String> {
    let metrics = keel_core::telemetry::metrics::install()?;
    let settings = keel_core::Settings::from_vars(std::iter::empty::<(String, String)>())
        .map_err(|e| e.to_string())?;
    let root = crate::Root::offline(settings)
        .await
        .map_err(|e| e.to_string())?;
    let tasks = TasksApi::new(root.relay(), &root.registry);
    let service = service(
        SystemApi::new(Checks::default(), metrics),
        v1(&root.features, tasks),
    );
    document(&service.spec(), &root.context.declared)
}

/// What the OAuth2 scheme says to readers of the document (the Authorize dialog).
const OAUTH2_DESCRIPTION: &str = "Sign in with your email as the username and your \
     password; send the access token as `Authorization: Bearer <token>`. Each operation \
     lists the permission it needs as a scope.";

/// The published document: poem-openapi's, with the OAuth2 password flow signing in at
/// the token-issuing feature's endpoint and listing every declared permission as a
/// scope (the scheme is declared in keel-core, which knows no feature's endpoints or
/// permissions; OpenAPI requires both), and the rules keel's request
/// guards enforce ([`keel_core::http::contract::rules`]).
pub fn document(generated: &str, declared: &Declared) -> Result<String, String> {
    let mut document: serde_json::Value =
        serde_json::from_str(generated).map_err(|e| format!("the generated spec: {e}"))?;
    let scheme = &mut document["components"]["securitySchemes"]["OAuth2"];
    if !scheme.is_object() {
        return Err("the generated spec has no OAuth2 security scheme".to_owned());
    }
    let codes: Vec<&str> = declared
        .permissions
        .iter()
        .map(|(c, _)| c.as_str())
        .collect();
    let scopes: serde_json::Map<String, serde_json::Value> = declared
        .permissions
        .iter()
        .map(|(code, description)| (code.clone(), description.as_str().into()))
        .collect();
    let token_url = declared
        .token_url
        .as_deref()
        .ok_or("no listed feature issues access tokens (Feature::TOKEN_PATH)")?;
    scheme["flows"]["password"]["tokenUrl"] = token_url.into();
    scheme["flows"]["password"]["scopes"] = serde_json::Value::Object(scopes);
    scheme["description"] = OAUTH2_DESCRIPTION.into();
    keel_core::http::contract::rules::declare(&mut document, &codes, &declared.audit_actions);
    serde_json::to_string_pretty(&document).map_err(|e| e.to_string())
}

/// All routes — docs, spec, system endpoints and the versioned API — and the published
/// [`document`] the docs pages and `/openapi.json` serve.
pub fn routes(
    service: OpenApiService<impl OpenApi + 'static, ()>,
    declared: &Declared,
) -> Result<(Route, String), String> {
    let generated = service.spec();
    let published = document(&generated, declared)?;
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
struct Index;

#[derive(Debug, ApiResponse)]
enum IndexResponse {
    #[oai(status = 307)]
    Redirect(#[oai(header = "Location")] String),
}

#[OpenApi]
impl Index {
    #[oai(path = "/", method = "get", hidden)]
    async fn root(&self) -> IndexResponse {
        IndexResponse::Redirect("/docs".to_owned())
    }
}
