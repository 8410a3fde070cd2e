//! `CrudBase`: the data-access contract every feature table implements, written once.
//!
//! A feature declares its row, insert form, change set, whitelisted filters and sort keys,
//! and stamps the implementation with [`impl_crud!`](crate::impl_crud): get, create,
//! update, delete, count and a paginated, filtered, sorted list. Every function takes a
//! `&mut AsyncPgConnection`, so it runs on a pooled connection or inside a transaction
//! alike. No business rules and no commits live here: services own those.
//!
//! The implementation is a macro rather than default trait methods because diesel's
//! generic bounds for "any table" (rust-lang/rust#102211) cost more to read than the few
//! lines the macro expands to for each concrete table.

mod cursor;
mod page;
mod sort;

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

pub use cursor::{CURSOR_PATTERN, Cursor, CursorKey, CursorPage, CursorParams, Cursored};
pub use page::{DEFAULT_PAGE_SIZE, Listed, MAX_PAGE_SIZE, Page, PageParams};
pub use sort::{Sort, SortKey, SortOrder, SortParam};

/// A `LIKE`/`ILIKE` pattern matching `text` anywhere, with `%`, `_` and `\` in the
/// user's input matching themselves rather than acting as wildcards.
pub fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The [`contains_pattern`] of a search box's text, trimmed; `None` when it is blank, as
/// a blank search narrows nothing.
pub fn search_pattern(search: Option<&str>) -> Option<String> {
    search
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(contains_pattern)
}

/// Data access for one table. Implement it with [`impl_crud!`](crate::impl_crud).
pub trait CrudBase {
    /// The row as loaded (`Queryable + Selectable`).
    type Row: Send;
    /// The primary key.
    type Id: Copy + Send;
    /// The insert form (`Insertable`).
    type NewRow: Sync;
    /// The partial update (`AsChangeset`; `None` fields stay unchanged).
    type Changes: Sync;
    /// The filters a list accepts; `Default` filters nothing.
    type Filter: Default + Sync;
    /// The columns a list may be sorted by.
    type SortKey: Copy + Send + Sync;

    /// The row with this id; `NotFound` (→ 404) when there is none.
    fn get(
        conn: &mut AsyncPgConnection,
        id: Self::Id,
    ) -> impl Future<Output = QueryResult<Self::Row>> + Send;

    fn create(
        conn: &mut AsyncPgConnection,
        new: &Self::NewRow,
    ) -> impl Future<Output = QueryResult<Self::Row>> + Send;

    /// Applies `changes` and returns the updated row; `NotFound` when there is none.
    /// A change set with no fields (an empty `PATCH`) changes nothing and returns the
    /// row as it is.
    fn update(
        conn: &mut AsyncPgConnection,
        id: Self::Id,
        changes: &Self::Changes,
    ) -> impl Future<Output = QueryResult<Self::Row>> + Send;

    /// Whether a row was deleted.
    fn delete(
        conn: &mut AsyncPgConnection,
        id: Self::Id,
    ) -> impl Future<Output = QueryResult<bool>> + Send;

    /// Rows matching `filter`.
    fn count(
        conn: &mut AsyncPgConnection,
        filter: &Self::Filter,
    ) -> impl Future<Output = QueryResult<i64>> + Send;

    /// One page of rows matching `filter` in `sort` order (ties broken by id, so pages
    /// never overlap), with the total count.
    fn list(
        conn: &mut AsyncPgConnection,
        filter: &Self::Filter,
        sort: Sort<Self::SortKey>,
        page: PageParams,
    ) -> impl Future<Output = QueryResult<Listed<Self::Row>>> + Send;
}

/// What [`impl_crud!`](crate::impl_crud) expands to needs; not for direct use. The
/// expansion calls `RunQueryDsl` methods by path, so a caller's `diesel::prelude::*`
/// (whose sync `RunQueryDsl` has the same method names) can't make them ambiguous.
#[doc(hidden)]
pub mod __private {
    pub use diesel;
    pub use diesel_async;
}

/// Implements [`CrudBase`] for a table.
///
/// ```ignore
/// impl_crud! {
///     WidgetCrud {
///         table: widgets::table,
///         id: widgets::id => i32,
///         row: Widget,
///         new: NewWidget,
///         changes: WidgetChanges,
///         filter: WidgetFilter => filter_widgets,
///         sort: WidgetSort => sort_widgets,
///     }
/// }
///
/// /// Whitelisted filters: each `Some` narrows the list.
/// fn filter_widgets<'a>(query: widgets::BoxedQuery<'a, Pg>, f: &'a WidgetFilter)
///     -> widgets::BoxedQuery<'a, Pg> { ... }
///
/// /// Whitelisted sort keys, each mapped to its column.
/// fn sort_widgets(query: widgets::BoxedQuery<'_, Pg>, sort: Sort<WidgetSort>)
///     -> widgets::BoxedQuery<'_, Pg> {
///     match sort.key {
///         WidgetSort::Name => sort.apply(query, widgets::name),
///         WidgetSort::CreatedAt => sort.apply(query, widgets::created_at),
///     }
/// }
/// ```
#[macro_export]
macro_rules! impl_crud {
    (
        $crud:ident {
            table: $table:path,
            id: $id_column:path => $id:ty,
            row: $row:ty,
            new: $new:ty,
            changes: $changes:ty,
            filter: $filter:ty => $apply_filter:path,
            sort: $sort:ty => $apply_sort:path $(,)?
        }
    ) => {
        impl $crate::crud::CrudBase for $crud {
            type Row = $row;
            type Id = $id;
            type NewRow = $new;
            type Changes = $changes;
            type Filter = $filter;
            type SortKey = $sort;

            fn get(
                conn: &mut $crate::crud::__private::diesel_async::AsyncPgConnection,
                id: $id,
            ) -> impl ::std::future::Future<
                Output = $crate::crud::__private::diesel::QueryResult<$row>,
            > + Send {
                use $crate::crud::__private::diesel::{QueryDsl, SelectableHelper};
                async move {
                    let query = $table.find(id).select(<$row>::as_select());
                    $crate::crud::__private::diesel_async::RunQueryDsl::get_result(query, conn)
                        .await
                }
            }

            fn create(
                conn: &mut $crate::crud::__private::diesel_async::AsyncPgConnection,
                new: &$new,
            ) -> impl ::std::future::Future<
                Output = $crate::crud::__private::diesel::QueryResult<$row>,
            > + Send {
                use $crate::crud::__private::diesel::SelectableHelper;
                async move {
                    // Kept prepared: one text per combination of `None` fields.
                    let query = $crate::db::KeepPrepared::prepared(
                        $crate::crud::__private::diesel::insert_into($table)
                            .values(new)
                            .returning(<$row>::as_returning()),
                    );
                    $crate::crud::__private::diesel_async::RunQueryDsl::get_result(query, conn)
                        .await
                }
            }

            fn update(
                conn: &mut $crate::crud::__private::diesel_async::AsyncPgConnection,
                id: $id,
                changes: &$changes,
            ) -> impl ::std::future::Future<
                Output = $crate::crud::__private::diesel::QueryResult<$row>,
            > + Send {
                use $crate::crud::__private::diesel::result::OptionalEmptyChangesetExtension;
                use $crate::crud::__private::diesel::{QueryDsl, SelectableHelper};
                async move {
                    let query = $crate::db::KeepPrepared::prepared(
                        $crate::crud::__private::diesel::update($table.find(id))
                            .set(changes)
                            .returning(<$row>::as_returning()),
                    );
                    // diesel refuses an UPDATE with no columns before sending it.
                    match $crate::crud::__private::diesel_async::RunQueryDsl::get_result(
                        query, conn,
                    )
                    .await
                    .optional_empty_changeset()?
                    {
                        Some(row) => Ok(row),
                        None => <Self as $crate::crud::CrudBase>::get(conn, id).await,
                    }
                }
            }

            fn delete(
                conn: &mut $crate::crud::__private::diesel_async::AsyncPgConnection,
                id: $id,
            ) -> impl ::std::future::Future<
                Output = $crate::crud::__private::diesel::QueryResult<bool>,
            > + Send {
                use $crate::crud::__private::diesel::QueryDsl;
                async move {
                    let query = $crate::crud::__private::diesel::delete($table.find(id));
                    $crate::crud::__private::diesel_async::RunQueryDsl::execute(query, conn)
                        .await
                        .map(|deleted| deleted > 0)
                }
            }

            fn count(
                conn: &mut $crate::crud::__private::diesel_async::AsyncPgConnection,
                filter: &$filter,
            ) -> impl ::std::future::Future<
                Output = $crate::crud::__private::diesel::QueryResult<i64>,
            > + Send {
                use $crate::crud::__private::diesel::QueryDsl;
                async move {
                    let query = $apply_filter($table.into_boxed(), filter).count();
                    $crate::crud::__private::diesel_async::RunQueryDsl::get_result(query, conn)
                        .await
                }
            }

            fn list(
                conn: &mut $crate::crud::__private::diesel_async::AsyncPgConnection,
                filter: &$filter,
                sort: $crate::crud::Sort<$sort>,
                page: $crate::crud::PageParams,
            ) -> impl ::std::future::Future<
                Output = $crate::crud::__private::diesel::QueryResult<$crate::crud::Listed<$row>>,
            > + Send {
                use $crate::crud::__private::diesel::dsl::count_star;
                use $crate::crud::__private::diesel::expression_methods::WindowExpressionMethods;
                use $crate::crud::__private::diesel::{QueryDsl, SelectableHelper};
                async move {
                    // One round trip: every row carries the filtered total.
                    let query = $apply_sort($apply_filter($table.into_boxed(), filter), sort)
                        .then_order_by($id_column)
                        .select((<$row>::as_select(), count_star().over()))
                        .offset(page.offset())
                        .limit(page.limit());
                    let rows: Vec<($row, i64)> =
                        $crate::crud::__private::diesel_async::RunQueryDsl::load(query, conn)
                            .await?;
                    // Slice `first` by path: a caller's diesel prelude has a `first` for any type.
                    let total = match <[_]>::first(&rows) {
                        Some((_, total)) => *total,
                        None if page.offset() == 0 => 0,
                        // Past the end: no row to carry the total, so count.
                        None => <Self as $crate::crud::CrudBase>::count(conn, filter).await?,
                    };
                    let items = rows.into_iter().map(|(row, _)| row).collect();
                    Ok($crate::crud::Listed {
                        items,
                        total,
                        params: page,
                    })
                }
            }
        }
    };
}
