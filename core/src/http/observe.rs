//! The outermost middleware: request id, request span, metrics, and the rendering of
//! every error (ours or poem's) as problem+json with the request id in it.

use std::sync::Arc;
use std::time::Instant;

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, PathPattern, Request, Response};
use tracing::{Instrument, field::Empty};

use super::around::{Around, around_middleware, respond};
use super::client_ip;
use crate::error::{ApiError, ProblemDetails, problem_response};
use crate::net::IpNetwork;
use crate::request::{RequestContext, RequestId};
use crate::telemetry::metrics as names;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// User agents are kept for session lists and audit records; longer ones are cut.
const MAX_USER_AGENT_CHARS: usize = 256;

/// Route label for requests that matched no route, so scanners can't mint series.
const UNMATCHED_ROUTE: &str = "unmatched";

/// See the module docs; wrap the whole app in it.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[IpNetwork]>,
}

around_middleware!(Observe);

impl Around for Observe {
    async fn around<E: Endpoint>(&self, inner: &E, req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let request_id = RequestId::from_header(
            req.headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        let method = method_label(req.method());
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method,
            route = Empty,
            status = Empty,
            latency_ms = Empty,
        );
        let _in_flight = InFlight::start();
        let context = RequestContext {
            request_id: request_id.clone(),
            path: req.uri().path().to_owned(),
            client_ip: client_ip::of(&req, &self.trusted_proxies),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        };

        let (route, mut response) = context
            .scope(async {
                let result = respond(inner, req).await;
                let route = match &result {
                    Ok(resp) => resp.data::<PathPattern>(),
                    Err(err) => err.data::<PathPattern>(),
                }
                .map(|p| p.0.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
                let response = result.unwrap_or_else(render_error);
                (route, response)
            })
            .instrument(span.clone())
            .await;

        let status = response.status();
        let elapsed = started.elapsed();
        record_metrics(method, &route, status, elapsed.as_secs_f64());
        span.record("route", &route);
        span.record("status", status.as_u16());
        span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
        if status.is_server_error() {
            tracing::warn!(parent: &span, "request failed");
        } else if is_system_route(&route) {
            tracing::debug!(parent: &span, "request completed");
        } else {
            tracing::info!(parent: &span, "request completed");
        }

        if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        Ok(response)
    }
}

/// Probes and scrapes arrive every few seconds; they log at debug to keep logs readable.
fn is_system_route(route: &str) -> bool {
    route.starts_with("/health/") || route == "/metrics"
}

/// Standard methods by name, anything else as `other`, to bound label cardinality.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn record_metrics(method: &'static str, route: &str, status: StatusCode, seconds: f64) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.as_str().to_owned()),
    ];
    metrics::counter!(names::HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, &labels).record(seconds);
}

/// Counts a request as in flight until dropped, even if the client disconnects mid-way.
struct InFlight;

impl InFlight {
    fn start() -> Self {
        metrics::gauge!(names::HTTP_REQUESTS_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(names::HTTP_REQUESTS_IN_FLIGHT).decrement(1.0);
    }
}

/// Turns any error into a problem response. Ours render themselves; poem's and
/// poem-openapi's (unknown route, wrong method, unreadable body...) are mapped here so
/// no plain-text error ever reaches a client.
fn render_error(err: poem::Error) -> Response {
    if err.is::<ApiError>() {
        return err.into_response();
    }
    let status = err.status();
    let mapped = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::BAD_REQUEST => ApiError::BadRequest(client_message(&err)),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(client_message(&err)),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized(client_message(&err)),
        StatusCode::FORBIDDEN => ApiError::Forbidden(client_message(&err)),
        s if s.is_server_error() => ApiError::internal(err.to_string()),
        _ => {
            // A client error poem raised that we have no variant for: keep its status.
            return problem_response(ProblemDetails {
                kind: "about:blank".to_owned(),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: Some(client_message(&err)),
                instance: None,
                request_id: None,
                errors: Vec::new(),
            });
        }
    };
    poem::Error::from(mapped).into_response()
}

/// poem's 4xx messages describe the client's own input ("failed to parse ..."), which is
/// safe and useful to return; capitalised for the `detail` field.
fn client_message(err: &poem::Error) -> String {
    let message = err.to_string();
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => err
            .status()
            .canonical_reason()
            .unwrap_or("Bad request")
            .to_owned(),
    }
}
