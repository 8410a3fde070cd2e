//! An API exercising the middleware stack: JSON bodies, path parameters, panics, delays.

use std::time::Duration;

use keel_core::ApiError;
use keel_core::http::json::JsonBody;
use keel_core::settings::Settings;
use keel_testkit::TestServer;
use poem::Route;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{Object, OpenApi, OpenApiService};

#[derive(Debug, Object)]
pub struct Greeting {
    pub name: String,
    pub times: u8,
}

pub struct TestApi;

#[OpenApi]
impl TestApi {
    #[oai(path = "/echo", method = "post")]
    async fn echo(&self, body: JsonBody<Greeting>) -> Json<Greeting> {
        Json(body.0)
    }

    #[oai(path = "/items/:id", method = "get")]
    async fn item(&self, id: Path<u32>) -> PlainText<String> {
        PlainText(format!("item {}", id.0))
    }

    #[oai(path = "/panic", method = "get")]
    async fn panic(&self) -> PlainText<String> {
        panic!("secret panic text")
    }

    #[oai(path = "/slow", method = "get")]
    async fn slow(&self, ms: Query<u64>) -> PlainText<String> {
        tokio::time::sleep(Duration::from_millis(ms.0)).await;
        PlainText("done".to_owned())
    }

    #[oai(path = "/taken", method = "post")]
    async fn taken(&self) -> poem::Result<PlainText<String>> {
        Err(ApiError::Conflict {
            field: "email".to_owned(),
        }
        .into())
    }

    #[oai(path = "/broken", method = "get")]
    async fn broken(&self) -> poem::Result<PlainText<String>> {
        Err(ApiError::internal("password authentication failed for user \"keel\"").into())
    }
}

/// Settings for a server with no database behind it.
pub fn settings(overrides: &[(&str, &str)]) -> Settings {
    keel_testkit::settings("postgres://nobody@127.0.0.1:1/none", overrides)
}

pub async fn start(overrides: &[(&str, &str)]) -> TestServer {
    let service = OpenApiService::new(TestApi, "test", "1");
    TestServer::start(Route::new().nest("/", service), &settings(overrides)).await
}

/// Asserts that `response` is a problem with `status`, and reads it.
pub async fn expect_problem(
    response: reqwest::Response,
    status: reqwest::StatusCode,
) -> serde_json::Value {
    assert_eq!(response.status(), status);
    let body = problem(response).await;
    assert_eq!(body["status"], status.as_u16());
    body
}

/// POSTs raw bytes to the test API's `/echo`, as `content_type` when given.
pub async fn post_echo(
    server: &TestServer,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(server.url("/echo")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("the request is answered")
}

/// Reads a problem response, checking the media type on the way.
pub async fn problem(response: reqwest::Response) -> serde_json::Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    response.json().await.expect("a JSON problem body")
}
