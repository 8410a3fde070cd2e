//! Declaring, per operation, which problem statuses it can answer, so the OpenAPI
//! document tells clients the truth.
//!
//! ```ignore
//! keel_core::problem_statuses!(pub LoginProblems = [400, 401, 422, 429, 503]);
//! async fn login(..) -> Result<Json<Tokens>, Problems<LoginProblems>> { .. }
//! ```
//! `?` converts any [`ApiError`] into `Problems<S>`; the response is rendered by
//! `ApiError` itself, so the declaration only affects the document. A status that
//! was not declared is still answered in production (and logged at debug); under
//! `APP_ENV=test` keel-app turns it into a failure (see [`super::contract`]), so drift
//! breaks a test.

use std::marker::PhantomData;

use poem_openapi::ApiResponse;
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;

use crate::error::{ApiError, PROBLEM_JSON, ProblemDetails};

/// The statuses one operation can fail with (besides 500, which any can).
pub trait Statuses: Send + Sync + 'static {
    const STATUSES: &'static [u16];
}

/// Declares a [`Statuses`] marker type: `problem_statuses!(pub Name = [401, 404]);`.
#[macro_export]
macro_rules! problem_statuses {
    ($vis:vis $name:ident = [$($status:literal),* $(,)?]) => {
        #[derive(Debug)]
        $vis enum $name {}
        impl $crate::http::problems::Statuses for $name {
            const STATUSES: &'static [u16] = &[$($status),*];
        }
    };
}

/// An [`ApiError`] documented as one of the statuses `S` lists.
pub struct Problems<S> {
    error: ApiError,
    statuses: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Problems<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<S> Problems<S> {
    pub fn into_inner(self) -> ApiError {
        self.error
    }
}

impl<S: Statuses> From<ApiError> for Problems<S> {
    fn from(error: ApiError) -> Self {
        let status = error.status().as_u16();
        if status != 500 && !S::STATUSES.contains(&status) {
            tracing::debug!(
                status,
                "operation answered a status its OpenAPI entry omits"
            );
        }
        Self {
            error,
            statuses: PhantomData,
        }
    }
}

impl<S> From<Problems<S>> for poem::Error {
    fn from(problems: Problems<S>) -> Self {
        problems.error.into()
    }
}

impl<S: Statuses> ApiResponse for Problems<S> {
    fn meta() -> MetaResponses {
        let schema = <ProblemDetails as Type>::schema_ref();
        let responses = S::STATUSES
            .iter()
            .chain(std::iter::once(&500))
            .map(|&status| MetaResponse {
                description: describe(status),
                status: Some(status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: PROBLEM_JSON,
                    schema: schema.clone(),
                }],
                headers: if matches!(status, 429 | 503) {
                    vec![MetaHeader {
                        name: "Retry-After".to_owned(),
                        description: Some("Seconds to wait before retrying.".to_owned()),
                        required: status == 429,
                        deprecated: false,
                        schema: <u64 as Type>::schema_ref(),
                    }]
                } else {
                    Vec::new()
                },
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        <ProblemDetails as Type>::register(registry);
    }
}

/// What each status means in keel, for the OpenAPI response descriptions.
fn describe(status: u16) -> &'static str {
    match status {
        400 => "The request could not be read (malformed JSON, wrong parameter types).",
        401 => {
            "No valid access token: missing, malformed, expired, revoked, or the account is deactivated."
        }
        403 => "The caller lacks the permission this operation requires.",
        404 => "No such resource.",
        409 => "A unique value is already taken; `errors` names the field.",
        413 => "The request body is too large.",
        415 => "The request body has an unsupported media type.",
        422 => "The request breaks a rule; `errors` lists each field and what is wrong.",
        429 => "Too many attempts; retry after `Retry-After` seconds.",
        500 => "An unexpected error; quote `request_id` when reporting it.",
        503 => "A dependency is down or the server is overloaded; retry later.",
        _ => "Error.",
    }
}
