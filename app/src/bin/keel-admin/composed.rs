//! The composed process a command runs against: settings, the database (keel's private
//! server when none is configured) and the root on it; and how errors read.

use keel_app::process::load_settings;
use keel_app::{Root, database};
use keel_core::ApiError;
use keel_core::db::local::PrivateServer;
use keel_core::feature::FeatureError;
use keel_core::settings::Settings;

use crate::BoxError;

/// Which database role a command signs in as.
#[derive(Debug, Clone, Copy)]
pub enum Signed {
    /// keel-api's (`DATABASE_URL`).
    AsRuntime,
    /// `DATABASE_OWNER_URL` when set (it may change the schema and seed), else the same.
    AsOwner,
}

/// The composed process on the configured database (or keel's private server, which
/// the caller stops when done).
pub async fn open(signed: Signed) -> Result<(Root, Option<PrivateServer>), BoxError> {
    open_with(load_settings()?, signed).await
}

pub async fn open_with(
    settings: Settings,
    signed: Signed,
) -> Result<(Root, Option<PrivateServer>), BoxError> {
    let database = database::resolve(&settings).await?;
    let url = match (signed, &settings.database.owner_url) {
        (Signed::AsOwner, Some(owner)) => owner,
        _ => &database.url,
    };
    match Root::new(&settings, url, "keel-admin").await {
        Ok(root) => Ok((root, database.server)),
        Err(err) => {
            // Don't leave a private PostgreSQL running behind the error.
            stop(database.server).await?;
            Err(err.into())
        }
    }
}

/// Seeds every feature; returns what changed.
pub async fn seed(root: &Root) -> Result<Vec<String>, BoxError> {
    keel_app::root::seed(&root.context)
        .await
        .map_err(|FeatureError { feature, source }| {
            format!("seeding {feature}: {}", describe(&source)).into()
        })
}

pub async fn stop(server: Option<PrivateServer>) -> Result<(), BoxError> {
    if let Some(server) = server {
        server.stop().await?;
    }
    Ok(())
}

/// One line for an error, naming each broken rule for validation errors.
pub fn describe(err: &ApiError) -> String {
    match err {
        ApiError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Unavailable { .. } => "the database is unavailable".to_owned(),
        other => other.to_string(),
    }
}
