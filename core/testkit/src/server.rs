//! Any endpoint behind keel's real middleware stack, served on a random local port.

use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use keel_core::http::server::Bound;
use keel_core::settings::Settings;
use poem::Endpoint;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; [`TestServer::shutdown`] stops it gracefully and reports how it ended.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Serves `ep` wrapped in [`keel_core::http::stack`] configured by `settings`.
    pub async fn start<E: Endpoint + 'static>(ep: E, settings: &Settings) -> Self {
        let app = keel_core::http::stack(ep, &settings.http, settings.env);
        let bound = Bound::bind(SocketAddr::new(settings.http.host, 0))
            .await
            .expect("bind a local port");
        let addr = bound.local_addr();
        let grace = settings.http.shutdown_grace;
        Self::spawn(addr, move |shutdown| bound.serve(app, shutdown, grace))
    }

    /// Runs an already-bound server at `addr`: `serve` gets the future that completes
    /// when [`TestServer::shutdown`] is called (the real `Application` runs this way).
    pub fn spawn<F, S>(addr: SocketAddr, serve: S) -> Self
    where
        S: FnOnce(BoxFuture<'static, ()>) -> F,
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async move {
            let _ = stopped.await;
        })));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts a graceful shutdown and waits for the server to finish.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task completes")
    }
}
