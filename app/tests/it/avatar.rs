//! The avatar flow end to end, on local disk (links served by keel-api itself) and on a
//! real S3-compatible server.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Client, TestApp};

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3, 4];
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";

async fn put_avatar(
    app: &TestApp,
    token: &str,
    bytes: &[u8],
    claimed: &str,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .put(app.url("/api/v1/auth/me/avatar"))
        .bearer_auth(token)
        .header("content-type", claimed)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GETs `url`; a relative one (local disk without `PUBLIC_URL`) from `app`.
async fn fetch_from(app: &TestApp, url: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let url = if url.starts_with('/') {
        app.url(url)
    } else {
        url.to_owned()
    };
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, kind, response.bytes().await.unwrap().to_vec())
}

async fn avatars_flow(overrides: &[(&str, &str)]) -> TestApp {
    let app = TestApp::spawn(overrides).await;
    let c = Client::new(&app);
    let token = c.sign_up("ada@example.com").await;

    // Not an image (whatever the header claims), too large: refused, nothing stored.
    let (status, body) = put_avatar(&app, &token, b"<svg onload=alert(1)>", "image/png").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["status"], 415);
    let big = [PNG, &vec![0_u8; 300 * 1024]].concat();
    let (status, body) = put_avatar(&app, &token, &big, "image/png").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // A PNG sent as application/octet-stream is stored as image/png.
    let (status, me) = put_avatar(&app, &token, PNG, "application/octet-stream").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let first_url = me["avatar_url"].as_str().unwrap().to_owned();
    let (status, kind, bytes) = fetch_from(&app, &first_url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("image/png"));
    assert_eq!(bytes, PNG);
    let (_, me) = c.get("/api/v1/auth/me", Some(&token)).await;
    assert!(me["avatar_url"].is_string(), "{me}");

    // Replacing it deletes the old object.
    let (status, me) = put_avatar(&app, &token, GIF, "image/gif").await;
    assert_eq!(status, StatusCode::OK);
    let second_url = me["avatar_url"].as_str().unwrap().to_owned();
    assert_eq!(
        fetch_from(&app, &second_url).await.1.as_deref(),
        Some("image/gif")
    );
    assert_ne!(
        fetch_from(&app, &first_url).await.0,
        StatusCode::OK,
        "the old avatar is gone"
    );

    // Removing it: 204, the object goes, /me has no link.
    let (status, _) = c.delete("/api/v1/auth/me/avatar", Some(&token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_ne!(fetch_from(&app, &second_url).await.0, StatusCode::OK);
    let (_, me) = c.get("/api/v1/auth/me", Some(&token)).await;
    assert!(me.get("avatar_url").is_none(), "{me}");
    let (status, _) = c.delete("/api/v1/auth/me/avatar", Some(&token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "removing none is fine");

    // Every change is in the caller's trail.
    let (_, trail) = c.get("/api/v1/auth/me/activity", Some(&token)).await;
    let actions: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("user.avatar"))
        .collect();
    assert_eq!(
        actions,
        [
            "user.avatar_removed",
            "user.avatar_changed",
            "user.avatar_changed"
        ]
    );
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn avatars_on_local_disk_are_served_by_signed_links() {
    let dir = std::env::temp_dir().join(format!("keel-avatars-{}", uuid::Uuid::now_v7()));
    let dir_str = dir.to_string_lossy().into_owned();
    let app = avatars_flow(&[("STORAGE_DIR", &dir_str), ("AVATAR_MAX_BYTES", "256KiB")]).await;

    // The links are keel's own: a changed signature or key is refused.
    let c = Client::new(&app);
    let token = c.sign_in("ada@example.com").await;
    let (_, me) = put_avatar(&app, &token, PNG, "image/png").await;
    let url = me["avatar_url"].as_str().unwrap().to_owned();
    assert!(url.contains("/storage/avatars/"), "{url}");
    let tampered = url.replace("signature=", "signature=00");
    let (status, kind, _) = fetch_from(&app, &tampered).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(kind.as_deref(), Some("application/problem+json"));
    let other_key = url.replace(".png?", ".gif?");
    assert_eq!(fetch_from(&app, &other_key).await.0, StatusCode::FORBIDDEN);
    let response = reqwest::get(app.url(&url)).await.unwrap();
    assert_eq!(
        response.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );

    // A signed upload link (what `Storage::presign_put` hands a client) works once per
    // content type it was signed for.
    let settings = keel_testkit::settings(app.db().url(), &[("STORAGE_DIR", &dir_str)]);
    let storage = keel_core::storage::Storage::from_settings(
        &settings.storage,
        settings.security.password_pepper.expose().as_bytes(),
    );
    let key = keel_core::storage::ObjectKey::new("uploads/report.csv").unwrap();
    let put_url = storage
        .presign_put(&key, "text/csv", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let wrong_type = http
        .put(app.url(&put_url))
        .header("content-type", "text/html")
        .body("<script>")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::FORBIDDEN);
    let uploaded = http
        .put(app.url(&put_url))
        .header("content-type", "text/csv")
        .body("a,b\n1,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);
    let get_url = storage
        .presign_get(&key, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let (status, kind, bytes) = fetch_from(&app, &get_url).await;
    assert_eq!(
        (status, kind.as_deref()),
        (StatusCode::OK, Some("text/csv"))
    );
    assert_eq!(bytes, b"a,b\n1,2\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn avatars_on_s3_use_presigned_urls_and_readiness_checks_the_bucket() {
    let s3 = keel_testkit::s3_settings().await;
    let mut overrides: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.push(("AVATAR_MAX_BYTES", "256KiB"));
    let app = avatars_flow(&overrides).await;
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["components"]["storage"]["status"], "up", "{ready}");
}
