//! Text fields documented with a JSON Schema `format`, so client generators and fuzzers
//! know the rule. They read any JSON string: the service that parses the value keeps
//! its own 422, naming the field, for one that breaks the rule.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

/// `Deref<Target = str>`, a string schema with `format`, JSON read from a string only
/// (poem-openapi's own `String` also takes numbers and booleans), and a query parameter.
macro_rules! impl_text_type {
    ($ty:ident, $name:literal, $format:expr) => {
        impl std::ops::Deref for $ty {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Type for $ty {
            const IS_REQUIRED: bool = true;

            type RawValueType = Self;

            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                $name.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", $format)))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        impl ParseFromJSON for $ty {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value.unwrap_or_default() {
                    Value::String(text) => Ok(Self(text)),
                    other => Err(ParseError::expected_type(other)),
                }
            }
        }

        impl ParseFromParameter for $ty {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Ok(Self(value.to_owned()))
            }
        }

        impl ToJSON for $ty {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }
    };
}

/// A permission code (`resource:action`): the published document lists the codes the
/// features declare as its enum ([`crate::http::contract::rules::declare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionCode(pub String);

/// The placeholder format [`PermissionCode`] carries until the document lists the codes.
pub const PERMISSION_FORMAT: &str = "permission";

impl_text_type!(PermissionCode, "string_permission", PERMISSION_FORMAT);

/// An audit action's name (`noun.verb`): the published document lists the actions the
/// features declare as its enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionName(pub String);

/// The placeholder format [`ActionName`] carries until the document lists the actions.
pub const ACTION_FORMAT: &str = "audit-action";

impl_text_type!(ActionName, "string_audit_action", ACTION_FORMAT);

/// An email address as a client sends it (`format: email`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailText(pub String);

impl_text_type!(EmailText, "string_email", "email");
