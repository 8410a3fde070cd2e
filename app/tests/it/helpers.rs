//! The real application, built exactly as `keel-api` builds it, on a random port.

use diesel_async::SimpleAsyncConnection;
use keel_app::Application;
use keel_testkit::{TestDb, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct TestApp {
    server: TestServer,
    // Held so the database outlives the server.
    _db: Option<TestDb>,
}

impl TestApp {
    /// The app on a fresh test database.
    pub async fn spawn(overrides: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let url = db.url().to_owned();
        Self::spawn_on(&url, Some(db), overrides).await
    }

    /// The app pointed at an arbitrary database URL (e.g. one that is down).
    pub async fn spawn_on(url: &str, db: Option<TestDb>, overrides: &[(&str, &str)]) -> Self {
        let settings = keel_testkit::settings(url, overrides);
        let url = settings.database.url.clone().expect("a database URL");
        let app = Application::build(&settings, &url)
            .await
            .expect("the application builds");
        let addr = app.local_addr();
        Self {
            server: TestServer::spawn(addr, |shutdown| app.run_until(shutdown)),
            _db: db,
        }
    }

    /// The app's database (when it was given one).
    pub fn db(&self) -> &TestDb {
        self._db.as_ref().expect("the app runs on a test database")
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client")
            .get(self.url(path))
            .send()
            .await
            .expect("the request is answered")
    }

    pub async fn shutdown(self) -> std::io::Result<()> {
        self.server.shutdown().await
    }
}

pub const PASSWORD: &str = "correct horse battery";

/// One string field of each item of a page, in order.
pub fn field_of_items(page: &Value, field: &str) -> Vec<String> {
    let items = page["items"].as_array().expect("a page of items");
    items
        .iter()
        .map(|item| item[field].as_str().expect("a string field").to_owned())
        .collect()
}

/// Waits up to 20 s for `done`, failing the test with `what` otherwise.
pub async fn until(what: &str, done: impl AsyncFnMut() -> bool) {
    assert!(
        keel_testkit::eventually(std::time::Duration::from_secs(20), done).await,
        "timed out: {what}"
    );
}

/// Sends a binary SIGTERM, as an orchestrator stops it, and waits for it to exit;
/// returns what it left and its log (stdout).
pub async fn terminate(child: std::process::Child) -> (std::process::Output, String) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("the wait finishes")
        .expect("the child is waited for");
    let logs = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, logs)
}

/// A signed-in (or anonymous) JSON client of the app, over keel-testkit's client.
pub struct Client<'a> {
    app: &'a TestApp,
    http: keel_testkit::Client,
}

impl<'a> Client<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            http: keel_testkit::Client::new(app.url("")),
        }
    }

    /// Any method, with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let answer = self.http.call(method, path, token, body.as_ref()).await;
        (answer.status, answer.body)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, token, None).await
    }

    /// A POST with no body: the action endpoints (publish, read, deactivate).
    pub async fn act(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, None).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn sign_up(&self, email: &str) -> String {
        let (status, _) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        self.sign_in(email).await
    }

    pub async fn sign_in(&self, email: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Makes `email` a superuser in the database, then signs in again.
    pub async fn superuser(&self, email: &str) -> String {
        self.sign_up(email).await;
        self.app
            .db()
            .connect()
            .await
            .batch_execute(&format!(
                "INSERT INTO user_roles (user_id, role_id) SELECT u.id, r.id FROM users u, roles r \
                 WHERE u.email = '{email}' AND r.name = 'superuser'"
            ))
            .await
            .unwrap();
        self.sign_in(email).await
    }
}
