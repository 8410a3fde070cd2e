//! The middleware stack: problem+json for every error, request ids, limits, metrics.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{expect_problem, post_echo, problem, start};

#[tokio::test]
async fn unknown_route_is_a_404_problem_with_request_context() {
    let server = start(&[]).await;
    let response = reqwest::get(server.url("/nope/123")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = problem(response).await;
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["instance"], "/nope/123");
    assert_eq!(body["request_id"], request_id.as_str());
}

#[tokio::test]
async fn wrong_method_is_a_405_problem() {
    let server = start(&[]).await;
    let response = reqwest::Client::new()
        .delete(server.url("/echo"))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let server = start(&[]).await;
    let response = post_echo(&server, Some("application/json"), "{\"name\": ").await;
    let body = expect_problem(response, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn missing_and_mistyped_fields_are_a_422_naming_each_field() {
    let server = start(&[]).await;
    let client = reqwest::Client::new();
    for (payload, field, message) in [
        (json!({"name": "ada"}), "times", "is required"),
        (
            json!({"name": "ada", "times": "many"}),
            "times",
            "must be an integer",
        ),
        (
            json!({"name": "ada", "times": 256}),
            "times",
            "must be an integer from 0 to 255",
        ),
        (
            json!({"name": ["x"], "times": 1}),
            "name",
            "must be a string",
        ),
        (json!(["not", "an", "object"]), "body", "must be an object"),
    ] {
        let response = client
            .post(server.url("/echo"))
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload}"
        );
        let body = problem(response).await;
        assert_eq!(body["status"], 422);
        assert_eq!(
            body["errors"],
            json!([{"field": field, "message": message}]),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn an_empty_body_is_a_400_problem() {
    let server = start(&[]).await;
    let response = post_echo(&server, Some("application/json"), "").await;
    expect_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn wrong_content_type_is_a_415_problem() {
    let server = start(&[]).await;
    let response = post_echo(&server, Some("text/plain"), "hello").await;
    expect_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

#[tokio::test]
async fn declared_oversized_body_is_a_413_problem() {
    let server = start(&[("HTTP_BODY_LIMIT", "1KiB")]).await;
    let big = format!("{{\"name\": \"{}\", \"times\": 1}}", "x".repeat(2048));
    let response = post_echo(&server, Some("application/json"), big).await;
    let body = expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(body["detail"].as_str().unwrap().contains("1024"), "{body}");
}

/// A small gzip body that unpacks past the limit: counted as it unpacks, never read
/// whole into memory.
#[tokio::test]
async fn compressed_body_that_unpacks_past_the_limit_is_a_413_problem() {
    use std::io::Write;
    let server = start(&[("HTTP_BODY_LIMIT", "16KiB")]).await;
    let document = format!("{{\"name\": \"{}\", \"times\": 1}}", " ".repeat(8 << 20));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(document.as_bytes()).unwrap();
    let packed = gzip.finish().unwrap();
    assert!(
        packed.len() < 16 << 10,
        "{} bytes on the wire",
        packed.len()
    );
    let response = reqwest::Client::new()
        .post(server.url("/echo"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(packed)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Within the limit once unpacked, it is read as usual.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(br#"{"name": "ada", "times": 2}"#).unwrap();
    let response = reqwest::Client::new()
        .post(server.url("/echo"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn chunked_oversized_body_is_a_413_problem() {
    let server = start(&[("HTTP_BODY_LIMIT", "1KiB")]).await;
    let chunk = "x".repeat(600);
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut request = String::from(
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
    for _ in 0..3 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
}

#[tokio::test]
async fn a_body_within_the_limit_is_served() {
    let server = start(&[("HTTP_BODY_LIMIT", "1KiB")]).await;
    let response = post_echo(
        &server,
        Some("application/json"),
        r#"{"name": "ada", "times": 2}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"name": "ada", "times": 2}));
}

#[tokio::test]
async fn a_panic_is_a_generic_500_problem() {
    let server = start(&[]).await;
    let response = reqwest::get(server.url("/panic")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = response.text().await.unwrap();
    assert!(!text.contains("secret panic text"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], 500);
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn internal_errors_never_leak_their_cause() {
    let server = start(&[]).await;
    let response = reqwest::get(server.url("/broken")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = response.text().await.unwrap();
    assert!(!text.contains("password"), "{text}");
}

#[tokio::test]
async fn conflicts_name_the_field() {
    let server = start(&[]).await;
    let response = reqwest::Client::new()
        .post(server.url("/taken"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body = problem(response).await;
    assert_eq!(body["errors"][0]["field"], "email");
}

#[tokio::test]
async fn a_request_past_its_deadline_is_a_503_problem() {
    let server = start(&[("HTTP_REQUEST_TIMEOUT", "100ms")]).await;
    let response = reqwest::get(server.url("/slow?ms=2000")).await.unwrap();
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn sane_request_ids_are_echoed_and_others_replaced() {
    let server = start(&[]).await;
    let client = reqwest::Client::new();
    let response = client
        .get(server.url("/items/1"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc.123");

    let response = client
        .get(server.url("/items/1"))
        .header("x-request-id", "evil id; with spaces")
        .send()
        .await
        .unwrap();
    let echoed = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(echoed, "evil id; with spaces");
    assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
}

#[tokio::test]
async fn untrusted_hosts_are_refused() {
    let server = start(&[("TRUSTED_HOSTS", "api.example.com")]).await;
    let client = reqwest::Client::new();
    let refused = client.get(server.url("/items/1")).send().await.unwrap();
    expect_problem(refused, StatusCode::BAD_REQUEST).await;
    let allowed = client
        .get(server.url("/items/1"))
        .header("host", "api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
}

#[tokio::test]
async fn cors_allows_only_listed_origins() {
    let server = start(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    let client = reqwest::Client::new();
    let allowed = client
        .get(server.url("/items/1"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = client
        .get(server.url("/items/1"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// Every answer carries the security headers: successes, our problems, poem's own
/// rejections (routing, method, parsing, body limit) and panics alike.
#[tokio::test]
async fn security_headers_are_on_every_response() {
    let secret = "s".repeat(64);
    for (env, hsts) in [("development", false), ("production", true)] {
        let server = start(&[
            ("HTTP_BODY_LIMIT", "1KiB"),
            ("APP_ENV", env),
            ("JWT_SECRET", &secret),
            ("PASSWORD_PEPPER", &secret),
        ])
        .await;
        let client = reqwest::Client::new();
        let json = |body: String| {
            client
                .post(server.url("/echo"))
                .header("content-type", "application/json")
                .body(body)
        };
        let requests = [
            (client.get(server.url("/items/1")), 200),
            (client.get(server.url("/nope")), 404),
            (client.delete(server.url("/echo")), 405),
            (json("{\"name\": ".to_owned()), 400),
            (json("{\"name\": 1}".to_owned()), 422),
            (json(format!("{{\"name\": \"{}\"}}", "x".repeat(2048))), 413),
            (client.post(server.url("/echo")).body("x"), 415),
            (client.post(server.url("/taken")), 409),
            (client.get(server.url("/broken")), 500),
            (client.get(server.url("/panic")), 500),
        ];
        for (request, status) in requests {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{env}");
            let headers = response.headers();
            assert_eq!(headers["x-content-type-options"], "nosniff", "{status}");
            assert_eq!(headers["x-frame-options"], "DENY", "{status}");
            assert_eq!(headers["referrer-policy"], "no-referrer", "{status}");
            assert_eq!(
                headers.contains_key("strict-transport-security"),
                hsts,
                "{env} {status}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_are_keyed_by_route_template() {
    let handle = keel_core::telemetry::metrics::install().unwrap();
    let server = start(&[]).await;
    for id in [101, 202, 303] {
        let response = reqwest::get(server.url(&format!("/items/{id}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    reqwest::get(server.url("/no/such/777")).await.unwrap();
    let text = handle.render();
    assert!(
        // poem-openapi names path parameters by position in its router.
        text.contains(r#"http_requests_total{method="GET",route="/items/:param0",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "a real histogram: {text}"
    );
    // Only the label sets: a sample's value may hold the same digits (0.000130313).
    let labels: Vec<&str> = text
        .lines()
        .filter_map(|line| Some(line.split_once('{')?.1.split_once('}')?.0))
        .collect();
    for raw in ["101", "202", "303", "777"] {
        assert!(
            labels.iter().all(|set| !set.contains(raw)),
            "raw path segment {raw} became a label: {text}"
        );
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let server = start(&[("SHUTDOWN_GRACE_PERIOD", "10s")]).await;
    let url = server.url("/slow?ms=700");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = server.addr();
    server.shutdown().await.unwrap();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "done");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

/// Under test, an answer the operation's OpenAPI entry doesn't declare becomes a 500
/// naming the drift: `/items/{id}` declares only 200, so a malformed id's 400 fails.
#[tokio::test]
async fn an_undeclared_status_fails_under_test() {
    use std::sync::Arc;

    use keel_core::http::contract::{DeclaredStatuses, EnforceDeclared};
    use poem::EndpointExt;

    let service = poem_openapi::OpenApiService::new(crate::support::TestApi, "test", "1");
    let declared = DeclaredStatuses::from_document(&serde_json::from_str(&service.spec()).unwrap());
    let ep = poem::Route::new()
        .nest("/", service)
        .with(EnforceDeclared(Arc::new(declared)));
    let server = keel_testkit::TestServer::start(ep, &crate::support::settings(&[])).await;
    let declared = reqwest::get(server.url("/items/7")).await.unwrap();
    assert_eq!(declared.status(), StatusCode::OK);
    let drift = reqwest::get(server.url("/items/seven")).await.unwrap();
    assert_eq!(drift.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // Not an operation of the document: left alone.
    let unknown = reqwest::get(server.url("/nowhere")).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
