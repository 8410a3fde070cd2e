//! Recording: append-only in the database, atomic with the caller's transaction,
//! request context captured, secrets redacted.

use std::net::IpAddr;

use diesel::{QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;
use keel_activity::models::{EntryRow, activity_entries};
use keel_activity::{Action, Actor, Entry, record};
use keel_core::ApiError;
use keel_core::request::{RequestContext, RequestId};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Trail, try_sql};

#[tokio::test(flavor = "multi_thread")]
async fn the_database_refuses_update_delete_and_truncate() {
    let trail = Trail::new().await;
    trail.record("first").await;
    trail.service.seal_all().await.unwrap();
    let mut conn = trail.raw().await;
    for sql in [
        "UPDATE activity_entries SET summary = 'rewritten'",
        "DELETE FROM activity_entries",
        "TRUNCATE activity_entries CASCADE",
        "UPDATE activity_seals SET hash = sha256('x')",
        "DELETE FROM activity_seals",
        "TRUNCATE activity_seals",
        "UPDATE activity_words SET word = 'other'",
        "DELETE FROM activity_words",
        "TRUNCATE activity_words",
    ] {
        let err = try_sql(&mut conn, sql).await.expect_err(sql);
        assert!(err.contains("is append-only"), "{sql}: {err}");
    }
    assert_eq!(trail.summaries().await, ["first"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_rolls_back_with_the_change_it_describes() {
    let trail = Trail::new().await;
    let result = trail
        .db
        .transaction(async move |conn| {
            record(
                conn,
                Entry::new(Action::new("user.created"), "user", "never happened"),
            )
            .await?;
            Err::<(), _>(ApiError::StateConflict("the business rule said no".into()))
        })
        .await;
    assert!(result.is_err());
    trail.record("committed").await;
    assert_eq!(trail.summaries().await, ["committed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_context_is_captured_and_secrets_are_redacted() {
    let trail = Trail::new().await;
    let actor = Actor {
        id: Uuid::now_v7(),
        email: "ada@example.com".to_owned(),
    };
    let context = RequestContext {
        request_id: RequestId::from_header(Some("req-42")),
        path: "/api/v1/users".to_owned(),
        client_ip: Some(IpAddr::from([203, 0, 113, 7])),
        user_agent: Some("curl/8".to_owned()),
    };
    let db = trail.db.clone();
    let entry = Entry::new(Action::new("user.updated"), "user", "Ada edited Bob")
        .actor(actor.clone())
        .entity("bob-id")
        .metadata(json!({"changed": ["password"], "password": "hunter2", "token": "t"}));
    context
        .scope(async move {
            db.transaction(async move |conn| {
                record(conn, entry).await?;
                Ok::<_, ApiError>(())
            })
            .await
        })
        .await
        .unwrap();

    let rows: Vec<EntryRow> = activity_entries::table
        .select(EntryRow::as_select())
        .load(&mut trail.raw().await)
        .await
        .unwrap();
    let row = &rows[0];
    assert_eq!(row.action, "user.updated");
    assert_eq!(row.actor_id, Some(actor.id));
    assert_eq!(row.actor_email.as_deref(), Some("ada@example.com"));
    assert_eq!(row.entity_type, "user");
    assert_eq!(row.entity_id.as_deref(), Some("bob-id"));
    assert_eq!(row.request_id.as_deref(), Some("req-42"));
    assert_eq!(row.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(row.user_agent.as_deref(), Some("curl/8"));
    assert_eq!(
        row.metadata,
        json!({"changed": ["password"], "password": "[redacted]", "token": "[redacted]"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overlong_values_are_clipped_instead_of_failing_the_transaction() {
    let trail = Trail::new().await;
    let summary = "é".repeat(800); // 1600 bytes
    trail.record(&summary).await;
    let stored = &trail.summaries().await[0];
    assert!(stored.len() <= 1000 && summary.starts_with(stored.as_str()));
}
