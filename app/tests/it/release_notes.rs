//! Release notes through the real app: editors' workflow, readers' view, read state.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Client, TestApp};

fn versions(page: &Value) -> Vec<String> {
    crate::helpers::field_of_items(page, "version")
}

#[tokio::test(flavor = "multi_thread")]
async fn editors_draft_publish_and_readers_see_only_published_notes() {
    let app = TestApp::spawn(&[]).await;
    let c = Client::new(&app);
    let editor = c.superuser("editor@example.com").await;
    let reader = c.sign_up("reader@example.com").await;
    let note = |version: &str, category: &str| {
        json!({"version": version, "title": format!("Release {version}"),
               "body": "# New\n\n<script>alert(1)</script> *kept as written*", "category": category})
    };

    // Only editors draft.
    let (status, _) = c
        .post(
            "/api/v1/release-notes",
            Some(&reader),
            note("1.0.0", "feature"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, first) = c
        .post(
            "/api/v1/release-notes",
            Some(&editor),
            note("1.0.0", "feature"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["is_published"], false);
    assert_eq!(
        first["body"], "# New\n\n<script>alert(1)</script> *kept as written*",
        "Markdown is stored and returned as given, never rendered"
    );
    let id = first["id"].as_str().unwrap().to_owned();
    let (status, body) = c
        .post("/api/v1/release-notes", Some(&editor), note("1.0.0", "fix"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["field"], "version");
    let (status, body) = c
        .post("/api/v1/release-notes", Some(&editor), note("v1", "fix"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "version", "{body}");
    let (status, _) = c
        .post(
            "/api/v1/release-notes",
            Some(&editor),
            json!({"version": "1.0.1", "title": "", "body": "x", "category": "fix"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Drafts don't exist for readers: 404 on read, absent from lists, 403 to ask for them.
    let path = format!("/api/v1/release-notes/{id}");
    assert_eq!(c.get(&path, Some(&reader)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        c.act(&format!("{path}/read"), Some(&reader)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.get(&path, Some(&editor)).await.0, StatusCode::OK);
    // An editor sees the draft, so marking it read is a conflict rather than a 404.
    assert_eq!(
        c.act(&format!("{path}/read"), Some(&editor)).await.0,
        StatusCode::CONFLICT
    );
    let (_, list) = c.get("/api/v1/release-notes", Some(&reader)).await;
    assert_eq!(list["items"], json!([]));
    assert_eq!(
        c.get("/api/v1/release-notes?include_drafts=true", Some(&reader))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, drafts) = c
        .get("/api/v1/release-notes?include_drafts=true", Some(&editor))
        .await;
    assert_eq!(versions(&drafts), ["1.0.0"]);
    assert_eq!(
        c.get("/api/v1/release-notes", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Publish: visible, unread; twice is 409; a published note can't be deleted.
    let (status, published) = c.act(&format!("{path}/publish"), Some(&editor)).await;
    assert_eq!(status, StatusCode::OK, "{published}");
    assert!(published["published_at"].is_string());
    assert_eq!(
        c.act(&format!("{path}/publish"), Some(&editor)).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(c.delete(&path, Some(&editor)).await.0, StatusCode::CONFLICT);
    let (_, list) = c.get("/api/v1/release-notes", Some(&reader)).await;
    assert_eq!(versions(&list), ["1.0.0"]);

    // Editing is for editors, and only of notes that exist.
    let (status, _) = c
        .patch(&path, Some(&reader), json!({"title": "Mine"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .patch(
            &format!("/api/v1/release-notes/{}", uuid_v7()),
            Some(&editor),
            json!({"title": "Ghost"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        c.act(&format!("{path}/unpublish"), Some(&reader)).await.0,
        StatusCode::FORBIDDEN
    );

    // Edit, then a second note in another category.
    let (status, edited) = c
        .patch(&path, Some(&editor), json!({"title": "Hello"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(c.get(&path, Some(&reader)).await.1["title"], "Hello");
    let (_, second) = c
        .post("/api/v1/release-notes", Some(&editor), note("1.1.0", "fix"))
        .await;
    let second_path = format!("/api/v1/release-notes/{}", second["id"].as_str().unwrap());
    c.act(&format!("{second_path}/publish"), Some(&editor))
        .await;
    let (_, list) = c.get("/api/v1/release-notes", Some(&reader)).await;
    assert_eq!(versions(&list), ["1.1.0", "1.0.0"], "newest first");
    let (_, fixes) = c
        .get("/api/v1/release-notes?category=fix", Some(&reader))
        .await;
    assert_eq!(versions(&fixes), ["1.1.0"]);

    // Unpublish hides it again; then a draft can be deleted.
    assert_eq!(
        c.act(&format!("{second_path}/unpublish"), Some(&editor))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        c.act(&format!("{second_path}/unpublish"), Some(&editor))
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        c.get(&second_path, Some(&reader)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.delete(&second_path, Some(&editor)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(&second_path, Some(&editor)).await.0,
        StatusCode::NOT_FOUND
    );

    // Publishing (and the rest) is in the audit trail.
    let (_, trail) = c
        .get("/api/v1/activity?entity_type=release_note", Some(&editor))
        .await;
    let actions: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "release_note.deleted",
            "release_note.unpublished",
            "release_note.published",
            "release_note.created",
            "release_note.updated",
            "release_note.published",
            "release_note.created",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unread_counts_follow_publishing_and_reading() {
    unread_counts_follow_publishing_and_reading_on(&[]).await;
}

/// The same with the counts cached in Redis.
#[tokio::test(flavor = "multi_thread")]
async fn unread_counts_cached_in_redis_follow_publishing_and_reading() {
    let redis = keel_testkit::redis_settings();
    let overrides: Vec<(&str, &str)> = redis.iter().map(|(k, v)| (*k, v.as_str())).collect();
    unread_counts_follow_publishing_and_reading_on(&overrides).await;
}

async fn unread_counts_follow_publishing_and_reading_on(overrides: &[(&str, &str)]) {
    let app = TestApp::spawn(overrides).await;
    let c = Client::new(&app);
    let editor = c.superuser("editor@example.com").await;
    let reader = c.sign_up("reader@example.com").await;
    let unread = |token: String| {
        let c = &c;
        async move {
            let (status, body) = c
                .get("/api/v1/release-notes/unread-count", Some(&token))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let publish = |version: &str| {
        let (c, editor, version) = (&c, editor.clone(), version.to_owned());
        async move {
            let (_, note) = c
                .post("/api/v1/release-notes", Some(&editor), json!({"version": version, "title": "t", "body": "b", "category": "improvement"}))
                .await;
            let id = note["id"].as_str().unwrap().to_owned();
            let (status, _) = c
                .act(
                    &format!("/api/v1/release-notes/{id}/publish"),
                    Some(&editor),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            id
        }
    };

    assert_eq!(
        unread(reader.clone()).await,
        json!({"unread": 0, "unread_ids": []})
    );
    let one = publish("1.0.0").await;
    let two = publish("1.1.0").await;
    let three = publish("1.2.0").await;
    assert_eq!(
        unread(reader.clone()).await,
        json!({"unread": 3, "unread_ids": [three, two, one]})
    );

    // Mark one read (twice is harmless).
    for _ in 0..2 {
        let (status, _) = c
            .act(&format!("/api/v1/release-notes/{two}/read"), Some(&reader))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        unread(reader.clone()).await,
        json!({"unread": 2, "unread_ids": [three, one]})
    );
    // Unpublishing takes a note out of the count; it is someone else's count too.
    c.act(
        &format!("/api/v1/release-notes/{three}/unpublish"),
        Some(&editor),
    )
    .await;
    assert_eq!(unread(reader.clone()).await["unread"], 1);
    assert_eq!(unread(editor.clone()).await["unread"], 2);

    // Mark all read: nothing unread, then only what is published afterwards.
    let (status, _) = c.act("/api/v1/release-notes/read-all", Some(&reader)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(unread(reader.clone()).await["unread"], 0);
    let four = publish("2.0.0").await;
    assert_eq!(
        unread(reader.clone()).await,
        json!({"unread": 1, "unread_ids": [four]})
    );
    // Republishing makes a note new again.
    c.act(
        &format!("/api/v1/release-notes/{three}/publish"),
        Some(&editor),
    )
    .await;
    assert_eq!(unread(reader.clone()).await["unread"], 2);
    // Reading a note the watermark already covers changes nothing.
    let (status, _) = c
        .act(&format!("/api/v1/release-notes/{one}/read"), Some(&reader))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(unread(reader.clone()).await["unread"], 2);
    assert_eq!(
        c.get("/api/v1/release-notes/unread-count", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}
