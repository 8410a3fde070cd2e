//! Searching pages through the trail: the same pages whatever the ages of the matches.

use diesel_async::SimpleAsyncConnection;
use keel_activity::models::ActivityFilter;
use keel_activity::schemas::ActivityOut;
use keel_core::crud::CursorParams;

use crate::support::Trail;

#[tokio::test(flavor = "multi_thread")]
async fn search_pages_are_complete_and_ordered_across_ages() {
    let trail = Trail::new().await;
    // Matches from now to over a year ago, with non-matching entries in between: history
    // loaded as the owner, with the trigger that stamps new entries with now() off.
    let mut sql =
        String::from("ALTER TABLE activity_entries DISABLE TRIGGER activity_entries_stamp;");
    for (i, hours) in [0, 0, 2, 9, 70, 600, 5000, 9000].iter().enumerate() {
        sql.push_str(&format!(
            "INSERT INTO activity_entries (occurred_at, action, entity_type, summary) VALUES \
             (now() - interval '{hours} hours', 'user.updated', 'user', 'needle {i}'), \
             (now() - interval '{hours} hours' - interval '1 minute', 'user.updated', 'user', 'hay {i}');"
        ));
    }
    sql.push_str("ALTER TABLE activity_entries ENABLE TRIGGER activity_entries_stamp;");
    trail.raw().await.batch_execute(&sql).await.unwrap();

    let filter = ActivityFilter {
        text: Some("NEEDLE".to_owned()),
        ..ActivityFilter::default()
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = CursorParams::new(cursor.as_deref(), Some(3)).unwrap();
        let listed = trail.service.list(&filter, page).await.unwrap();
        seen.extend(listed.items.iter().map(|e| e.summary.clone()));
        match listed.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..8).map(|i| format!("needle {i}")).collect();
    // The two at age 0 share a timestamp: the later id comes first.
    let mut expected_order = expected.clone();
    expected_order.swap(0, 1);
    assert_eq!(seen, expected_order);

    // Bounded by `since`: only what is newer.
    let recent = ActivityFilter {
        since: Some(chrono::Utc::now() - chrono::Duration::hours(100)),
        ..filter.clone()
    };
    let page = CursorParams::new(None, Some(50)).unwrap();
    let listed = trail.service.list(&recent, page).await.unwrap();
    assert_eq!(listed.items.len(), 5);

    // A word that isn't there, and a prefix that is.
    let none = ActivityFilter {
        text: Some("needles".to_owned()),
        ..ActivityFilter::default()
    };
    assert!(
        trail
            .service
            .list(&none, page)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let prefix = ActivityFilter {
        text: Some("need*".to_owned()),
        ..ActivityFilter::default()
    };
    assert_eq!(
        trail.service.list(&prefix, page).await.unwrap().items.len(),
        8
    );
}

/// Every page of a filtered search through the walk of postings and indexes equals the
/// same filter applied to the whole trail: each combination of words (whole and prefix),
/// actor, action, entity, time window and page size, with many entries sharing a time.
#[tokio::test(flavor = "multi_thread")]
async fn searches_with_filters_page_exactly_what_the_filters_select() {
    let (trail, everything) = six_hundred().await;
    let actor = uuid::Uuid::parse_str(ACTOR).unwrap();
    let halfway = everything[300].occurred_at;
    let searches = [
        "signed",
        "SIGNED in ada",
        "host3",
        "sign* host1*",
        "role",
        "nowhere",
    ];
    for (i, search) in searches.into_iter().enumerate() {
        for variant in 0..6 {
            let mut filter = ActivityFilter {
                text: Some(search.to_owned()),
                ..ActivityFilter::default()
            };
            match variant {
                1 => filter.actor_id = Some(actor),
                2 => filter.action = Some(keel_activity::Action::new("auth.logout")),
                3 => {
                    filter.entity_type = Some("user".to_owned());
                    filter.entity_id = Some("3".to_owned());
                }
                4 => filter.until = Some(halfway),
                5 => {
                    filter.since = Some(halfway);
                    filter.actor_id = Some(actor);
                    filter.action = Some(keel_activity::Action::new("user.updated"));
                }
                _ => {}
            }
            let expected: Vec<i64> = everything
                .iter()
                .filter(|e| selects(&filter, e))
                .map(|e| e.id)
                .collect();
            let listed: Vec<i64> = page_through(&trail, &filter, 2 + i as u32 * 3)
                .await
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(listed, expected, "{filter:?}");
        }
    }
}

const ACTOR: &str = "00000000-0000-4000-8000-000000000002";

/// A trail of 600 entries, three to a timestamp; word, actor, action and entity vary on
/// their own cycles so every combination occurs. With all of them, newest first.
async fn six_hundred() -> (Trail, Vec<ActivityOut>) {
    let trail = Trail::new().await;
    trail
        .raw()
        .await
        .batch_execute(
            "INSERT INTO activity_entries \
                 (occurred_at, actor_id, action, entity_type, entity_id, summary) \
             SELECT now() - (g / 3) * interval '1 minute', \
                    CASE WHEN g % 4 = 0 THEN NULL \
                         ELSE ('00000000-0000-4000-8000-00000000000' || g % 4)::uuid END, \
                    (ARRAY['user.updated', 'auth.logout', 'role.updated'])[g % 3 + 1], \
                    'user', (g % 5)::text, \
                    'Ada ' || (ARRAY['signed in', 'changed a role', 'Signed out'])[g % 7 % 3 + 1] \
                      || ' from host' || g % 11 \
             FROM generate_series(1, 600) AS g",
        )
        .await
        .unwrap();
    let everything = page_through(&trail, &ActivityFilter::default(), 100).await;
    assert_eq!(everything.len(), 600);
    (trail, everything)
}

/// Without a search, every filter and pair of filters pages exactly what it selects,
/// across timestamps three entries share; a single indexed filter's statement is kept
/// prepared on the connection, and a pair of them is planned for each call.
#[tokio::test(flavor = "multi_thread")]
async fn filtered_pages_are_exact_across_shared_instants() {
    let (trail, everything) = six_hundred().await;
    let actor = uuid::Uuid::parse_str(ACTOR).unwrap();
    let halfway = everything[300].occurred_at;
    let logout = || Some(keel_activity::Action::new("auth.logout"));
    let filters = [
        ActivityFilter::default(),
        ActivityFilter {
            actor_id: Some(actor),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            action: logout(),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            entity_type: Some("user".to_owned()),
            entity_id: Some("3".to_owned()),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            since: Some(halfway),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            actor_id: Some(actor),
            action: logout(),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            actor_id: Some(actor),
            until: Some(halfway),
            entity_type: Some("user".to_owned()),
            ..ActivityFilter::default()
        },
    ];
    for (i, filter) in filters.iter().enumerate() {
        let expected: Vec<i64> = everything
            .iter()
            .filter(|e| selects(filter, e))
            .map(|e| e.id)
            .collect();
        for size in [1, 2, 7] {
            let listed: Vec<i64> = page_through(&trail, filter, size + i as u32)
                .await
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(listed, expected, "{filter:?}, size {}", size + i as u32);
        }
    }

    // What the connection keeps: a cursor page by actor, five times, is one statement;
    // by actor and action, none.
    let mut conn = trail.raw().await;
    let second = CursorParams::new(None, Some(2)).unwrap();
    let first = keel_activity::crud::list(&mut conn, &filters[1], second)
        .await
        .unwrap();
    let cursor = second.page(first, |row| keel_core::crud::CursorKey {
        sort: row.occurred_at.timestamp_micros(),
        id: row.id,
    });
    let after = CursorParams::new(cursor.next_cursor.as_deref(), Some(2)).unwrap();
    let kept = "SELECT count(*) FROM pg_prepared_statements \
                WHERE statement LIKE 'SELECT \"activity_entries\".%' AND statement LIKE '%<%'";
    for filter in [&filters[1], &filters[5]] {
        for _ in 0..5 {
            keel_activity::crud::list(&mut conn, filter, after)
                .await
                .unwrap();
        }
    }
    assert_eq!(trail.count_on(&mut conn, kept).await, 1);
}

async fn page_through(trail: &Trail, filter: &ActivityFilter, size: u32) -> Vec<ActivityOut> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = CursorParams::new(cursor.as_deref(), Some(size)).unwrap();
        let listed = trail.service.list(filter, page).await.unwrap();
        seen.extend(listed.items.into_iter().map(ActivityOut::from));
        match listed.next_cursor {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
}

/// The filter's meaning, applied to one entry: the oracle for the database's answer.
fn selects(filter: &ActivityFilter, entry: &ActivityOut) -> bool {
    let words: Vec<String> = entry
        .summary
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let text_ok = filter.text.as_deref().is_none_or(|text| {
        text.split_whitespace().all(|term| {
            let term = term.to_lowercase();
            match term.strip_suffix('*') {
                Some(prefix) => words.iter().any(|w| w.starts_with(prefix)),
                None => words.contains(&term),
            }
        })
    });
    text_ok
        && filter.actor_id.is_none_or(|a| entry.actor_id == Some(a))
        && filter.action.is_none_or(|a| entry.action == a.as_str())
        && filter
            .entity_id
            .as_ref()
            .is_none_or(|id| entry.entity_id.as_ref() == Some(id))
        && filter.since.is_none_or(|t| entry.occurred_at >= t)
        && filter.until.is_none_or(|t| entry.occurred_at < t)
}
