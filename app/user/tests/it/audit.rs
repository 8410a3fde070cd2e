//! Every state-changing service records its audit entry in the same transaction, and a
//! refused change records nothing.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use reqwest::Method;
use serde_json::json;

use crate::support::{PASSWORD, TestApp};

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    action: String,
}

impl TestApp {
    /// The recorded actions, oldest first, after the first `skip`.
    async fn actions_since(&self, skip: usize) -> Vec<String> {
        let rows: Vec<Row> = diesel::sql_query("SELECT action FROM activity_entries ORDER BY id")
            .load(&mut self.db.connect().await)
            .await
            .unwrap();
        rows.into_iter().skip(skip).map(|r| r.action).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_account_action_is_recorded_once() {
    let app = TestApp::spawn().await;
    let admin = app.superuser("admin@example.com").await;
    let start = app.actions_since(0).await.len();

    let ada = app.sign_up("ada@example.com").await;
    assert_eq!(
        app.login_status("ada@example.com", "wrong password!").await,
        401
    );
    assert_eq!(app.login_status("nobody@example.com", PASSWORD).await, 401);
    let rotated = app.refresh(&ada.refresh).await;
    assert_eq!(rotated.status, 200);
    let replay = app.refresh(&ada.refresh).await;
    assert_eq!(replay.status, 401);
    let ada = app.sign_in("ada@example.com").await;
    let patched = app
        .patch("/api/v1/auth/me", &ada.access, json!({"full_name": "Ada"}))
        .await;
    assert_eq!(patched.status, 200);
    // A second session, which the password change ends.
    let _other = app.sign_in("ada@example.com").await;
    let changed = app
        .put(
            "/api/v1/auth/me/password",
            &ada.access,
            json!({"current_password": PASSWORD, "new_password": "another good one"}),
        )
        .await;
    assert_eq!(changed.status, 204, "{changed:?}");
    let ada = app.login("ada@example.com", "another good one").await;
    let access = ada.body["access_token"].as_str().unwrap().to_owned();
    let sessions = app.get("/api/v1/auth/sessions", &access).await;
    let session = sessions.body[0]["id"].as_str().unwrap().to_owned();
    let ended = app
        .delete(&format!("/api/v1/auth/sessions/{session}"), &access)
        .await;
    assert_eq!(ended.status, 204);
    let ada = app.login("ada@example.com", "another good one").await;
    let refresh = ada.body["refresh_token"].as_str().unwrap().to_owned();
    let out = app.logout(None, &refresh).await;
    assert_eq!(out.status, 204);
    let ada = app.login("ada@example.com", "another good one").await;
    let access_all = ada.body["access_token"].as_str().unwrap().to_owned();
    let all = app
        .post("/api/v1/auth/logout-all", Some(&access_all), json!({}))
        .await;
    assert_eq!(all.status, 204, "{all:?}");

    assert_eq!(
        app.actions_since(start).await,
        [
            "user.registered",
            "auth.login_succeeded",
            "auth.login_failed",
            "auth.login_failed",
            "auth.refresh_reused",
            "auth.login_succeeded",
            "user.profile_updated",
            "auth.login_succeeded",
            "auth.password_changed",
            "auth.login_succeeded",
            "auth.session_revoked",
            "auth.login_succeeded",
            "auth.logout",
            "auth.login_succeeded",
            "auth.logout_all",
        ]
    );

    // Administration.
    let start = app.actions_since(0).await.len();
    let made = app
        .post(
            "/api/v1/users",
            Some(&admin.access),
            json!({"email": "made@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(made.status, 201);
    let id = made.body["id"].as_str().unwrap().to_owned();
    let user = |tail: &str| format!("/api/v1/users/{id}{tail}");
    for (method, path, body, status) in [
        (
            Method::PATCH,
            user(""),
            Some(json!({"full_name": "Made"})),
            200,
        ),
        (Method::POST, user("/deactivate"), None, 200),
        (Method::POST, user("/activate"), None, 200),
        (
            Method::PUT,
            user("/roles"),
            Some(json!({"roles": ["user"]})),
            200,
        ),
        (Method::DELETE, user("/sessions"), None, 204),
    ] {
        let answer = app.call(method, &path, Some(&admin.access), body).await;
        assert_eq!(answer.status, status, "{path}: {answer:?}");
    }
    let role = app
        .post(
            "/api/v1/roles",
            Some(&admin.access),
            json!({"name": "auditor", "permissions": ["users:read"]}),
        )
        .await;
    assert_eq!(role.status, 201);
    let role = format!("/api/v1/roles/{}", role.body["id"].as_str().unwrap());
    for (method, path, body, status) in [
        (
            Method::PATCH,
            role.clone(),
            Some(json!({"description": "reads"})),
            200,
        ),
        (
            Method::PUT,
            format!("{role}/permissions"),
            Some(json!({"permissions": []})),
            200,
        ),
        (Method::DELETE, role.clone(), None, 204),
    ] {
        let answer = app.call(method, &path, Some(&admin.access), body).await;
        assert_eq!(answer.status, status, "{path}: {answer:?}");
    }
    assert_eq!(
        app.actions_since(start).await,
        [
            "user.created",
            "user.updated",
            "user.deactivated",
            "user.activated",
            "user.roles_changed",
            "user.sessions_revoked",
            "role.created",
            "role.updated",
            "role.permissions_changed",
            "role.deleted",
        ]
    );

    // A refused change records nothing: the last superuser can't be demoted.
    let start = app.actions_since(0).await.len();
    let admin_id = app.user_id(&admin.access).await;
    let refused = app
        .put(
            &format!("/api/v1/users/{admin_id}/roles"),
            &admin.access,
            json!({"roles": ["user"]}),
        )
        .await;
    assert_eq!(refused.status, 409);
    assert_eq!(app.actions_since(start).await, Vec::<String>::new());
}
