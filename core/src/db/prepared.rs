//! Fewer round trips: statements that stay prepared on each connection ([`Prepared`]
//! for an UPDATE or INSERT, [`fixed`] for hand-written SQL), [`PlannedEachCall`] for
//! the queries that must not, and [`pipelined`], two statements sent together.
//!
//! diesel never keeps an UPDATE's prepared statement (a changeset that skips `None`
//! fields writes different SQL for one Rust type, so its type can't name it), nor one of
//! `sql_query`'s (its text could be built at run time), and diesel-async then prepares
//! it again on every call: a round trip to PostgreSQL, and a parse and plan there,
//! before the round trip that runs it. Keyed by its SQL text instead, which is what this
//! wrapper asks for, a statement is prepared once per connection; a changeset that
//! writes other SQL is simply another entry.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{
    AstPass, BoxedSqlQuery, InsertStatement, Query, QueryFragment, QueryId, SqlQuery,
    UpdateStatement,
};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;

/// A statement with the choice diesel can't make for it: whether the connection keeps
/// it prepared (`KEEP`), keyed by its SQL text and bind types, never by its Rust type.
#[derive(Debug, Clone, Copy)]
pub struct Caching<Q, const KEEP: bool>(Q);

/// A statement kept prepared per connection by its SQL text: an UPDATE or INSERT, or SQL
/// from [`fixed`]. diesel-async's cache never evicts, so wrap only statements with a few
/// texts: a changeset or row that skips `None`s has one per combination of fields, but
/// SQL built at run time or a multi-row INSERT of any length would grow it without bound.
///
/// ```ignore
/// diesel::update(sessions.find(id)).set(revoked_at.eq(now)).prepared().execute(conn)
/// ```
pub type Prepared<Q> = Caching<Q, true>;

/// A statement prepared and planned again for every call, never kept. For a query whose
/// best index depends on its values: PostgreSQL may settle on one generic plan for a
/// statement kept on the connection (after five runs, if it looks no dearer), and a
/// generic plan can't know which index is the short walk for these values.
pub type PlannedEachCall<Q> = Caching<Q, false>;

/// Wraps `query` in [`PlannedEachCall`].
pub fn planned_each_call<Q>(query: Q) -> PlannedEachCall<Q> {
    Caching(query)
}

/// Wraps an UPDATE or an INSERT in [`Prepared`].
pub trait KeepPrepared: Sized {
    fn prepared(self) -> Prepared<Self> {
        Caching(self)
    }
}

impl<T: diesel::QuerySource, U, V, Ret> KeepPrepared for UpdateStatement<T, U, V, Ret> {}

/// An INSERT whose values have `Option` fields writes `DEFAULT` or a parameter per
/// field, so diesel keeps none; each of those texts is one entry here.
impl<T: diesel::Table, U, Op, Ret> KeepPrepared for InsertStatement<T, U, Op, Ret> {}

/// `diesel::sql_query` for SQL written in the source, kept prepared per connection: the
/// text is a `&'static str`, so it can't vary from call to call (build varying SQL with
/// `sql_query`, which prepares it each time). Bind its `$n` parameters with
/// [`Fixed::bind`], in order; load rows into `QueryableByName` types, as `sql_query`'s.
///
/// ```ignore
/// db::fixed("SELECT id FROM users WHERE email = $1").bind::<Text, _>(email).load(conn)
/// ```
pub fn fixed<'f>(sql: &'static str) -> Fixed<'f> {
    Caching(diesel::sql_query(sql).into_boxed())
}

/// SQL from [`fixed`] and the parameters bound so far.
pub type Fixed<'f> = Prepared<BoxedSqlQuery<'f, Pg, SqlQuery>>;

impl<'f> Fixed<'f> {
    /// The next `$n` parameter.
    pub fn bind<ST, V>(self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'f,
        ST: Send + 'f,
    {
        Caching(self.0.bind::<ST, V>(value))
    }
}

impl<Q: QueryFragment<Pg>, const KEEP: bool> QueryFragment<Pg> for Caching<Q, KEEP> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    // Keeping is safe whatever the statement: with no static query id (below), the
    // cache is keyed by the SQL text and the bind types, never by the Rust type.
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(KEEP)
    }
}

impl<Q, const KEEP: bool> QueryId for Caching<Q, KEEP> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// An UPDATE … RETURNING or a SELECT loads rows like the statement it wraps.
impl<Q: Query, const KEEP: bool> Query for Caching<Q, KEEP> {
    type SqlType = Q::SqlType;
}

/// Both results of two statements sent together on one connection (pipelined: one
/// round trip, each given a shared `&AsyncPgConnection`), or the first one's error.
/// Once a statement fails inside a transaction, PostgreSQL answers the next with
/// "current transaction is aborted", which would hide why.
pub async fn pipelined<A, B, E>(
    first: impl Future<Output = Result<A, E>>,
    second: impl Future<Output = Result<B, E>>,
) -> Result<(A, B), E> {
    let (first, second) = futures_util::future::join(first, second).await;
    Ok((first?, second?))
}
