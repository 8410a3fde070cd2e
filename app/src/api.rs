//! The OpenAPI surface: system endpoints at the root and every feature under `/api/v1`.

use keel_core::http::health::Checks;
use keel_core::http::system::SystemApi;
use poem::Route;
use poem_openapi::{ApiResponse, OpenApi, OpenApiService};

/// The versioned API: one entry per feature crate. Each feature's `#[OpenApi]` declares
/// `prefix_path = "/api/v1/<feature>"`, so this tuple is the only place a feature is
/// mounted (nest tuples beyond 16 entries).
fn v1() -> impl OpenApi {}

/// The service that serves every operation and generates the spec from the same types.
pub fn service(system: SystemApi) -> OpenApiService<impl OpenApi, ()> {
    OpenApiService::new((Root, system, v1()), "keel", env!("CARGO_PKG_VERSION")).description(
        "keel backend API. Errors are RFC 9457 `application/problem+json` documents \
             carrying a `request_id`; quote it when reporting a problem.",
    )
}

/// The OpenAPI document as JSON, without a database: generating it touches no state.
pub fn spec() -> Result<String, String> {
    let metrics = keel_core::telemetry::metrics::install()?;
    Ok(service(SystemApi::new(Checks::default(), metrics)).spec())
}

/// All routes: docs, spec, system endpoints and the versioned API.
pub fn routes(service: OpenApiService<impl OpenApi + 'static, ()>) -> Route {
    Route::new()
        .nest("/docs", service.swagger_ui())
        .nest("/redoc", service.redoc())
        .at("/openapi.json", service.spec_endpoint())
        .nest("/", service)
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
