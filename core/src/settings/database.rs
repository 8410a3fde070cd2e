//! `DATABASE_*`: where the data lives, and how keel connects and migrates.

use std::time::Duration;

use super::Secret;
use super::reader::Reader;

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `None`: find or start a local PostgreSQL (development only).
    pub url: Option<Secret>,
    /// The schema owner: migrations and seeding run as it, and it grants the role of
    /// `url` only what serving needs (see `db::privileges`). `None`: one role does both.
    pub owner_url: Option<Secret>,
    pub pool_size: u32,
    /// How long a request waits for a pooled connection before it gets 503.
    pub pool_timeout: Duration,
    /// Server-side limit for a single statement.
    pub statement_timeout: Duration,
    pub migrate_on_start: bool,
}

impl DatabaseSettings {
    pub(super) fn read(r: &mut Reader<'_>, prod: bool) -> Self {
        let url = r.postgres_url("DATABASE_URL");
        if prod && url.is_none() && r.is_fine("DATABASE_URL") {
            r.problem(
                "DATABASE_URL",
                "is required in production (no local database is provisioned there)",
                "postgres://keel:secret@db:5432/keel",
            );
        }
        let owner_url = r.postgres_url("DATABASE_OWNER_URL");
        if owner_url.is_some() && url.is_none() && r.is_fine("DATABASE_URL") {
            r.problem(
                "DATABASE_OWNER_URL",
                "needs DATABASE_URL too (the role keel serves with)",
                "postgres://keel_app:secret@db:5432/keel",
            );
        }
        Self {
            url,
            owner_url,
            pool_size: r.parse_where(
                "DATABASE_POOL_SIZE",
                10,
                "20",
                |n: &u32| (1..=1000).contains(n),
                "must be between 1 and 1000",
            ),
            pool_timeout: r.duration("DATABASE_POOL_TIMEOUT", Duration::from_secs(5), "5s"),
            statement_timeout: r.duration(
                "DATABASE_STATEMENT_TIMEOUT",
                Duration::from_secs(30),
                "30s",
            ),
            migrate_on_start: r.parse("DATABASE_MIGRATE_ON_START", !prod, "true"),
        }
    }
}
