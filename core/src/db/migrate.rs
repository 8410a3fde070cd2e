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

/// Versions that keel folded into the first migration of their part before its first
/// release (see docs/operations.md). New migrations are dated after the last of them.
pub const FOLDED: [&str; 7] = [
    "20261122000004",
    "20261122000005",
    "20261201000001",
    "20261201000003",
    "20261201000004",
    "20261201000005",
    "20261201000006",
];

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
    #[error(
        "this database was migrated part of the way by a keel from before its migrations \
         were folded (it lacks {missing}): what followed is now inside migrations it already \
         has. Finish migrating it with that keel (commit e71c816: keel-admin migrate), or \
         recreate it"
    )]
    PartlyFolded { missing: String },
}

/// A database that applied some of the [`FOLDED`] versions but not all would never get
/// the rest: their changes now live in versions it already has.
fn check_folded(applied: &[String]) -> Result<(), MigrateError> {
    let missing: Vec<&str> = FOLDED
        .into_iter()
        .filter(|v| !applied.iter().any(|a| a == v))
        .collect();
    if missing.is_empty() || missing.len() == FOLDED.len() {
        return Ok(());
    }
    Err(MigrateError::PartlyFolded {
        missing: missing.join(", "),
    })
}

/// Refuses what [`check_folded`] refuses, before anything is applied.
fn refuse_partly_folded(
    conn: &mut AsyncConnectionWrapper<AsyncPgConnection>,
) -> Result<(), MigrateError> {
    let applied = conn.applied_migrations().map_err(MigrateError::Migration)?;
    let applied: Vec<String> = applied.iter().map(ToString::to_string).collect();
    check_folded(&applied)
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
        let applied = refuse_partly_folded(&mut conn).and_then(|()| {
            conn.run_pending_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(ToString::to_string).collect())
                .map_err(MigrateError::Migration)
        });
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
        refuse_partly_folded(&mut conn)?;
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

#[cfg(test)]
mod tests {
    use super::{FOLDED, MigrateError, check_folded};

    #[test]
    fn only_a_database_with_some_folded_versions_is_refused() {
        let all: Vec<String> = FOLDED.iter().map(ToString::to_string).collect();
        assert!(check_folded(&[]).is_ok(), "a fresh or newly made database");
        assert!(check_folded(&all).is_ok(), "migrated to the fold");
        let partly = &all[..3];
        let Err(MigrateError::PartlyFolded { missing }) = check_folded(partly) else {
            panic!("a partly migrated database passed");
        };
        assert_eq!(missing, FOLDED[3..].join(", "));
    }
}
