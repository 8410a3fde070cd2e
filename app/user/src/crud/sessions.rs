//! Refresh-token rows. A session is the family of rows sharing `family_id`.
//!
//! Writers hold the account lock ([`crate::crud::users::lock`]) of the tokens' user
//! before calling anything here that locks or changes rows; that is what makes a
//! revocation see every rotation committed before it and keeps rotations from
//! committing after it.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncConnectionCore, AsyncPgConnection, RunQueryDsl};
use keel_core::db::{KeepPrepared, fixed, pipelined};
use uuid::Uuid;

use crate::models::{NewRefreshSession, RefreshSession, RevokeReason, refresh_sessions};

/// Stores a new session's first token. Any connection will do, so a caller can
/// pipeline it with the audit entry that records it.
pub async fn insert<C>(conn: &mut C, new: &NewRefreshSession) -> QueryResult<()>
where
    C: AsyncConnectionCore<Backend = Pg>,
{
    diesel::insert_into(refresh_sessions::table)
        .values(new)
        .execute(conn)
        .await
        .map(drop)
}

/// Stores `successor` and marks `rotated` as replaced by it. The two statements are
/// independent (`replaced_by`'s reference is checked at commit), so they are pipelined:
/// sent together, one round trip (the UPDATE is kept prepared, so it waits on no prepare).
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    rotated: Uuid,
    successor: &NewRefreshSession,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let (mut first, mut second) = (&*conn, &*conn);
    let insert = diesel::insert_into(refresh_sessions::table)
        .values(successor)
        .execute(&mut first);
    let mark = diesel::update(refresh_sessions::table.find(rotated))
        .set((
            refresh_sessions::revoked_at.eq(now),
            refresh_sessions::revoke_reason.eq(RevokeReason::Rotated.as_str()),
            refresh_sessions::replaced_by.eq(successor.id),
            refresh_sessions::last_used_at.eq(now),
        ))
        .prepared()
        .execute(&mut second);
    pipelined(insert, mark).await.map(drop)
}

/// Revokes every live token of a session; returns how many were live. Any connection
/// will do, so a caller can pipeline it with the audit entry that records it.
pub async fn revoke_family<C>(
    conn: &mut C,
    family: Uuid,
    reason: RevokeReason,
) -> QueryResult<usize>
where
    C: AsyncConnectionCore<Backend = Pg>,
{
    diesel::update(
        refresh_sessions::table
            .filter(refresh_sessions::family_id.eq(family))
            .filter(refresh_sessions::revoked_at.is_null()),
    )
    .set((
        refresh_sessions::revoked_at.eq(diesel::dsl::now),
        refresh_sessions::revoke_reason.eq(reason.as_str()),
    ))
    .prepared()
    .execute(conn)
    .await
}

/// Revokes every live session of `user`, except the family `keep` if given; returns the
/// families that were live. One statement under the account lock: it sees every token
/// committed before the lock was granted.
pub async fn revoke_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    reason: RevokeReason,
    keep: Option<Uuid>,
) -> QueryResult<Vec<Uuid>> {
    let mut target = diesel::update(refresh_sessions::table)
        .filter(refresh_sessions::user_id.eq(user))
        .filter(refresh_sessions::revoked_at.is_null())
        .into_boxed();
    if let Some(keep) = keep {
        target = target.filter(refresh_sessions::family_id.ne(keep));
    }
    target
        .set((
            refresh_sessions::revoked_at.eq(diesel::dsl::now),
            refresh_sessions::revoke_reason.eq(reason.as_str()),
        ))
        .returning(refresh_sessions::family_id)
        .prepared()
        .get_results(conn)
        .await
}

/// The live token of each active session of `user`, newest sign-in first.
pub async fn active_of_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Vec<RefreshSession>> {
    refresh_sessions::table
        .filter(refresh_sessions::user_id.eq(user))
        .filter(refresh_sessions::revoked_at.is_null())
        .filter(refresh_sessions::expires_at.gt(diesel::dsl::now))
        .select(RefreshSession::as_select())
        .order(refresh_sessions::started_at.desc())
        .load(conn)
        .await
}

/// Whether the session `family` of `user` still has a live, unexpired token.
pub async fn is_active(
    conn: &mut AsyncPgConnection,
    family: Uuid,
    user: Uuid,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        refresh_sessions::table
            .filter(refresh_sessions::family_id.eq(family))
            .filter(refresh_sessions::user_id.eq(user))
            .filter(refresh_sessions::revoked_at.is_null())
            .filter(refresh_sessions::expires_at.gt(diesel::dsl::now)),
    ))
    .get_result(conn)
    .await
}

#[derive(QueryableByName)]
struct Owner {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Deletes the ended sign-ins (families whose every token was revoked or expired more
/// than a day ago) of at most `accounts` accounts; returns the rows deleted. Run it in a
/// transaction: it takes those accounts' locks first, as every writer of token rows
/// does, and skips accounts busy right now (a refresh, a sign-out) for the next run.
pub async fn purge_ended(conn: &mut AsyncPgConnection, accounts: i64) -> QueryResult<usize> {
    // The limit counts accounts taken, after busy ones are skipped.
    let owners: Vec<Owner> = fixed(
        "SELECT u.id FROM users u WHERE u.id IN ( \
             SELECT user_id FROM refresh_sessions \
             GROUP BY family_id, user_id \
             HAVING max(least(coalesce(revoked_at, expires_at), expires_at)) \
                    < now() - interval '1 day') \
         LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
    )
    .bind::<diesel::sql_types::BigInt, _>(accounts)
    .load(conn)
    .await?;
    let owners: Vec<Uuid> = owners.into_iter().map(|o| o.id).collect();
    fixed(
        "DELETE FROM refresh_sessions \
         WHERE user_id = ANY($1) AND family_id IN ( \
             SELECT family_id FROM refresh_sessions WHERE user_id = ANY($1) \
             GROUP BY family_id \
             HAVING max(least(coalesce(revoked_at, expires_at), expires_at)) \
                    < now() - interval '1 day')",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&owners)
    .execute(conn)
    .await
}
