//! The delegation rule: an administrator acts on an account only if they hold every
//! permission it holds, and only a superuser acts on a superuser. Every action, both
//! ways: allowed on a plain account, refused (403, audited, nothing changed) on an
//! account that outranks the actor.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{PASSWORD, Session, TestApp};

/// Each administrative action on an account: method, path under `/api/v1/users/{id}`,
/// body, and the status it answers when allowed.
fn actions() -> Vec<(&'static str, Method, &'static str, Option<Value>, u16)> {
    vec![
        (
            "edit email",
            Method::PATCH,
            "",
            Some(json!({"email": "moved@example.com"})),
            200,
        ),
        (
            "edit name",
            Method::PATCH,
            "",
            Some(json!({"full_name": "Renamed"})),
            200,
        ),
        (
            "set password",
            Method::PATCH,
            "",
            Some(json!({"password": "a brand new passphrase"})),
            200,
        ),
        (
            "set roles",
            Method::PUT,
            "/roles",
            Some(json!({"roles": ["user"]})),
            200,
        ),
        ("sign out", Method::DELETE, "/sessions", None, 204),
        ("deactivate", Method::POST, "/deactivate", None, 200),
        ("activate", Method::POST, "/activate", None, 200),
    ]
}

struct Setup {
    app: TestApp,
    /// users:read + users:write, nothing else.
    helpdesk: Session,
    root: Session,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let root = app.superuser("root@example.com").await;
    app.role_with("helpdesk", &["users:read", "users:write"])
        .await;
    app.role_with("auditor", &["roles:read"]).await;
    app.register("helpdesk@example.com").await;
    app.grant_role("helpdesk@example.com", "helpdesk").await;
    let helpdesk = app.sign_in("helpdesk@example.com").await;
    Setup {
        app,
        helpdesk,
        root,
    }
}

/// A fresh signed-in account holding `role` (besides `user`, if given).
async fn target(app: &TestApp, email: &str, role: Option<&str>) -> (Uuid, Session) {
    app.register(email).await;
    if let Some(role) = role {
        app.grant_role(email, role).await;
    }
    let session = app.sign_in(email).await;
    (app.user_id(&session.access).await, session)
}

async fn act(
    app: &TestApp,
    actor: &Session,
    id: Uuid,
    action: &(&str, Method, &str, Option<Value>, u16),
) -> crate::support::Answer {
    let (_, method, suffix, body, _) = action;
    app.call(
        method.clone(),
        &format!("/api/v1/users/{id}{suffix}"),
        Some(&actor.access),
        body.clone(),
    )
    .await
}

/// The account as an administrator reads it, and whether its session still works.
async fn state(app: &TestApp, root: &Session, id: Uuid, session: &Session) -> (Value, u16) {
    let read = app.get(&format!("/api/v1/users/{id}"), &root.access).await;
    let mut user = read.body;
    user["updated_at"] = Value::Null;
    (user, app.me_status(&session.access).await.as_u16())
}

/// The refused attempts recorded on account `id`: (actor email, attempted action).
async fn refusals_recorded(app: &TestApp, id: Uuid) -> Vec<(String, String)> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Refusal {
        #[diesel(sql_type = Text)]
        actor_email: String,
        #[diesel(sql_type = Text)]
        attempted: String,
    }
    let rows: Vec<Refusal> = diesel::sql_query(
        "SELECT actor_email, metadata->>'attempted' AS attempted FROM activity_entries \
         WHERE action = 'user.action_refused' AND entity_id = $1 ORDER BY id",
    )
    .bind::<Text, _>(id.to_string())
    .load(&mut app.db.connect().await)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| (r.actor_email, r.attempted))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delegated_administrator_acts_on_accounts_they_outrank() {
    let Setup { app, helpdesk, .. } = setup().await;
    for (i, action) in actions().iter().enumerate() {
        let (id, _) = target(&app, &format!("plain{i}@example.com"), None).await;
        let answer = act(&app, &helpdesk, id, action).await;
        assert_eq!(answer.status.as_u16(), action.4, "{}: {answer:?}", action.0);
    }
}

async fn refused_on(outranking_role: &str, reason: &str) {
    let Setup {
        app,
        helpdesk,
        root,
    } = setup().await;
    for (i, action) in actions().iter().enumerate() {
        let email = format!("{outranking_role}{i}@example.com");
        let (id, session) = target(&app, &email, Some(outranking_role)).await;
        let before = state(&app, &root, id, &session).await;
        let answer = act(&app, &helpdesk, id, action).await;
        assert_eq!(answer.status, 403, "{}: {answer:?}", action.0);
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(reason), "{}: {detail}", action.0);
        assert_eq!(
            state(&app, &root, id, &session).await,
            before,
            "{}: a refused action changed the account",
            action.0
        );
        assert_eq!(
            app.login_status(&email, PASSWORD).await,
            200,
            "{}: the owner still signs in with their password",
            action.0
        );
        let refusals = refusals_recorded(&app, id).await;
        assert_eq!(refusals.len(), 1, "{}: {refusals:?}", action.0);
        assert_eq!(refusals[0].0, "helpdesk@example.com");
        // Allowed for someone who outranks the account in turn.
        let by_root = act(&app, &root, id, action).await;
        assert_eq!(
            by_root.status.as_u16(),
            action.4,
            "{} by root: {by_root:?}",
            action.0
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_superuser_acts_on_a_superuser() {
    refused_on("superuser", "only a superuser").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_acts_on_an_account_holding_a_permission_they_lack() {
    refused_on("auditor", "roles:read").await;
}

/// Holding every permission is not being a superuser: the superuser role (which also
/// means acting on superusers) is granted only by a superuser.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_superuser_grants_the_superuser_role() {
    let Setup { app, root, .. } = setup().await;
    app.role_with(
        "everything",
        &[
            "users:read",
            "users:write",
            "roles:read",
            "roles:write",
            "permissions:read",
        ],
    )
    .await;
    app.register("almighty@example.com").await;
    app.grant_role("almighty@example.com", "everything").await;
    let almighty = app.sign_in("almighty@example.com").await;
    let own_id = app.user_id(&almighty.access).await;
    let (other_id, _) = target(&app, "other@example.com", None).await;
    for id in [own_id, other_id] {
        let promote = app
            .put(
                &format!("/api/v1/users/{id}/roles"),
                &almighty.access,
                json!({"roles": ["user", "everything", "superuser"]}),
            )
            .await;
        assert_eq!(promote.status, 403, "{promote:?}");
        assert!(promote.detail().contains("superuser"));
    }
    let create = app
        .post(
            "/api/v1/users",
            Some(&almighty.access),
            json!({"email": "sneak@example.com", "password": PASSWORD, "roles": ["superuser"]}),
        )
        .await;
    assert_eq!(create.status, 403, "{create:?}");
    let by_root = app
        .put(
            &format!("/api/v1/users/{other_id}/roles"),
            &root.access,
            json!({"roles": ["user", "superuser"]}),
        )
        .await;
    assert_eq!(by_root.status, 200, "{by_root:?}");
}

/// Changing or deleting a role acts on everyone holding it: a delegated administrator
/// can't strip the permissions that make another account outrank them.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_granting_more_than_the_actor_holds_is_out_of_their_reach() {
    let Setup { app, root, .. } = setup().await;
    app.role_with("rolesmith", &["users:read", "users:write", "roles:write"])
        .await;
    app.register("smith@example.com").await;
    app.grant_role("smith@example.com", "rolesmith").await;
    let smith = app.sign_in("smith@example.com").await;
    let (auditor_id, _) = target(&app, "audited@example.com", Some("auditor")).await;
    let auditor_role =
        keel_user::crud::access::find_role_by_name(&mut app.db.connect().await, "auditor")
            .await
            .unwrap()
            .unwrap()
            .id;
    let attempts = [
        (
            Method::PUT,
            format!("/api/v1/roles/{auditor_role}/permissions"),
            Some(json!({"permissions": []})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/roles/{auditor_role}"),
            Some(json!({"name": "renamed"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/roles/{auditor_role}"),
            None,
        ),
    ];
    for (method, path, body) in attempts {
        let answer = app
            .call(method.clone(), &path, Some(&smith.access), body.clone())
            .await;
        assert_eq!(answer.status, 403, "{method} {path}: {answer:?}");
        assert!(answer.detail().contains("roles:read"));
    }
    // The account still outranks the actor, so it stays out of reach too.
    let edit = app
        .patch(
            &format!("/api/v1/users/{auditor_id}"),
            &smith.access,
            json!({"password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(edit.status, 403, "{edit:?}");
    // Someone holding what the role grants may change it.
    let by_root = app
        .put(
            &format!("/api/v1/roles/{auditor_role}/permissions"),
            &root.access,
            json!({"permissions": []}),
        )
        .await;
    assert_eq!(by_root.status, 200, "{by_root:?}");
}

/// The admin route doesn't change the caller's own password or email: that would let a
/// stolen access token keep the account for good.
#[tokio::test(flavor = "multi_thread")]
async fn administrators_change_their_own_credentials_through_their_own_routes() {
    let Setup { app, helpdesk, .. } = setup().await;
    let own = app.user_id(&helpdesk.access).await;
    for body in [
        json!({"password": "a brand new passphrase"}),
        json!({"email": "elsewhere@example.com"}),
    ] {
        let answer = app
            .patch(&format!("/api/v1/users/{own}"), &helpdesk.access, body)
            .await;
        assert_eq!(answer.status, 403, "{answer:?}");
        assert!(answer.detail().contains("/auth/me/password"));
    }
    assert_eq!(
        app.login_status("helpdesk@example.com", PASSWORD).await,
        200
    );
    let renamed = app
        .patch(
            &format!("/api/v1/users/{own}"),
            &helpdesk.access,
            json!({"full_name": "Help Desk"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
}

/// The permission an operation lists as its scope is checked as the caller is
/// authenticated, before the handler reads the body: a caller without it gets 403 for
/// an unreadable body and for one the handler would refuse (a blank name, a bad email,
/// a weak password), never what the handler would say. (A body of the wrong JSON shape
/// is refused by the document's schema first, which anyone can read.) HEAD is held to
/// GET's permission.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_permission_is_refused_before_the_body_is_read() {
    let app = TestApp::spawn().await;
    let nobody = app.sign_up("nobody@example.com").await;
    let target = app.sign_up("target@example.com").await;
    let target_id = app.user_id(&target.access).await;
    let client = reqwest::Client::new();
    let admin = app.superuser("root@example.com").await;
    let send = |token: &str, method: Method, path: &str, body: &'static str| {
        client
            .request(method, app.url(path))
            .bearer_auth(token.to_owned())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let user = format!("/api/v1/users/{target_id}");
    for (method, path, refused_by_handler) in [
        (Method::POST, "/api/v1/roles", r#"{"name": " "}"#),
        (Method::PATCH, user.as_str(), r#"{"email": "not an email"}"#),
        (
            Method::POST,
            "/api/v1/users",
            r#"{"email": "x@example.com", "password": "short", "full_name": "X"}"#,
        ),
    ] {
        for body in ["{", "", "{\"name\": ", refused_by_handler] {
            let answer = send(&nobody.access, method.clone(), path, body);
            assert_eq!(
                answer.await.unwrap().status(),
                403,
                "{method} {path} {body:?}"
            );
        }
        // What the handler says to a caller who may ask.
        let answer = send(&admin.access, method.clone(), path, refused_by_handler);
        assert_eq!(answer.await.unwrap().status(), 422, "{method} {path}");
    }
    let head = |token: &str| {
        client
            .head(app.url("/api/v1/users"))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(head(&nobody.access).await.unwrap().status(), 403);
    assert_eq!(head(&admin.access).await.unwrap().status(), 200);
}
