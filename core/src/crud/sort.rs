//! Sorting a list by a whitelisted key: `?sort=name` or `?sort=-created_at`.

use std::str::FromStr;

use diesel::ExpressionMethods;
use diesel::dsl::{Asc, Desc};
use diesel::query_dsl::methods::OrderDsl;
use poem_openapi::Enum;

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

impl<K: FromStr> Sort<K> {
    /// Parses `key` (ascending) or `-key` (descending); unset gives `default`. An unknown
    /// key is a 422 naming `sort` and listing what is allowed.
    pub fn parse(raw: Option<&str>, default: Sort<K>, allowed: &[&str]) -> Result<Self, ApiError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
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
