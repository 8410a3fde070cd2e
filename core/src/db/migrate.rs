//! Embedded migrations, applied once across any number of concurrently starting replicas.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::privileges::{self, Separation};
use crate::settings::Secret;

/// Every migration in the top-level `migrations/` directory, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Advisory lock key ("keel mig" in ASCII) that serialises migration runs.
const LOCK_KEY: i64 = 0x6b65_656c_206d_6967;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("migration failed: {0}")]
    Migration(BoxError),
    #[error("migration task stopped unexpectedly: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Grant(#[from] privileges::GrantError),
}

/// Applies pending migrations as the schema `owner` when there is one (else as the
/// `runtime` role), then has the owner grant the runtime role what serving needs and
/// no more (see [`privileges`]). Returns the versions applied.
pub async fn run_with_roles(
    runtime: &Secret,
    owner: Option<&Secret>,
) -> Result<Vec<String>, MigrateError> {
    let Some(owner) = owner else {
        return run(runtime).await;
    };
    let applied = run(owner).await?;
    match privileges::grant_runtime(owner, runtime).await? {
        Separation::Granted {
            runtime,
            append_only,
        } => tracing::info!(
            %runtime,
            ?append_only,
            "runtime role granted its privileges; append-only tables: SELECT and INSERT only"
        ),
        Separation::SameRole(role) => tracing::warn!(
            %role,
            "DATABASE_OWNER_URL and DATABASE_URL sign in as the same role: nothing is separated"
        ),
    }
    Ok(applied)
}

/// Applies pending migrations and returns the versions applied (empty when up to date).
///
/// Holds a PostgreSQL advisory lock for the run, so replicas starting together apply
/// each migration once; the others wait, then find nothing pending.
pub async fn run(url: &Secret) -> Result<Vec<String>, MigrateError> {
    let url = url.expose().to_owned();
    // diesel's migration harness is synchronous; the wrapper drives the async
    // connection from a blocking thread.
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        conn.batch_execute(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))
            .map_err(|e| MigrateError::Migration(e.into()))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(MigrateError::Migration);
        // Closing the connection releases the lock too; unlock explicitly all the same.
        let unlocked = conn
            .batch_execute(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))
            .map_err(|e| MigrateError::Migration(e.into()));
        let applied = applied?;
        unlocked?;
        Ok(applied)
    })
    .await?
}

/// Versions not yet applied to the database at `url`.
pub async fn pending(url: &Secret) -> Result<Vec<String>, MigrateError> {
    let url = url.expose().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        let pending = conn
            .pending_migrations(MIGRATIONS)
            .map_err(MigrateError::Migration)?;
        Ok(pending
            .iter()
            .map(|m| m.name().version().to_string())
            .collect())
    })
    .await?
}
