//! Access-token rules: every way a token can be wrong is a 401.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::QueryDsl;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keel_user::models::users;
use serde_json::{Value, json};

use crate::support::{JWT_SECRET, TestApp};

/// The claims of a valid token for the caller of `access`, to tamper with.
fn claims_of(access: &str) -> Value {
    let payload = access.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn sign(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_token_is_401() {
    let app = TestApp::spawn().await;
    let session = app.sign_up("tokens@example.com").await;
    let claims = claims_of(&session.access);
    for key in ["sub", "sid", "exp", "iat", "iss", "aud", "jti", "typ"] {
        assert!(
            claims.get(key).is_some(),
            "claim {key} missing from {claims}"
        );
    }
    assert_eq!(claims["typ"], "access");
    assert_eq!(claims["iss"], "keel");
    assert_eq!(claims["aud"], "keel-api");
    // The same claims re-signed by us are accepted: the cases below fail for their flaw.
    assert_eq!(
        app.me_status(&sign(Algorithm::HS256, JWT_SECRET, &claims))
            .await,
        200
    );

    let with = |key: &str, value: Value| {
        let mut c = claims.clone();
        c[key] = value;
        c
    };
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let now = chrono::Utc::now().timestamp();
    let cases = [
        ("alg none", format!("{none_header}.{body}.")),
        (
            "another algorithm",
            sign(Algorithm::HS512, JWT_SECRET, &claims),
        ),
        (
            "bad signature",
            sign(
                Algorithm::HS256,
                "some-other-secret-0123456789abcdef",
                &claims,
            ),
        ),
        (
            "wrong issuer",
            sign(Algorithm::HS256, JWT_SECRET, &with("iss", json!("evil"))),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                JWT_SECRET,
                &with("aud", json!("other-api")),
            ),
        ),
        (
            "wrong type",
            sign(Algorithm::HS256, JWT_SECRET, &with("typ", json!("refresh"))),
        ),
        (
            "expired",
            sign(Algorithm::HS256, JWT_SECRET, &with("exp", json!(now - 60))),
        ),
        (
            "no expiry",
            sign(Algorithm::HS256, JWT_SECRET, &{
                let mut c = claims.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        (
            "someone else's session",
            sign(
                Algorithm::HS256,
                JWT_SECRET,
                &with("sid", json!(uuid::Uuid::now_v7())),
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (case, token) in cases {
        let answer = app.get("/api/v1/auth/me", &token).await;
        assert_eq!(answer.status, 401, "{case}: {answer:?}");
        assert_eq!(
            answer.headers["content-type"], "application/problem+json",
            "{case}"
        );
        assert_eq!(answer.headers["www-authenticate"], "Bearer", "{case}");
    }

    let missing = app
        .call(reqwest::Method::GET, "/api/v1/auth/me", None, None)
        .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_a_deleted_user_stops_working() {
    let app = TestApp::spawn().await;
    let session = app.sign_up("gone@example.com").await;
    let id = app.user_id(&session.access).await;
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(diesel::delete(users::table.find(id)), &mut conn)
        .await
        .unwrap();
    app.service.user_changed(id).await;
    assert_eq!(app.me_status(&session.access).await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hourly_purge_deletes_sign_ins_that_ended_over_a_day_ago() {
    use diesel_async::SimpleAsyncConnection;
    use keel_core::tasks::{Task, TaskContext};
    use keel_user::tasks::PurgeSessions;

    let app = TestApp::spawn().await;
    let ended = app.sign_up("ada@example.com").await;
    let live = app.sign_in("ada@example.com").await;
    let answer = app
        .post(
            "/api/v1/auth/logout",
            Some(&ended.access),
            serde_json::json!({"refresh_token": ended.refresh}),
        )
        .await;
    assert!(answer.status.is_success(), "{answer:?}");
    let mut conn = app.db.connect().await;
    // The sign-out happened two days ago.
    conn.batch_execute(
        "UPDATE refresh_sessions SET revoked_at = now() - interval '2 days' \
         WHERE revoked_at IS NOT NULL",
    )
    .await
    .unwrap();

    let services = crate::support::task_services(&app.db, &[]).await;
    let ctx = TaskContext::new::<PurgeSessions>(services, uuid::Uuid::now_v7(), 1);
    PurgeSessions {}.run(ctx).await.unwrap();

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS n FROM refresh_sessions"),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(count.n, 1, "only the live sign-in is left");
    let refreshed = app.refresh(&live.refresh).await;
    assert_eq!(refreshed.status, reqwest::StatusCode::OK, "{refreshed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_enqueues_a_welcome_email_that_is_sent_once() {
    use keel_core::tasks::{Task, TaskContext};
    use keel_user::tasks::SendWelcomeEmail;

    let app = TestApp::spawn().await;
    app.register("ada@example.com").await;
    app.register("ada@example.com").await; // taken: answered alike, nothing enqueued

    #[derive(diesel::QueryableByName)]
    struct Queued {
        #[diesel(sql_type = diesel::sql_types::Text)]
        user_id: String,
    }
    let mut conn = app.db.connect().await;
    let queued: Vec<Queued> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT o.payload->>'user_id' AS user_id FROM task_outbox o \
             JOIN users u ON u.id::text = o.payload->>'user_id' \
             WHERE o.task = 'user.send_welcome_email' AND u.email = 'ada@example.com'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(queued.len(), 1, "enqueued with the account, once");
    let user_id: uuid::Uuid = queued[0].user_id.parse().unwrap();

    // Run it (twice, as a redelivery would) with the file mailer.
    let dir = std::env::temp_dir().join(format!("keel-mail-{}", uuid::Uuid::now_v7().simple()));
    let services =
        crate::support::task_services(&app.db, &[("MAIL_DIR", dir.to_str().unwrap())]).await;
    for attempt in [1, 2] {
        let ctx =
            TaskContext::new::<SendWelcomeEmail>(services.clone(), uuid::Uuid::now_v7(), attempt);
        SendWelcomeEmail { user_id }.run(ctx).await.unwrap();
    }
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "greeted once");
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    assert!(text.contains("To: ada@example.com"), "{text}");
    assert!(
        text.contains("Subject: Welcome: your account is ready"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // An account that is gone can't be greeted: permanent, no retries.
    let ctx = TaskContext::new::<SendWelcomeEmail>(services, uuid::Uuid::now_v7(), 1);
    let gone = SendWelcomeEmail {
        user_id: uuid::Uuid::now_v7(),
    }
    .run(ctx)
    .await
    .unwrap_err();
    assert!(!gone.is_retryable(), "{gone}");
}
