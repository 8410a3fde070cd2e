//! The signed-in user's own account: profile, password, sessions.

use keel_core::ApiError;
use keel_core::auth::Principal;
use keel_core::crud::CrudBase;
use uuid::Uuid;

use super::auth::invalid;
use super::{UserService, own_account_entry};
use crate::actions;
use crate::crud::{sessions, users};
use crate::errors::UserError;
use crate::fields;
use crate::models::{Profile, RefreshSession, RevokeReason, UserChanges};
use crate::password::{self, Verdict};
use keel_activity::{Actor, Entry, record};
use serde_json::json;

impl UserService {
    pub async fn update_me(
        &self,
        caller: &Principal,
        full_name: Option<&str>,
    ) -> Result<Profile, ApiError> {
        let full_name = full_name
            .map(|name| fields::full_name("full_name", name))
            .transpose()
            .map_err(invalid)?;
        let changes = UserChanges {
            full_name,
            ..UserChanges::default()
        };
        let id = caller.user_id;
        let entry = own_account_entry(actions::PROFILE_UPDATED, caller, "edited their profile")
            .metadata(json!({"changed": changes.full_name.as_ref().map(|_| "full_name")}));
        self.db
            .transaction(async move |conn| {
                users::UserCrud::update(conn, id, &changes).await?;
                record(conn, entry).await?;
                Ok::<_, ApiError>(())
            })
            .await?;
        self.user_changed(caller.user_id).await;
        self.me(caller).await
    }

    /// Checks the current password, stores the new one and ends every other session.
    pub async fn change_password(
        &self,
        caller: &Principal,
        current: String,
        new: String,
    ) -> Result<(), ApiError> {
        password::check_policy("new_password", &new, &caller.email).map_err(invalid)?;
        let stored = {
            let mut conn = self.db.conn().await?;
            users::UserCrud::get(&mut conn, caller.user_id)
                .await?
                .password_hash
        };
        if self.passwords.verify(current, Some(stored.clone())).await? == Verdict::Mismatch {
            return Err(UserError::WrongCurrentPassword.into());
        }
        let hash = self.passwords.hash(new).await?;
        let (user, keep) = (caller.user_id, caller.session_id);
        let actor = Actor::from(caller);
        self.db
            .transaction(async move |conn| {
                // Refuse if another change landed since we verified.
                if users::lock(conn, user).await?.password_hash != stored {
                    return Err(ApiError::StateConflict(
                        "The password was changed concurrently; try again.".to_owned(),
                    ));
                }
                let changes = UserChanges {
                    password_hash: Some(hash),
                    ..UserChanges::default()
                };
                users::UserCrud::update(conn, user, &changes).await?;
                let ended =
                    sessions::revoke_user(conn, user, RevokeReason::PasswordChanged, Some(keep))
                        .await?;
                let entry =
                    own_account_entry(actions::PASSWORD_CHANGED, actor, "changed their password")
                        .metadata(json!({"other_sessions_ended": ended.len()}));
                record(conn, entry).await?;
                Ok(())
            })
            .await?;
        self.user_changed(user).await;
        Ok(())
    }

    /// The caller's active sessions, one per signed-in device.
    pub async fn my_sessions(&self, caller: &Principal) -> Result<Vec<RefreshSession>, ApiError> {
        let mut conn = self.db.conn().await?;
        Ok(sessions::active_of_user(&mut conn, caller.user_id).await?)
    }

    /// Ends one of the caller's sessions (404 if it isn't theirs or isn't active).
    pub async fn revoke_my_session(
        &self,
        caller: &Principal,
        session: Uuid,
    ) -> Result<(), ApiError> {
        let actor = Actor::from(caller);
        self.db
            .transaction(async move |conn| {
                users::lock(conn, actor.id).await?;
                if !sessions::is_active(conn, session, actor.id).await? {
                    return Err(ApiError::NotFound);
                }
                sessions::revoke_family(conn, session, RevokeReason::RevokedByUser).await?;
                let summary = format!("{} ended one of their sessions", actor.email);
                let entry = Entry::new(actions::SESSION_REVOKED, "session", summary)
                    .actor(actor)
                    .entity(session);
                record(conn, entry).await?;
                Ok(())
            })
            .await?;
        self.authenticator.session_changed(session).await;
        Ok(())
    }
}
