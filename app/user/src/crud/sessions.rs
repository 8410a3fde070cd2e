//! Refresh-token rows. A session is the family of rows sharing `family_id`.
//!
//! Writers hold the account lock ([`crate::crud::users::lock`]) of the tokens' user
//! before calling anything here that locks or changes rows; that is what makes a
//! revocation see every rotation committed before it and keeps rotations from
//! committing after it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::models::{NewRefreshSession, RefreshSession, RevokeReason, refresh_sessions};

pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewRefreshSession,
) -> QueryResult<RefreshSession> {
    diesel::insert_into(refresh_sessions::table)
        .values(new)
        .returning(RefreshSession::as_returning())
        .get_result(conn)
        .await
}

/// Whose token this is, read without locking: the caller takes that user's account
/// lock, then [`lock_by_hash`].
pub async fn owner_of_hash(conn: &mut AsyncPgConnection, hash: &[u8]) -> QueryResult<Option<Uuid>> {
    refresh_sessions::table
        .filter(refresh_sessions::token_hash.eq(hash))
        .select(refresh_sessions::user_id)
        .first(conn)
        .await
        .optional()
}

/// The row of a presented token, locked so two concurrent refreshes with the same token
/// can't both rotate it.
pub async fn lock_by_hash(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<RefreshSession>> {
    refresh_sessions::table
        .filter(refresh_sessions::token_hash.eq(hash))
        .select(RefreshSession::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a rotated token as replaced by its successor.
pub async fn mark_rotated(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    successor: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(refresh_sessions::table.find(id))
        .set((
            refresh_sessions::revoked_at.eq(now),
            refresh_sessions::revoke_reason.eq(RevokeReason::Rotated.as_str()),
            refresh_sessions::replaced_by.eq(successor),
            refresh_sessions::last_used_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every live token of a session; returns how many were live.
pub async fn revoke_family(
    conn: &mut AsyncPgConnection,
    family: Uuid,
    reason: RevokeReason,
) -> QueryResult<usize> {
    diesel::update(
        refresh_sessions::table
            .filter(refresh_sessions::family_id.eq(family))
            .filter(refresh_sessions::revoked_at.is_null()),
    )
    .set((
        refresh_sessions::revoked_at.eq(diesel::dsl::now),
        refresh_sessions::revoke_reason.eq(reason.as_str()),
    ))
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
