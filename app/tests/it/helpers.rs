//! The real application, built exactly as `keel-api` builds it, on a random port.

use std::net::SocketAddr;

use keel_app::Application;
use keel_testkit::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    // Held so the database outlives the server.
    _db: Option<TestDb>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
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
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            _db: db,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
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

    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("the server task completes")
    }
}
