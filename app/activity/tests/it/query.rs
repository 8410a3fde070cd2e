//! Searching pages through the trail: the same pages whatever the ages of the matches.

use diesel_async::SimpleAsyncConnection;
use keel_activity::crud::ActivityFilter;
use keel_core::crud::CursorParams;

use crate::support::Trail;

#[tokio::test(flavor = "multi_thread")]
async fn search_pages_are_complete_and_ordered_across_ages() {
    let trail = Trail::new().await;
    // Matches from now to over a year ago, with non-matching entries in between.
    let mut sql = String::new();
    for (i, hours) in [0, 0, 2, 9, 70, 600, 5000, 9000].iter().enumerate() {
        sql.push_str(&format!(
            "INSERT INTO activity_entries (occurred_at, action, entity_type, summary) VALUES \
             (now() - interval '{hours} hours', 'user.updated', 'user', 'needle {i}'), \
             (now() - interval '{hours} hours' - interval '1 minute', 'user.updated', 'user', 'hay {i}');"
        ));
    }
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
