//! Page-number pagination: the request parameters and the response shape of every list.

use std::collections::HashMap;
use std::hash::Hash;

use poem_openapi::Object;
use poem_openapi::types::{ParseFromJSON, ToJSON};

use crate::error::{ApiError, FieldError};

/// Items per page when the client does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest `size` accepted; more is a 422, never silently clamped.
pub const MAX_PAGE_SIZE: u32 = 100;

/// A validated `?page=&size=` pair: `page` from 1, `size` from 1 to [`MAX_PAGE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageParams {
    page: u32,
    size: u32,
}

impl PageParams {
    /// Checks the raw query values; bad ones are a 422 naming `page` or `size`.
    pub fn new(page: Option<u32>, size: Option<u32>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
        let mut errors = Vec::new();
        if page < 1 {
            errors.push(FieldError::new("page", "must be at least 1"));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            errors.push(FieldError::new(
                "size",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        if errors.is_empty() {
            Ok(Self { page, size })
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    pub fn page(self) -> u32 {
        self.page
    }

    pub fn size(self) -> u32 {
        self.size
    }

    /// Rows to skip: `(page - 1) * size`, in SQL's integer type.
    pub fn offset(self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.size)
    }

    /// Rows to fetch, in SQL's integer type.
    pub fn limit(self) -> i64 {
        i64::from(self.size)
    }
}

impl Default for PageParams {
    fn default() -> Self {
        Self {
            page: 1,
            size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// One page of rows from the data layer, with the total across all pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub params: PageParams,
}

impl<T> Listed<T> {
    /// Converts every item, e.g. rows into response objects.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Listed<U> {
        Listed {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            params: self.params,
        }
    }

    /// Gives each item its children from one query's `(parent key, child)` rows (users
    /// with their role names), so a page's children cost one round trip, not one per
    /// item. Children keep the rows' order; an item without rows gets none.
    pub fn attach<K: Eq + Hash, C, U>(
        self,
        rows: impl IntoIterator<Item = (K, C)>,
        key: impl Fn(&T) -> K,
        mut join: impl FnMut(T, Vec<C>) -> U,
    ) -> Listed<U> {
        let mut children: HashMap<K, Vec<C>> = HashMap::new();
        for (parent, child) in rows {
            children.entry(parent).or_default().push(child);
        }
        self.map(|item| {
            let own = children.remove(&key(&item)).unwrap_or_default();
            join(item, own)
        })
    }
}

/// A page of a list as clients see it. A page past the end is an empty page, not an error.
#[derive(Debug, Clone, Object)]
pub struct Page<T: ParseFromJSON + ToJSON> {
    pub items: Vec<T>,
    /// Items across all pages.
    pub total: u64,
    /// This page's number, from 1.
    pub page: u32,
    /// The page size used.
    pub size: u32,
    /// Number of pages (0 when there are no items).
    pub pages: u64,
}

impl<T: ParseFromJSON + ToJSON> From<Listed<T>> for Page<T> {
    fn from(listed: Listed<T>) -> Self {
        let total = u64::try_from(listed.total).unwrap_or(0);
        let size = listed.params.size();
        Self {
            items: listed.items,
            total,
            page: listed.params.page(),
            size,
            pages: total.div_ceil(u64::from(size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_offsets() {
        let params = PageParams::new(None, None).unwrap();
        assert_eq!((params.page(), params.size(), params.offset()), (1, 20, 0));
        let params = PageParams::new(Some(3), Some(50)).unwrap();
        assert_eq!((params.offset(), params.limit()), (100, 50));
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let Err(ApiError::Validation(errors)) = PageParams::new(Some(0), Some(101)) else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["page", "size"]);
        assert!(PageParams::new(Some(1), Some(0)).is_err());
        assert!(PageParams::new(Some(1), Some(MAX_PAGE_SIZE)).is_ok());
    }

    #[test]
    fn pages_round_up_and_empty_lists_have_none() {
        let params = PageParams::new(Some(2), Some(10)).unwrap();
        let page: Page<String> = Listed {
            items: vec!["k".to_owned()],
            total: 11,
            params,
        }
        .into();
        assert_eq!(
            (page.total, page.page, page.size, page.pages),
            (11, 2, 10, 2)
        );
        let empty: Page<String> = Listed {
            items: Vec::new(),
            total: 0,
            params,
        }
        .into();
        assert_eq!(empty.pages, 0);
    }
}
