//! keel-admin: operator commands. Each prints one clear line and exits non-zero on failure.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_app::{api, database};
use keel_core::db::migrate;
use keel_core::settings::Settings;

#[derive(Debug, Parser)]
#[command(name = "keel-admin", version, about = "Operate a keel deployment")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations (safe to run from several places at once).
    Migrate {
        /// Only list the pending migrations; apply nothing.
        #[arg(long)]
        pending: bool,
    },
    /// Write the OpenAPI document (JSON) to a file, or to stdout without --output.
    Openapi {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("keel-admin: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("keel-admin: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), BoxError> {
    match command {
        Command::Migrate { pending } => {
            let settings = Settings::load()?;
            let database = database::resolve(&settings).await?;
            let versions = if pending {
                migrate::pending(&database.url).await?
            } else {
                migrate::run(&database.url).await?
            };
            let verb = if pending { "pending" } else { "applied" };
            if versions.is_empty() {
                eprintln!("keel-admin: no migrations {verb}; the schema is up to date");
            } else {
                eprintln!(
                    "keel-admin: {} migration(s) {verb}: {}",
                    versions.len(),
                    versions.join(", ")
                );
            }
            if let Some(server) = database.server {
                server.stop().await?;
            }
            Ok(())
        }
        Command::Openapi { output } => {
            let spec = api::spec().await?;
            match output {
                Some(path) => std::fs::write(&path, spec)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                None => std::io::stdout().write_all(spec.as_bytes())?,
            }
            Ok(())
        }
    }
}
