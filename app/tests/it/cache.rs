//! Replicas sharing Redis share revocations and login limits; with Redis refused the
//! app keeps serving and says so on /health/ready.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Client, PASSWORD, TestApp, until};

/// Two replicas of the app on one database and one Redis.
async fn two_replicas(extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let redis = keel_testkit::redis_settings();
    let mut overrides: Vec<(&str, &str)> = redis.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend_from_slice(extra);
    let a = TestApp::spawn(&overrides).await;
    let url = a.db().url().to_owned();
    let b = TestApp::spawn_on(&url, None, &overrides).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_on_one_replica_reaches_the_other_with_the_bumps_message() {
    // A long principal TTL: without the shared cache, replica B would keep serving the
    // session it remembers for a minute (and from memory for 30 s).
    let (a, b) = two_replicas(&[("AUTH_CACHE_TTL", "60s")]).await;
    let (on_a, on_b) = (Client::new(&a), Client::new(&b));
    let token = on_a.sign_up("ada@example.com").await;
    assert_eq!(
        on_b.get("/api/v1/auth/me", Some(&token)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        on_b.get("/api/v1/auth/me", Some(&token)).await.0,
        StatusCode::OK
    );

    let (status, _) = on_a.act("/api/v1/auth/logout", Some(&token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // B may have the principal in memory: it drops it when the bump's message arrives
    // (Redis pub/sub, well under a second), not when its 30 s there run out.
    until("the logout reaches replica B", async || {
        on_b.get("/api/v1/auth/me", Some(&token)).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
}

/// Profiles are the user feature's, cached per user: an edit shows at once on the
/// replica that made it and on the other's next `/me` once the bump's message arrives,
/// round after round (a stale profile cached between edits would show).
#[tokio::test(flavor = "multi_thread")]
async fn a_profile_edit_on_one_replica_reaches_the_other() {
    let (a, b) = two_replicas(&[("AUTH_CACHE_TTL", "60s")]).await;
    let (on_a, on_b) = (Client::new(&a), Client::new(&b));
    let token = on_a.sign_up("grace@example.com").await;
    for round in 0..5 {
        // B holds the current profile before each edit.
        assert_eq!(
            on_b.get("/api/v1/auth/me", Some(&token)).await.0,
            StatusCode::OK
        );
        let name = format!("Grace {round}");
        let edit = json!({"full_name": name});
        let (status, me) = on_a.patch("/api/v1/auth/me", Some(&token), edit).await;
        assert_eq!((status, &me["full_name"]), (StatusCode::OK, &json!(name)));
        let (_, again) = on_a.get("/api/v1/auth/me", Some(&token)).await;
        assert_eq!(again["full_name"], name, "round {round}: replica A");
        until(
            &format!("round {round}: the edit reaches replica B"),
            async || on_b.get("/api/v1/auth/me", Some(&token)).await.1["full_name"] == name,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_counted_across_replicas() {
    let (a, b) = two_replicas(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "2")]).await;
    let (on_a, on_b) = (Client::new(&a), Client::new(&b));
    on_a.sign_up("ada@example.com").await;
    let wrong = json!({"email": "ada@example.com", "password": "not the password"});
    assert_eq!(
        on_a.post("/api/v1/auth/login", None, wrong.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        on_b.post("/api/v1/auth/login", None, wrong.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let right = json!({"email": "ada@example.com", "password": PASSWORD});
    assert_eq!(
        on_a.post("/api/v1/auth/login", None, right).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "two failures, one on each replica, use up the account's limit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_refused_requests_still_work_and_readiness_says_degraded() {
    let app = TestApp::spawn(&[("REDIS_URL", "redis://127.0.0.1:1/0")]).await;
    let c = Client::new(&app);
    let token = c.sign_up("ada@example.com").await;
    for _ in 0..5 {
        assert_eq!(
            c.get("/api/v1/auth/me", Some(&token)).await.0,
            StatusCode::OK
        );
        let (status, _) = c
            .get("/api/v1/release-notes/unread-count", Some(&token))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK, "the cache is not required");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["components"]["cache"]["status"], "down");
    assert_eq!(body["components"]["cache"]["required"], false);
    assert_eq!(body["components"]["database"]["status"], "up");

    // Principals are remembered in-process during the outage, and a logout on this
    // replica still applies at once.
    let (status, _) = c.act("/api/v1/auth/logout", Some(&token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.get("/api/v1/auth/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("cache_breaker_state 2"),
        "the breaker is open"
    );
    assert!(metrics.contains("cache_operations_total{op=\"get_many\",result=\"skipped\"}"));
}
