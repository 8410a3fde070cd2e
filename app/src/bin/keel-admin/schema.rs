//! The database's schema and seed, and the API document: `migrate`, `seed`, `openapi`.

use std::io::Write;
use std::path::PathBuf;

use keel_app::process::load_settings;
use keel_app::{api, database};
use keel_core::db::migrate;

use crate::BoxError;
use crate::composed::{Signed, open, seed, stop};

/// `keel-admin check-settings`: loads the settings and reaches nothing.
pub fn check_settings() -> Result<(), BoxError> {
    let settings = load_settings()?;
    eprintln!(
        "keel-admin: the settings are valid (APP_ENV={})",
        settings.env
    );
    Ok(())
}

/// `keel-admin migrate [--pending]`.
pub async fn migrate(pending: bool) -> Result<(), BoxError> {
    let settings = load_settings()?;
    let database = database::resolve(&settings).await?;
    let owner = settings.database.owner_url.as_ref();
    let versions = if pending {
        migrate::pending(owner.unwrap_or(&database.url)).await?
    } else {
        migrate::run_with_roles(&database.url, owner).await?
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
    stop(database.server).await
}

/// `keel-admin seed`, as the owner role when one is configured.
pub async fn seed_all() -> Result<(), BoxError> {
    let (root, server) = open(Signed::AsOwner).await?;
    let changes = seed(&root).await?;
    if changes.is_empty() {
        eprintln!("keel-admin: nothing to seed; permissions and roles are up to date");
    } else {
        eprintln!("keel-admin: seeded: {}", changes.join(", "));
    }
    stop(server).await
}

/// `keel-admin openapi [--output FILE]`.
pub async fn openapi(output: Option<PathBuf>) -> Result<(), BoxError> {
    let spec = api::spec().await?;
    match output {
        Some(path) => std::fs::write(&path, spec)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => std::io::stdout().write_all(spec.as_bytes())?,
    }
    Ok(())
}
