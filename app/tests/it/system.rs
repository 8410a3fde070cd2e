//! The system surface of the real app: docs, spec, health, metrics.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;

use crate::helpers::TestApp;

#[tokio::test]
async fn docs_spec_and_root_redirect_are_served() {
    let app = TestApp::spawn(&[]).await;

    let root = app.get("/").await;
    assert_eq!(root.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(root.headers()["location"], "/docs");

    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));

    let redoc = app.get("/redoc").await;
    assert_eq!(redoc.status(), StatusCode::OK);

    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(spec["info"]["title"], "keel");
    for path in ["/health/live", "/health/ready", "/metrics"] {
        assert!(spec["paths"][path]["get"].is_object(), "{path} in the spec");
    }
    assert!(
        spec["paths"]["/"].is_null(),
        "the redirect is not documented"
    );
    let ready = &spec["paths"]["/health/ready"]["get"]["responses"];
    assert!(
        ready["200"].is_object() && ready["503"].is_object(),
        "{ready}"
    );

    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn responses_are_compressed_when_the_client_accepts_it() {
    let app = TestApp::spawn(&[]).await;
    let response = reqwest::Client::new()
        .get(app.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-encoding"], "gzip");
}

#[tokio::test]
async fn liveness_and_readiness_with_the_database_up() {
    let app = TestApp::spawn(&[]).await;

    let live = app.get("/health/live").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["cache-control"], "no-store");

    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let database = &body["components"]["database"];
    assert_eq!(database["status"], "up");
    assert_eq!(database["required"], true);
    assert!(database["latency_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn readiness_is_503_when_the_database_is_unreachable() {
    let app = TestApp::spawn_on(
        "postgres://nobody@127.0.0.1:1/none",
        None,
        &[("DATABASE_POOL_TIMEOUT", "500ms")],
    )
    .await;

    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "down");
    assert_eq!(body["components"]["database"]["status"], "down");
    // The cause (here a refused connection to port 1) goes to the log, not to
    // anonymous callers.
    let database = body["components"]["database"].as_object().unwrap();
    let keys: Vec<&str> = database.keys().map(String::as_str).collect();
    assert_eq!(keys, ["latency_ms", "required", "status"], "{body}");
}

#[tokio::test]
async fn metrics_use_route_templates_and_pass_promtool() {
    let app = TestApp::spawn(&[]).await;
    for _ in 0..3 {
        app.get("/health/live").await;
    }
    app.get("/health/ready").await;
    for id in ["123", "456"] {
        assert_eq!(
            app.get(&format!("/api/v1/nowhere/{id}")).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.get(&format!("/api/v1/users/{id}")).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/health/live",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/health/live",status="200",le="0.005"}"#),
        "{text}"
    );
    assert!(text.contains("http_requests_in_flight"), "{text}");
    assert!(text.contains("db_pool_connections"), "{text}");
    assert!(text.contains("db_pool_timeouts_total"), "{text}");
    assert!(text.contains(r#"keel_build_info{version=""#), "{text}");
    for raw in ["/api/v1/users/123", "/api/v1/nowhere/123"] {
        assert!(!text.contains(raw), "raw paths never become labels");
    }
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");

    promtool_accepts(&text);
}

/// `promtool check metrics` reads the exposition from stdin and prints any lint problem.
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) if std::env::var_os("KEEL_REQUIRE_PROMTOOL").is_none() => {
            eprintln!("skipping the promtool check: {err} (install Debian's `prometheus`)");
            return;
        }
        Err(err) => panic!("promtool is required (KEEL_REQUIRE_PROMTOOL is set): {err}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool: {report}");
    assert!(report.trim().is_empty(), "promtool reported: {report}");
}
