//! Administering accounts: list, create, edit, (de)activate, roles, force sign-out.

use std::collections::BTreeSet;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use keel_core::ApiError;
use keel_core::auth::Principal;
use keel_core::crud::{CrudBase, Listed, PageParams, Sort};
use keel_core::db::cached::QueryCache;
use keel_core::db::{Db, InTransaction};
use keel_core::error::FieldError;
use uuid::Uuid;

use super::seed::{SUPERUSER_ROLE, USER_ROLE};
use super::{UserService, check_new_account, insert_account};
use crate::actions;
use crate::crud::access;
use crate::crud::sessions;
use crate::crud::users::UserCrud;
use crate::errors::UserError;
use crate::fields::{self, Email};
use crate::models::{Account, RevokeReason, Role, User, UserChanges, UserFilter, UserSort};
use crate::password;
use keel_activity::{Actor, Entry, record};
use serde_json::json;

/// A new account as an administrator (or `keel-admin create-admin`) creates it.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub email: String,
    pub password: String,
    pub full_name: String,
    /// Role names; `None` gives the default `user` role.
    pub roles: Option<Vec<String>>,
}

/// Admin list pages by query. The list reads only these tables, and PostgreSQL reports
/// every change to them (a login's `last_login_at` too), so a cached page is never
/// older than the last write this replica has heard of.
pub(super) type UserPages = QueryCache<(UserFilter, Sort<UserSort>, PageParams), Listed<Account>>;

/// Distinct queries kept; searches make the key space unbounded.
const USER_PAGES_KEPT: usize = 1024;
/// Pages are dropped after this even without a change (a safety net, not the mechanism).
const USER_PAGES_TTL: Duration = Duration::from_secs(60);

pub(super) fn user_pages(db: &Db) -> UserPages {
    QueryCache::new(
        "users_list",
        db.changes().clone(),
        &["users", "user_roles", "roles"],
        USER_PAGES_TTL,
        USER_PAGES_KEPT,
    )
}

impl UserService {
    pub async fn list_users(
        &self,
        filter: UserFilter,
        sort: Sort<UserSort>,
        page: PageParams,
    ) -> Result<Listed<Account>, ApiError> {
        let key = (filter.clone(), sort, page);
        self.user_pages
            .get_or_load(key, self.load_users(filter, sort, page))
            .await
    }

    async fn load_users(
        &self,
        filter: UserFilter,
        sort: Sort<UserSort>,
        page: PageParams,
    ) -> Result<Listed<Account>, ApiError> {
        let mut conn = self.db.conn().await?;
        let listed = UserCrud::list(&mut conn, &filter, sort, page).await?;
        let ids: Vec<Uuid> = listed.items.iter().map(|u| u.id).collect();
        let roles = access::role_names_of_users(&mut conn, &ids).await?;
        Ok(listed.attach(roles, |user| user.id, |user, roles| Account { user, roles }))
    }

    pub async fn get_user(&self, id: Uuid) -> Result<Account, ApiError> {
        let mut conn = self.db.conn().await?;
        let user = UserCrud::get(&mut conn, id).await?;
        account_of(&mut conn, user).await
    }

    /// Creates an account with the given roles, which `actor` must be able to grant
    /// (`None` for the command line, which acts as the operator).
    pub async fn create_user(
        &self,
        actor: Option<&Principal>,
        account: NewAccount,
    ) -> Result<Account, ApiError> {
        let (email, full_name) =
            check_new_account(&account.email, &account.password, &account.full_name)?;
        let role_names = account.roles.unwrap_or_else(|| vec![USER_ROLE.to_owned()]);
        let password_hash = self.passwords.hash(account.password).await?;
        let actor = actor.cloned();
        self.db
            .transaction(async move |conn| {
                let roles = roles_by_name(conn, &role_names).await?;
                if let Some(actor) = &actor {
                    check_can_grant(conn, actor, &roles).await?;
                }
                let ids: Vec<Uuid> = roles.iter().map(|r| r.id).collect();
                let user = insert_account(conn, email, password_hash, full_name, &ids).await?;
                let out = account_of(conn, user).await?;
                let by = match &actor {
                    Some(a) => a.email.as_str(),
                    None => "keel-admin",
                };
                let mut entry = Entry::new(
                    actions::USER_CREATED,
                    "user",
                    format!(
                        "{by} created {} with roles {}",
                        out.user.email,
                        out.roles.join(", ")
                    ),
                )
                .entity(out.user.id)
                .metadata(json!({"roles": out.roles}));
                if let Some(actor) = &actor {
                    entry = entry.actor(actor);
                }
                record(conn, entry).await?;
                Ok(out)
            })
            .await
    }

    /// Edits email, name or password; a new password ends every session of the user.
    pub async fn update_user(
        &self,
        actor: &Principal,
        id: Uuid,
        email: Option<&str>,
        full_name: Option<&str>,
        new_password: Option<String>,
    ) -> Result<Account, ApiError> {
        let mut errors = Vec::new();
        let email = email
            .map(|e| Email::parse("email", e))
            .transpose()
            .unwrap_or_else(|e| {
                errors.push(e);
                None
            });
        let full_name = full_name
            .map(|n| fields::full_name("full_name", n))
            .transpose()
            .unwrap_or_else(|e| {
                errors.push(e);
                None
            });
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let password_hash = match new_password {
            Some(password) => {
                let target_email = match &email {
                    Some(e) => e.as_str().to_owned(),
                    None => UserCrud::get(&mut *self.db.conn().await?, id).await?.email,
                };
                password::check_policy("password", &password, &target_email)
                    .map_err(|e| ApiError::Validation(vec![e]))?;
                Some(self.passwords.hash(password).await?)
            }
            None => None,
        };
        let ends_sessions = password_hash.is_some();
        let mut changed: Vec<&str> = Vec::new();
        if email.is_some() {
            changed.push("email");
        }
        if full_name.is_some() {
            changed.push("full_name");
        }
        if ends_sessions {
            changed.push("password");
        }
        let metadata = json!({"changed": changed});
        let changes = UserChanges {
            email: email.map(Email::into_inner),
            full_name,
            password_hash,
            ..UserChanges::default()
        };
        self.administer(actor, id, "edit", async move |conn| {
            let target = crate::crud::users::lock(conn, id).await?;
            if actor.user_id == id && (changes.password_hash.is_some() || changes.email.is_some()) {
                // A stolen access token must not become the account for good.
                return Err(UserError::OwnCredentials.into());
            }
            ensure_may_administer(conn, actor, &target).await?;
            let user = UserCrud::update(conn, id, &changes).await?;
            if ends_sessions {
                sessions::revoke_user(conn, id, RevokeReason::RevokedByAdmin, None).await?;
            }
            let summary = format!("{} edited {}", actor.email, user.email);
            let entry = Entry::new(actions::USER_UPDATED, "user", summary)
                .actor(actor)
                .entity(id)
                .metadata(metadata);
            record(conn, entry).await?;
            account_of(conn, user).await
        })
        .await
    }

    /// Deactivates an account and ends its sessions. Nobody deactivates themselves or
    /// the last active superuser.
    pub async fn deactivate_user(&self, actor: &Principal, id: Uuid) -> Result<Account, ApiError> {
        self.administer(actor, id, "deactivate", async move |conn| {
            if actor.user_id == id {
                return Err(UserError::DeactivateSelf.into());
            }
            let user = crate::crud::users::lock(conn, id).await?;
            ensure_may_administer(conn, actor, &user).await?;
            if user.is_active {
                ensure_not_last_superuser(conn, id).await?;
            }
            let changes = UserChanges {
                is_active: Some(false),
                ..UserChanges::default()
            };
            let user = UserCrud::update(conn, id, &changes).await?;
            sessions::revoke_user(conn, id, RevokeReason::Deactivated, None).await?;
            let summary = format!("{} deactivated {}", actor.email, user.email);
            let entry = Entry::new(actions::USER_DEACTIVATED, "user", summary)
                .actor(actor)
                .entity(id);
            record(conn, entry).await?;
            account_of(conn, user).await
        })
        .await
    }

    pub async fn activate_user(&self, actor: &Principal, id: Uuid) -> Result<Account, ApiError> {
        let changes = UserChanges {
            is_active: Some(true),
            ..UserChanges::default()
        };
        self.administer(actor, id, "activate", async move |conn| {
            let target = crate::crud::users::lock(conn, id).await?;
            ensure_may_administer(conn, actor, &target).await?;
            let user = UserCrud::update(conn, id, &changes).await?;
            let summary = format!("{} activated {}", actor.email, user.email);
            let entry = Entry::new(actions::USER_ACTIVATED, "user", summary)
                .actor(actor)
                .entity(id);
            record(conn, entry).await?;
            account_of(conn, user).await
        })
        .await
    }

    /// Replaces the user's roles. `actor` must hold every permission of the roles being
    /// added, and the last active superuser keeps the role.
    pub async fn set_user_roles(
        &self,
        actor: &Principal,
        id: Uuid,
        names: Vec<String>,
    ) -> Result<Account, ApiError> {
        self.administer(actor, id, "set_roles", async move |conn| {
            let user = crate::crud::users::lock(conn, id).await?;
            ensure_may_administer(conn, actor, &user).await?;
            let wanted = roles_by_name(conn, &names).await?;
            let held = access::roles_of(conn, id).await?;
            let added: Vec<Role> = wanted
                .iter()
                .filter(|r| held.iter().all(|h| h.id != r.id))
                .cloned()
                .collect();
            check_can_grant(conn, actor, &added).await?;
            let drops_superuser = held.iter().any(|r| r.name == SUPERUSER_ROLE)
                && wanted.iter().all(|r| r.name != SUPERUSER_ROLE);
            if drops_superuser && user.is_active {
                ensure_not_last_superuser(conn, id).await?;
            }
            let ids: Vec<Uuid> = wanted.iter().map(|r| r.id).collect();
            access::set_user_roles(conn, id, &ids).await?;
            let out = account_of(conn, user).await?;
            let before: Vec<&str> = held.iter().map(|r| r.name.as_str()).collect();
            let entry = Entry::new(
                actions::USER_ROLES_CHANGED,
                "user",
                format!(
                    "{} set the roles of {} to {}",
                    actor.email,
                    out.user.email,
                    out.roles.join(", ")
                ),
            )
            .actor(actor)
            .entity(id)
            .metadata(json!({"before": before, "after": out.roles}));
            record(conn, entry).await?;
            Ok::<_, ApiError>(out)
        })
        .await
    }

    /// Ends every session of the user (their access tokens stop working at once).
    pub async fn force_logout(&self, actor: &Principal, id: Uuid) -> Result<(), ApiError> {
        self.administer(actor, id, "force_logout", async move |conn| {
            let user = crate::crud::users::lock(conn, id).await?;
            ensure_may_administer(conn, actor, &user).await?;
            let ended = sessions::revoke_user(conn, id, RevokeReason::RevokedByAdmin, None).await?;
            let summary = format!("{} signed {} out everywhere", actor.email, user.email);
            let entry = Entry::new(actions::USER_SESSIONS_REVOKED, "user", summary)
                .actor(actor)
                .entity(id)
                .metadata(json!({"sessions_ended": ended.len()}));
            record(conn, entry).await?;
            Ok::<_, ApiError>(())
        })
        .await
    }

    /// Runs `change` on account `target` in one transaction, on behalf of `actor`: a
    /// refusal (403) is audited as an attempt at `attempted`, and a change makes every
    /// replica forget what it cached of the account.
    async fn administer<T, F>(
        &self,
        actor: &Principal,
        target: Uuid,
        attempted: &'static str,
        change: F,
    ) -> Result<T, ApiError>
    where
        T: Send,
        F: for<'c> InTransaction<'c, Result<T, ApiError>>,
    {
        let audited = Actor::from(actor);
        let outcome = self
            .db
            .transaction(change)
            .await
            .map_err(|err| (err, attempted));
        let out = self.refusal_audited(&audited, target, outcome).await?;
        self.user_changed(target).await;
        Ok(out)
    }

    /// Passes `outcome` through; a refusal (403) is first recorded in the audit trail as
    /// a refused attempt at `attempted` on account `target` — on a connection of its
    /// own, since the action's transaction rolled back.
    async fn refusal_audited<T>(
        &self,
        actor: &Actor,
        target: Uuid,
        outcome: Result<T, (ApiError, &'static str)>,
    ) -> Result<T, ApiError> {
        let (err, attempted) = match outcome {
            Ok(value) => return Ok(value),
            Err(failed) => failed,
        };
        if let ApiError::Forbidden(reason) = &err {
            let entry = Entry::new(
                actions::USER_ACTION_REFUSED,
                "user",
                format!("{} was refused {attempted} on an account", actor.email),
            )
            .actor(actor.clone())
            .entity(target)
            .metadata(json!({"attempted": attempted, "reason": reason}));
            let recorded = match self.db.conn().await {
                Ok(mut conn) => record(&mut conn, entry).await.map_err(ApiError::from),
                Err(unavailable) => Err(unavailable),
            };
            if let Err(cause) = recorded {
                tracing::warn!(error = %cause, %target, attempted, "refused action not audited");
            }
        }
        Err(err)
    }
}

/// The user with their role names.
async fn account_of(conn: &mut AsyncPgConnection, user: User) -> Result<Account, ApiError> {
    let roles = access::roles_of(conn, user.id).await?;
    Ok(Account {
        user,
        roles: roles.into_iter().map(|r| r.name).collect(),
    })
}

/// The roles with these names; 422 on `roles` naming the unknown ones.
pub(super) async fn roles_by_name(
    conn: &mut AsyncPgConnection,
    names: &[String],
) -> Result<Vec<Role>, ApiError> {
    let mut roles = Vec::with_capacity(names.len());
    let mut unknown = Vec::new();
    for name in names.iter().collect::<BTreeSet<_>>() {
        match access::find_role_by_name(conn, name).await? {
            Some(role) => roles.push(role),
            None => unknown.push(name.as_str()),
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "roles",
            format!("unknown role(s): {}", unknown.join(", ")),
        )]));
    }
    Ok(roles)
}

/// The delegation rule, checked by every action on an account (edit, password,
/// (de)activate, sign out, roles): the actor must hold every permission the account
/// holds, and only a superuser acts on a superuser — so a delegated administrator can
/// never act on an account that could do more than they can. Run it with the account
/// locked, so the roles it reads are the ones the action changes.
async fn ensure_may_administer(
    conn: &mut AsyncPgConnection,
    actor: &Principal,
    target: &User,
) -> Result<(), ApiError> {
    let roles = access::lock_roles_of(conn, target.id).await?;
    if roles.iter().any(|r| r.name == SUPERUSER_ROLE) && !is_superuser(actor) {
        return Err(UserError::Outranked(format!(
            "{} is a superuser: only a superuser can act on a superuser's account.",
            target.email
        ))
        .into());
    }
    let held = access::permissions_of(conn, target.id).await?;
    match held.iter().find(|code| !actor.has(code)) {
        Some(missing) => Err(UserError::Outranked(format!(
            "{} holds the permission {missing}, which you don't: you can act only on \
             accounts whose permissions you hold too.",
            target.email
        ))
        .into()),
        None => Ok(()),
    }
}

/// 403 unless `actor` holds every permission the `roles` grant; the superuser role only
/// a superuser grants (it means more than its permissions: acting on superusers).
async fn check_can_grant(
    conn: &mut AsyncPgConnection,
    actor: &Principal,
    roles: &[Role],
) -> Result<(), ApiError> {
    if roles.iter().any(|r| r.name == SUPERUSER_ROLE) && !is_superuser(actor) {
        return Err(UserError::CannotGrant(format!("the role {SUPERUSER_ROLE}")).into());
    }
    let ids: Vec<Uuid> = roles.iter().map(|r| r.id).collect();
    let codes = access::permissions_of_roles(conn, &ids).await?;
    ensure_holds(actor, &codes)
}

pub(super) fn is_superuser(actor: &Principal) -> bool {
    actor.roles.iter().any(|r| r == SUPERUSER_ROLE)
}

/// 403 naming the first of `codes` that `actor` doesn't hold.
pub(super) fn ensure_holds(actor: &Principal, codes: &[String]) -> Result<(), ApiError> {
    match codes.iter().find(|code| !actor.has(code)) {
        Some(missing) => Err(UserError::CannotGrant(format!("the permission {missing}")).into()),
        None => Ok(()),
    }
}

/// 409 if `user` is the only active holder of the superuser role. Demotions take one
/// transaction-scoped advisory lock, so two concurrent ones can't each count the other
/// as the remaining superuser. (Not the role's row: every action on a superuser already
/// holds it share-locked for the delegation rule, and two of them upgrading would
/// deadlock.)
async fn ensure_not_last_superuser(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> Result<(), ApiError> {
    access::lock_superuser_demotions(conn).await?;
    let Some(superuser) = access::find_role_by_name(conn, SUPERUSER_ROLE).await? else {
        return Ok(());
    };
    let holds = access::roles_of(conn, user)
        .await?
        .iter()
        .any(|r| r.id == superuser.id);
    if holds && access::count_active_holders(conn, superuser.id, Some(user)).await? == 0 {
        return Err(UserError::LastSuperuser.into());
    }
    Ok(())
}

/// What `create_admin` did.
#[derive(Debug, Clone)]
pub enum AdminOutcome {
    Created(Account),
    /// An existing account was given the superuser role (and reactivated if needed).
    Promoted(Account),
    /// The account already was an active superuser.
    AlreadySuperuser(Account),
}

impl UserService {
    /// `keel-admin create-admin`: a new superuser, or with `promote`, an existing account
    /// made one. Without `promote`, an existing email is a 409.
    pub async fn create_admin(
        &self,
        email: &str,
        password: String,
        promote: bool,
    ) -> Result<AdminOutcome, ApiError> {
        let parsed = Email::parse("email", email).map_err(|e| ApiError::Validation(vec![e]))?;
        let existing = {
            let mut conn = self.db.conn().await?;
            crate::crud::users::find_by_email(&mut conn, parsed.as_str()).await?
        };
        let Some(user) = existing else {
            let account = NewAccount {
                email: parsed.into_inner(),
                password,
                full_name: String::new(),
                roles: Some(vec![SUPERUSER_ROLE.to_owned(), USER_ROLE.to_owned()]),
            };
            return self
                .create_user(None, account)
                .await
                .map(AdminOutcome::Created);
        };
        if !promote {
            return Err(ApiError::Conflict {
                field: "email".to_owned(),
            });
        }
        let id = user.id;
        let outcome = self
            .db
            .transaction(async move |conn| {
                let user = crate::crud::users::lock(conn, id).await?;
                let superuser = roles_by_name(conn, &[SUPERUSER_ROLE.to_owned()]).await?;
                let held = access::roles_of(conn, id).await?;
                let was = user.is_active && held.iter().any(|r| r.name == SUPERUSER_ROLE);
                let ids: Vec<Uuid> = superuser.iter().map(|r| r.id).collect();
                access::grant_roles(conn, id, &ids).await?;
                let user = if user.is_active {
                    user
                } else {
                    let changes = UserChanges {
                        is_active: Some(true),
                        ..UserChanges::default()
                    };
                    UserCrud::update(conn, id, &changes).await?
                };
                let out = account_of(conn, user).await?;
                if !was {
                    let summary = format!("keel-admin made {} a superuser", out.user.email);
                    let entry =
                        Entry::new(actions::USER_PROMOTED, "user", summary).entity(out.user.id);
                    record(conn, entry).await?;
                }
                Ok::<_, ApiError>(if was {
                    AdminOutcome::AlreadySuperuser(out)
                } else {
                    AdminOutcome::Promoted(out)
                })
            })
            .await?;
        self.user_changed(id).await;
        Ok(outcome)
    }
}
