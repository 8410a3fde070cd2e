//! Sorting a list by a whitelisted key: `?sort=name` or `?sort=-created_at`.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::str::FromStr;

use diesel::ExpressionMethods;
use diesel::dsl::{Asc, Desc};
use diesel::query_dsl::methods::OrderDsl;
use poem_openapi::Enum;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseFromParameter, ParseResult, Type};

use crate::error::{ApiError, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// A sort key and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sort<K> {
    pub key: K,
    pub order: SortOrder,
}

/// The keys a list can be sorted by, as clients write them; `FromStr` reads each.
/// Declare one with [`sort_keys!`](crate::sort_keys).
pub trait SortKey: FromStr + Send + Sync + 'static {
    const KEYS: &'static [&'static str];
}

/// Declares a [`SortKey`] enum, each variant with the name clients write:
///
/// ```ignore
/// keel_core::sort_keys! {
///     /// The orders a list of widgets comes in.
///     pub enum WidgetSort { Name = "name", CreatedAt = "created_at" }
/// }
/// ```
#[macro_export]
macro_rules! sort_keys {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($variant:ident = $key:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($variant),+
        }

        impl $crate::crud::SortKey for $name {
            const KEYS: &'static [&'static str] = &[$($key),+];
        }

        impl ::std::str::FromStr for $name {
            type Err = ();

            fn from_str(s: &str) -> ::std::result::Result<Self, ()> {
                match s {
                    $($key => Ok(Self::$variant),)+
                    _ => Err(()),
                }
            }
        }
    };
}

impl<K: FromStr> Sort<K> {
    /// Parses `key` (ascending) or `-key` (descending), exactly; unset gives `default`.
    /// Anything else is a 422 naming `sort` and listing what is allowed.
    pub fn parse(raw: Option<&str>, default: Sort<K>, allowed: &[&str]) -> Result<Self, ApiError> {
        let Some(raw) = raw else {
            return Ok(default);
        };
        let (order, name) = match raw.strip_prefix('-') {
            Some(name) => (SortOrder::Desc, name),
            None => (SortOrder::Asc, raw),
        };
        match name.parse() {
            Ok(key) => Ok(Self { key, order }),
            Err(_) => Err(ApiError::Validation(vec![FieldError::new(
                "sort",
                format!(
                    "must be one of {} (prefix with - for descending)",
                    allowed.join(", ")
                ),
            )])),
        }
    }
}

/// The `sort` query parameter of a list sorted by `K`: documented as the enum of every
/// value [`Sort::parse`] accepts, so clients see the choices; anything else still reaches
/// [`SortParam::resolve`], whose 422 lists them.
#[derive(Debug, Clone)]
pub struct SortParam<K> {
    raw: String,
    key: PhantomData<fn() -> K>,
}

impl<K: SortKey> SortParam<K> {
    /// The sort the query asks for, or `default` without one.
    pub fn resolve(param: Option<Self>, default: Sort<K>) -> Result<Sort<K>, ApiError> {
        Sort::parse(param.as_ref().map(|p| p.raw.as_str()), default, K::KEYS)
    }
}

impl<K: SortKey> Type for SortParam<K> {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string(sort)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        schema.enum_items = K::KEYS
            .iter()
            .flat_map(|key| [(*key).into(), format!("-{key}").into()])
            .collect();
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<K: SortKey> ParseFromParameter for SortParam<K> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self {
            raw: value.to_owned(),
            key: PhantomData,
        })
    }
}

impl<K> Sort<K> {
    pub fn asc(key: K) -> Self {
        Self {
            key,
            order: SortOrder::Asc,
        }
    }

    pub fn desc(key: K) -> Self {
        Self {
            key,
            order: SortOrder::Desc,
        }
    }

    /// Orders `query` by `column` in this sort's direction.
    pub fn apply<Q, C>(&self, query: Q, column: C) -> Q
    where
        C: ExpressionMethods,
        Q: OrderDsl<Asc<C>, Output = Q> + OrderDsl<Desc<C>, Output = Q>,
    {
        match self.order {
            SortOrder::Asc => OrderDsl::<Asc<C>>::order(query, column.asc()),
            SortOrder::Desc => OrderDsl::<Desc<C>>::order(query, column.desc()),
        }
    }
}
