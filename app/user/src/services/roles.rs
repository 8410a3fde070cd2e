//! Administering roles and reading the declared permissions.

use std::collections::BTreeSet;

use diesel_async::AsyncPgConnection;
use keel_core::ApiError;
use keel_core::auth::Principal;
use keel_core::crud::{CrudBase, Listed, PageParams, Sort};
use keel_core::db::InTransaction;
use keel_core::error::FieldError;
use uuid::Uuid;

use super::UserService;
use super::admin::ensure_holds;
use super::seed::SUPERUSER_ROLE;
use crate::actions;
use crate::crud::access::{self, RoleCrud};
use crate::errors::UserError;
use crate::fields;
use crate::models::{NewRole, Permission, Role, RoleChanges, RoleFilter, RoleGrants, RoleSort};
use keel_activity::{Actor, Entry, record};
use serde_json::json;

impl UserService {
    pub async fn list_roles(
        &self,
        filter: RoleFilter,
        sort: Sort<RoleSort>,
        page: PageParams,
    ) -> Result<Listed<RoleGrants>, ApiError> {
        let mut conn = self.db.conn().await?;
        let listed = RoleCrud::list(&mut conn, &filter, sort, page).await?;
        let ids: Vec<Uuid> = listed.items.iter().map(|r| r.id).collect();
        let codes = access::role_permission_pairs(&mut conn, &ids).await?;
        Ok(listed.attach(
            codes,
            |role| role.id,
            |role, permissions| RoleGrants { role, permissions },
        ))
    }

    pub async fn get_role(&self, id: Uuid) -> Result<RoleGrants, ApiError> {
        let mut conn = self.db.conn().await?;
        let role = RoleCrud::get(&mut conn, id).await?;
        grants_of(&mut conn, role).await
    }

    /// Creates a role granting `permissions`, each of which `actor` must hold.
    pub async fn create_role(
        &self,
        actor: &Principal,
        name: &str,
        description: String,
        permissions: Vec<String>,
    ) -> Result<RoleGrants, ApiError> {
        let name = fields::role_name("name", name).map_err(|e| ApiError::Validation(vec![e]))?;
        let permissions = dedup(permissions);
        let actor = actor.clone();
        self.db
            .transaction(async move |conn| {
                ensure_exist(conn, &permissions).await?;
                ensure_holds(&actor, &permissions)?;
                let role = RoleCrud::create(
                    conn,
                    &NewRole {
                        id: Uuid::now_v7(),
                        name,
                        description,
                        is_system: false,
                    },
                )
                .await?;
                access::set_role_permissions(conn, role.id, &permissions).await?;
                let summary = format!("{} created the role {}", actor.email, role.name);
                let entry = Entry::new(actions::ROLE_CREATED, "role", summary)
                    .actor(&actor)
                    .entity(role.id)
                    .metadata(json!({"name": role.name, "permissions": permissions}));
                record(conn, entry).await?;
                grants_of(conn, role).await
            })
            .await
    }

    /// Renames or describes a role; system roles keep their names.
    pub async fn update_role(
        &self,
        actor: &Principal,
        id: Uuid,
        name: Option<&str>,
        description: Option<String>,
    ) -> Result<RoleGrants, ApiError> {
        let name = name
            .map(|n| fields::role_name("name", n))
            .transpose()
            .map_err(|e| ApiError::Validation(vec![e]))?;
        let principal = actor.clone();
        let actor = Actor::from(actor);
        self.change_roles(async move |conn| {
            let role = access::lock_role(conn, id).await?;
            if role.is_system && name.as_ref().is_some_and(|n| *n != role.name) {
                return Err(UserError::SystemRole.into());
            }
            ensure_outranks_role(conn, &principal, &role).await?;
            let before = role.name;
            let changes = RoleChanges { name, description };
            let role = RoleCrud::update(conn, id, &changes).await?;
            let summary = format!("{} edited the role {}", actor.email, role.name);
            let entry = Entry::new(actions::ROLE_UPDATED, "role", summary)
                .actor(actor)
                .entity(id)
                .metadata(json!({"name_before": before, "name": role.name}));
            record(conn, entry).await?;
            grants_of(conn, role).await
        })
        .await
    }

    /// Deletes a role (its holders lose its permissions at once); system roles stay.
    pub async fn delete_role(&self, actor: &Principal, id: Uuid) -> Result<(), ApiError> {
        let principal = actor.clone();
        let actor = Actor::from(actor);
        self.change_roles(async move |conn| {
            let role = access::lock_role(conn, id).await?;
            if role.is_system {
                return Err(UserError::SystemRole.into());
            }
            ensure_outranks_role(conn, &principal, &role).await?;
            RoleCrud::delete(conn, id).await?;
            let summary = format!("{} deleted the role {}", actor.email, role.name);
            let entry = Entry::new(actions::ROLE_DELETED, "role", summary)
                .actor(actor)
                .entity(id)
                .metadata(json!({"name": role.name}));
            record(conn, entry).await?;
            Ok(())
        })
        .await
    }

    /// Replaces the permissions a role grants. `actor` must hold each one added; the
    /// superuser role always holds everything (seeding maintains it).
    pub async fn set_role_permissions(
        &self,
        actor: &Principal,
        id: Uuid,
        permissions: Vec<String>,
    ) -> Result<RoleGrants, ApiError> {
        let permissions = dedup(permissions);
        let actor = actor.clone();
        self.change_roles(async move |conn| {
            // Locked: holders being judged by this role's grants (delegation)
            // finish first, and two edits can't interleave.
            let role = access::lock_role(conn, id).await?;
            if role.name == SUPERUSER_ROLE {
                return Err(UserError::SystemRole.into());
            }
            ensure_outranks_role(conn, &actor, &role).await?;
            ensure_exist(conn, &permissions).await?;
            let current = access::permissions_of_roles(conn, &[id]).await?;
            let added: Vec<String> = permissions
                .iter()
                .filter(|c| !current.contains(c))
                .cloned()
                .collect();
            ensure_holds(&actor, &added)?;
            access::set_role_permissions(conn, id, &permissions).await?;
            let summary = format!(
                "{} set the permissions of the role {}",
                actor.email, role.name
            );
            let entry = Entry::new(actions::ROLE_PERMISSIONS_CHANGED, "role", summary)
                .actor(&actor)
                .entity(id)
                .metadata(json!({"before": current, "after": permissions}));
            record(conn, entry).await?;
            grants_of(conn, role).await
        })
        .await
    }

    pub async fn list_permissions(&self) -> Result<Vec<Permission>, ApiError> {
        let mut conn = self.db.conn().await?;
        Ok(access::list_permissions(&mut conn).await?)
    }

    /// Runs `change` to roles in one transaction; once it commits, every principal is
    /// read afresh, as a role's grants reach everyone who holds it.
    async fn change_roles<T, F>(&self, change: F) -> Result<T, ApiError>
    where
        T: Send,
        F: for<'c> InTransaction<'c, Result<T, ApiError>>,
    {
        let out = self.db.transaction(change).await?;
        self.authenticator.everyone_changed().await;
        Ok(out)
    }
}

async fn grants_of(conn: &mut AsyncPgConnection, role: Role) -> Result<RoleGrants, ApiError> {
    let codes = access::permissions_of_roles(conn, &[role.id]).await?;
    Ok(RoleGrants {
        role,
        permissions: codes,
    })
}

fn dedup(codes: Vec<String>) -> Vec<String> {
    codes
        .into_iter()
        .map(|c| c.trim().to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// 422 on `permissions` naming codes no feature declares.
async fn ensure_exist(conn: &mut AsyncPgConnection, codes: &[String]) -> Result<(), ApiError> {
    let known = access::existing_permissions(conn, codes).await?;
    let unknown: Vec<&str> = codes
        .iter()
        .filter(|c| !known.contains(c))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(vec![FieldError::new(
            "permissions",
            format!("unknown permission(s): {}", unknown.join(", ")),
        )]))
    }
}

/// 403 unless `actor` holds every permission `role` grants: changing or deleting a role
/// acts on everyone who holds it, so the delegation rule for accounts applies to the
/// role as a whole (a delegated administrator can't strip what makes another account
/// outrank them).
async fn ensure_outranks_role(
    conn: &mut AsyncPgConnection,
    actor: &Principal,
    role: &Role,
) -> Result<(), ApiError> {
    let granted = access::permissions_of_roles(conn, &[role.id]).await?;
    match granted.iter().find(|code| !actor.has(code)) {
        Some(missing) => Err(UserError::Outranked(format!(
            "The role {} grants the permission {missing}, which you don't hold: you can \
             change only roles whose permissions you hold too.",
            role.name
        ))
        .into()),
        None => Ok(()),
    }
}
