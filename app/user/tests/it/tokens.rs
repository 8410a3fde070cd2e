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
    let answer = app.logout(Some(&ended.access), &ended.refresh).await;
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

/// A minimal SMTP server on a free port: it keeps every message it accepts, and runs
/// `on_data` when a message's data has arrived, before it answers that it took it.
async fn smtp_server(
    on_data: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (kept, on_data) = (received.clone(), std::sync::Arc::new(on_data));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (kept, on_data) = (kept.clone(), on_data.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.to_ascii_uppercase();
                    let reply: &[u8] = if verb.starts_with("DATA") {
                        write.write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut message = String::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                            message.push_str(&line);
                            message.push('\n');
                        }
                        on_data().await;
                        kept.lock().unwrap().push(message);
                        b"250 queued\r\n"
                    } else if verb.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    if write.write_all(reply).await.is_err() || reply.starts_with(b"221") {
                        break;
                    }
                }
            });
        }
    });
    (port, received)
}

/// The database goes away just as the SMTP server takes the welcome email, and comes
/// back a second later. The task runs as the worker would run it (again after a failure,
/// and once more as a redelivery): one message in all, with the task's Message-ID, and
/// the sender holds no connection while the server takes its time (its pool has one).
#[tokio::test(flavor = "multi_thread")]
async fn a_welcome_email_is_sent_once_when_the_database_goes_away_mid_send() {
    use keel_core::tasks::{Task, TaskContext};
    use keel_testkit::{Link, Proxy};
    use keel_user::tasks::SendWelcomeEmail;
    use std::sync::atomic::{AtomicBool, Ordering};

    let app = TestApp::spawn().await;
    app.register("ada@example.com").await;
    let session = app.sign_in("ada@example.com").await;
    let user_id = app.user_id(&session.access).await;

    let server = reqwest::Url::parse(app.db.url()).unwrap();
    let target = format!(
        "{}:{}",
        server.host_str().unwrap(),
        server.port().unwrap_or(5432)
    );
    let proxy = std::sync::Arc::new(Proxy::start(target.parse().unwrap()).await);
    let mut proxied = server.clone();
    proxied.set_port(Some(proxy.addr().port())).unwrap();
    let free_during_send = std::sync::Arc::new(AtomicBool::new(false));
    // The sender's pool, once it exists: the server checks its one connection is free.
    let sender_pool = std::sync::Arc::new(std::sync::OnceLock::<keel_core::db::Db>::new());
    let (port, received) = smtp_server({
        let (proxy, free, pool) = (proxy.clone(), free_during_send.clone(), sender_pool.clone());
        move || {
            let (proxy, free, pool) = (proxy.clone(), free.clone(), pool.clone());
            Box::pin(async move {
                if let Some(pool) = pool.get() {
                    let conn = tokio::time::timeout(std::time::Duration::from_secs(2), pool.conn());
                    free.store(matches!(conn.await, Ok(Ok(_))), Ordering::SeqCst);
                }
                proxy.set(Link::Cut);
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    proxy.set(Link::Up);
                });
            })
        }
    })
    .await;
    let port = port.to_string();
    let services = crate::support::task_services_at(
        proxied.as_str(),
        &[
            ("DATABASE_POOL_SIZE", "1"),
            ("DATABASE_POOL_TIMEOUT", "500ms"),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port),
            ("SMTP_SECURITY", "none"),
        ],
    )
    .await;
    sender_pool.set(services.db().clone()).unwrap();

    let task_id = uuid::Uuid::now_v7();
    let mut attempt = 1;
    loop {
        let ctx = TaskContext::new::<SendWelcomeEmail>(services.clone(), task_id, attempt);
        match (SendWelcomeEmail { user_id }).run(ctx).await {
            Ok(()) => break,
            Err(err) => {
                assert!(
                    err.is_retryable() && attempt < 10,
                    "attempt {attempt}: {err}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                attempt += 1;
            }
        }
    }
    let ctx = TaskContext::new::<SendWelcomeEmail>(services, task_id, 1);
    SendWelcomeEmail { user_id }.run(ctx).await.unwrap(); // redelivered

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "greeted once: {received:#?}");
    let message_id = format!("Message-ID: <{}@localhost>", task_id.simple());
    assert!(received[0].contains(&message_id), "{}", received[0]);
    assert!(
        free_during_send.load(Ordering::SeqCst),
        "the pool's one connection was free while the server took the mail"
    );
}
