//! Object storage on both backends — local disk and a real S3-compatible server (moto) —
//! through the same calls, including presigned URLs fetched with a plain HTTP client.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use keel_core::settings::Settings;
use keel_core::storage::{LinkMethod, ObjectKey, Storage};

fn settings(overrides: &[(&str, &str)]) -> Settings {
    keel_testkit::settings("postgres://postgres@127.0.0.1:5432/unused", overrides)
}

struct Backend {
    storage: Storage,
    _dir: Option<TempDir>,
}

async fn s3() -> Backend {
    let vars = keel_testkit::s3_settings().await;
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Backend {
        storage: Storage::from_settings(&settings(&vars).storage, b"test"),
        _dir: None,
    }
}

fn local() -> Backend {
    let dir = TempDir::new();
    let path = dir.0.to_string_lossy().into_owned();
    Backend {
        storage: Storage::from_settings(
            &settings(&[("STORAGE_DIR", &path), ("PUBLIC_URL", "http://keel.test")]).storage,
            b"test",
        ),
        _dir: Some(dir),
    }
}

/// A directory removed when the test ends.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("keel-storage-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key(raw: &str) -> ObjectKey {
    ObjectKey::new(raw).unwrap()
}

async fn keys(storage: &Storage, prefix: &str) -> Vec<String> {
    let listed = storage.list(prefix).await.expect("a listing");
    listed.into_iter().map(|m| m.key.to_string()).collect()
}

async fn read_all(storage: &Storage, k: &ObjectKey) -> Option<(String, Vec<u8>)> {
    let object = storage.get(k).await.unwrap()?;
    let mut bytes = Vec::new();
    let mut body = object.body;
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes.len() as u64, object.meta.size);
    Some((object.meta.content_type, bytes))
}

async fn objects_round_trip(storage: &Storage) {
    let backend = storage.backend();
    let a = key("docs/a.txt");
    let written = storage
        .put_bytes(&a, Bytes::from_static(b"hello"), "text/plain")
        .await
        .unwrap();
    assert_eq!(written, 5);
    let head = storage.head(&a).await.unwrap().unwrap();
    assert_eq!(
        (head.size, head.content_type.as_str()),
        (5, "text/plain"),
        "{backend}"
    );
    assert_eq!(
        read_all(storage, &a).await,
        Some(("text/plain".to_owned(), b"hello".to_vec())),
        "{backend}"
    );

    // A streamed body in many chunks, replacing what was there.
    let chunks = (0..100).map(|i| Ok(Bytes::from(vec![i as u8; 1000])));
    let size = storage
        .put(&a, futures_util::stream::iter(chunks), "application/x-test")
        .await
        .unwrap();
    assert_eq!(size, 100_000);
    let (kind, bytes) = read_all(storage, &a).await.unwrap();
    assert_eq!(
        (kind.as_str(), bytes.len()),
        ("application/x-test", 100_000),
        "{backend}"
    );
    assert_eq!(bytes[99_999], 99);

    storage
        .put_bytes(&key("docs/b/c.txt"), Bytes::from_static(b"c"), "text/plain")
        .await
        .unwrap();
    storage
        .put_bytes(&key("other/d.txt"), Bytes::from_static(b"d"), "text/plain")
        .await
        .unwrap();
    let listed: Vec<String> = keys(storage, "docs/").await;
    assert_eq!(listed, ["docs/a.txt", "docs/b/c.txt"], "{backend}");
    let partial: Vec<String> = keys(storage, "do").await;
    assert_eq!(
        partial,
        ["docs/a.txt", "docs/b/c.txt"],
        "{backend}: a partial segment"
    );

    storage.delete(&a).await.unwrap();
    storage.delete(&a).await.unwrap(); // idempotent
    assert!(storage.head(&a).await.unwrap().is_none(), "{backend}");
    assert!(read_all(storage, &a).await.is_none(), "{backend}");
    assert_eq!(storage.list("docs/").await.unwrap().len(), 1, "{backend}");
    storage.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_round_trip_on_s3() {
    objects_round_trip(&s3().await.storage).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_round_trip_on_local_disk() {
    objects_round_trip(&local().storage).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_upload_goes_up_in_parts_on_s3() {
    let storage = s3().await.storage;
    let big = key("big.bin");
    // 9 MiB in 64 KiB chunks: two parts.
    let chunks = (0..144).map(|i| Ok(Bytes::from(vec![(i % 251) as u8; 64 * 1024])));
    let size = storage
        .put(
            &big,
            futures_util::stream::iter(chunks),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(size, 9 * 1024 * 1024);
    let (_, bytes) = read_all(&storage, &big).await.unwrap();
    assert_eq!(bytes.len(), 9 * 1024 * 1024);
    assert_eq!(bytes[64 * 1024 * 143], 143);
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_work_with_a_plain_http_client_on_s3() {
    let storage = s3().await.storage;
    let http = reqwest::Client::new();
    let k = key("shared/photo.png");

    let put_url = storage
        .presign_put(&k, "image/png", Duration::from_secs(60))
        .await
        .unwrap();
    let put = http
        .put(&put_url)
        .header("content-type", "image/png")
        .body(b"not really a png".to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    assert_eq!(storage.head(&k).await.unwrap().unwrap().size, 16);

    let get_url = storage
        .presign_get(&k, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(get_url.contains("X-Amz-Signature="), "{get_url}");
    let got = http.get(&get_url).send().await.unwrap();
    assert!(got.status().is_success());
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"not really a png");
}

#[tokio::test]
async fn local_links_are_signed_per_method_key_and_type_and_expire() {
    let backend = local();
    let storage = &backend.storage;
    let k = key("a/b.png");
    let url = storage
        .presign_get(&k, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        url.starts_with("http://keel.test/storage/a/b.png?expires="),
        "{url}"
    );
    let (expires, signature) = signed(&url);
    let signature = signature.as_str();
    assert!(storage.check_link(LinkMethod::Get, &k, "", expires, signature));
    // Another method, key, expiry or signature: refused.
    assert!(!storage.check_link(LinkMethod::Put, &k, "", expires, signature));
    assert!(!storage.check_link(LinkMethod::Get, &key("a/c.png"), "", expires, signature));
    assert!(!storage.check_link(LinkMethod::Get, &k, "", expires + 1, signature));
    assert!(!storage.check_link(LinkMethod::Get, &k, "", expires, &"0".repeat(64)));
    assert!(!storage.check_link(LinkMethod::Get, &k, "", expires, "not hex"));
    // Expired: a one-second link, two seconds later.
    let short = storage
        .presign_get(&k, Duration::from_secs(1))
        .await
        .unwrap();
    let (short_expires, signature) = signed(&short);
    assert!(storage.check_link(LinkMethod::Get, &k, "", short_expires, &signature));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!storage.check_link(LinkMethod::Get, &k, "", short_expires, &signature));

    // A PUT link is bound to its content type.
    let put = storage
        .presign_put(&k, "image/png", Duration::from_secs(60))
        .await
        .unwrap();
    let (expires, signature) = signed(&put);
    assert!(storage.check_link(LinkMethod::Put, &k, "image/png", expires, &signature));
    assert!(!storage.check_link(LinkMethod::Put, &k, "text/html", expires, &signature));

    // A store with another secret doesn't accept these links.
    let other = Storage::from_settings(&settings(&[]).storage, b"another secret");
    assert!(!other.check_link(LinkMethod::Put, &k, "image/png", expires, &signature));
}

#[tokio::test]
async fn local_keys_never_leave_the_root() {
    let backend = local();
    let root = backend._dir.as_ref().unwrap().0.clone();
    for attempt in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a/./b",
        ".keel",
        "a\\..\\b",
    ] {
        assert!(ObjectKey::new(attempt).is_err(), "{attempt}");
    }
    // A prefix naming a parent directory is refused, not followed.
    assert!(backend.storage.list("../").await.is_err());
    backend
        .storage
        .put_bytes(&key("inside/x"), Bytes::from_static(b"x"), "text/plain")
        .await
        .unwrap();
    assert!(root.join("objects/inside/x").is_file());
    assert!(!root.parent().unwrap().join("escape").exists());
}

/// The `expires` and `signature` of a local link.
fn signed(url: &str) -> (u64, String) {
    let query: std::collections::HashMap<String, String> = url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    (
        query["expires"].parse().unwrap(),
        query["signature"].clone(),
    )
}
