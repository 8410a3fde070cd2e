//! Text fields documented with their rule, so client generators and fuzzers know it: a
//! JSON Schema `format` for those that read any JSON string (the service that parses
//! the value keeps its own 422, naming the field, for one that breaks the rule), and a
//! `pattern` for a [`Text`], which refuses what doesn't match.

use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use regex::Regex;
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

        impl From<$ty> for String {
            fn from(text: $ty) -> Self {
                text.0
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

/// The rule of a [`Text`]: a `pattern` the document declares and every value matches.
pub trait TextRule: Send + Sync + 'static {
    /// Names the value in messages and in the schema registry (`string_NAME`).
    const NAME: &'static str;
    /// A regular expression in the syntax of the `regex` crate (which is also what
    /// poem-openapi's `pattern` validator and [`compiled`] use).
    const PATTERN: &'static str;
}

/// A string that matches `R`'s pattern, declared as that `pattern` in the document.
/// It replaces poem-openapi's `pattern` validator, which compiles its regular expression
/// again for every value of every request (up to a hundred a body, in a list of role
/// names); [`compiled`] compiles each pattern once. Length limits stay field validators.
pub struct Text<R>(String, PhantomData<fn() -> R>);

impl<R: TextRule> Text<R> {
    /// `text`, if it matches the rule.
    pub fn new(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        if compiled(R::PATTERN).is_some_and(|re| re.is_match(&text)) {
            Ok(Self(text, PhantomData))
        } else {
            Err(format!("{} must match the pattern {}", R::NAME, R::PATTERN))
        }
    }
}

impl<R> Clone for Text<R> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<R> PartialEq for Text<R> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<R> Eq for Text<R> {}

impl<R> std::fmt::Debug for Text<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<R> std::ops::Deref for Text<R> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<R> AsRef<str> for Text<R> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<R> From<Text<R>> for String {
    fn from(text: Text<R>) -> Self {
        text.0
    }
}

impl<R: TextRule> Type for Text<R> {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        format!("string_{}", R::NAME).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some(R::PATTERN.to_owned()),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<R: TextRule> ParseFromJSON for Text<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(text) => Self::new(text).map_err(ParseError::custom),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<R: TextRule> ParseFromParameter for Text<R> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::new(value).map_err(ParseError::custom)
    }
}

impl<R: TextRule> ToJSON for Text<R> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// `pattern` compiled, once per process: the patterns are the document's, a fixed few.
/// `None` for one that doesn't compile, which then matches nothing. Shared, not cloned: a
/// cloned `Regex` starts without the match caches the shared one keeps warm.
pub fn compiled(pattern: &str) -> Option<Arc<Regex>> {
    static COMPILED: LazyLock<RwLock<HashMap<String, Option<Arc<Regex>>>>> =
        LazyLock::new(RwLock::default);
    if let Some(found) = COMPILED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(pattern)
    {
        return found.clone();
    }
    let regex = Regex::new(pattern).ok().map(Arc::new);
    COMPILED
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pattern.to_owned(), regex.clone());
    regex
}

/// Declares a [`Text`] type and its rule:
///
/// ```ignore
/// text_rule! {
///     /// A role's name: lowercase letters, digits, `-` and `_`, starting with a letter.
///     pub RoleName = RoleNameRule("role_name", "^[a-z][a-z0-9_-]{1,62}$");
/// }
/// ```
#[macro_export]
macro_rules! text_rule {
    ($(#[$doc:meta])* $vis:vis $text:ident = $rule:ident($name:literal, $pattern:literal);) => {
        #[doc = concat!("The rule of [`", stringify!($text), "`].")]
        #[derive(Debug, Clone, Copy)]
        $vis struct $rule;

        impl $crate::http::formats::TextRule for $rule {
            const NAME: &'static str = $name;
            const PATTERN: &'static str = $pattern;
        }

        $(#[$doc])*
        $vis type $text = $crate::http::formats::Text<$rule>;
    };
}

text_rule! {
    /// Text without control characters (C0, DEL, C1): what a person reads, such as a name.
    pub PlainText = NoControls("plain_text", r"^[^\u0000-\u001f\u007f-\u009f]*$");
}

/// Empty, which has none.
impl Default for PlainText {
    fn default() -> Self {
        Self(String::new(), PhantomData)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Broken;

    impl TextRule for Broken {
        const NAME: &'static str = "broken";
        const PATTERN: &'static str = "^(unclosed$";
    }

    #[test]
    fn a_text_is_declared_by_its_pattern_and_refuses_what_it_does_not_match() {
        let MetaSchemaRef::Inline(schema) = PlainText::schema_ref() else {
            panic!("a text's schema is inline");
        };
        assert_eq!(
            (schema.ty, schema.pattern.as_deref()),
            ("string", Some(NoControls::PATTERN))
        );
        let parse = |value: Value| PlainText::parse_from_json(Some(value)).map(String::from);
        assert_eq!(
            parse(Value::from("Ada Lovelace")).ok().as_deref(),
            Some("Ada Lovelace")
        );
        for refused in ["a\u{0}b", "tab\there", "line\n", "del\u{7f}", "c1\u{85}"] {
            assert!(parse(Value::from(refused)).is_err(), "{refused:?}");
        }
        assert!(parse(Value::from(42)).is_err(), "a number is not text");
        assert!(PlainText::parse_from_parameter("a\u{1b}[0m").is_err());
        assert_eq!(PlainText::default().len(), 0);
    }

    #[test]
    fn patterns_compile_once_and_a_broken_one_matches_nothing() {
        let first = compiled(NoControls::PATTERN).unwrap();
        let again = compiled(NoControls::PATTERN).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same compiled regex");
        assert!(compiled(Broken::PATTERN).is_none());
        assert!(Text::<Broken>::new("unclosed").is_err());
    }
}
