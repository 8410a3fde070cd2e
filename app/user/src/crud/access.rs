//! Roles, permissions and who holds them.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_core::crud::{Sort, search_pattern};
use keel_core::impl_crud;
use uuid::Uuid;

use crate::models::{
    NewRole, Permission, Role, RoleChanges, RoleFilter, RoleSort, permissions, role_permissions,
    roles, user_roles, users,
};

#[derive(Debug)]
pub struct RoleCrud;

impl_crud! {
    RoleCrud {
        table: roles::table,
        id: roles::id => Uuid,
        row: Role,
        new: NewRole,
        changes: RoleChanges,
        filter: RoleFilter => filter_roles,
        sort: RoleSort => sort_roles,
    }
}

fn filter_roles<'a>(
    mut query: roles::BoxedQuery<'a, Pg>,
    filter: &'a RoleFilter,
) -> roles::BoxedQuery<'a, Pg> {
    if let Some(pattern) = search_pattern(filter.search.as_deref()) {
        query = query.filter(roles::name.ilike(pattern));
    }
    query
}

fn sort_roles(query: roles::BoxedQuery<'_, Pg>, sort: Sort<RoleSort>) -> roles::BoxedQuery<'_, Pg> {
    match sort.key {
        RoleSort::Name => sort.apply(query, roles::name),
        RoleSort::CreatedAt => sort.apply(query, roles::created_at),
    }
}

pub async fn find_role_by_name(
    conn: &mut AsyncPgConnection,
    name: &str,
) -> QueryResult<Option<Role>> {
    roles::table
        .filter(roles::name.eq(name))
        .select(Role::as_select())
        .first(conn)
        .await
        .optional()
}

/// Advisory lock key ("keelSUDO") for demoting superusers.
const SUPERUSER_DEMOTIONS: i64 = 0x6b65_656c_5355_444f;

/// Serialises, until the transaction ends, the checks "is this the last active
/// superuser?" of concurrent demotions.
pub async fn lock_superuser_demotions(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query(format!(
        "SELECT pg_advisory_xact_lock({SUPERUSER_DEMOTIONS})"
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// The role with this id, locked for the rest of the transaction; `NotFound` (→ 404)
/// when there is none.
pub async fn lock_role(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Role> {
    roles::table
        .find(id)
        .select(Role::as_select())
        .for_update()
        .first(conn)
        .await
}

pub async fn roles_by_ids(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Role>> {
    roles::table
        .filter(roles::id.eq_any(ids))
        .select(Role::as_select())
        .order(roles::name)
        .load(conn)
        .await
}

/// The roles `user` holds, by name.
pub async fn roles_of(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<Role>> {
    user_roles::table
        .inner_join(roles::table)
        .filter(user_roles::user_id.eq(user))
        .select(Role::as_select())
        .order(roles::name)
        .load(conn)
        .await
}

/// The roles `user` holds, share-locked for the rest of the transaction: a change to
/// what one of them grants (which locks the role's row) waits until the transaction
/// that judged the user by them has ended.
pub async fn lock_roles_of(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<Role>> {
    // Only the roles' rows: the user's `user_roles` rows change under the account lock
    // anyway, and locking them too would deadlock with a role's deletion (which
    // cascades into them after locking the role).
    let held = user_roles::table
        .filter(user_roles::user_id.eq(user))
        .select(user_roles::role_id);
    roles::table
        .filter(roles::id.eq_any(held))
        .select(Role::as_select())
        .order(roles::name)
        .for_share()
        .load(conn)
        .await
}

/// The roles of each of `users_ids`, for a page of users.
pub async fn role_names_of_users(
    conn: &mut AsyncPgConnection,
    user_ids: &[Uuid],
) -> QueryResult<Vec<(Uuid, String)>> {
    user_roles::table
        .inner_join(roles::table)
        .filter(user_roles::user_id.eq_any(user_ids))
        .select((user_roles::user_id, roles::name))
        .order(roles::name)
        .load(conn)
        .await
}

/// Every permission code granted to `user` through any role.
pub async fn permissions_of(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<String>> {
    role_permissions::table
        .inner_join(user_roles::table.on(user_roles::role_id.eq(role_permissions::role_id)))
        .filter(user_roles::user_id.eq(user))
        .select(role_permissions::permission_code)
        .distinct()
        .order(role_permissions::permission_code)
        .load(conn)
        .await
}

/// Every permission code granted by any of `role_ids`.
pub async fn permissions_of_roles(
    conn: &mut AsyncPgConnection,
    role_ids: &[Uuid],
) -> QueryResult<Vec<String>> {
    role_permissions::table
        .filter(role_permissions::role_id.eq_any(role_ids))
        .select(role_permissions::permission_code)
        .distinct()
        .order(role_permissions::permission_code)
        .load(conn)
        .await
}

/// `(role id, permission code)` pairs for the given roles.
pub async fn role_permission_pairs(
    conn: &mut AsyncPgConnection,
    role_ids: &[Uuid],
) -> QueryResult<Vec<(Uuid, String)>> {
    role_permissions::table
        .filter(role_permissions::role_id.eq_any(role_ids))
        .select((role_permissions::role_id, role_permissions::permission_code))
        .order(role_permissions::permission_code)
        .load(conn)
        .await
}

/// Replaces the roles `user` holds with `role_ids`.
pub async fn set_user_roles(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    role_ids: &[Uuid],
) -> QueryResult<()> {
    diesel::delete(
        user_roles::table
            .filter(user_roles::user_id.eq(user))
            .filter(user_roles::role_id.ne_all(role_ids)),
    )
    .execute(conn)
    .await?;
    grant_roles(conn, user, role_ids).await
}

/// Adds roles to `user`; roles already held stay as they are.
pub async fn grant_roles(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    role_ids: &[Uuid],
) -> QueryResult<()> {
    let rows: Vec<_> = role_ids
        .iter()
        .map(|role| (user_roles::user_id.eq(user), user_roles::role_id.eq(*role)))
        .collect();
    diesel::insert_into(user_roles::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the permissions `role` grants with `codes`.
pub async fn set_role_permissions(
    conn: &mut AsyncPgConnection,
    role: Uuid,
    codes: &[String],
) -> QueryResult<()> {
    diesel::delete(
        role_permissions::table
            .filter(role_permissions::role_id.eq(role))
            .filter(role_permissions::permission_code.ne_all(codes)),
    )
    .execute(conn)
    .await?;
    let rows: Vec<_> = codes
        .iter()
        .map(|code| {
            (
                role_permissions::role_id.eq(role),
                role_permissions::permission_code.eq(code),
            )
        })
        .collect();
    diesel::insert_into(role_permissions::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Active users holding `role`, other than `except`.
pub async fn count_active_holders(
    conn: &mut AsyncPgConnection,
    role: Uuid,
    except: Option<Uuid>,
) -> QueryResult<i64> {
    let mut query = user_roles::table
        .inner_join(users::table)
        .filter(user_roles::role_id.eq(role))
        .filter(users::is_active.eq(true))
        .into_boxed();
    if let Some(except) = except {
        query = query.filter(users::id.ne(except));
    }
    query.count().get_result(conn).await
}

pub async fn list_permissions(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Permission>> {
    permissions::table
        .select(Permission::as_select())
        .order(permissions::code)
        .load(conn)
        .await
}

/// Which of `codes` exist.
pub async fn existing_permissions(
    conn: &mut AsyncPgConnection,
    codes: &[String],
) -> QueryResult<Vec<String>> {
    permissions::table
        .filter(permissions::code.eq_any(codes))
        .select(permissions::code)
        .load(conn)
        .await
}

/// Inserts missing permissions and refreshes changed descriptions; returns how many
/// rows changed (0 when the table already matches).
pub async fn upsert_permissions(
    conn: &mut AsyncPgConnection,
    declared: &[(String, String)],
) -> QueryResult<usize> {
    let stored: Vec<(String, String)> = permissions::table
        .select((permissions::code, permissions::description))
        .load(conn)
        .await?;
    let stored: std::collections::HashMap<_, _> = stored.into_iter().collect();
    let mut changed = 0;
    for (code, description) in declared {
        match stored.get(code) {
            Some(current) if current == description => {}
            Some(_) => {
                changed += diesel::update(permissions::table.find(code))
                    .set(permissions::description.eq(description))
                    .execute(conn)
                    .await?;
            }
            None => {
                changed += diesel::insert_into(permissions::table)
                    .values((
                        permissions::code.eq(code),
                        permissions::description.eq(description),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
            }
        }
    }
    Ok(changed)
}

/// Inserts a role unless one with this name exists; returns the stored role and
/// whether it was created.
pub async fn ensure_role(conn: &mut AsyncPgConnection, new: &NewRole) -> QueryResult<(Role, bool)> {
    let inserted = diesel::insert_into(roles::table)
        .values(new)
        .on_conflict(roles::name)
        .do_nothing()
        .returning(Role::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match inserted {
        Some(role) => Ok((role, true)),
        None => roles::table
            .filter(roles::name.eq(&new.name))
            .select(Role::as_select())
            .first(conn)
            .await
            .map(|role| (role, false)),
    }
}
