//! `/api/v1/auth`: registration, sign-in, rotation, sign-out, own account.

use serde_json::json;

use crate::support::{PASSWORD, TestApp, WRONG, problem_shape};

#[tokio::test(flavor = "multi_thread")]
async fn register_then_login_and_me() {
    let app = TestApp::spawn().await;
    let session = app.sign_up("Ada@Example.com").await;
    let me = app.get("/api/v1/auth/me", &session.access).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["email"], "ada@example.com");
    assert_eq!(me.body["full_name"], "Test User");
    assert_eq!(me.body["roles"], json!(["user"]));
    assert_eq!(me.body["permissions"], json!([]));

    let login = app.login("ADA@example.com", PASSWORD).await;
    assert_eq!(login.status, 200);
    assert_eq!(login.body["token_type"], "bearer");
    assert_eq!(login.body["expires_in"], 900);
    assert_eq!(login.headers["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_a_taken_email_looks_like_success() {
    let app = TestApp::spawn().await;
    let body = json!({"email": "taken@example.com", "password": PASSWORD});
    let first = app.post("/api/v1/auth/register", None, body.clone()).await;
    let again = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "TAKEN@example.com", "password": "another long password"}),
        )
        .await;
    assert_eq!(first.status, 202);
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    // The original password still works; the second registration changed nothing.
    assert_eq!(app.login_status("taken@example.com", PASSWORD).await, 200);
    assert_eq!(
        app.login_status("taken@example.com", "another long password")
            .await,
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_rules_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "longpassword@example.com", "password": "longpassword@example.com"}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "x".repeat(129)}),
            "password",
        ),
        (json!({"email": "a@example.com"}), "password"),
    ] {
        let answer = app.post("/api/v1/auth/register", None, body.clone()).await;
        assert_eq!(answer.status, 422, "{body}: {answer:?}");
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        let fields: Vec<_> = answer.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect();
        assert!(fields.contains(&field.to_owned()), "{body}: {fields:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_body_cannot_assign_server_owned_fields() {
    let app = TestApp::spawn().await;
    let answer = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({
                "email": "sneaky@example.com", "password": PASSWORD,
                "roles": ["superuser"], "is_active": false, "id": "00000000-0000-0000-0000-000000000001",
                "permissions": ["users:write"], "created_at": "2000-01-01T00:00:00Z"
            }),
        )
        .await;
    // Fields the schema doesn't name are refused, each named, and nothing is created.
    assert_eq!(answer.status, 422, "{answer:?}");
    let mut fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["created_at", "id", "is_active", "permissions", "roles"]
    );
    let refused = app.login("sneaky@example.com", PASSWORD).await;
    assert_eq!(refused.status, 401, "no account was made");

    app.register("sneaky@example.com").await;
    let session = app.sign_in("sneaky@example.com").await;
    let me = app.get("/api/v1/auth/me", &session.access).await;
    assert_eq!(me.body["roles"], json!(["user"]));
    assert_eq!(me.body["permissions"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_email_and_wrong_password_are_indistinguishable() {
    let app = TestApp::spawn().await;
    app.register("real@example.com").await;
    let wrong = app.login("real@example.com", WRONG).await;
    let unknown = app.login("nobody@example.com", WRONG).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(problem_shape(&wrong), problem_shape(&unknown));
    assert_eq!(wrong.headers["www-authenticate"], "Bearer");
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_password_form_signs_in() {
    let app = TestApp::spawn().await;
    app.register("form@example.com").await;
    let resp = reqwest::Client::new()
        .post(app.url("/api/v1/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=form%40example.com&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert!(body["access_token"].as_str().is_some());

    // The scopes Swagger UI adds are accepted; a grant other than `password` is not.
    let form = |grant: &str| {
        format!(
            "grant_type={grant}&username=form%40example.com&password={}&scope=users%3Aread",
            PASSWORD.replace(' ', "+")
        )
    };
    for (grant, status) in [("password", 200), ("client_credentials", 422)] {
        let resp = reqwest::Client::new()
            .post(app.url("/api/v1/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(grant))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{grant}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_limited_per_account_and_per_ip() {
    let app = TestApp::spawn_with(&[
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"),
        ("LOGIN_MAX_FAILURES_PER_IP", "5"),
    ])
    .await;
    app.register("target@example.com").await;
    for _ in 0..3 {
        assert_eq!(app.login_status("target@example.com", WRONG).await, 401);
    }
    // The account is locked for the window, even with the right password.
    let limited = app.login("target@example.com", PASSWORD).await;
    assert_eq!(limited.status, 429, "{limited:?}");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry), "{retry}");

    // Two more failures on other accounts spend this IP's budget of five.
    for email in ["x@example.com", "y@example.com"] {
        assert_eq!(app.login_status(email, WRONG).await, 401);
    }
    app.register("other@example.com").await;
    assert_eq!(app.login_status("other@example.com", PASSWORD).await, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_login_clears_the_account_failures() {
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "2")]).await;
    app.register("forgetful@example.com").await;
    for (password, status) in [(WRONG, 401), (PASSWORD, 200), (WRONG, 401), (PASSWORD, 200)] {
        assert_eq!(
            app.login_status("forgetful@example.com", password).await,
            status
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = TestApp::spawn().await;
    let first = app.sign_up("rotate@example.com").await;

    let rotated = app.refresh(&first.refresh).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    assert_eq!(rotated.headers["cache-control"], "no-store");
    let second_refresh = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    let second_access = rotated.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first.refresh);
    assert_eq!(app.me_status(&second_access).await, 200);
    // Rotation keeps the session: the first access token still works.
    assert_eq!(app.me_status(&first.access).await, 200);

    // Someone replays the used token: the whole session ends.
    let replay = app.refresh(&first.refresh).await;
    assert_eq!(replay.status, 401);
    let legit = app.refresh(&second_refresh).await;
    assert_eq!(legit.status, 401, "the family is revoked");
    assert_eq!(app.me_status(&second_access).await, 401);
    assert_eq!(app.me_status(&first.access).await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_refresh_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let unknown = app.refresh("nope").await;
    assert_eq!(unknown.status, 401);
    let missing = app.post("/api/v1/auth/refresh", None, json!({})).await;
    assert_eq!(missing.status, 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_by_refresh_token_or_bearer_ends_the_session_at_once() {
    let app = TestApp::spawn().await;
    let a = app.sign_up("out@example.com").await;
    let b = app.sign_in("out@example.com").await;

    let by_refresh = app.logout(None, &a.refresh).await;
    assert_eq!(by_refresh.status, 204, "{by_refresh:?}");
    assert_eq!(app.me_status(&a.access).await, 401);
    assert_eq!(app.me_status(&b.access).await, 200, "other sessions stay");

    let by_bearer = app.act("/api/v1/auth/logout", Some(&b.access)).await;
    assert_eq!(by_bearer.status, 204, "{by_bearer:?}");
    assert_eq!(app.me_status(&b.access).await, 401);
    let refresh = app.refresh(&b.refresh).await;
    assert_eq!(refresh.status, 401);

    let anonymous = app.act("/api/v1/auth/logout", None).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_with_someone_elses_refresh_token_and_your_bearer_ends_nothing() {
    let app = TestApp::spawn().await;
    let victim = app.sign_up("victim@example.com").await;
    let caller = app.sign_up("caller@example.com").await;

    let answer = app.logout(Some(&caller.access), &victim.refresh).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(app.me_status(&victim.access).await, 200);
    assert_eq!(app.me_status(&caller.access).await, 200);
    assert_eq!(app.refresh(&victim.refresh).await.status, 200, "still live");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_ends_every_session() {
    let app = TestApp::spawn().await;
    let a = app.sign_up("all@example.com").await;
    let b = app.sign_in("all@example.com").await;
    let answer = app.act("/api/v1/auth/logout-all", Some(&a.access)).await;
    assert_eq!(answer.status, 204);
    assert_eq!(app.me_status(&a.access).await, 401);
    assert_eq!(app.me_status(&b.access).await, 401);
    let refresh = app.refresh(&b.refresh).await;
    assert_eq!(refresh.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_keeps_this_session_and_ends_the_others() {
    let app = TestApp::spawn().await;
    let here = app.sign_up("pw@example.com").await;
    let there = app.sign_in("pw@example.com").await;
    let put = |current: &str, new: &str| {
        let body = json!({"current_password": current, "new_password": new});
        let token = here.access.clone();
        let app = &app;
        async move { app.put("/api/v1/auth/me/password", &token, body).await }
    };
    assert_eq!(put(WRONG, "a brand new password").await.status, 403);
    let weak = put(PASSWORD, "short").await;
    assert_eq!(weak.status, 422);
    assert_eq!(weak.body["errors"][0]["field"], "new_password");

    assert_eq!(put(PASSWORD, "a brand new password").await.status, 204);
    assert_eq!(app.me_status(&here.access).await, 200);
    assert_eq!(app.me_status(&there.access).await, 401);
    assert_eq!(app.login_status("pw@example.com", PASSWORD).await, 401);
    assert_eq!(
        app.login_status("pw@example.com", "a brand new password")
            .await,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn own_sessions_are_listed_and_can_be_ended() {
    let app = TestApp::spawn().await;
    let here = app.sign_up("devices@example.com").await;
    let there = app.sign_in("devices@example.com").await;
    let list = app.get("/api/v1/auth/sessions", &here.access).await;
    assert_eq!(list.status, 200);
    let sessions = list.body.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    let path = format!("/api/v1/auth/sessions/{}", other["id"].as_str().unwrap());

    let deleted = app.delete(&path, &here.access).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(app.me_status(&there.access).await, 401);
    assert_eq!(app.me_status(&here.access).await, 200);
    let again = app.delete(&path, &here.access).await;
    assert_eq!(again.status, 404);

    // Someone else's session is not found either, rather than forbidden.
    let stranger = app.sign_up("stranger@example.com").await;
    let mine = app.get("/api/v1/auth/sessions", &here.access).await;
    let id = mine.body[0]["id"].as_str().unwrap().to_owned();
    let theirs = app
        .delete(&format!("/api/v1/auth/sessions/{id}"), &stranger.access)
        .await;
    assert_eq!(theirs.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_edits_show_on_the_next_request() {
    let app = TestApp::spawn().await;
    let session = app.sign_up("profile@example.com").await;
    assert_eq!(app.me_status(&session.access).await, 200); // now cached
    let patched = app
        .patch(
            "/api/v1/auth/me",
            &session.access,
            json!({"full_name": "  Ada Lovelace "}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["full_name"], "Ada Lovelace");
    let me = app.get("/api/v1/auth/me", &session.access).await;
    assert_eq!(me.body["full_name"], "Ada Lovelace");
}

/// With `AUTH_CACHE_TTL=0s` nothing of the caller is kept, in memory or in Redis: a
/// change made straight in the database (another service, an operator's SQL) shows on
/// the very next `/me`.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_cache_ttl_me_reads_the_account_every_time() {
    use diesel_async::SimpleAsyncConnection;
    let redis = keel_testkit::redis_settings();
    let with_redis: Vec<(&str, &str)> = redis.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for shared in [&[][..], &with_redis[..]] {
        let mut overrides = vec![("AUTH_CACHE_TTL", "0s")];
        overrides.extend_from_slice(shared);
        let app = TestApp::spawn_with(&overrides).await;
        let ada = app.sign_up("ada@example.com").await;
        let name = async || app.get("/api/v1/auth/me", &ada.access).await.body["full_name"].clone();
        assert_eq!(name().await, "Test User");
        app.db
            .connect()
            .await
            .batch_execute(
                "UPDATE users SET full_name = 'Changed Outside' WHERE email = 'ada@example.com'",
            )
            .await
            .unwrap();
        assert_eq!(
            name().await,
            "Changed Outside",
            "redis: {}",
            !shared.is_empty()
        );
    }
}
