//! Cursor (keyset) pagination, for lists that grow without bound: each page is an index
//! range scan after the last key seen, so page 10,000 costs what page 1 costs. The key is
//! a pair: the sort value (e.g. a timestamp in microseconds) and the row id that breaks
//! ties, matching an index on `(sort column, id)`.

use std::borrow::Cow;

use poem_openapi::Object;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};

use super::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::error::{ApiError, FieldError};

/// Where a page ends: the last row's sort value and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CursorKey {
    pub sort: i64,
    pub id: i64,
}

/// A validated `?cursor=&size=`: continue after `after` (newest first: below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CursorParams {
    after: Option<CursorKey>,
    size: u32,
}

impl CursorParams {
    /// Checks the raw query values; a bad cursor or size is a 422 naming the field.
    pub fn new(cursor: Option<&str>, size: Option<u32>) -> Result<Self, ApiError> {
        let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
        let mut errors = Vec::new();
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            errors.push(FieldError::new(
                "size",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        let after = match cursor.map(decode).transpose() {
            Ok(after) => after,
            Err(()) => {
                errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor this API returned (use next_cursor as given)",
                ));
                None
            }
        };
        if errors.is_empty() {
            Ok(Self { after, size })
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    /// The last key of the previous page, if any.
    pub fn after(self) -> Option<CursorKey> {
        self.after
    }

    pub fn size(self) -> u32 {
        self.size
    }

    /// Rows to fetch: one more than a page, to learn whether another page follows.
    pub fn fetch(self) -> i64 {
        i64::from(self.size) + 1
    }

    /// Trims rows fetched with [`CursorParams::fetch`] to a page, with the cursor of the
    /// next page when there is one.
    pub fn page<T>(self, mut rows: Vec<T>, key: impl Fn(&T) -> CursorKey) -> Cursored<T> {
        let more = rows.len() > self.size as usize;
        rows.truncate(self.size as usize);
        let next_cursor = if more {
            rows.last().map(|row| encode(key(row)))
        } else {
            None
        };
        Cursored {
            items: rows,
            next_cursor,
        }
    }
}

/// One page of a cursor-paginated list, as services return it (routes answer it as a
/// [`CursorPage`]).
#[derive(Debug, Clone)]
pub struct Cursored<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Cursored<T> {
    /// Converts every item, e.g. rows into response objects.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Cursored<U> {
        Cursored {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

impl<T: ParseFromJSON + ToJSON> From<Cursored<T>> for CursorPage<T> {
    fn from(page: Cursored<T>) -> Self {
        Self {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

/// A page of a cursor-paginated list.
// Serializable by serde too, for `SerdeJson` (the document its `ToJSON` would write).
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct CursorPage<T: ParseFromJSON + ToJSON> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The cursor's format, as the document declares it: 32 lowercase hex digits (the sort
/// value's and the id's big-endian bytes). Every string of that form is a key, so a
/// client holding one the API didn't give gets an ordinary page, never an error the
/// document didn't announce. A new format takes another length or alphabet.
pub const CURSOR_PATTERN: &str = "^[0-9a-f]{32}$";

/// The `cursor` query parameter: declared as [`CURSOR_PATTERN`], and checked without a
/// regular expression (poem-openapi's `pattern` validator compiles its regex on every
/// request: a tenth of an audit page's time in keel-api). Read it with
/// [`CursorParams::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl std::ops::Deref for Cursor {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Type for Cursor {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "cursor".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some(CURSOR_PATTERN.to_owned()),
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

impl ParseFromParameter for Cursor {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        match decode(value) {
            Ok(_) => Ok(Self(value.to_owned())),
            Err(()) => Err(ParseError::custom(format!(
                "does not match {CURSOR_PATTERN} (use next_cursor as given)"
            ))),
        }
    }
}

fn encode(key: CursorKey) -> String {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&key.sort.to_be_bytes());
    bytes[8..].copy_from_slice(&key.id.to_be_bytes());
    crate::hex::encode(&bytes)
}

fn decode(cursor: &str) -> Result<CursorKey, ()> {
    let lowercase_hex = cursor.len() == 32
        && cursor
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let bytes = lowercase_hex
        .then(|| crate::hex::decode(cursor))
        .flatten()
        .ok_or(())?;
    let half = |at: usize| {
        bytes
            .get(at..at + 8)?
            .try_into()
            .ok()
            .map(i64::from_be_bytes)
    };
    Ok(CursorKey {
        sort: half(0).ok_or(())?,
        id: half(8).ok_or(())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_422_on_cursor() {
        let key = |id: &i64| CursorKey {
            sort: -id * 10,
            id: *id,
        };
        let params = CursorParams::new(None, Some(2)).unwrap();
        let page = params.page(vec![9_i64, 8, 7], key);
        assert_eq!(page.items, [9, 8]);
        let next = page.next_cursor.unwrap();
        assert_eq!(
            CursorParams::new(Some(&next), Some(2)).unwrap().after(),
            Some(CursorKey { sort: -80, id: 8 })
        );
        let last = params.page(vec![1_i64], key);
        assert!(last.next_cursor.is_none());

        let pattern = regex::Regex::new(CURSOR_PATTERN).unwrap();
        assert!(pattern.is_match(&next), "{next} is what the document says");
        assert_eq!(&*Cursor::parse_from_parameter(&next).unwrap(), next);
        assert_eq!(
            CursorParams::new(Some(&"f".repeat(32)), None)
                .unwrap()
                .after(),
            Some(CursorKey { sort: -1, id: -1 }),
            "any cursor of the declared form reads"
        );

        for bad in [
            "",
            "not hex!",
            &"0".repeat(31),
            &"A".repeat(32),
            &"0".repeat(34),
            &format!("{}\n", "0".repeat(32)),
            &format!("{}٠", "0".repeat(31)),
        ] {
            let Err(ApiError::Validation(errors)) = CursorParams::new(Some(bad), None) else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(errors[0].field, "cursor");
            // The parameter refuses exactly what the declared pattern refuses.
            assert!(!pattern.is_match(bad), "{bad:?}");
            assert!(Cursor::parse_from_parameter(bad).is_err(), "{bad:?}");
        }
        let Err(ApiError::Validation(errors)) = CursorParams::new(None, Some(101)) else {
            panic!("size 101 accepted");
        };
        assert_eq!(errors[0].field, "size");
    }
}
