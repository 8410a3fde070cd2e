//! Seeding: the permissions the features declare, the `superuser` role holding all of
//! them, and the default `user` role. Idempotent: a second run changes nothing.

use keel_core::ApiError;
use keel_core::db::{Db, fixed};
use uuid::Uuid;

use crate::crud::access;
use crate::models::NewRole;

pub const SUPERUSER_ROLE: &str = "superuser";
pub const USER_ROLE: &str = "user";

/// What a seeding run changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    /// Permissions inserted or whose description changed.
    pub permissions: usize,
    pub roles_created: usize,
    /// Whether the superuser role's permission set had to be completed.
    pub superuser_updated: bool,
}

impl SeedReport {
    pub fn changed_anything(&self) -> bool {
        self.permissions > 0 || self.roles_created > 0 || self.superuser_updated
    }

    /// What changed, one phrase each (none when nothing did).
    pub fn changes(&self) -> Vec<String> {
        let mut changes = Vec::new();
        if self.permissions > 0 {
            changes.push(format!(
                "{} permission(s) added or updated",
                self.permissions
            ));
        }
        if self.roles_created > 0 {
            changes.push(format!("{} role(s) created", self.roles_created));
        }
        if self.superuser_updated {
            changes.push("superuser role completed".to_owned());
        }
        changes
    }
}

/// Seeds `declared` (`(code, description)` pairs from every feature) in one transaction.
pub async fn seed(db: &Db, declared: Vec<(String, String)>) -> Result<SeedReport, ApiError> {
    db.transaction(async move |conn| {
        // Replicas starting together seed one after the other.
        diesel_async::RunQueryDsl::execute(
            fixed("SELECT pg_advisory_xact_lock(hashtext('keel-seed'))"),
            conn,
        )
        .await?;
        let mut report = SeedReport {
            permissions: access::upsert_permissions(conn, &declared).await?,
            ..SeedReport::default()
        };
        let mut superuser = None;
        for (name, description) in [
            (SUPERUSER_ROLE, "Holds every permission."),
            (USER_ROLE, "Given to every registered account."),
        ] {
            let (role, created) = access::ensure_role(
                conn,
                &NewRole {
                    id: Uuid::now_v7(),
                    name: name.to_owned(),
                    description: description.to_owned(),
                    is_system: true,
                },
            )
            .await?;
            report.roles_created += usize::from(created);
            if name == SUPERUSER_ROLE {
                superuser = Some(role.id);
            }
        }
        let superuser = superuser.ok_or_else(|| ApiError::internal("superuser role not seeded"))?;
        let all: Vec<String> = access::list_permissions(conn)
            .await?
            .into_iter()
            .map(|p| p.code)
            .collect();
        let held = access::permissions_of_roles(conn, &[superuser]).await?;
        if held != all {
            access::set_role_permissions(conn, superuser, &all).await?;
            report.superuser_updated = true;
        }
        Ok::<_, ApiError>(report)
    })
    .await
}
