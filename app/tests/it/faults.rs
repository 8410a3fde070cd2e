//! Dependencies failing under the running app: what clients see while they do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Client, TestApp};

#[derive(diesel::QueryableByName)]
struct Ended {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    ended: i64,
}

/// PostgreSQL ending the app's connections under load (a restart, a failover, an
/// operator's `pg_terminate_backend`): reads and writes caught mid-query are 503s,
/// never 500s, and the app serves again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_ended_under_load_are_503s_never_500s() {
    // No principal cache: every request reads the database.
    let app = TestApp::spawn(&[("AUTH_CACHE_TTL", "0s")]).await;
    let c = Client::new(&app);
    let token = c.sign_up("ada@example.com").await;
    let stop = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (stop, ended) = (stop.clone(), ended.clone());
        let mut conn = app.db().connect().await;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let terminate = diesel::sql_query(
                    "SELECT count(pg_terminate_backend(pid)) AS ended FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = 'keel-api'",
                );
                let rows: Vec<Ended> = diesel_async::RunQueryDsl::load(terminate, &mut conn)
                    .await
                    .unwrap();
                let n: i64 = rows.iter().map(|r| r.ended).sum();
                ended.fetch_add(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
        })
    };
    let mut statuses = Vec::new();
    for round in 0..40 {
        let requests = (0..8).map(|i| {
            let (c, token) = (&c, token.as_str());
            async move {
                if i % 2 == 0 {
                    c.get("/api/v1/auth/me", Some(token)).await.0
                } else {
                    let name = json!({"full_name": format!("Ada {round}.{i}")});
                    c.patch("/api/v1/auth/me", Some(token), name).await.0
                }
            }
        });
        statuses.extend(futures_util::future::join_all(requests).await);
    }
    stop.store(true, Ordering::Relaxed);
    killer.await.unwrap();
    assert!(ended.load(Ordering::Relaxed) > 0, "no connection was ended");
    let refused: Vec<_> = statuses
        .iter()
        .filter(|s| ![StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(s))
        .collect();
    assert!(
        refused.is_empty(),
        "{refused:?} among {} answers",
        statuses.len()
    );
    // Served again as soon as the connections are left alone.
    let served = keel_testkit::eventually(Duration::from_secs(10), async || {
        c.get("/api/v1/auth/me", Some(&token)).await.0 == StatusCode::OK
    })
    .await;
    assert!(served, "the app serves again");
}
