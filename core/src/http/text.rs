//! [`StorableText`]: text PostgreSQL can't store is refused at the door.
//!
//! PostgreSQL's `text` and `jsonb` reject the NUL character (`invalid byte sequence for
//! encoding "UTF8": 0x00`), so a NUL reaching a query or an audit entry is a 500, and
//! would be in every feature that forgot a check. This guard looks once, for every
//! route, wherever a client puts text — the path, the query string, a JSON or form
//! body — and answers 422 naming the field before any handler runs. Other bodies
//! (uploads) pass through unread.

use bytes::Bytes;
use poem::{Endpoint, Request, Response, Result};
use serde_json::Value;

use super::around::{Around, around_middleware, respond};
use super::json;
use crate::error::{ApiError, FieldError};

const MESSAGE: &str = "must not contain NUL characters";

/// See the module docs. Install it inside the body limit, which bounds what it reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorableText;

around_middleware!(StorableText);

impl Around for StorableText {
    async fn around<E: Endpoint>(&self, inner: &E, mut req: Request) -> Result<Response> {
        if has_escaped_nul(req.uri().path().as_bytes()) {
            return Err(refused("path"));
        }
        if let Some(query) = req.uri().query()
            && let Some(field) = nul_in_form(query.as_bytes())
        {
            return Err(refused(&field));
        }
        let kind = req.content_type().and_then(BodyKind::of);
        if let Some(kind) = kind {
            let body: Bytes = req.take_body().into_bytes().await?;
            let found = match kind {
                BodyKind::Json => nul_in_json(&body),
                BodyKind::Form => nul_in_form(&body),
            };
            if let Some(field) = found {
                return Err(refused(&field));
            }
            req.set_body(body);
        }
        respond(inner, req).await
    }
}

#[derive(Debug, Clone, Copy)]
enum BodyKind {
    Json,
    Form,
}

impl BodyKind {
    /// Read as `JsonBody` and `FormBody` read them: by the same media types.
    fn of(content_type: &str) -> Option<Self> {
        if json::is_json(content_type) {
            Some(Self::Json)
        } else if json::is_form(content_type) {
            Some(Self::Form)
        } else {
            None
        }
    }
}

fn refused(field: &str) -> poem::Error {
    ApiError::Validation(vec![FieldError::new(field, MESSAGE)]).into()
}

fn has_escaped_nul(raw: &[u8]) -> bool {
    raw.windows(3).any(|w| w == b"%00")
}

/// The first key of a URL-encoded query or form whose key or value decodes to a NUL.
fn nul_in_form(raw: &[u8]) -> Option<String> {
    if !has_escaped_nul(raw) && !raw.contains(&0) {
        return None;
    }
    url::form_urlencoded::parse(raw)
        .find(|(key, value)| key.contains('\0') || value.contains('\0'))
        .map(|(key, _)| field_name(&key))
}

/// The dotted path (`items.0.name`) of the first string or key in a JSON document that
/// holds a NUL. A document that doesn't parse is left to the handler (400).
fn nul_in_json(raw: &[u8]) -> Option<String> {
    // JSON can carry a NUL only as the escape `\u0000`; most bodies never get parsed.
    if !raw.windows(6).any(|w| w == b"\\u0000") {
        return None;
    }
    let document: Value = serde_json::from_slice(raw).ok()?;
    let mut path = Vec::new();
    find_nul(&document, &mut path).then(|| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.join(".")
        }
    })
}

fn find_nul(value: &Value, path: &mut Vec<String>) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            path.push(i.to_string());
            let found = find_nul(item, path);
            if !found {
                path.pop();
            }
            found
        }),
        Value::Object(map) => map.iter().any(|(key, item)| {
            path.push(field_name(key));
            let found = key.contains('\0') || find_nul(item, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    }
}

/// A client's key as a field name: the NUL itself shown as U+FFFD.
fn field_name(key: &str) -> String {
    key.replace('\0', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_nuls_are_found_with_their_path() {
        let at = |raw: &str| nul_in_json(raw.as_bytes());
        assert_eq!(at(r#"{"email": "a\u0000b"}"#).as_deref(), Some("email"));
        assert_eq!(
            at(r#"{"items": [{"x": 1}, {"name": "\u0000"}]}"#).as_deref(),
            Some("items.1.name")
        );
        assert_eq!(at(r#"{"k\u0000": 1}"#).as_deref(), Some("k\u{fffd}"));
        assert_eq!(at(r#""\u0000""#).as_deref(), Some("body"));
        // An escaped backslash followed by "u0000" is six ordinary characters.
        assert_eq!(at(r#"{"email": "a\\u0000b"}"#), None);
        assert_eq!(at(r#"{"email": "plain"}"#), None);
        assert_eq!(at(r#"{"broken": "\u0000"#), None, "left to the parser");
    }

    #[test]
    fn form_and_query_nuls_name_the_key() {
        let at = |raw: &str| nul_in_form(raw.as_bytes());
        assert_eq!(at("username=a%00b&password=x").as_deref(), Some("username"));
        assert_eq!(at("a=1&search=%00").as_deref(), Some("search"));
        assert_eq!(at("a=%2500"), None, "an escaped percent sign");
        assert_eq!(at("a=1&b=2"), None);
    }

    #[test]
    fn only_json_and_form_bodies_are_read() {
        assert!(matches!(
            BodyKind::of("application/json; charset=utf-8"),
            Some(BodyKind::Json)
        ));
        assert!(matches!(
            BodyKind::of("application/merge-patch+json"),
            Some(BodyKind::Json)
        ));
        assert!(matches!(
            BodyKind::of("application/x-www-form-urlencoded"),
            Some(BodyKind::Form)
        ));
        assert!(BodyKind::of("image/png").is_none());
        assert!(BodyKind::of("application/octet-stream").is_none());
    }
}
