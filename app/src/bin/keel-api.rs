//! keel-api: the HTTP server. Configuration comes from the environment (see
//! `.env.example`); with none at all it serves a development instance on :8000.

use std::net::SocketAddr;
use std::process::ExitCode;

use keel_app::process::{self, BoxError};
use keel_app::{Application, database};
use keel_core::http::server::shutdown_signal;
use keel_core::settings::Settings;
use keel_core::telemetry::logging;

// mimalloc (see the workspace Cargo.toml for why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    process::run("keel-api", run)
}

async fn run(settings: Settings) -> Result<(), BoxError> {
    let _log_guard = logging::init(&settings.log, "keel-api")?;
    let database = database::resolve(&settings).await?;
    let served = serve(&settings, &database.url).await;
    if let Some(server) = database.server {
        match server.stop().await {
            Ok(()) => tracing::info!("stopped the private PostgreSQL"),
            Err(err) => tracing::warn!(%err, "cannot stop the private PostgreSQL"),
        }
    }
    served
}

async fn serve(
    settings: &Settings,
    database_url: &keel_core::settings::Secret,
) -> Result<(), BoxError> {
    let app = Application::build(settings, database_url).await?;
    let url = browsable(app.local_addr());
    tracing::info!(env = %settings.env, "keel-api listening on {url}; API docs at {url}/docs");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("keel-api stopped");
    Ok(())
}

/// A URL people can click: `0.0.0.0` and `::` become `localhost`.
fn browsable(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}
