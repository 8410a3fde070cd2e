//! [`JsonBody`]: the JSON request-body extractor keel handlers use.
//!
//! poem-openapi's `Json<T>` reports a missing or mistyped field without naming it. This
//! extractor answers 400 for a body that is not JSON at all, and 422 with
//! `errors[{field, message}]` for well-formed JSON that does not fit the type, found by
//! checking the document against the same OpenAPI schema the docs publish.

use std::ops::{Deref, DerefMut};

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::Value;

use crate::error::{ApiError, FieldError};

/// A media type without its parameters, lowercased: `Application/JSON; charset=utf-8`
/// is `application/json`.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` or `application/<anything>+json`, with any parameters.
pub fn is_json(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence
        .strip_prefix("application/")
        .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
}

/// `application/x-www-form-urlencoded`, with any parameters.
pub fn is_form(content_type: &str) -> bool {
    essence(content_type) == "application/x-www-form-urlencoded"
}

/// A JSON request body parsed into `T`; use it where poem-openapi's `Json<T>` would go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for JsonBody<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    /// `application/json` and `application/<anything>+json`, with any parameters.
    fn check_content_type(content_type: &str) -> bool {
        is_json(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        if data.is_empty() {
            return Err(ApiError::BadRequest(
                "The request body is empty; a JSON document is expected.".to_owned(),
            )
            .into());
        }
        parse::<T>(&data).map(Self)
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

/// A JSON body the client may leave out entirely (no body, or an empty one); when one
/// is sent, it is read exactly like [`JsonBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<'a, T: ParseFromJSON> ApiExtractor<'a> for OptionalJsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: T::schema_ref(),
            }],
            required: false,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        if data.is_empty() {
            return Ok(Self(None));
        }
        // A body must say what it is: the guards in front of every route read JSON
        // bodies by their declared type (see `http::text`).
        match request.content_type() {
            Some(content_type) if JsonBody::<T>::check_content_type(content_type) => {}
            Some(content_type) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Expected application/json, got {content_type}."
                ))
                .into());
            }
            None => {
                return Err(ApiError::UnsupportedMediaType(
                    "A body needs Content-Type: application/json.".to_owned(),
                )
                .into());
            }
        }
        parse::<T>(&data).map(|v| Self(Some(v)))
    }
}

/// Reads `data` as `T`: 400 when it is not JSON, 422 naming each field that doesn't fit.
fn parse<T: ParseFromJSON>(data: &[u8]) -> poem::Result<T> {
    let value: Value = serde_json::from_slice(data).map_err(|err| {
        ApiError::BadRequest(format!("The request body is not valid JSON: {err}."))
    })?;
    // Only the failure path pays for a second parse and the schema walk.
    checked(value, || {
        serde_json::from_slice(data).unwrap_or(Value::Null)
    })
}

/// `value` as `T`, or 422 naming each field of `again()` (the same document) that
/// doesn't fit `T`'s schema.
fn checked<T: ParseFromJSON>(value: Value, again: impl FnOnce() -> Value) -> poem::Result<T> {
    T::parse_from_json(Some(value)).map_err(|err| {
        let mut errors = schema_errors::<T>(&again());
        if errors.is_empty() {
            errors.push(FieldError::new("body", err.into_message()));
        }
        ApiError::Validation(errors).into()
    })
}

/// A URL-encoded form body (`application/x-www-form-urlencoded`, e.g. the OAuth2
/// password grant) read into `T` by [`JsonBody`]'s rules: each field is a JSON string
/// checked against `T`'s published schema, so a form and a JSON body of one operation
/// share their limits and their 422s. (poem-openapi's `Form` applies no validators.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormBody<T>(pub T);

impl<T> Deref for FormBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for FormBody<T> {
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";

    fn check_content_type(content_type: &str) -> bool {
        is_form(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for FormBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        let fields: serde_json::Map<String, Value> = url::form_urlencoded::parse(&data)
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect();
        let value = Value::Object(fields);
        checked(value.clone(), || value).map(Self)
    }
}

poem_openapi::impl_apirequest_for_payload!(FormBody<T>, T: ParseFromJSON);

/// Everything in `value` that does not fit `T`'s published schema, by field path.
pub fn schema_errors<T: Type>(value: &Value) -> Vec<FieldError> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    let mut errors = Vec::new();
    Checker {
        registry: &registry,
        errors: &mut errors,
    }
    .check(&T::schema_ref(), value, "");
    errors
}

struct Checker<'a> {
    registry: &'a Registry,
    errors: &'a mut Vec<FieldError>,
}

impl Checker<'_> {
    fn resolve<'s>(&'s self, schema: &'s MetaSchemaRef) -> Option<&'s MetaSchema> {
        match schema {
            MetaSchemaRef::Inline(schema) => Some(schema),
            MetaSchemaRef::Reference(name) => self.registry.schemas.get(name),
        }
    }

    fn fail(&mut self, path: &str, message: impl Into<String>) {
        let field = if path.is_empty() { "body" } else { path };
        self.errors.push(FieldError::new(field, message));
    }

    fn check(&mut self, schema: &MetaSchemaRef, value: &Value, path: &str) {
        let Some(schema) = self.resolve(schema).cloned() else {
            return;
        };
        if value.is_null() {
            if !schema.nullable {
                self.fail(path, "must not be null");
            }
            return;
        }
        for part in &schema.all_of {
            self.check(part, value, path);
        }
        if !schema.enum_items.is_empty() && !schema.enum_items.contains(value) {
            let allowed: Vec<String> = schema.enum_items.iter().map(Value::to_string).collect();
            self.fail(path, format!("must be one of {}", allowed.join(", ")));
            return;
        }
        match schema.ty {
            "object" => self.check_object(&schema, value, path),
            "array" => match value.as_array() {
                Some(items) => {
                    if let Some(item_schema) = &schema.items {
                        for (i, item) in items.iter().enumerate() {
                            self.check(item_schema, item, &join(path, &i.to_string()));
                        }
                    }
                }
                None => self.fail(path, "must be an array"),
            },
            "string" => match value.as_str() {
                Some(s) => {
                    let len = s.chars().count();
                    if let Some(min) = schema.min_length.filter(|min| len < *min) {
                        self.fail(path, format!("must be at least {min} characters long"));
                    }
                    if let Some(max) = schema.max_length.filter(|max| len > *max) {
                        self.fail(path, format!("must be at most {max} characters long"));
                    }
                    if let Some(pattern) = &schema.pattern
                        && super::formats::compiled(pattern).is_some_and(|re| !re.is_match(s))
                    {
                        self.fail(path, format!("must match the pattern {pattern}"));
                    }
                }
                None => self.fail(path, "must be a string"),
            },
            "integer" => match value
                .as_i64()
                .map(i128::from)
                .or(value.as_u64().map(i128::from))
            {
                Some(n) => {
                    if let Some((lo, hi)) = integer_range(schema.format)
                        && (n < lo || n > hi)
                    {
                        self.fail(path, format!("must be an integer from {lo} to {hi}"));
                        return;
                    }
                    self.check_bounds(&schema, n as f64, path);
                }
                None => self.fail(path, "must be an integer"),
            },
            "number" => match value.as_f64() {
                Some(n) => self.check_bounds(&schema, n, path),
                None => self.fail(path, "must be a number"),
            },
            "boolean" if !value.is_boolean() => self.fail(path, "must be true or false"),
            _ => {}
        }
    }

    fn check_object(&mut self, schema: &MetaSchema, value: &Value, path: &str) {
        let Some(object) = value.as_object() else {
            self.fail(path, "must be an object");
            return;
        };
        for name in &schema.required {
            if object.get(*name).is_none_or(Value::is_null) {
                self.fail(&join(path, name), "is required");
            }
        }
        for (name, property) in &schema.properties {
            if let Some(field) = object.get(*name).filter(|v| !v.is_null()) {
                self.check(property, field, &join(path, name));
            }
        }
    }

    fn check_bounds(&mut self, schema: &MetaSchema, n: f64, path: &str) {
        if let Some(min) = schema.minimum.filter(|min| n < *min) {
            self.fail(path, format!("must be at least {min}"));
        }
        if let Some(max) = schema.maximum.filter(|max| n > *max) {
            self.fail(path, format!("must be at most {max}"));
        }
    }
}

fn join(path: &str, segment: &str) -> String {
    if path.is_empty() {
        segment.to_owned()
    } else {
        format!("{path}.{segment}")
    }
}

/// The range poem-openapi enforces for an integer format.
fn integer_range(format: Option<&str>) -> Option<(i128, i128)> {
    Some(match format? {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" => (i64::MIN.into(), i64::MAX.into()),
        "uint8" => (0, u8::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint64" => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// A JSON response body serialized once and served as is: for a hot cached read (a
/// page every reader gets the same), so a request costs a copy of bytes instead of a
/// clone and a serialization. Documented in the OpenAPI spec exactly as `Json<T>`.
pub struct CachedJson<T> {
    bytes: bytes::Bytes,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for CachedJson<T> {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            _type: std::marker::PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for CachedJson<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedJson")
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl<T: poem_openapi::types::ToJSON> CachedJson<T> {
    pub fn new(value: &T) -> Self {
        // A JSON value always serializes.
        let bytes = serde_json::to_vec(&value.to_json()).unwrap_or_default();
        Self {
            bytes: bytes.into(),
            _type: std::marker::PhantomData,
        }
    }
}

impl<T: Type + Send> Payload for CachedJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Send> poem::IntoResponse for CachedJson<T> {
    fn into_response(self) -> poem::Response {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(self.bytes)
    }
}

impl<T: Type + Send> poem_openapi::ApiResponse for CachedJson<T> {
    fn meta() -> poem_openapi::registry::MetaResponses {
        ok_json::<T>()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// A 200 with a JSON body of `T`, as the document declares `Json<T>`.
fn ok_json<T: Type>() -> poem_openapi::registry::MetaResponses {
    poem_openapi::registry::MetaResponses {
        responses: vec![poem_openapi::registry::MetaResponse {
            description: "",
            status: Some(200),
            status_range: None,
            content: vec![MetaMediaType {
                content_type: "application/json; charset=utf-8",
                schema: T::schema_ref(),
            }],
            headers: vec![],
        }],
    }
}

/// A JSON response body serialized by serde straight from `T`. poem-openapi's `Json<T>`
/// first builds a `serde_json::Value` tree of the whole body (every string copied), then
/// writes that; this writes the body once: for a hot response. `T`'s `Serialize` must
/// write the document its `ToJSON` writes, which [`serializes_as_documented`] checks in a
/// test (object keys come in declaration order, where `ToJSON`'s are sorted). Documented
/// in the OpenAPI spec exactly as `Json<T>`.
#[derive(Debug, Clone)]
pub struct SerdeJson<T>(pub T);

impl<T: Type + Send> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: serde::Serialize + Send> poem::IntoResponse for SerdeJson<T> {
    fn into_response(self) -> poem::Response {
        poem::web::Json(self.0).into_response()
    }
}

impl<T: Type + serde::Serialize + Send> poem_openapi::ApiResponse for SerdeJson<T> {
    fn meta() -> poem_openapi::registry::MetaResponses {
        ok_json::<T>()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// `#[serde(serialize_with = "keel_core::http::json::rfc3339")]`: a time as its
/// `ToJSON` writes it (`to_rfc3339`, `+00:00`), where chrono's serde writes `Z`.
pub fn rfc3339<S: serde::Serializer>(
    time: &chrono::DateTime<chrono::Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&time.to_rfc3339())
}

/// Whether `value` serializes by serde to the same JSON document as by its `ToJSON`, the
/// form the OpenAPI document describes (key order aside: JSON objects have none): the
/// test every [`SerdeJson`] body type needs.
pub fn serializes_as_documented<T>(value: &T) -> bool
where
    T: serde::Serialize + poem_openapi::types::ToJSON,
{
    serde_json::to_value(value).ok() == value.to_json()
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Object)]
    struct Address {
        city: String,
    }

    #[derive(Debug, Object)]
    struct Person {
        #[oai(validator(min_length = 2, max_length = 5))]
        name: String,
        age: u8,
        #[oai(validator(pattern = "^[a-z]+$"))]
        nickname: Option<String>,
        address: Address,
        tags: Vec<String>,
    }

    fn fields(value: Value) -> Vec<(String, String)> {
        schema_errors::<Person>(&value)
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn names_missing_and_mistyped_fields() {
        let errors = fields(json!({
            "name": "a",
            "age": 300,
            "address": {"city": 7},
            "tags": ["ok", 1],
            "nickname": "Not Lowercase",
        }));
        assert_eq!(
            errors,
            [
                ("name".into(), "must be at least 2 characters long".into()),
                ("age".into(), "must be an integer from 0 to 255".into()),
                ("nickname".into(), "must match the pattern ^[a-z]+$".into()),
                ("address.city".into(), "must be a string".into()),
                ("tags.1".into(), "must be a string".into()),
            ]
        );
        let errors = fields(json!({"nickname": null}));
        let missing: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(missing, ["name", "age", "address", "tags"]);
        assert!(errors.iter().all(|(_, m)| m == "is required"));
    }

    #[test]
    fn a_fitting_document_has_no_errors() {
        let value = json!({"name": "ada", "age": 36, "address": {"city": "London"}, "tags": []});
        assert!(fields(value).is_empty());
    }

    #[test]
    fn json_content_types() {
        assert!(JsonBody::<Person>::check_content_type("application/json"));
        assert!(JsonBody::<Person>::check_content_type(
            "application/json; charset=utf-8"
        ));
        assert!(JsonBody::<Person>::check_content_type(
            "application/merge-patch+json"
        ));
        assert!(!JsonBody::<Person>::check_content_type("text/plain"));
    }
}
