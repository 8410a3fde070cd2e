//! Where the database comes from: `DATABASE_URL`, or the zero-config local one.

use std::path::Path;

use keel_core::db::local::{self, LocalDatabase};
use keel_core::settings::Settings;

/// The configured database, or (development only; production requires `DATABASE_URL`)
/// the local server or a private one started for this checkout.
pub async fn resolve(settings: &Settings) -> Result<LocalDatabase, local::ProvisionError> {
    match &settings.database.url {
        Some(url) => Ok(LocalDatabase {
            url: url.clone(),
            server: None,
        }),
        None => local::provision(Path::new(local::DEFAULT_DATA_DIR)).await,
    }
}
