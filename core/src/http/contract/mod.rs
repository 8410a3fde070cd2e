//! Holding the server to its OpenAPI document.
//!
//! - [`EnforceDeclared`]: while tests run, an operation answering a status its entry
//!   doesn't declare is turned into a 500 naming the drift (and logged as an error), so
//!   a test that expected the undeclared status fails instead of the document silently
//!   lying. Installed by keel-app when `APP_ENV=test`.
//! - [`AnswerAllow`]: a 405 says which methods the path has (`Allow`, RFC 9110), read
//!   from the document. Always installed.
//! - [`shape::HoldToShape`]: JSON bodies have the types and fields their schema gives
//!   them. Always installed.
//! - [`RequiredScopes`]: the permission each operation lists as its OAuth2 scope, which
//!   the `Auth` extractor enforces. Always installed (as request data).
//! - [`rules::declare`]: the rules keel's guards enforce on every request, written into
//!   the document so clients and fuzzers know them.

pub mod rules;
pub mod shape;

use std::collections::HashMap;
use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::error::ResponseError;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, EndpointExt, PathPattern, Request, Response, Result};
use serde_json::Value;

use crate::error::ApiError;
use crate::http::around::{Around, around_middleware, respond};

/// `endpoint` held to its published `document`: each operation's scopes enforced by
/// `Auth` ([`RequiredScopes`]), request bodies to their schemas ([`shape::HoldToShape`]),
/// 405s answered with `Allow` ([`AnswerAllow`]) and, with `check_statuses` (tests),
/// undeclared statuses turned into failures ([`EnforceDeclared`]). keel-api and every
/// test harness wrap their routes in it, so they all serve the same contract.
pub fn hold<E: Endpoint + 'static>(
    endpoint: E,
    document: &Value,
    check_statuses: bool,
) -> BoxEndpoint<'static, Response> {
    // Read only where they are checked: production never looks at them.
    let statuses = if check_statuses {
        Arc::new(DeclaredStatuses::from_document(document))
    } else {
        Arc::default()
    };
    endpoint
        .data(Arc::new(RequiredScopes::from_document(document)))
        .with_if(check_statuses, EnforceDeclared(statuses))
        .with(shape::HoldToShape(Arc::new(
            shape::RequestShapes::from_document(document),
        )))
        .with(AnswerAllow(Arc::new(AllowedMethods::from_document(
            document,
        ))))
        .boxed()
}

/// Operation → the statuses its document entry declares.
#[derive(Debug, Default)]
pub struct DeclaredStatuses {
    /// Keyed by method and poem's route pattern (`/api/v1/users/:param0`).
    operations: HashMap<(Method, String), Vec<u16>>,
}

impl DeclaredStatuses {
    /// Reads an OpenAPI 3 document.
    pub fn from_document(document: &Value) -> Self {
        let mut operations: HashMap<_, Vec<u16>> = HashMap::new();
        for (key, operation) in by_operation(document) {
            let responses = operation["responses"].as_object().into_iter().flatten();
            let statuses = responses.filter_map(|(status, _)| status.parse::<u16>().ok());
            operations.entry(key).or_default().extend(statuses);
        }
        Self { operations }
    }

    /// `None` when no operation of the document matches (unknown routes, the docs).
    fn declares(&self, method: &Method, pattern: &str, status: u16) -> Option<bool> {
        let declared = self.operations.get(&(method.clone(), pattern.to_owned()))?;
        Some(status == 500 || declared.contains(&status))
    }
}

/// Operation → the permissions (OAuth2 scopes) its security requirement lists. Installed
/// as request data, it is what the `Auth` extractor holds a caller to: a permission is
/// declared once, as the operation's scope, and that one declaration is both what the
/// document shows and what the server checks.
#[derive(Debug, Default)]
pub struct RequiredScopes {
    /// By poem's route pattern, then method: looked up on every authenticated request,
    /// so by `&str`, without building a key.
    operations: HashMap<String, HashMap<Method, Vec<String>>>,
}

impl RequiredScopes {
    /// Reads an OpenAPI 3 document. Every scope an operation lists is required (keel
    /// declares one requirement per operation, so "all" is what it says); two document
    /// paths that poem routes alike (`/x/{a}`, `/x/{b}`) require what both list.
    pub fn from_document(document: &Value) -> Self {
        let mut operations: HashMap<String, HashMap<Method, Vec<String>>> = HashMap::new();
        for ((method, pattern), operation) in by_operation(document) {
            let requirements = operation["security"].as_array().into_iter().flatten();
            let schemes = requirements.filter_map(Value::as_object).flatten();
            let scopes = schemes
                .filter_map(|(_, scopes)| scopes.as_array())
                .flatten();
            let required = operations
                .entry(pattern)
                .or_default()
                .entry(method)
                .or_default();
            required.extend(scopes.filter_map(Value::as_str).map(str::to_owned));
            required.sort_unstable();
            required.dedup();
        }
        Self { operations }
    }

    /// What the operation `method` on poem's route `pattern` requires (a HEAD without an
    /// operation of its own is answered by GET's); `None` when the document has no such
    /// operation.
    pub fn of(&self, method: &Method, pattern: &str) -> Option<&[String]> {
        let methods = self.operations.get(pattern)?;
        let scopes = methods.get(method).or_else(|| {
            (method == Method::HEAD)
                .then(|| methods.get(&Method::GET))
                .flatten()
        })?;
        Some(scopes.as_slice())
    }
}

/// Every operation of the document, keyed by method and poem's route pattern.
fn by_operation(document: &Value) -> impl Iterator<Item = ((Method, String), &Value)> {
    paths(document).flat_map(|(path, item)| {
        let pattern = route_pattern(path);
        operations_of(item).map(move |(method, operation)| ((method, pattern.clone()), operation))
    })
}

/// The keys of a path item that are operations (the others: parameters, summary...).
const OPERATIONS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A document's paths and their items.
fn paths(document: &Value) -> impl Iterator<Item = (&str, &Value)> {
    let paths = document["paths"].as_object().into_iter().flatten();
    paths.map(|(path, item)| (path.as_str(), item))
}

/// A path item's operations, by method.
fn operations_of(item: &Value) -> impl Iterator<Item = (Method, &Value)> {
    item.as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| OPERATIONS.contains(&key.as_str()))
        .filter_map(|(key, operation)| Some((key.to_ascii_uppercase().parse().ok()?, operation)))
}

/// Path template → the methods the document gives it, for `Allow`.
#[derive(Debug, Default)]
pub struct AllowedMethods {
    /// Most specific template first, as the router picks them.
    paths: Vec<(PathTemplate, HeaderValue)>,
}

impl AllowedMethods {
    /// Reads an OpenAPI 3 document.
    pub fn from_document(document: &Value) -> Self {
        let mut templates = Vec::new();
        for (path, item) in paths(document) {
            let mut methods: Vec<String> = operations_of(item)
                .map(|(method, _)| method.to_string())
                .collect();
            methods.sort();
            let Ok(allow) = HeaderValue::from_str(&methods.join(", ")) else {
                continue;
            };
            templates.push((PathTemplate::parse(path), allow));
        }
        templates.sort_by_key(|(template, _)| template.parameters());
        Self { paths: templates }
    }

    /// The `Allow` value of the documented path `path` matches, if any.
    fn of(&self, path: &str) -> Option<&HeaderValue> {
        self.paths
            .iter()
            .find(|(template, _)| template.matches(path))
            .map(|(_, allow)| allow)
    }
}

/// A document path (`/users/{id}/roles`) as segments: `None` for a `{parameter}`.
#[derive(Debug, PartialEq, Eq)]
struct PathTemplate(Vec<Option<String>>);

impl PathTemplate {
    fn parse(path: &str) -> Self {
        Self(
            path.split('/')
                .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
                .collect(),
        )
    }

    fn parameters(&self) -> usize {
        self.0.iter().filter(|s| s.is_none()).count()
    }

    /// A request path this template names (a parameter matches one non-empty segment).
    fn matches(&self, path: &str) -> bool {
        let mut segments = path.split('/');
        self.0.iter().all(|t| match (t, segments.next()) {
            (Some(literal), Some(s)) => literal == s,
            (None, Some(s)) => !s.is_empty(),
            (_, None) => false,
        }) && segments.next().is_none()
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct AnswerAllow(pub Arc<AllowedMethods>);

around_middleware!(AnswerAllow);

impl Around for AnswerAllow {
    async fn around<E: Endpoint>(&self, inner: &E, req: Request) -> Result<Response> {
        let allow = self.0.of(req.uri().path()).cloned();
        let result = respond(inner, req).await;
        let not_allowed = match &result {
            Ok(response) => response.status() == StatusCode::METHOD_NOT_ALLOWED,
            Err(err) => err.status() == StatusCode::METHOD_NOT_ALLOWED,
        };
        match allow {
            Some(allow) if not_allowed => {
                let mut response = ApiError::MethodNotAllowed.as_response();
                response.headers_mut().insert(header::ALLOW, allow);
                Ok(response)
            }
            _ => result,
        }
    }
}

/// `/users/{id}/roles` as poem-openapi's router names it: `/users/:param0/roles`.
fn route_pattern(path: &str) -> String {
    let mut index = 0;
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                let name = format!(":param{index}");
                index += 1;
                name
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct EnforceDeclared(pub Arc<DeclaredStatuses>);

around_middleware!(EnforceDeclared);

impl Around for EnforceDeclared {
    async fn around<E: Endpoint>(&self, inner: &E, req: Request) -> Result<Response> {
        let method = req.method().clone();
        let result = respond(inner, req).await;
        let (status, pattern) = match &result {
            Ok(response) => (response.status(), response.data::<PathPattern>()),
            Err(err) => (err.status(), err.data::<PathPattern>()),
        };
        let Some(pattern) = pattern.map(|p| p.0.to_string()) else {
            return result;
        };
        if self.0.declares(&method, &pattern, status.as_u16()) == Some(false) {
            let drift = format!(
                "{method} {pattern} answered {status}, which its OpenAPI entry doesn't declare"
            );
            tracing::error!("{drift}");
            return Err(ApiError::internal(drift).into());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_scopes_are_read_per_operation_and_head_is_get() {
        let scopes = RequiredScopes::from_document(&serde_json::json!(
            {"paths": {"/a/{id}": {"get": {"security": [{"OAuth2": ["a:read"]}]},
                                   "patch": {"security": [{"OAuth2": ["a:read", "a:write"]}]},
                                   "delete": {}}}}
        ));
        assert_eq!(
            scopes.of(&Method::GET, "/a/:param0"),
            Some(&["a:read".to_owned()][..])
        );
        assert_eq!(
            scopes.of(&Method::HEAD, "/a/:param0"),
            scopes.of(&Method::GET, "/a/:param0")
        );
        assert_eq!(
            scopes.of(&Method::PATCH, "/a/:param0").map(<[String]>::len),
            Some(2)
        );
        assert_eq!(scopes.of(&Method::DELETE, "/a/:param0"), Some(&[][..]));
        assert_eq!(scopes.of(&Method::PUT, "/a/:param0"), None);
        assert_eq!(scopes.of(&Method::GET, "/a/{id}"), None);
    }

    #[test]
    fn a_head_of_its_own_and_paths_routed_alike_keep_the_stricter_scopes() {
        let scopes = RequiredScopes::from_document(&serde_json::json!(
            {"paths": {"/x/{a}": {"get": {"security": [{"OAuth2": ["x:read"]}]},
                                  "head": {"security": [{"OAuth2": ["x:audit"]}]}},
                       "/x/{b}": {"get": {"security": [{"OAuth2": []}]}}}}
        ));
        assert_eq!(
            scopes.of(&Method::HEAD, "/x/:param0"),
            Some(&["x:audit".to_owned()][..])
        );
        assert_eq!(
            scopes.of(&Method::GET, "/x/:param0"),
            Some(&["x:read".to_owned()][..])
        );
    }

    #[test]
    fn allow_lists_the_documented_methods_of_the_path() {
        let allowed = AllowedMethods::from_document(&serde_json::json!(
            {"paths": {"/a/{id}": {"get": {}, "patch": {}, "parameters": []},
                       "/a/{id}/b": {"put": {}},
                       "/a/all": {"post": {}}}}
        ));
        assert_eq!(
            allowed.of("/a/7").map(|v| v.to_str().unwrap()),
            Some("GET, PATCH")
        );
        assert_eq!(
            allowed.of("/a/7/b").map(|v| v.to_str().unwrap()),
            Some("PUT")
        );
        assert_eq!(
            allowed.of("/a/all").map(|v| v.to_str().unwrap()),
            Some("POST"),
            "the literal path, as the router picks it"
        );
        assert_eq!(allowed.of("/a//b"), None);
        assert_eq!(allowed.of("/c"), None);
    }

    #[test]
    fn document_paths_become_router_patterns() {
        assert_eq!(route_pattern("/api/v1/users"), "/api/v1/users");
        assert_eq!(
            route_pattern("/api/v1/users/{id}/roles"),
            "/api/v1/users/:param0/roles"
        );
        assert_eq!(route_pattern("/a/{x}/b/{y}"), "/a/:param0/b/:param1");
        let declared = DeclaredStatuses::from_document(&serde_json::json!(
            {"paths": {"/a/{id}": {"get": {"responses": {"200": {}, "404": {}}}}}}
        ));
        assert_eq!(
            declared.declares(&Method::GET, "/a/:param0", 404),
            Some(true)
        );
        assert_eq!(
            declared.declares(&Method::GET, "/a/:param0", 500),
            Some(true)
        );
        assert_eq!(
            declared.declares(&Method::GET, "/a/:param0", 401),
            Some(false)
        );
        assert_eq!(declared.declares(&Method::POST, "/a/:param0", 401), None);
    }
}
