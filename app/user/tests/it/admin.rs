//! `/api/v1/users`, `/roles`, `/permissions`: guards, guard rails, effects.

use keel_core::http::versioned::V1;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, WRONG};

#[tokio::test(flavor = "multi_thread")]
async fn guards_answer_401_without_a_token_and_403_without_the_permission() {
    let app = TestApp::spawn().await;
    let user = app.sign_up("plain@example.com").await;
    for path in ["/api/v1/users", "/api/v1/roles", "/api/v1/permissions"] {
        let anonymous = app.call(Method::GET, path, None, None).await;
        assert_eq!(anonymous.status, 401, "{path}");
        let forbidden = app.get(path, &user.access).await;
        assert_eq!(forbidden.status, 403, "{path}: {forbidden:?}");
        assert_eq!(
            forbidden.headers["content-type"],
            "application/problem+json"
        );
        assert!(forbidden.detail().contains(":read"), "{forbidden:?}");
    }
}

/// A valid body for each operation that takes one, so the guard is what decides.
fn body_for(operation_id: &str) -> Option<Value> {
    match operation_id {
        "users_create" => Some(json!({"email": "new@example.com", "password": PASSWORD})),
        "users_update" | "roles_update" => Some(json!({})),
        "users_set_roles" => Some(json!({"roles": []})),
        "roles_create" => Some(json!({"name": "fresh"})),
        "roles_set_permissions" => Some(json!({"permissions": []})),
        _ => None,
    }
}

/// Walks the OpenAPI document: every guarded operation declares one permission scope
/// and 401/403, refuses a user without that permission, and admits one holding just it.
#[tokio::test(flavor = "multi_thread")]
async fn every_guarded_operation_enforces_the_permission_it_documents() {
    let app = TestApp::spawn().await;
    let spec: Value = serde_json::from_str(
        &poem_openapi::OpenApiService::new(V1(keel_core::Feature::api(&app.service)), "t", "1")
            .spec(),
    )
    .unwrap();
    let nobody = app.sign_up("nobody@example.com").await;
    let mut checked = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            let Some(security) = op.get("security") else {
                continue;
            };
            let scopes = security[0]["OAuth2"].as_array().unwrap();
            for status in ["401", "503"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{id} documents {status}"
                );
            }
            if !path.starts_with("/api/v1/auth") {
                assert_eq!(scopes.len(), 1, "{id} lists its permission");
                assert!(op["responses"].get("403").is_some(), "{id} documents 403");
            }
            let Some(scope) = scopes.first().and_then(Value::as_str) else {
                continue;
            };
            let url = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
            let method: Method = method.to_uppercase().parse().unwrap();
            let denied = app
                .call(method.clone(), &url, Some(&nobody.access), body_for(id))
                .await;
            assert_eq!(denied.status, 403, "{id} without {scope}: {denied:?}");

            let role = format!("only-{}", scope.replace([':', '_'], "-"));
            app.role_with(&role, &[scope]).await;
            let email = format!("{role}@example.com");
            app.register(&email).await;
            app.grant_role(&email, &role).await;
            let holder = app.sign_in(&email).await;
            let allowed = app
                .call(method, &url, Some(&holder.access), body_for(id))
                .await;
            assert!(
                ![401, 403].contains(&allowed.status.as_u16()),
                "{id} with {scope}: {allowed:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 15, "users 8 + roles 6 + permissions 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_list_filter_sort_and_page_users() {
    let app = TestApp::spawn().await;
    let admin = app.superuser("admin@example.com").await;
    for name in ["carol", "alice", "bob"] {
        app.register(&format!("{name}@example.com")).await;
    }
    let list = |query: &str| {
        let path = format!("/api/v1/users?{query}");
        let token = admin.access.clone();
        let app = &app;
        async move { app.get(&path, &token).await }
    };
    let page = list("sort=email&size=2").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.body["total"], 4);
    assert_eq!(page.body["pages"], 2);
    let emails: Vec<_> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].clone())
        .collect();
    assert_eq!(
        emails,
        [json!("admin@example.com"), json!("alice@example.com")]
    );
    assert_eq!(
        list("sort=-email&size=1").await.body["items"][0]["email"],
        "carol@example.com"
    );
    assert_eq!(list("search=BO").await.body["total"], 1);
    assert_eq!(
        list("role=superuser").await.body["items"][0]["roles"],
        json!(["superuser", "user"])
    );
    assert_eq!(list("role=superuser").await.body["total"], 1);
    assert_eq!(list("is_active=false").await.body["total"], 0);
    assert_eq!(
        list("search=%25").await.body["total"],
        0,
        "% is not a wildcard"
    );
    assert_eq!(list("page=9").await.body["items"], json!([]));
    assert_eq!(
        list("size=101").await.status,
        400,
        "beyond the declared maximum"
    );
    let bad_sort = list("sort=password_hash").await;
    assert_eq!(bad_sort.status, 422);
    assert_eq!(bad_sort.body["errors"][0]["field"], "sort");
}

/// The list is served from memory; every write still shows on the next read, whether
/// it came through this API (at once) or from elsewhere (when PostgreSQL reports it).
#[tokio::test(flavor = "multi_thread")]
async fn the_cached_users_list_shows_every_write() {
    use diesel_async::SimpleAsyncConnection;

    let app = TestApp::spawn().await;
    let admin = app.superuser("admin@example.com").await;
    app.register("ada@example.com").await;
    let name_of_ada = || async {
        let page = app.get("/api/v1/users?search=ada", &admin.access).await;
        assert_eq!(page.status, 200, "{page:?}");
        page.body["items"][0]["full_name"].clone()
    };
    assert_eq!(name_of_ada().await, "Test User");
    assert_eq!(name_of_ada().await, "Test User", "cached");

    // Through the API: the very next read sees it.
    let ada = app.sign_in("ada@example.com").await;
    let patched = app
        .patch(
            "/api/v1/auth/me",
            &ada.access,
            json!({"full_name": "Ada Lovelace"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(name_of_ada().await, "Ada Lovelace");

    // From elsewhere (another replica, keel-admin, psql): once PostgreSQL tells us.
    app.db
        .connect()
        .await
        .batch_execute("UPDATE users SET full_name = 'Countess' WHERE email = 'ada@example.com'")
        .await
        .unwrap();
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = name_of_ada().await;
        if seen == "Countess" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "Countess");
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_create_edit_and_read_users() {
    let app = TestApp::spawn().await;
    let admin = app.superuser("admin@example.com").await;
    let created = app
        .post(
            "/api/v1/users",
            Some(&admin.access),
            json!({"email": "Made@Example.com", "password": PASSWORD, "full_name": "Made"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["email"], "made@example.com");
    assert_eq!(created.body["roles"], json!(["user"]));
    let id = created.body["id"].as_str().unwrap().to_owned();
    let taken = app
        .post(
            "/api/v1/users",
            Some(&admin.access),
            json!({"email": "made@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(taken.status, 409);
    assert_eq!(taken.body["errors"][0]["field"], "email");

    let made = app.sign_in("made@example.com").await;
    let patched = app
        .patch(
            &format!("/api/v1/users/{id}"),
            &admin.access,
            json!({"full_name": "Renamed", "password": "a reset password!"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["full_name"], "Renamed");
    assert_eq!(
        app.me_status(&made.access).await,
        401,
        "a reset ends sessions"
    );
    assert_eq!(
        app.login_status("made@example.com", "a reset password!")
            .await,
        200
    );

    let got = app.get(&format!("/api/v1/users/{id}"), &admin.access).await;
    assert_eq!(got.body["full_name"], "Renamed");
    assert!(got.body.get("password_hash").is_none());
    let missing = app
        .get(
            &format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
            &admin.access,
        )
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivation_and_force_logout_apply_to_the_next_request() {
    let app = TestApp::spawn().await;
    let admin = app.superuser("admin@example.com").await;
    let user = app.sign_up("victim@example.com").await;
    let id = app.user_id(&user.access).await;

    let deactivated = app
        .act(
            &format!("/api/v1/users/{id}/deactivate"),
            Some(&admin.access),
        )
        .await;
    assert_eq!(deactivated.status, 200);
    assert_eq!(deactivated.body["is_active"], false);
    assert_eq!(app.me_status(&user.access).await, 401);
    // A wrong password gets the usual answer; only the right one learns of deactivation.
    let wrong = app.login("victim@example.com", WRONG).await;
    let unknown = app.login("nobody@example.com", WRONG).await;
    assert_eq!(
        crate::support::problem_shape(&wrong),
        crate::support::problem_shape(&unknown)
    );
    let right = app.login("victim@example.com", PASSWORD).await;
    assert_eq!(right.status, 401);
    assert!(right.detail().contains("deactivated"));

    let activated = app
        .act(&format!("/api/v1/users/{id}/activate"), Some(&admin.access))
        .await;
    assert_eq!(activated.status, 200);
    let again = app.sign_in("victim@example.com").await;
    let forced = app
        .delete(&format!("/api/v1/users/{id}/sessions"), &admin.access)
        .await;
    assert_eq!(forced.status, 204);
    assert_eq!(app.me_status(&again.access).await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn guard_rails_protect_the_last_superuser_and_stop_escalation() {
    let app = TestApp::spawn().await;
    let root = app.superuser("root@example.com").await;
    let root_id = app.user_id(&root.access).await;

    let self_deactivate = app
        .act(
            &format!("/api/v1/users/{root_id}/deactivate"),
            Some(&root.access),
        )
        .await;
    assert_eq!(self_deactivate.status, 403);
    let demote = app
        .put(
            &format!("/api/v1/users/{root_id}/roles"),
            &root.access,
            json!({"roles": ["user"]}),
        )
        .await;
    assert_eq!(demote.status, 409, "{demote:?}");

    // A user manager (users:read + users:write, nothing else) can't hand out more.
    app.role_with("manager", &["users:read", "users:write"])
        .await;
    app.register("manager@example.com").await;
    app.grant_role("manager@example.com", "manager").await;
    let manager = app.sign_in("manager@example.com").await;
    let plain = app.sign_up("plain@example.com").await;
    let plain_id = app.user_id(&plain.access).await;
    let escalate = app
        .put(
            &format!("/api/v1/users/{plain_id}/roles"),
            &manager.access,
            json!({"roles": ["superuser", "user"]}),
        )
        .await;
    assert_eq!(escalate.status, 403, "{escalate:?}");
    let create_admin = app
        .post(
            "/api/v1/users",
            Some(&manager.access),
            json!({"email": "sneak@example.com", "password": PASSWORD, "roles": ["superuser"]}),
        )
        .await;
    assert_eq!(create_admin.status, 403, "{create_admin:?}");
    let manager_id = app.user_id(&manager.access).await;
    let self_promote = app
        .put(
            &format!("/api/v1/users/{manager_id}/roles"),
            &manager.access,
            json!({"roles": ["manager", "superuser"]}),
        )
        .await;
    assert_eq!(self_promote.status, 403);
    let deactivate_root = app
        .act(
            &format!("/api/v1/users/{root_id}/deactivate"),
            Some(&manager.access),
        )
        .await;
    assert_eq!(
        deactivate_root.status, 403,
        "only a superuser acts on a superuser"
    );
    let unknown_role = app
        .put(
            &format!("/api/v1/users/{manager_id}/roles"),
            &root.access,
            json!({"roles": ["ghost"]}),
        )
        .await;
    assert_eq!(unknown_role.status, 422);

    // With a second superuser, the first may step down.
    let second = app.superuser("second@example.com").await;
    let step_down = app
        .put(
            &format!("/api/v1/users/{root_id}/roles"),
            &second.access,
            json!({"roles": ["user"]}),
        )
        .await;
    assert_eq!(step_down.status, 200, "{step_down:?}");
    assert_eq!(
        app.get("/api/v1/users", &root.access).await.status,
        403,
        "applies at once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_are_managed_and_permission_changes_apply_at_once() {
    let app = TestApp::spawn().await;
    let root = app.superuser("root@example.com").await;
    let created = app
        .post(
            "/api/v1/roles",
            Some(&root.access),
            json!({"name": "auditor", "description": "reads users", "permissions": ["users:read"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let role_id = created.body["id"].as_str().unwrap().to_owned();
    for (refused, status) in [
        (json!({"name": "auditor"}), 409),
        (json!({"name": "Bad Name"}), 422),
        (
            json!({"name": "x-role", "permissions": ["nope:nothing"]}),
            422,
        ),
    ] {
        let answer = app
            .post("/api/v1/roles", Some(&root.access), refused.clone())
            .await;
        assert_eq!(answer.status, status, "{refused}");
    }

    let auditor = app.sign_up("auditor@example.com").await;
    let auditor_id = app.user_id(&auditor.access).await;
    let granted = app
        .put(
            &format!("/api/v1/users/{auditor_id}/roles"),
            &root.access,
            json!({"roles": ["auditor", "user"]}),
        )
        .await;
    assert_eq!(granted.status, 200);
    assert_eq!(app.get("/api/v1/users", &auditor.access).await.status, 200);

    let emptied = app
        .put(
            &format!("/api/v1/roles/{role_id}/permissions"),
            &root.access,
            json!({"permissions": []}),
        )
        .await;
    assert_eq!(emptied.status, 200);
    assert_eq!(emptied.body["permissions"], json!([]));
    assert_eq!(
        app.get("/api/v1/users", &auditor.access).await.status,
        403,
        "applies at once"
    );

    let roles = app.get("/api/v1/roles?sort=name", &root.access).await;
    let names: Vec<_> = roles.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, [json!("auditor"), json!("superuser"), json!("user")]);
    let superuser_id = roles.body["items"][1]["id"].as_str().unwrap().to_owned();
    let system_delete = app
        .delete(&format!("/api/v1/roles/{superuser_id}"), &root.access)
        .await;
    assert_eq!(system_delete.status, 409);
    let system_perms = app
        .put(
            &format!("/api/v1/roles/{superuser_id}/permissions"),
            &root.access,
            json!({"permissions": []}),
        )
        .await;
    assert_eq!(system_perms.status, 409);
    let deleted = app
        .delete(&format!("/api/v1/roles/{role_id}"), &root.access)
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        app.get(&format!("/api/v1/roles/{role_id}"), &root.access)
            .await
            .status,
        404
    );

    let permissions = app.get("/api/v1/permissions", &root.access).await;
    let codes: Vec<_> = permissions
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].clone())
        .collect();
    assert!(codes.contains(&json!("users:read")));
    assert!(
        permissions.body[0]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seeding_twice_changes_nothing() {
    let app = TestApp::spawn().await;
    let again = keel_user::services::seed(
        app.service.db(),
        <keel_user::UserService as keel_core::Feature>::permissions(),
    )
    .await
    .unwrap();
    assert!(!again.changed_anything(), "{again:?}");
    let root = app.superuser("root@example.com").await;
    let me = app.get("/api/v1/auth/me", &root.access).await;
    let declared: Vec<_> = <keel_user::UserService as keel_core::Feature>::permissions()
        .into_iter()
        .map(|(c, _)| json!(c))
        .collect();
    let mut held: Vec<_> = me.body["permissions"].as_array().unwrap().clone();
    held.sort_by_key(|v| v.to_string());
    let mut declared = declared;
    declared.sort_by_key(|v| v.to_string());
    assert_eq!(
        held, declared,
        "the superuser holds every declared permission"
    );
}
