//! The real application, built exactly as `keel-api` builds it, on a random port.

use keel_app::Application;
use keel_testkit::{TestDb, TestServer};

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
