//! JSON request bodies held to the shape their document entry gives them.
//!
//! poem-openapi reads a JSON number or boolean into a string field (`{"email": 5}`), a
//! `null` into an optional field as if it were absent, and ignores fields it doesn't
//! know, so a client's mistake is quietly reinterpreted and the document says
//! otherwise. [`HoldToShape`] checks every JSON body against its operation's schema
//! before the handler runs: each value has its declared type, `null` only where the
//! schema is nullable, and no field the schema closes out (`additionalProperties:
//! false`, which [`super::rules::declare`] sets on request bodies). Every broken rule is
//! one entry of a single 422. Lengths, patterns and enums stay with poem-openapi's
//! validators; this guard only sees what they can't.

use std::sync::Arc;

use bytes::Bytes;
use poem::http::Method;
use poem::{Endpoint, Request, Response, Result};
use serde_json::{Map, Value};

use super::{PathTemplate, operations_of, paths};
use crate::error::{ApiError, FieldError};
use crate::http::around::{Around, around_middleware, respond};
use crate::http::json;

/// Operation → the schema of its JSON request body, read once from the document.
#[derive(Debug, Default)]
pub struct RequestShapes {
    /// Every operation, with its JSON body's schema if it takes one; most specific
    /// template first (fewest parameters), as the router prefers `/notes/read-all` to
    /// `/notes/{id}`.
    operations: Vec<(PathTemplate, Method, Option<Value>)>,
    /// `components.schemas`, for `$ref`s.
    components: Map<String, Value>,
}

impl RequestShapes {
    /// Reads an OpenAPI 3 document.
    pub fn from_document(document: &Value) -> Self {
        let mut operations = Vec::new();
        for (path, item) in paths(document) {
            for (method, operation) in operations_of(item) {
                let content = operation["requestBody"]["content"].as_object();
                let schema = content
                    .into_iter()
                    .flatten()
                    .find_map(|(media, body)| json::is_json(media).then(|| body["schema"].clone()));
                operations.push((PathTemplate::parse(path), method, schema));
            }
        }
        operations.sort_by_key(|(template, _, _)| template.parameters());
        let components = document["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        Self {
            operations,
            components,
        }
    }

    /// The body schema of the operation the router would pick for `path`: the most
    /// specific template matching it, then the method (none: the router answers 405).
    fn schema_of(&self, method: &Method, path: &str) -> Option<&Value> {
        let (template, _, _) = self.operations.iter().find(|(t, _, _)| t.matches(path))?;
        self.operations
            .iter()
            .find(|(t, m, _)| t == template && m == method)
            .and_then(|(_, _, schema)| schema.as_ref())
    }

    /// The rules `body` breaks, one per field.
    fn broken(&self, schema: &Value, body: &Value) -> Vec<FieldError> {
        let mut walk = Walk {
            components: &self.components,
            path: Vec::new(),
            errors: Vec::new(),
        };
        walk.check(schema, body, 0);
        walk.errors
    }
}

/// How deep `$ref`s and nesting are followed; request schemas are a few levels deep,
/// and a recursive schema must not recurse forever.
const MAX_DEPTH: usize = 32;

/// Broken rules reported at most: a body of a million wrong items gets a short answer.
const MAX_ERRORS: usize = 20;

struct Walk<'a> {
    components: &'a Map<String, Value>,
    path: Vec<String>,
    errors: Vec<FieldError>,
}

impl Walk<'_> {
    fn check(&mut self, schema: &Value, value: &Value, depth: usize) {
        if depth > MAX_DEPTH || self.errors.len() >= MAX_ERRORS {
            return;
        }
        if value.is_null() && schema["nullable"] == Value::Bool(true) {
            return;
        }
        if let Some(name) = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            if let Some(target) = self.components.get(name) {
                self.check(target, value, depth + 1);
            }
            return;
        }
        if let Some(all) = schema["allOf"].as_array() {
            for part in all {
                self.check(part, value, depth + 1);
            }
        }
        if value.is_null() {
            if schema.get("type").is_some() {
                self.refuse("must not be null");
            }
            return;
        }
        match schema["type"].as_str() {
            Some("string") if !value.is_string() => self.refuse("must be a string"),
            Some("integer") if !(value.is_i64() || value.is_u64()) => {
                self.refuse("must be an integer")
            }
            Some("number") if !value.is_number() => self.refuse("must be a number"),
            Some("boolean") if !value.is_boolean() => self.refuse("must be true or false"),
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.path.push(i.to_string());
                        self.check(&schema["items"], item, depth + 1);
                        self.path.pop();
                    }
                }
                None => self.refuse("must be an array"),
            },
            Some("object") => match value.as_object() {
                Some(fields) => self.check_fields(schema, fields, depth),
                None => self.refuse("must be an object"),
            },
            _ => {}
        }
    }

    fn check_fields(&mut self, schema: &Value, fields: &Map<String, Value>, depth: usize) {
        let closed = schema["additionalProperties"] == Value::Bool(false);
        for (key, value) in fields {
            self.path.push(key.replace('\0', "\u{fffd}"));
            match schema["properties"].get(key) {
                Some(property) => self.check(property, value, depth + 1),
                None if closed => self.refuse("is not a field of this request"),
                None => {}
            }
            self.path.pop();
        }
    }

    fn refuse(&mut self, message: &str) {
        if self.errors.len() >= MAX_ERRORS {
            return;
        }
        let field = if self.path.is_empty() {
            "body".to_owned()
        } else {
            self.path.join(".")
        };
        self.errors.push(FieldError::new(&field, message));
    }
}

/// See the module docs. Install it inside the body limit, which bounds what it reads.
#[derive(Debug, Clone)]
pub struct HoldToShape(pub Arc<RequestShapes>);

around_middleware!(HoldToShape);

impl Around for HoldToShape {
    async fn around<E: Endpoint>(&self, inner: &E, mut req: Request) -> Result<Response> {
        let is_json = req.content_type().is_some_and(json::is_json);
        let schema = is_json
            .then(|| self.0.schema_of(req.method(), req.uri().path()))
            .flatten();
        if let Some(schema) = schema {
            let body: Bytes = req.take_body().into_bytes().await?;
            // A body that isn't JSON at all is the handler's to refuse (400).
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                let errors = self.0.broken(schema, &value);
                if !errors.is_empty() {
                    return Err(ApiError::Validation(errors).into());
                }
            }
            req.set_body(body);
        }
        respond(inner, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> RequestShapes {
        RequestShapes::from_document(&serde_json::from_str(
            r##"{
              "paths": {"/things/{id}": {"patch": {"requestBody": {"content": {
                "application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/Edit"}}}}}}},
              "components": {"schemas": {
                "Edit": {"type": "object", "additionalProperties": false, "properties": {
                  "name": {"type": "string"},
                  "size": {"type": "integer"},
                  "tags": {"type": "array", "items": {"type": "string"}},
                  "kind": {"allOf": [{"$ref": "#/components/schemas/Kind"}], "description": "x"},
                  "note": {"type": "string", "nullable": true}}},
                "Kind": {"type": "string", "enum": ["a", "b"]}}}
            }"##,
        )
        .unwrap())
    }

    fn broken(body: &str) -> Vec<(String, String)> {
        let shapes = shapes();
        let schema = shapes
            .schema_of(&Method::PATCH, "/things/7")
            .unwrap()
            .clone();
        shapes
            .broken(&schema, &serde_json::from_str(body).unwrap())
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn a_well_shaped_body_passes() {
        assert!(
            broken(r#"{"name": "x", "size": 3, "tags": ["a"], "kind": "a", "note": null}"#)
                .is_empty()
        );
        assert!(broken("{}").is_empty());
    }

    #[test]
    fn every_misshapen_field_is_named() {
        let errors =
            broken(r#"{"name": 5, "size": 1.5, "tags": ["a", true], "kind": null, "extra": 1}"#);
        let mut fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["extra", "kind", "name", "size", "tags.1"],
            "{errors:?}"
        );
        assert!(broken(r#"{"name": null}"#)[0].1.contains("null"));
        assert_eq!(broken("[]")[0].0, "body");
    }

    #[test]
    fn a_million_wrong_items_get_a_short_answer() {
        let tags: Vec<Value> = (0..100_000).map(Value::from).collect();
        let body = serde_json::json!({ "tags": tags }).to_string();
        assert_eq!(broken(&body).len(), MAX_ERRORS);
    }

    #[test]
    fn the_most_specific_template_decides() {
        let shapes = RequestShapes::from_document(&serde_json::json!({"paths": {
            "/n/{id}": {"patch": {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}},
            "/n/all": {"post": {}}
        }}));
        assert!(shapes.schema_of(&Method::PATCH, "/n/7").is_some());
        assert!(
            shapes.schema_of(&Method::PATCH, "/n/all").is_none(),
            "the router answers 405 there, not the {{id}} operation"
        );
    }

    #[test]
    fn only_documented_json_operations_have_a_shape() {
        let shapes = shapes();
        assert!(shapes.schema_of(&Method::PATCH, "/things/7").is_some());
        assert!(shapes.schema_of(&Method::GET, "/things/7").is_none());
        assert!(shapes.schema_of(&Method::PATCH, "/things").is_none());
    }
}
