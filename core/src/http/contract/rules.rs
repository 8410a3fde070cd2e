//! The rules keel's guards hold every request to, written into the document.
//!
//! poem-openapi derives each schema from its Rust type, which knows nothing of the
//! guards around the handlers, so without this the document promises more than the
//! server accepts and a client generator or fuzzer learns the rules by being refused:
//! - text may not contain NUL ([`crate::http::text::StorableText`] refuses it): every
//!   request string without a pattern, format or enum gets the pattern [`NO_NUL`];
//! - a JSON request body may not carry fields its schema doesn't name
//!   ([`super::shape::HoldToShape`] refuses them): its objects get
//!   `additionalProperties: false`;
//! - a [`PermissionCode`](crate::http::formats::PermissionCode) or an
//!   [`ActionName`](crate::http::formats::ActionName) is one the features declare: its
//!   placeholder format becomes the enum of their codes or actions.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::OPERATIONS;
use crate::http::formats::{ACTION_FORMAT, PERMISSION_FORMAT};
use crate::http::json;

/// Any text without a NUL character (ECMA-262, as JSON Schema's `pattern` is read).
pub const NO_NUL: &str = r"^[^\u0000]*$";

/// Writes the rules into `document` (an OpenAPI 3 document); `permissions` are the
/// codes the features declare, `actions` the audit actions they record.
pub fn declare(document: &mut Value, permissions: &[&str], actions: &[&str]) {
    let values = |names: &[&str]| names.iter().map(|&n| Value::from(n)).collect();
    let mut reached = Reached {
        enums: vec![
            (PERMISSION_FORMAT, values(permissions)),
            (ACTION_FORMAT, values(actions)),
        ],
        ..Reached::default()
    };
    let mut paths = document["paths"].take();
    for item in paths
        .as_object_mut()
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        for (key, operation) in item.as_object_mut().into_iter().flatten() {
            if !OPERATIONS.contains(&key.as_str()) {
                continue;
            }
            let parameters = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut);
            for parameter in parameters.into_iter().flatten() {
                if let Some(schema) = parameter.get_mut("schema") {
                    reached.visit(schema, false);
                }
            }
            let content = operation
                .get_mut("requestBody")
                .and_then(|body| body.get_mut("content"))
                .and_then(Value::as_object_mut);
            for (media, body) in content.into_iter().flatten() {
                if let Some(schema) = body.get_mut("schema") {
                    reached.visit(schema, json::is_json(media));
                }
            }
        }
    }
    document["paths"] = paths;
    let mut components = document["components"]["schemas"].take();
    if let Some(schemas) = components.as_object_mut() {
        reached.close_over(schemas);
    }
    document["components"]["schemas"] = components;
}

/// The components request bodies and parameters reach, and whether through JSON.
#[derive(Default)]
struct Reached {
    /// Placeholder formats and the values that replace them.
    enums: Vec<(&'static str, Vec<Value>)>,
    pending: Vec<(String, bool)>,
    done: BTreeSet<(String, bool)>,
}

impl Reached {
    /// Marks `schema` in place and queues the components it refers to.
    fn visit(&mut self, schema: &mut Value, json: bool) {
        if let Some(name) = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            self.pending.push((name.to_owned(), json));
            return;
        }
        // The shape guard follows `allOf` only, so only there are objects closed.
        for (key, closes) in [("allOf", json), ("oneOf", false), ("anyOf", false)] {
            let parts = schema.get_mut(key).and_then(Value::as_array_mut);
            for part in parts.into_iter().flatten() {
                self.visit(part, closes);
            }
        }
        let declared = self
            .enums
            .iter()
            .find(|(format, _)| schema["format"] == *format);
        match schema["type"].as_str() {
            Some("string") if declared.is_some() => {
                let values = declared
                    .map(|(_, values)| values.clone())
                    .unwrap_or_default();
                if let Some(schema) = schema.as_object_mut() {
                    schema.remove("format");
                }
                schema["enum"] = Value::Array(values);
            }
            Some("string") => {
                let free = ["pattern", "format", "enum"]
                    .iter()
                    .all(|k| schema.get(k).is_none());
                if free {
                    schema["pattern"] = NO_NUL.into();
                }
            }
            Some("array") => {
                if let Some(items) = schema.get_mut("items") {
                    self.visit(items, json);
                }
            }
            Some("object") => {
                if json && schema.get("additionalProperties").is_none() {
                    schema["additionalProperties"] = false.into();
                }
                let properties = schema.get_mut("properties").and_then(Value::as_object_mut);
                for property in properties.into_iter().flat_map(|p| p.values_mut()) {
                    self.visit(property, json);
                }
            }
            _ => {}
        }
    }

    /// Visits every queued component, and those they refer to, once each.
    fn close_over(&mut self, schemas: &mut Map<String, Value>) {
        while let Some(next) = self.pending.pop() {
            if !self.done.insert(next.clone()) {
                continue;
            }
            let (name, json) = next;
            if let Some(schema) = schemas.get_mut(&name) {
                self.visit(schema, json);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_text_and_json_objects_are_marked() {
        let mut document: Value = serde_json::from_str(
            r##"{
              "paths": {"/x": {
                "get": {"parameters": [
                  {"name": "q", "schema": {"type": "string"}},
                  {"name": "id", "schema": {"type": "string", "format": "uuid"}},
                  {"name": "action", "schema": {"type": "string", "format": "audit-action"}}]},
                "post": {"requestBody": {"content": {
                  "application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/In"}},
                  "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/Form"}}}}}}},
              "components": {"schemas": {
                "In": {"type": "object", "properties": {
                  "name": {"type": "string", "maxLength": 9},
                  "kind": {"allOf": [{"$ref": "#/components/schemas/Kind"}]},
                  "tags": {"type": "array", "items": {"type": "string"}},
                  "grants": {"type": "array", "items": {"type": "string", "format": "permission"}},
                  "nested": {"$ref": "#/components/schemas/In"}}},
                "Kind": {"type": "string", "enum": ["a"]},
                "Form": {"type": "object", "properties": {"user": {"type": "string"}}},
                "Out": {"type": "object", "properties": {"name": {"type": "string"}}}}}
            }"##,
        )
        .unwrap();
        declare(&mut document, &["a:read"], &["a.done"]);
        let get = &document["paths"]["/x"]["get"]["parameters"];
        assert_eq!(get[0]["schema"]["pattern"], NO_NUL);
        assert!(
            get[1]["schema"].get("pattern").is_none(),
            "a uuid can't hold NUL"
        );
        assert_eq!(
            get[2]["schema"],
            serde_json::json!({"type": "string", "enum": ["a.done"]})
        );
        let schemas = &document["components"]["schemas"];
        assert_eq!(schemas["In"]["additionalProperties"], false);
        assert_eq!(schemas["In"]["properties"]["name"]["pattern"], NO_NUL);
        assert_eq!(
            schemas["In"]["properties"]["tags"]["items"]["pattern"],
            NO_NUL
        );
        let grants = &schemas["In"]["properties"]["grants"]["items"];
        assert_eq!(grants["enum"], serde_json::json!(["a:read"]));
        assert!(grants.get("format").is_none() && grants.get("pattern").is_none());
        assert!(
            schemas["Kind"].get("pattern").is_none(),
            "an enum names its values"
        );
        assert_eq!(schemas["Form"]["properties"]["user"]["pattern"], NO_NUL);
        assert!(
            schemas["Form"].get("additionalProperties").is_none(),
            "form bodies aren't held to their shape"
        );
        assert!(schemas["Out"].get("additionalProperties").is_none());
        assert!(
            schemas["Out"]["properties"]["name"]
                .get("pattern")
                .is_none()
        );
        assert!(
            !document.to_string().contains("null"),
            "nothing is added where the document had nothing"
        );
    }
}
