//! Reading the trail: filters and keyset pages, newest first. Writes are
//! [`crate::record`] only: there is no update or delete, here or in the database.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::expression::{AppearsOnTable, Expression, ValidGrouping, is_aggregate};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_core::crud::CursorParams;
use keel_core::db::{fixed, planned_each_call};

use crate::actions::Action;
use crate::models::{ActivityFilter, EntryRow, activity_entries};

/// One page (plus one row, to know whether more follow) of entries matching `filter`,
/// newest first by `(occurred_at, id)`, after the page's cursor.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &ActivityFilter,
    page: CursorParams,
) -> QueryResult<Vec<EntryRow>> {
    use activity_entries::dsl as e;
    let mut query = e::activity_entries.into_boxed();
    if let Some(actor) = filter.actor_id {
        query = query.filter(e::actor_id.eq(actor));
    }
    if let Some(action) = filter.action {
        query = query.filter(e::action.eq(action.as_str()));
    }
    if let Some(entity_type) = &filter.entity_type {
        query = query.filter(e::entity_type.eq(entity_type));
    }
    if let Some(entity_id) = &filter.entity_id {
        query = query.filter(e::entity_id.eq(entity_id));
    }
    if let Some(since) = filter.since {
        query = query.filter(e::occurred_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(e::occurred_at.lt(until));
    }
    if let Some(search) = filter.text.as_deref().and_then(WordSearch::parse) {
        if !search.whole.is_empty() {
            // The postings walk finds the page in order and applies every filter.
            return search_page(conn, filter, &search, page).await;
        }
        // Prefixes only: the full-text index finds them, unordered (see docs/activity.md).
        query = query.filter(
            sql::<Bool>("activity_entries.summary_words @@ to_tsquery('simple', ")
                .bind::<Text, _>(search.query)
                .sql(")"),
        );
    }
    if let Some(after) = page.after() {
        query = query.filter(Before {
            at: cursor_instant(after.sort),
            id: after.id,
        });
    }
    let query = query
        .order((e::occurred_at.desc(), e::id.desc()))
        .limit(page.fetch())
        .select(EntryRow::as_select());
    // One indexed filter: its index is the walk, whatever the values, so the statement
    // stays prepared on the connection. Two or more: which index is short depends on
    // the values (a busy actor and a rare action, or the reverse), so plan every call.
    let indexed = [
        filter.actor_id.is_some(),
        filter.action.is_some(),
        filter.entity_type.is_some(),
    ];
    if indexed.into_iter().filter(|&on| on).count() > 1 {
        planned_each_call(query).load(conn).await
    } else {
        query.load(conn).await
    }
}

/// `(occurred_at, id) < (at, id)`, strictly before a cursor: one row comparison, so
/// PostgreSQL seeks into the `(…, occurred_at, id)` indexes past every row at that very
/// instant (a transaction's entries share one). An expression of its own rather than a
/// `dsl::sql` fragment, which would make diesel prepare the statement for every page.
#[derive(Debug, Clone, Copy, QueryId)]
struct Before {
    at: DateTime<Utc>,
    id: i64,
}

impl Expression for Before {
    type SqlType = Bool;
}

impl AppearsOnTable<activity_entries::table> for Before {}

impl ValidGrouping<()> for Before {
    type IsAggregate = is_aggregate::Never;
}

impl QueryFragment<Pg> for Before {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("(activity_entries.occurred_at, activity_entries.id) < (");
        out.push_bind_param::<Timestamptz, _>(&self.at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.id)?;
        out.push_sql(")");
        Ok(())
    }
}

/// One page of a search, newest first, from `keel_activity_search`: it intersects the
/// ordered postings of the whole words with the actor/action/entity indexes, so it reads
/// about as many entries as the page needs, at any depth.
async fn search_page(
    conn: &mut AsyncPgConnection,
    filter: &ActivityFilter,
    search: &WordSearch,
    page: CursorParams,
) -> QueryResult<Vec<EntryRow>> {
    // Strictly before the cursor and before `until` (the smallest id at `until` is 1).
    let mut before = (DateTime::<Utc>::MAX_UTC, i64::MAX);
    if let Some(after) = page.after() {
        let at = cursor_instant(after.sort);
        before = before.min((at, after.id));
    }
    if let Some(until) = filter.until {
        before = before.min((until, 1));
    }
    fixed(
        "SELECT id, occurred_at, actor_id, actor_email, action, entity_type, entity_id, \
         summary, metadata, request_id, ip, user_agent \
         FROM keel_activity_search($1, to_tsquery('simple', $2), $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind::<Text, _>(&search.whole)
    .bind::<Text, _>(&search.query)
    .bind::<Nullable<diesel::sql_types::Uuid>, _>(filter.actor_id)
    .bind::<Nullable<Text>, _>(filter.action.map(Action::as_str))
    .bind::<Nullable<Text>, _>(filter.entity_type.as_deref())
    .bind::<Nullable<Text>, _>(filter.entity_id.as_deref())
    .bind::<Nullable<Timestamptz>, _>(filter.since)
    .bind::<Timestamptz, _>(before.0)
    .bind::<BigInt, _>(before.1)
    .bind::<Integer, _>(i32::try_from(page.fetch()).unwrap_or(i32::MAX))
    .load(conn)
    .await
}

/// A parsed `search`: words of the summary, all required; a word ending in `*` matches
/// words that start with it. Words keep letters, digits and `@._-` (an email is one
/// word) and are quoted in the tsquery, so the input can't inject operators.
#[derive(Debug, PartialEq, Eq)]
struct WordSearch {
    /// The whole words, space-separated: their postings are walked in page order.
    whole: String,
    /// Every word as a `to_tsquery` text: `ada* signed` → `'ada':* & 'signed'`.
    query: String,
}

impl WordSearch {
    /// `None` when no word is left.
    fn parse(search: &str) -> Option<Self> {
        let mut whole = Vec::new();
        let mut terms = Vec::new();
        for raw in search.split_whitespace() {
            let word: String = raw
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '@' | '.' | '_' | '-'))
                .collect();
            if !word.chars().any(char::is_alphanumeric) {
                continue;
            }
            if raw.ends_with('*') {
                terms.push(format!("'{word}':*"));
            } else {
                terms.push(format!("'{word}'"));
                whole.push(word);
            }
            if terms.len() == 8 {
                break;
            }
        }
        (!terms.is_empty()).then(|| Self {
            whole: whole.join(" "),
            query: terms.join(" & "),
        })
    }
}

/// A cursor's sort value as an instant PostgreSQL can compare: a cursor of the declared
/// form may name any microsecond, and one before year 1 finds what year 1 finds.
fn cursor_instant(micros: i64) -> DateTime<Utc> {
    const YEAR_1: i64 = -62_135_596_800_000_000;
    let latest = DateTime::<Utc>::MAX_UTC.timestamp_micros();
    DateTime::from_timestamp_micros(micros.clamp(YEAR_1, latest)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::WordSearch;

    fn parsed(search: &str) -> Option<(String, String)> {
        WordSearch::parse(search).map(|s| (s.whole, s.query))
    }

    #[test]
    fn searches_become_quoted_words_and_a_star_asks_for_a_prefix() {
        assert_eq!(
            parsed("Ada signed in"),
            Some(("Ada signed in".into(), "'Ada' & 'signed' & 'in'".into()))
        );
        assert_eq!(
            parsed("ada@example.com sign*"),
            Some((
                "ada@example.com".into(),
                "'ada@example.com' & 'sign':*".into()
            ))
        );
        assert_eq!(parsed("sign*"), Some((String::new(), "'sign':*".into())));
        // Operators and quotes are dropped, not interpreted.
        assert_eq!(
            parsed("a' | !b & (c) <-> d:*"),
            Some(("a b c".into(), "'a' & 'b' & 'c' & 'd':*".into()))
        );
        assert_eq!(parsed("  |&!  "), None);
    }
}
