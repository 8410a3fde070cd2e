//! The one error type of the HTTP surface, rendered as RFC 9457 `application/problem+json`.
//!
//! Handlers and services return [`ApiError`]; infrastructure errors convert into it with
//! `?`. Internal causes are logged once, with the request id, and never reach the body.

use std::time::Duration;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Response, error::ResponseError};
use poem_openapi::Object;
use poem_openapi::types::ToJSON;

use crate::request::RequestContext;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One rule a field of the request broke.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct FieldError {
    /// Dotted path of the field in the request, e.g. `email` or `items.0.name`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// RFC 9457 problem details, as every error response carries them.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Problem")]
pub struct ProblemDetails {
    /// A URI naming the problem type; `about:blank` when the status says it all.
    #[oai(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type; the same for every occurrence.
    pub title: String,
    pub status: u16,
    /// What went wrong this time, safe to show to the caller.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// The request path that produced the problem.
    #[oai(skip_serializing_if_is_none)]
    pub instance: Option<String>,
    /// Quote it when reporting a problem: it finds the request in the logs.
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    /// The rules the request broke, one per field (validation problems only; absent
    /// otherwise, so not required).
    #[oai(default, skip_serializing_if_is_empty)]
    pub errors: Vec<FieldError>,
}

/// Everything a request can fail with, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request could not be read (malformed JSON, wrong types, bad parameters).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request was well-formed but broke one or more rules.
    #[error("validation failed on {} field(s)", .0.len())]
    Validation(Vec<FieldError>),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A unique value is already taken.
    #[error("conflict on {field}")]
    Conflict { field: String },
    /// The request can't be applied to the resource in its current state.
    #[error("conflict: {0}")]
    StateConflict(String),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    TooManyRequests { retry_after: Duration },
    /// A dependency is down or the server is overloaded; the client may retry.
    #[error("service unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// A bug or an unexpected failure; the cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    /// A 422 naming one field of the request.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable {
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } | Self::StateConflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document for this error, without request context.
    pub fn problem(&self) -> ProblemDetails {
        let status = self.status();
        let (kind, detail, errors) = match self {
            Self::BadRequest(detail) => ("about:blank", Some(detail.clone()), Vec::new()),
            Self::Validation(errors) => (
                "urn:keel:problem:validation",
                Some("The request breaks one or more rules; see errors.".to_owned()),
                errors.clone(),
            ),
            Self::Unauthorized(detail) | Self::Forbidden(detail) | Self::StateConflict(detail) => {
                ("about:blank", Some(detail.clone()), Vec::new())
            }
            Self::NotFound => (
                "about:blank",
                Some("No resource exists at this path.".to_owned()),
                Vec::new(),
            ),
            Self::MethodNotAllowed => (
                "about:blank",
                Some("This path does not support the request method.".to_owned()),
                Vec::new(),
            ),
            Self::Conflict { field } => (
                "urn:keel:problem:conflict",
                Some(format!("The value of {field} is already taken.")),
                vec![FieldError::new(field.clone(), "is already taken")],
            ),
            Self::PayloadTooLarge { limit } => (
                "about:blank",
                Some(format!(
                    "The request body exceeds the limit of {limit} bytes."
                )),
                Vec::new(),
            ),
            Self::UnsupportedMediaType(detail) => ("about:blank", Some(detail.clone()), Vec::new()),
            Self::TooManyRequests { retry_after } => (
                "about:blank",
                Some(format!(
                    "Too many requests; retry after {} seconds.",
                    retry_secs(*retry_after)
                )),
                Vec::new(),
            ),
            Self::Unavailable { detail, .. } => ("about:blank", Some(detail.clone()), Vec::new()),
            Self::Internal(_) => (
                "about:blank",
                Some(
                    "An unexpected error occurred. Quote the request id when reporting it."
                        .to_owned(),
                ),
                Vec::new(),
            ),
        };
        ProblemDetails {
            kind: kind.to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            instance: None,
            request_id: None,
            errors,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::TooManyRequests { retry_after } => Some(*retry_after),
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Whole seconds for `Retry-After`, never 0 (which would invite an immediate retry storm).
fn retry_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn as_response(&self) -> Response {
        if let Self::Internal(cause) = self {
            tracing::error!(error = %ErrorChain(cause.as_ref()), "internal error");
        }
        let mut response = problem_response(self.problem());
        if matches!(self, Self::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(after)));
        }
        if matches!(self, Self::PayloadTooLarge { .. }) {
            // The rest of the body goes unread, so the connection can't carry another
            // request: say so, or a client reuses it and its next request is lost.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Serialises a problem with its status and media type, adding the current request's
/// path and id.
pub fn problem_response(mut problem: ProblemDetails) -> Response {
    if let Some(ctx) = RequestContext::current() {
        problem.instance.get_or_insert(ctx.path);
        problem.request_id.get_or_insert(ctx.request_id.to_string());
    }
    Response::builder()
        .status(StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type(PROBLEM_JSON)
        .body(problem.to_json_string())
}

/// Displays an error with its `source()` chain, `a: b: c`, for logs. A cause whose text
/// is already there is left out: many errors print their source in their own message,
/// and lapin's would otherwise read "IO error: refused: IO error: refused: ...".
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chain = self.0.to_string();
        let mut source = self.0.source();
        while let Some(err) = source {
            let cause = err.to_string();
            if !chain.contains(&cause) {
                chain.push_str(": ");
                chain.push_str(&cause);
            }
            source = err.source();
        }
        f.write_str(&chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Layered {
        #[error("connection failed: {0}")]
        Outer(#[source] Box<Layered>),
        #[error("IO error: {0}")]
        Io(#[source] std::io::Error),
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let repeated = Layered::Outer(Box::new(Layered::Io(refused())));
        assert_eq!(
            ErrorChain(&repeated).to_string(),
            "connection failed: IO error: refused"
        );
        let terse = Layered::Io(refused());
        assert_eq!(ErrorChain(&terse).to_string(), "IO error: refused");
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_secs(Duration::ZERO), 1);
    }

    #[test]
    fn internal_problems_hide_the_cause() {
        let err = ApiError::internal("relation \"users\" does not exist");
        let problem = err.problem();
        assert_eq!(problem.status, 500);
        let body = problem.to_json_string();
        assert!(!body.contains("relation"), "{body}");
    }
}
