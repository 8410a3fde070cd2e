//! Reading the trail: filters and keyset pages, newest first. Writes are
//! [`crate::record`] only: there is no update or delete, here or in the database.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_core::crud::CursorParams;
use uuid::Uuid;

use crate::actions::Action;
use crate::models::{EntryRow, activity_entries};

/// What a reader filters on; each `Some` narrows the list.
#[derive(Debug, Default, Clone)]
pub struct ActivityFilter {
    pub actor_id: Option<Uuid>,
    pub action: Option<Action>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// From this instant, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Before this instant, exclusive.
    pub until: Option<DateTime<Utc>>,
    /// Words of the summary, case-insensitive; `word*` matches words starting so.
    pub text: Option<String>,
}

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
    if let Some(words) = filter.text.as_deref().and_then(word_query) {
        query = query.filter(
            sql::<Bool>("activity_entries.summary_words @@ to_tsquery('simple', ")
                .bind::<Text, _>(words)
                .sql(")"),
        );
    }
    if let Some(after) = page.after() {
        // A row comparison, so PostgreSQL seeks straight into the `(…, occurred_at, id)`
        // index instead of filtering.
        let at = DateTime::<Utc>::from_timestamp_micros(after.sort).unwrap_or_default();
        query = query.filter(
            sql::<Bool>("(activity_entries.occurred_at, activity_entries.id) < (")
                .bind::<Timestamptz, _>(at)
                .sql(", ")
                .bind::<BigInt, _>(after.id)
                .sql(")"),
        );
    }
    query
        .order((e::occurred_at.desc(), e::id.desc()))
        .limit(page.fetch())
        .select(EntryRow::as_select())
        .load(conn)
        .await
}

/// A `to_tsquery` text matching every word of `search`; a word ending in `*` matches
/// words that start with it: `ada* signed in` → `'ada':* & 'signed' & 'in'`. Whole words
/// are the default because PostgreSQL answers them from the index alone, while a short
/// prefix can stand for most of the trail. Words keep letters, digits and `@._-` (an
/// email is one word) and are quoted, so the input can't inject tsquery operators.
/// `None` when no word is left.
fn word_query(search: &str) -> Option<String> {
    let terms: Vec<String> = search
        .split_whitespace()
        .filter_map(|raw| {
            let word: String = raw
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '@' | '.' | '_' | '-'))
                .collect();
            let prefix = if raw.ends_with('*') { ":*" } else { "" };
            word.chars()
                .any(char::is_alphanumeric)
                .then(|| format!("'{word}'{prefix}"))
        })
        .take(8)
        .collect();
    (!terms.is_empty()).then(|| terms.join(" & "))
}

#[cfg(test)]
mod tests {
    use super::word_query;

    #[test]
    fn searches_become_quoted_words_and_a_star_asks_for_a_prefix() {
        assert_eq!(
            word_query("Ada signed in").as_deref(),
            Some("'Ada' & 'signed' & 'in'")
        );
        assert_eq!(
            word_query("ada@example.com sign*").as_deref(),
            Some("'ada@example.com' & 'sign':*")
        );
        // Operators and quotes are dropped, not interpreted.
        assert_eq!(
            word_query("a' | !b & (c) <-> d:*").as_deref(),
            Some("'a' & 'b' & 'c' & 'd':*")
        );
        assert_eq!(word_query("  |&!  "), None);
    }
}
