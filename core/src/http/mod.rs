//! HTTP plumbing shared by every keel service: the middleware stack, system endpoints,
//! and a server that shuts down gracefully.

pub mod around;
pub mod client_ip;
pub mod contract;
pub mod formats;
pub mod guards;
pub mod health;
pub mod json;
pub mod observe;
pub mod problems;
pub mod server;
pub mod system;
pub mod text;
pub mod versioned;

use std::any::Any;

use poem::endpoint::BoxEndpoint;
use poem::error::ResponseError;
use poem::http::header;
use poem::middleware::{CatchPanic, Compression, Cors, PanicHandler, SetHeader};
use poem::{Endpoint, EndpointExt, IntoResponse, Response};

use crate::error::ApiError;
use crate::settings::{AppEnv, HttpSettings};

/// Wraps `ep` in keel's middleware, outermost first: security headers (on every
/// response, errors included) → observe (request id, span, metrics, problem rendering)
/// → CORS → compression → trusted hosts →
/// deadline → body limit → storable text (no NULs) → panic catcher.
pub fn stack<E>(ep: E, settings: &HttpSettings, env: AppEnv) -> BoxEndpoint<'static, Response>
where
    E: Endpoint + 'static,
{
    let mut security = SetHeader::new()
        .overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .overriding(header::X_FRAME_OPTIONS, "DENY")
        .overriding(header::REFERRER_POLICY, "no-referrer")
        .overriding("cross-origin-opener-policy", "same-origin");
    if env.is_production() {
        // Production sits behind TLS; tell browsers never to downgrade.
        security = security.overriding(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        );
    }

    ep.with(CatchPanic::new().with_handler(PanicToProblem))
        .with(text::StorableText)
        .with(guards::BodyLimit {
            limit: settings.body_limit,
        })
        .with(guards::Deadline {
            timeout: settings.request_timeout,
        })
        .with_if(
            !settings.trusted_hosts.is_empty(),
            guards::TrustedHosts::new(&settings.trusted_hosts),
        )
        .with(Compression::new())
        .with_if(
            !settings.cors_origins.is_empty(),
            cors(&settings.cors_origins),
        )
        .with(observe::Observe {
            trusted_proxies: settings.trusted_proxies.clone().into(),
        })
        // Outside Observe, which has turned every error into a response by now, so
        // problems and poem's own rejections carry the headers too.
        .with(security)
        .map_to_response()
        .boxed()
}

fn cors(origins: &[String]) -> Cors {
    let cors = Cors::new()
        .expose_header(observe::REQUEST_ID_HEADER)
        .max_age(600);
    if origins.iter().any(|o| o == "*") {
        cors
    } else {
        cors.allow_origins(origins.iter().map(String::as_str))
            .allow_credentials(true)
    }
}

/// A panicking handler answers a generic 500 problem; the panic message goes to the log.
#[derive(Debug, Clone, Copy)]
struct PanicToProblem;

impl PanicHandler for PanicToProblem {
    type Response = Response;

    fn get_response(&self, panic: Box<dyn Any + Send + 'static>) -> Response {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        ApiError::internal(format!("request handler panicked: {message}"))
            .as_response()
            .into_response()
    }
}
