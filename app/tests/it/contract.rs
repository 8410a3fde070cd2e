//! The API contract: the published OpenAPI document is the committed snapshot, and it
//! is valid OpenAPI.

use std::path::PathBuf;

use crate::helpers::TestApp;

/// `openapi.json` at the repository root: what clients and reviewers read.
fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi.json")
}

const REFRESH: &str = "cargo run --bin keel-admin -- openapi --output openapi.json";

async fn served_document() -> String {
    let app = TestApp::spawn(&[]).await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    response.text().await.unwrap()
}

/// An API change shows in review: the document the server serves must be the one
/// committed, byte for byte.
#[tokio::test]
async fn the_served_document_is_the_committed_snapshot() {
    let served = served_document().await;
    let committed = std::fs::read_to_string(snapshot_path()).unwrap_or_default();
    assert!(
        served == committed,
        "openapi.json differs from the document the code generates: run `{REFRESH}` and \
         commit it (review the diff: it is the API change)"
    );
}

/// Every permission is a scope of the password flow (OpenAPI requires the list), with a
/// description written for the reader, and the problem schema requires only what every
/// problem carries.
#[tokio::test]
async fn the_document_lists_every_scope_and_problems_as_sent() {
    let document: serde_json::Value = serde_json::from_str(&served_document().await).unwrap();
    let scheme = &document["components"]["securitySchemes"]["OAuth2"];
    let scopes = scheme["flows"]["password"]["scopes"].as_object().unwrap();
    let declared = keel_app::api::declared();
    let declared_actions = declared.audit_actions.clone();
    assert_eq!(scopes.len(), declared.permissions.len());
    for (code, description) in declared.permissions {
        assert_eq!(scopes[&code], description.as_str(), "{code}");
    }
    // The audit trail's `action` filter lists every feature's actions, each once.
    let parameters = document["paths"]["/api/v1/activity"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let action = parameters.iter().find(|p| p["name"] == "action").unwrap();
    let mut listed: Vec<&str> = action["schema"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut expected = declared_actions;
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let unique: std::collections::BTreeSet<_> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "an action is declared twice");
    for name in &listed {
        assert!(keel_activity::Action::is_well_formed(name), "{name}");
    }
    assert!(listed.contains(&"release_note.published") && listed.contains(&"task.dead_lettered"));
    let description = scheme["description"].as_str().unwrap();
    assert!(
        !description.contains("operation parameter"),
        "{description}"
    );
    let required: Vec<&str> = document["components"]["schemas"]["Problem"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(!required.contains(&"errors"), "{required:?}");
}

/// Checked by openapi-spec-validator (pinned; `scripts/test.sh` installs it and names
/// it in `KEEL_OPENAPI_VALIDATOR`).
#[tokio::test]
async fn the_document_is_valid_openapi() {
    let Ok(validator) = std::env::var("KEEL_OPENAPI_VALIDATOR") else {
        eprintln!(
            "note: KEEL_OPENAPI_VALIDATOR is unset, so the document is not validated \
                   (bash scripts/test.sh sets it)"
        );
        return;
    };
    let document = served_document().await;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("openapi-{}.json", std::process::id()));
    std::fs::write(&path, document).unwrap();
    let output = std::process::Command::new(&validator)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {validator}: {e}"));
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "the document is not valid OpenAPI:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A 405 names the methods the path has (RFC 9110), as the document lists them.
#[tokio::test]
async fn method_not_allowed_says_what_is_allowed() {
    let app = TestApp::spawn(&[]).await;
    let client = reqwest::Client::new();
    for (method, path, allow) in [
        (
            reqwest::Method::DELETE,
            "/api/v1/auth/login".to_owned(),
            "POST",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
            "GET, PATCH",
        ),
        (reqwest::Method::POST, "/health/live".to_owned(), "GET"),
    ] {
        let response = client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

/// Every operation taking a JSON body holds it to the shape its schema declares: a field
/// the schema doesn't name, a string given as a number, a `null` where none is allowed
/// are each a 422 naming the field, before the handler (or its sign-in check) runs.
#[tokio::test]
async fn every_json_body_is_held_to_its_schema() {
    let app = TestApp::spawn(&[]).await;
    let client = crate::helpers::Client::new(&app);
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snapshot_path()).unwrap()).unwrap();
    let mut tried = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(content) = operation["requestBody"]["content"].as_object() else {
                continue;
            };
            if !content
                .keys()
                .any(|media| media.starts_with("application/json"))
            {
                continue;
            }
            let url = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let (status, body) = client
                .call(
                    method.clone(),
                    &url,
                    None,
                    Some(serde_json::json!({"not_a_field": 1})),
                )
                .await;
            assert_eq!(status, 422, "{method} {path}: {body}");
            assert_eq!(body["errors"][0]["field"], "not_a_field", "{method} {path}");
            tried += 1;
        }
    }
    assert!(
        tried >= 10,
        "only {tried} JSON operations found: the walk is broken"
    );

    for (body, field, message) in [
        (
            serde_json::json!({"email": 5, "password": "x"}),
            "email",
            "must be a string",
        ),
        (
            serde_json::json!({"email": "a@example.com", "password": null}),
            "password",
            "must not be null",
        ),
    ] {
        let (status, answer) = client.post("/api/v1/auth/login", None, body).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
        assert_eq!(answer["errors"][0]["message"], message, "{answer}");
    }
    let (status, answer) = client
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/roles/{}/permissions", uuid::Uuid::now_v7()),
            None,
            Some(serde_json::json!({"permissions": ["users:read", 7]})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "permissions.1", "{answer}");
}

/// The cursor the document declares is the one the API hands out.
#[tokio::test]
async fn the_declared_cursor_is_the_one_served() {
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snapshot_path()).unwrap()).unwrap();
    for path in ["/api/v1/activity", "/api/v1/auth/me/activity"] {
        let cursor = document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "cursor")
            .unwrap();
        assert_eq!(
            cursor["schema"]["pattern"],
            keel_core::crud::CURSOR_PATTERN,
            "{path}"
        );
    }
}

/// A NUL in a path or query parameter is a 422 naming it (the guard in front of every
/// route), so every operation taking parameters declares 422.
#[tokio::test]
async fn operations_with_parameters_declare_the_nul_refusal() {
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snapshot_path()).unwrap()).unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let takes_text = operation["parameters"]
                .as_array()
                .is_some_and(|p| !p.is_empty());
            if takes_text {
                assert!(
                    operation["responses"].get("422").is_some(),
                    "{method} {path} takes parameters but doesn't declare 422"
                );
            }
        }
    }
}

/// Every operation that lists a permission, in every feature (and any feature added
/// later), refuses an anonymous caller (401) and a signed-in one without it (403),
/// before it reads anything else of the request: the scope in the document is the
/// check the server makes.
#[tokio::test(flavor = "multi_thread")]
async fn every_scoped_operation_refuses_a_caller_without_its_permission() {
    let app = TestApp::spawn(&[]).await;
    let client = crate::helpers::Client::new(&app);
    let plain = client.sign_up("plain@example.com").await;
    let document: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let http = reqwest::Client::new();
    let mut checked = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let scopes = operation["security"][0]["OAuth2"].as_array();
            if scopes.is_none_or(Vec::is_empty) {
                continue;
            }
            // Any value of each path parameter: the permission comes first.
            let concrete: String = path
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        "0190b6a0-0000-7000-8000-000000000000"
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let send = |token: Option<&str>| {
                let request = http.request(method.clone(), app.url(&concrete));
                match token {
                    Some(token) => request.bearer_auth(token),
                    None => request,
                }
                .send()
            };
            let anonymous = send(None).await.unwrap().status();
            assert_eq!(anonymous, 401, "{method} {path} without a token");
            let refused = send(Some(&plain)).await.unwrap().status();
            assert_eq!(refused, 403, "{method} {path} without its permission");
            checked.push(format!("{method} {path}"));
        }
    }
    // Every feature that declares permissions guards something with them.
    for prefix in [
        "/api/v1/users",
        "/api/v1/roles",
        "/api/v1/release-notes",
        "/api/v1/activity",
        "/api/v1/admin",
    ] {
        assert!(
            checked.iter().any(|op| op.contains(prefix)),
            "no scoped operation under {prefix}: {checked:?}"
        );
    }
}
