//! Registration, sign-in, token rotation and sign-out.

use std::time::Duration;

use chrono::Utc;
use keel_core::ApiError;
use keel_core::auth::Principal;
use keel_core::crud::CrudBase;
use keel_core::error::FieldError;
use uuid::Uuid;

use super::{Device, UserService, check_new_account, insert_account};
use crate::crud::{access, sessions, users};
use crate::errors::UserError;
use crate::models::{NewRefreshSession, RevokeReason, UserChanges};
use crate::password::Verdict;
use crate::schemas::TokenPair;
use crate::services::USER_ROLE;
use crate::tokens::{self, RefreshToken};

/// What a refresh attempt found, decided inside the transaction and acted on after it
/// commits (a reuse must stay revoked even though the request fails).
enum Rotation {
    Rotated {
        user: Uuid,
        family: Uuid,
        refresh: RefreshToken,
    },
    Refused,
    ReuseDetected {
        family: Uuid,
    },
}

impl UserService {
    /// Creates an account with the `user` role. A taken email gets the same answer
    /// after the same work (a password hash), so registering can't be used to find out
    /// who has an account; the owner of that address can sign in or reset as usual.
    pub async fn register(
        &self,
        email: &str,
        password: String,
        full_name: &str,
    ) -> Result<(), ApiError> {
        let (email, full_name) = check_new_account(email, &password, full_name)?;
        let password_hash = self.passwords.hash(password).await?;
        let created = self
            .db
            .transaction(|conn| {
                Box::pin(async move {
                    if users::find_by_email(conn, email.as_str()).await?.is_some() {
                        return Ok::<_, ApiError>(None);
                    }
                    let role = access::find_role_by_name(conn, USER_ROLE)
                        .await?
                        .ok_or_else(|| {
                            ApiError::internal("the `user` role is missing: run keel-admin seed")
                        })?;
                    let user =
                        insert_account(conn, email, password_hash, full_name, &[role.id]).await?;
                    Ok(Some(user.id))
                })
            })
            .await;
        match created {
            Ok(Some(id)) => tracing::info!(user = %id, "account registered"),
            Ok(None) => tracing::info!("registration for an existing email answered as accepted"),
            // Two registrations raced for the same email: same answer as above.
            Err(ApiError::Conflict { .. }) => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Signs in with email and password. Unknown emails are checked against a dummy hash
    /// and answered like wrong passwords; failures count against the account and the
    /// client IP, and either limit being spent is a 429.
    pub async fn login(&self, email: &str, password: String) -> Result<TokenPair, ApiError> {
        let device = Device::current();
        let email = email.trim().to_lowercase();
        let account_key = format!("login:account:{email}");
        let ip_key = device.ip.as_deref().map(|ip| format!("login:ip:{ip}"));

        let mut wait = self
            .limiter
            .blocked(&account_key, self.rules.failures_per_account)
            .await?;
        if let Some(ip_key) = &ip_key {
            let ip_wait = self
                .limiter
                .blocked(ip_key, self.rules.failures_per_ip)
                .await?;
            wait = wait.max(ip_wait);
        }
        if let Some(retry_after) = wait {
            return Err(ApiError::TooManyRequests { retry_after });
        }

        let user = {
            let mut conn = self.db.conn().await?;
            users::find_by_email(&mut conn, &email).await?
        };
        let verdict = self
            .passwords
            .verify(
                password.clone(),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?;
        let user = match (verdict, user) {
            (Verdict::Match | Verdict::MatchNeedsRehash, Some(user)) => user,
            _ => {
                self.limiter
                    .hit(&account_key, self.rules.failures_per_account)
                    .await?;
                if let Some(ip_key) = &ip_key {
                    self.limiter.hit(ip_key, self.rules.failures_per_ip).await?;
                }
                return Err(UserError::InvalidCredentials.into());
            }
        };
        if !user.is_active {
            return Err(UserError::Deactivated.into());
        }
        self.limiter.reset(&account_key).await?;

        let rehash = match verdict {
            Verdict::MatchNeedsRehash => Some(self.passwords.hash(password).await?),
            _ => None,
        };
        let ttl = self.rules.refresh_ttl;
        let user_id = user.id;
        let family = Uuid::now_v7();
        let (_, refresh) = self
            .db
            .transaction(|conn| {
                Box::pin(async move {
                    let changes = UserChanges {
                        password_hash: rehash,
                        last_login_at: Some(Utc::now()),
                        ..UserChanges::default()
                    };
                    users::UserCrud::update(conn, user_id, &changes).await?;
                    open_session(conn, user_id, family, Utc::now(), ttl, device).await
                })
            })
            .await?;
        tracing::info!(user = %user_id, session = %family, "signed in");
        self.token_pair(user_id, family, refresh)
    }

    /// Trades a refresh token for a new pair. The presented token stops working; a
    /// token that was already traded revokes its whole session (someone holds a copy).
    pub async fn refresh(&self, presented: &str) -> Result<TokenPair, ApiError> {
        let hash = tokens::digest(presented);
        let device = Device::current();
        let ttl = self.rules.refresh_ttl;
        let outcome = self
            .db
            .transaction(|conn| {
                Box::pin(async move {
                    let Some(row) = sessions::lock_by_hash(conn, &hash).await? else {
                        return Ok::<_, ApiError>(Rotation::Refused);
                    };
                    if row.revoke_reason.as_deref() == Some(RevokeReason::Rotated.as_str()) {
                        sessions::revoke_family(conn, row.family_id, RevokeReason::ReuseDetected)
                            .await?;
                        return Ok(Rotation::ReuseDetected {
                            family: row.family_id,
                        });
                    }
                    let now = Utc::now();
                    if row.revoked_at.is_some() || row.expires_at <= now {
                        return Ok(Rotation::Refused);
                    }
                    let user = users::UserCrud::get(conn, row.user_id).await?;
                    if !user.is_active {
                        return Ok(Rotation::Refused);
                    }
                    let (successor, refresh) = open_session(
                        conn,
                        row.user_id,
                        row.family_id,
                        row.started_at,
                        ttl,
                        device,
                    )
                    .await?;
                    sessions::mark_rotated(conn, row.id, successor, now).await?;
                    Ok(Rotation::Rotated {
                        user: row.user_id,
                        family: row.family_id,
                        refresh,
                    })
                })
            })
            .await?;
        match outcome {
            Rotation::Rotated {
                user,
                family,
                refresh,
            } => self.token_pair(user, family, refresh),
            Rotation::Refused => Err(UserError::InvalidRefreshToken.into()),
            Rotation::ReuseDetected { family } => {
                tracing::warn!(session = %family, "refresh token reused: session revoked");
                self.authenticator.session_changed(family);
                Err(UserError::InvalidRefreshToken.into())
            }
        }
    }

    /// Ends the session of `refresh_token`, or else of the caller's access token.
    pub async fn logout(
        &self,
        refresh_token: Option<&str>,
        caller: Option<&Principal>,
    ) -> Result<(), ApiError> {
        let family = match (refresh_token, caller) {
            (Some(token), _) => {
                let hash = tokens::digest(token);
                let mut conn = self.db.conn().await?;
                let row = sessions::lock_by_hash(&mut conn, &hash)
                    .await?
                    .ok_or(UserError::InvalidRefreshToken)?;
                if caller.is_some_and(|c| c.user_id != row.user_id) {
                    return Err(UserError::InvalidRefreshToken.into());
                }
                row.family_id
            }
            (None, Some(caller)) => caller.session_id,
            (None, None) => {
                return Err(ApiError::Unauthorized(
                    "Send the refresh token in the body or a bearer access token.".to_owned(),
                ));
            }
        };
        let mut conn = self.db.conn().await?;
        sessions::revoke_family(&mut conn, family, RevokeReason::Logout).await?;
        self.authenticator.session_changed(family);
        Ok(())
    }

    /// Ends every session of the caller, this one included.
    pub async fn logout_all(&self, caller: &Principal) -> Result<(), ApiError> {
        let mut conn = self.db.conn().await?;
        sessions::revoke_user(&mut conn, caller.user_id, RevokeReason::LogoutAll, None).await?;
        self.authenticator.user_changed(caller.user_id);
        Ok(())
    }

    pub(super) fn token_pair(
        &self,
        user: Uuid,
        family: Uuid,
        refresh: RefreshToken,
    ) -> Result<TokenPair, ApiError> {
        let access = self
            .authenticator
            .keys()
            .issue(user, family)
            .map_err(ApiError::internal)?;
        Ok(TokenPair {
            access_token: access.token,
            refresh_token: refresh.token,
            token_type: "bearer".to_owned(),
            expires_in: access.expires_in.as_secs(),
        })
    }
}

/// Stores a new refresh token in session `family` (new or continued); returns the new
/// row's id and the token.
pub(super) async fn open_session(
    conn: &mut diesel_async::AsyncPgConnection,
    user: Uuid,
    family: Uuid,
    started_at: chrono::DateTime<Utc>,
    ttl: Duration,
    device: Device,
) -> Result<(Uuid, RefreshToken), ApiError> {
    let refresh = RefreshToken::generate()?;
    let ttl = chrono::Duration::from_std(ttl).map_err(ApiError::internal)?;
    let row = sessions::insert(
        conn,
        &NewRefreshSession {
            id: Uuid::now_v7(),
            family_id: family,
            user_id: user,
            token_hash: refresh.hash.clone(),
            started_at,
            expires_at: Utc::now() + ttl,
            user_agent: device.user_agent,
            ip: device.ip,
        },
    )
    .await?;
    Ok((row.id, refresh))
}

/// A policy error on `field` as a 422.
pub(super) fn invalid(error: FieldError) -> ApiError {
    UserError::Invalid(error).into()
}
