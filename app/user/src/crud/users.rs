//! The users table through `CrudBase`, plus lookups by email.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_core::crud::{Sort, search_pattern};
use keel_core::db::KeepPrepared;
use keel_core::impl_crud;
use uuid::Uuid;

use crate::models::{
    NewUser, RefreshSession, User, UserChanges, UserFilter, UserSort, lower, refresh_sessions,
    roles, user_roles, users,
};

#[derive(Debug)]
pub struct UserCrud;

impl_crud! {
    UserCrud {
        table: users::table,
        id: users::id => Uuid,
        row: User,
        new: NewUser,
        changes: UserChanges,
        filter: UserFilter => filter_users,
        sort: UserSort => sort_users,
    }
}

fn filter_users<'a>(
    mut query: users::BoxedQuery<'a, Pg>,
    filter: &'a UserFilter,
) -> users::BoxedQuery<'a, Pg> {
    if let Some(pattern) = search_pattern(filter.search.as_deref()) {
        query = query.filter(
            users::email
                .ilike(pattern.clone())
                .or(users::full_name.ilike(pattern)),
        );
    }
    if let Some(role) = &filter.role {
        query = query.filter(
            users::id.eq_any(
                user_roles::table
                    .inner_join(roles::table)
                    .filter(roles::name.eq(role))
                    .select(user_roles::user_id),
            ),
        );
    }
    if let Some(active) = filter.is_active {
        query = query.filter(users::is_active.eq(active));
    }
    query
}

fn sort_users(query: users::BoxedQuery<'_, Pg>, sort: Sort<UserSort>) -> users::BoxedQuery<'_, Pg> {
    match sort.key {
        UserSort::Email => sort.apply(query, users::email),
        UserSort::FullName => sort.apply(query, users::full_name),
        UserSort::CreatedAt => sort.apply(query, users::created_at),
        UserSort::LastLoginAt => sort.apply(query, users::last_login_at),
    }
}

/// The account with this email, compared case-insensitively.
pub async fn find_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(lower(users::email).eq(lower(email)))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the user's row for the rest of the transaction: the account lock. Every
/// transaction that changes an account or creates, rotates or revokes its refresh
/// tokens takes it first, before touching any `refresh_sessions` row, so they run one
/// at a time per account, always in the same lock order (no cycles), and each statement
/// after the lock sees every token committed before it (see docs/auth.md). `FOR NO KEY
/// UPDATE` leaves foreign-key checks (inserting rows that reference the user) free.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<User> {
    users::table
        .find(id)
        .select(User::as_select())
        .for_no_key_update()
        .first(conn)
        .await
}

/// The refresh token with digest `hash` and the account that owns it, both locked, in
/// the order every writer takes them ([`lock`]'s account lock first, then the token's
/// row): one statement for what were three (whose token, lock the account, lock the
/// token). PostgreSQL locks a joined row's tables in the order the query names them, and
/// a token whose row changed while this waited for the account is read again at its
/// newest version (or dropped, if it no longer matches). Keep `users` on the join's left:
/// the other way round would lock the token first and deadlock against revocations.
pub async fn lock_with_token(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<(User, RefreshSession)>> {
    users::table
        .inner_join(refresh_sessions::table)
        .filter(refresh_sessions::token_hash.eq(hash))
        .select((User::as_select(), RefreshSession::as_select()))
        .for_no_key_update()
        .first(conn)
        .await
        .optional()
}

/// Records a sign-in: `last_login_at`, and `rehash` as the stored hash if given, but only
/// while the stored hash is still `verified` (what the password was checked against)
/// and the account is active. Takes the account lock as [`lock`] does, in the same
/// round trip; `None` when either condition no longer holds.
pub async fn record_sign_in(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    verified: &str,
    rehash: Option<&str>,
    at: DateTime<Utc>,
) -> QueryResult<Option<User>> {
    diesel::update(
        users::table
            .find(id)
            .filter(users::password_hash.eq(verified))
            .filter(users::is_active),
    )
    .set((
        users::last_login_at.eq(at),
        users::password_hash.eq(rehash.unwrap_or(verified)),
    ))
    .returning(User::as_returning())
    .prepared()
    .get_result(conn)
    .await
    .optional()
}

/// Where the welcome email goes (email, full name) and when it was sent, if the account
/// still exists.
pub async fn welcome_state(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<(String, String, Option<DateTime<Utc>>)>> {
    users::table
        .find(id)
        .select((users::email, users::full_name, users::welcome_sent_at))
        .first(conn)
        .await
        .optional()
}

/// Records that the welcome email went out.
pub async fn mark_welcomed(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::welcome_sent_at.eq(diesel::dsl::now))
        .prepared()
        .execute(conn)
        .await
}
