//! [`Around`]: each of keel's middlewares as what it does around the endpoint it wraps.
//!
//! A poem middleware is two types: the `Middleware` holding its settings, and an
//! `Endpoint` holding those settings again next to the endpoint it wraps. keel's
//! middlewares need nothing at request time but their own settings, so one endpoint,
//! [`Wrapped`], serves them all: a middleware implements [`Around`] and is named once in
//! `around_middleware!`.

use std::future::Future;

use poem::{Endpoint, IntoResponse, Request, Response, Result};

/// What a middleware does with each request, usually something before and after
/// passing it to `inner` with [`respond`].
pub trait Around: Clone + Send + Sync + 'static {
    fn around<E: Endpoint>(
        &self,
        inner: &E,
        req: Request,
    ) -> impl Future<Output = Result<Response>> + Send;
}

/// An endpoint wrapped in an [`Around`] middleware.
#[derive(Debug)]
pub struct Wrapped<A, E> {
    around: A,
    inner: E,
}

impl<A, E> Wrapped<A, E> {
    /// What `around_middleware!`'s `transform` returns.
    pub fn new(around: A, inner: E) -> Self {
        Self { around, inner }
    }
}

impl<A: Around, E: Endpoint> Endpoint for Wrapped<A, E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        self.around.around(&self.inner, req).await
    }
}

/// `inner`'s answer to `req`, as a response (errors stay errors).
///
/// The inner future is boxed: held inline, every middleware's future would contain all
/// the ones inside it, and each layer would copy that whole state into its own.
pub async fn respond<E: Endpoint>(inner: &E, req: Request) -> Result<Response> {
    Box::pin(inner.call(req))
        .await
        .map(IntoResponse::into_response)
}

/// `poem::Middleware` for [`Around`] types, wrapping each endpoint in [`Wrapped`]. (A
/// blanket impl can't be written: poem owns the trait.)
macro_rules! around_middleware {
    ($($around:ty),+ $(,)?) => {$(
        impl<E: poem::Endpoint> poem::Middleware<E> for $around {
            type Output = $crate::http::around::Wrapped<Self, E>;

            fn transform(&self, inner: E) -> Self::Output {
                $crate::http::around::Wrapped::new(self.clone(), inner)
            }
        }
    )+};
}

pub(crate) use around_middleware;
