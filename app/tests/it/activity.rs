//! The audit trail through the real app: what keel-user records, who may read it, how it
//! filters and pages, and that the background sealer seals it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Client, TestApp};

fn actions(page: &Value) -> Vec<String> {
    crate::helpers::field_of_items(page, "action")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_records_user_actions_and_is_guarded_filtered_and_paged() {
    let app = TestApp::spawn(&[]).await;
    let client = Client::new(&app);
    let admin = client.superuser("admin@example.com").await;
    let ada = client.sign_up("ada@example.com").await;
    let (status, _) = client
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "ada@example.com", "password": "not the password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Guarded: no token 401, no permission 403.
    assert_eq!(
        client.get("/api/v1/activity", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = client.get("/api/v1/activity", Some(&ada)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, page) = client.get("/api/v1/activity", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        actions(&page),
        [
            "auth.login_failed",
            "auth.login_succeeded",
            "user.registered",
            "auth.login_succeeded",
            "auth.login_succeeded",
            "user.registered",
        ],
        "newest first"
    );
    let failed = &page["items"][0];
    assert_eq!(failed["summary"], "failed sign-in as ada@example.com");
    assert_eq!(failed["metadata"]["reason"], "wrong_password");
    assert!(failed.get("actor_id").is_none(), "{failed}");
    assert!(failed["request_id"].is_string() && failed["ip"] == "127.0.0.1");

    // Filters.
    let (_, only) = client
        .get("/api/v1/activity?action=user.registered", Some(&admin))
        .await;
    assert_eq!(actions(&only), ["user.registered", "user.registered"]);
    let ada_id = page["items"][1]["actor_id"].as_str().unwrap().to_owned();
    let (_, by_ada) = client
        .get(&format!("/api/v1/activity?actor_id={ada_id}"), Some(&admin))
        .await;
    assert_eq!(
        actions(&by_ada),
        ["auth.login_succeeded", "user.registered"]
    );
    let (_, entity) = client
        .get(
            &format!("/api/v1/activity?entity_type=user&entity_id={ada_id}"),
            Some(&admin),
        )
        .await;
    assert_eq!(actions(&entity), ["auth.login_failed", "user.registered"]);
    let (_, searched) = client
        .get("/api/v1/activity?search=FAILED%20SIGN*", Some(&admin))
        .await;
    assert_eq!(actions(&searched), ["auth.login_failed"]);
    let (_, future) = client
        .get("/api/v1/activity?since=2999-01-01T00:00:00Z", Some(&admin))
        .await;
    assert_eq!(future["items"], json!([]));
    let (_, past) = client
        .get("/api/v1/activity?until=2000-01-01T00:00:00Z", Some(&admin))
        .await;
    assert_eq!(past["items"], json!([]));

    // Cursor pages of one: every entry once, in order, then no cursor.
    let mut seen = Vec::new();
    let mut path = "/api/v1/activity?size=1".to_owned();
    loop {
        let (status, page) = client.get(&path, Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(actions(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/activity?size=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, actions(&page));

    // Paging input outside what the document declares is a 400 naming the parameter, as
    // is an unknown action; any cursor of the declared form reads (here: past the end).
    for (query, parameter) in [("cursor=bogus", "`cursor`"), ("size=101", "`size`")] {
        let (status, body) = client
            .get(&format!("/api/v1/activity?{query}"), Some(&admin))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(parameter), "{body}");
    }
    let (status, body) = client
        .get(
            &format!("/api/v1/activity?cursor={}", "0".repeat(32)),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"], serde_json::json!([]));
    // Only the actions the features declare are filters.
    let (status, body) = client
        .get("/api/v1/activity?action=user.exploded", Some(&admin))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "action", "{body}");
    for declared in [
        "release_note.published",
        "task.dead_lettered",
        "role.created",
    ] {
        let (status, body) = client
            .get(&format!("/api/v1/activity?action={declared}"), Some(&admin))
            .await;
        assert_eq!(status, StatusCode::OK, "{declared}: {body}");
    }

    // Everyone reads their own trail, and only theirs.
    let (status, mine) = client.get("/api/v1/auth/me/activity", Some(&ada)).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(actions(&mine), ["auth.login_succeeded", "user.registered"]);
    assert_eq!(
        client.get("/api/v1/auth/me/activity", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The background sealer seals what was recorded.
    let mut conn = app.db().connect().await;
    let mut sealed = false;
    for _ in 0..100 {
        let rows: Vec<Count> = diesel_async::RunQueryDsl::load(
            diesel::sql_query("SELECT count(*) AS count FROM activity_seals"),
            &mut conn,
        )
        .await
        .unwrap();
        if rows[0].count >= 6 {
            sealed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sealed, "the sealer did not seal the entries");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spec_documents_the_trail_with_its_guard_and_no_write_operation() {
    let app = TestApp::spawn(&[]).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let list = &spec["paths"]["/api/v1/activity"];
    assert_eq!(
        list.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["get"],
        "read-only"
    );
    let get = &list["get"];
    assert_eq!(get["security"][0]["OAuth2"], json!(["activity:read"]));
    for status in ["401", "403", "422"] {
        assert!(get["responses"][status].is_object(), "{status} documented");
    }
    let own = &spec["paths"]["/api/v1/auth/me/activity"]["get"];
    assert!(own["responses"]["401"].is_object());
}

/// Many sign-ins at once, each recording in its own transaction: the sealed chain still
/// verifies, and covers every entry.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_logins_leave_an_intact_chain() {
    // Attempts in flight count against the account until their password is checked.
    let app = TestApp::spawn(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "20")]).await;
    let client = Client::new(&app);
    client.sign_up("ada@example.com").await;
    // Twelve: more than 16 waiting per hashing thread would be answered 503, by design.
    let logins = (0..12).map(|_| client.sign_in("ada@example.com"));
    futures_util::future::join_all(logins).await;

    let activity = keel_activity::ActivityService::new(keel_core::db::Db::new(
        &app.db().secret_url(),
        &keel_testkit::settings(app.db().url(), &[]).database,
        "keel-test",
    ));
    let mut verdict = None;
    for _ in 0..100 {
        activity.seal_all().await.unwrap();
        let v = activity.verify().await.unwrap();
        if matches!(v, keel_activity::chain::Verdict::Intact { unsealed: 0, .. }) {
            verdict = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match verdict {
        Some(keel_activity::chain::Verdict::Intact { sealed, .. }) => {
            assert_eq!(sealed, 14, "registration, the first sign-in and 12 more");
        }
        other => panic!("the chain did not verify: {other:?}"),
    }
}

/// keel-api with `DATABASE_OWNER_URL`: it migrates as the owner, serves as a runtime
/// role that may only read and append to the trail, and still records and seals.
#[tokio::test(flavor = "multi_thread")]
async fn keel_api_serves_as_a_runtime_role_that_cannot_rewrite_the_trail() {
    use diesel_async::RunQueryDsl;

    let db = keel_testkit::TestDb::empty().await;
    let roles = db.split_roles().await;
    let (runtime, owner) = (db.url_as(&roles.runtime), db.url_as(&roles.owner));
    let app = TestApp::spawn_on(
        runtime.expose(),
        None,
        &[
            ("DATABASE_OWNER_URL", owner.expose()),
            ("DATABASE_MIGRATE_ON_START", "true"),
        ],
    )
    .await;
    let client = Client::new(&app);
    client.sign_up("ada@example.com").await;
    client.sign_in("ada@example.com").await;
    let sealed = keel_testkit::eventually(Duration::from_secs(10), async || {
        let count: Count = diesel::sql_query("SELECT count(*) AS count FROM activity_seals")
            .get_result(&mut db.connect().await)
            .await
            .unwrap();
        count.count >= 3
    })
    .await;
    assert!(
        sealed,
        "the sealer, as the runtime role, seals what was recorded"
    );
    let mut as_runtime = keel_core::db::admin::connect(runtime.expose(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        !keel_core::db::privileges::append_only_exposed(&mut as_runtime)
            .await
            .unwrap()
    );
    drop((as_runtime, app));
    db.drop_roles(roles).await;
}
