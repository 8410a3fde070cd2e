//! Registration, sign-in, token rotation and sign-out.

use std::time::Duration;

use chrono::Utc;
use keel_core::ApiError;
use keel_core::auth::Principal;
use keel_core::db::pipelined;
use keel_core::error::FieldError;
use uuid::Uuid;

use super::{Device, UserService, check_new_account, insert_account, own_account_entry};
use crate::actions;
use crate::crud::{access, sessions, users};
use crate::errors::UserError;
use crate::models::{NewRefreshSession, RevokeReason, Tokens};
use crate::password::Verdict;
use crate::services::USER_ROLE;
use crate::tasks::SendWelcomeEmail;
use crate::tokens::{self, RefreshToken};
use keel_activity::{Actor, Entry, record};
use serde_json::json;

/// What a sign-in's transaction found under the account lock.
enum SignIn {
    Opened {
        family: Uuid,
        refresh: RefreshToken,
    },
    /// The stored hash is no longer the one the password was checked against.
    HashChanged(String),
}

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
        device: &Device,
    ) -> Result<(), ApiError> {
        let (email, full_name) = check_new_account(email, &password, full_name)?;
        if let Some(ip_key) = self.client_limit_key("register", device)
            && let Err(retry_after) = self
                .limiter
                .reserve(&[(&ip_key, self.rules.registrations_per_ip)])
                .await
        {
            return Err(ApiError::TooManyRequests { retry_after });
        }
        let password_hash = self.passwords.hash(password).await?;
        let created = self
            .db
            .transaction(async move |conn| {
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
                let entry = Entry::new(
                    actions::USER_REGISTERED,
                    "user",
                    format!("{} registered", user.email),
                )
                .actor(&user)
                .entity(user.id);
                record(conn, entry).await?;
                let welcome = SendWelcomeEmail { user_id: user.id };
                keel_core::tasks::enqueue(conn, &welcome).await?;
                Ok(Some(user.id))
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
    pub async fn login(
        &self,
        email: &str,
        password: String,
        device: Device,
    ) -> Result<Tokens, ApiError> {
        let email = email.trim().to_lowercase();
        let account_key = format!("login:account:{email}");
        let ip_key = self.client_limit_key("login", &device);

        // Reserve the attempt before the password is checked, so concurrent attempts
        // can't all pass a check made before any of them was counted.
        let mut limits = vec![(account_key.as_str(), self.rules.failures_per_account)];
        if let Some(ip_key) = &ip_key {
            limits.push((ip_key.as_str(), self.rules.failures_per_ip));
        }
        if let Err(retry_after) = self.limiter.reserve(&limits).await {
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
            (_, user) => {
                // The reserved attempt stays counted.
                let reason = if user.is_some() {
                    "wrong_password"
                } else {
                    "unknown_email"
                };
                self.record_failed_login(&email, user.map(|u| u.id), reason)
                    .await?;
                return Err(UserError::InvalidCredentials.into());
            }
        };
        // The right password: the attempt is given back, and the account's earlier
        // failures forgotten.
        self.limiter.reset(&account_key).await;
        if let Some(ip_key) = &ip_key {
            self.limiter.refund(ip_key).await;
        }
        if !user.is_active {
            self.record_failed_login(&email, Some(user.id), "deactivated")
                .await?;
            return Err(UserError::Deactivated.into());
        }

        let mut rehash = match verdict {
            Verdict::MatchNeedsRehash => Some(self.passwords.hash(password.clone()).await?),
            _ => None,
        };
        let user_id = user.id;
        let mut verified = user.password_hash;
        let mut rechecked = false;
        loop {
            match self
                .open_sign_in(user_id, verified.clone(), rehash.take(), device.clone())
                .await?
            {
                SignIn::Opened { family, refresh } => {
                    tracing::info!(user = %user_id, session = %family, "signed in");
                    return self.tokens(user_id, family, refresh);
                }
                // Another sign-in stored a rehash of this same password, or the password
                // really changed: check against what is stored now, once.
                SignIn::HashChanged(current) if !rechecked => {
                    rechecked = true;
                    let verdict = self
                        .passwords
                        .verify(password.clone(), Some(current.clone()))
                        .await?;
                    if verdict == Verdict::Mismatch {
                        return Err(UserError::InvalidCredentials.into());
                    }
                    verified = current;
                }
                SignIn::HashChanged(_) => return Err(UserError::InvalidCredentials.into()),
            }
        }
    }

    /// Opens the session of a sign-in whose password matched `verified`. The password
    /// was checked outside any transaction (it takes tens of ms); here, under the
    /// account lock, nothing is opened if the stored hash is no longer that one or the
    /// account was deactivated meanwhile, so a revocation that returned in between is
    /// never outlived by this sign-in (nor its rehash of an old password stored).
    async fn open_sign_in(
        &self,
        user_id: Uuid,
        verified: String,
        rehash: Option<String>,
        device: Device,
    ) -> Result<SignIn, ApiError> {
        let ttl = self.rules.refresh_ttl;
        let family = Uuid::now_v7();
        self.db
            .transaction(async move |conn| {
                let signed_in =
                    users::record_sign_in(conn, user_id, &verified, rehash.as_deref(), Utc::now())
                        .await?;
                let Some(user) = signed_in else {
                    // The hash changed or the account was deactivated meanwhile: which?
                    let current = users::lock(conn, user_id).await?;
                    if current.password_hash != verified {
                        return Ok(SignIn::HashChanged(current.password_hash));
                    }
                    return Err(UserError::Deactivated.into());
                };
                let (session, refresh) = new_session(user_id, family, Utc::now(), ttl, device)?;
                let entry = Entry::new(
                    actions::LOGIN_SUCCEEDED,
                    "session",
                    format!("{} signed in", user.email),
                )
                .actor(&user)
                .entity(family);
                // Independent under the account lock: one round trip for both.
                let (mut opening, mut recording) = (&*conn, &*conn);
                pipelined(
                    sessions::insert(&mut opening, &session),
                    record(&mut recording, entry),
                )
                .await?;
                Ok::<_, ApiError>(SignIn::Opened { family, refresh })
            })
            .await
    }

    /// Trades a refresh token for a new pair. The presented token stops working; a
    /// token that was already traded revokes its whole session (someone holds a copy).
    pub async fn refresh(&self, presented: &str, device: Device) -> Result<Tokens, ApiError> {
        let hash = tokens::digest(presented);
        let ttl = self.rules.refresh_ttl;
        let outcome = self
            .db
            .transaction(async move |conn| {
                // Account lock first, then the token's row (see crud::users::lock).
                let Some((user, row)) = users::lock_with_token(conn, &hash).await? else {
                    return Ok::<_, ApiError>(Rotation::Refused);
                };
                if row.revoke_reason.as_deref() == Some(RevokeReason::Rotated.as_str()) {
                    sessions::revoke_family(conn, row.family_id, RevokeReason::ReuseDetected)
                        .await?;
                    let actor = Actor::from(&user);
                    let summary = format!(
                        "a used refresh token of {} was presented again: session ended",
                        actor.email
                    );
                    let entry = Entry::new(actions::REFRESH_REUSED, "session", summary)
                        .actor(actor)
                        .entity(row.family_id);
                    record(conn, entry).await?;
                    return Ok(Rotation::ReuseDetected {
                        family: row.family_id,
                    });
                }
                let now = Utc::now();
                if row.revoked_at.is_some() || row.expires_at <= now {
                    return Ok(Rotation::Refused);
                }
                if !user.is_active {
                    return Ok(Rotation::Refused);
                }
                let (successor, refresh) =
                    new_session(row.user_id, row.family_id, row.started_at, ttl, device)?;
                sessions::rotate(conn, row.id, &successor, now).await?;
                Ok(Rotation::Rotated {
                    user: row.user_id,
                    family: row.family_id,
                    refresh,
                })
            })
            .await?;
        match outcome {
            Rotation::Rotated {
                user,
                family,
                refresh,
            } => self.tokens(user, family, refresh),
            Rotation::Refused => Err(UserError::InvalidRefreshToken.into()),
            Rotation::ReuseDetected { family } => {
                tracing::warn!(session = %family, "refresh token reused: session revoked");
                self.authenticator.session_changed(family).await;
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
        let hash = refresh_token.map(tokens::digest);
        // The caller's (session, user), when a bearer token came along.
        let caller = caller.map(|c| (c.session_id, c.user_id));
        let family = self
            .db
            .transaction(async move |conn| {
                let (family, user) = match (hash, caller) {
                    (Some(hash), _) => {
                        let (user, row) = users::lock_with_token(conn, &hash)
                            .await?
                            .ok_or(UserError::InvalidRefreshToken)?;
                        if caller.is_some_and(|(_, caller)| caller != user.id) {
                            return Err(UserError::InvalidRefreshToken.into());
                        }
                        (row.family_id, user)
                    }
                    (None, Some((family, user))) => (family, users::lock(conn, user).await?),
                    (None, None) => {
                        return Err(ApiError::Unauthorized(
                            "Send the refresh token in the body or a bearer access token."
                                .to_owned(),
                        ));
                    }
                };
                let summary = format!("{} signed out", user.email);
                let entry = Entry::new(actions::LOGOUT, "session", summary)
                    .actor(&user)
                    .entity(family);
                // Under the account lock, the revocation and its entry are independent:
                // sent together, one round trip.
                let (mut revoking, mut recording) = (&*conn, &*conn);
                pipelined(
                    sessions::revoke_family(&mut revoking, family, RevokeReason::Logout),
                    record(&mut recording, entry),
                )
                .await?;
                Ok::<_, ApiError>(family)
            })
            .await?;
        self.authenticator.session_changed(family).await;
        Ok(())
    }

    /// Ends every session of the caller, this one included.
    pub async fn logout_all(&self, caller: &Principal) -> Result<(), ApiError> {
        let actor = Actor::from(caller);
        let user = caller.user_id;
        self.db
            .transaction(async move |conn| {
                users::lock(conn, user).await?;
                let ended =
                    sessions::revoke_user(conn, user, RevokeReason::LogoutAll, None).await?;
                let entry = own_account_entry(actions::LOGOUT_ALL, actor, "signed out everywhere")
                    .metadata(json!({"sessions_ended": ended.len()}));
                record(conn, entry).await?;
                Ok::<_, ApiError>(())
            })
            .await?;
        self.user_changed(caller.user_id).await;
        Ok(())
    }

    /// Records a failed sign-in (on its own: there is no transaction to join). The
    /// attempted email is kept for investigators; the answer to the client never says
    /// which reason applied.
    async fn record_failed_login(
        &self,
        email: &str,
        user: Option<Uuid>,
        reason: &str,
    ) -> Result<(), ApiError> {
        let mut entry = Entry::new(
            actions::LOGIN_FAILED,
            "user",
            format!("failed sign-in as {email}"),
        )
        .metadata(json!({"email": email, "reason": reason}));
        if let Some(user) = user {
            entry = entry.entity(user);
        }
        let mut conn = self.db.conn().await?;
        record(&mut conn, entry).await?;
        Ok(())
    }

    pub(super) fn tokens(
        &self,
        user: Uuid,
        family: Uuid,
        refresh: RefreshToken,
    ) -> Result<Tokens, ApiError> {
        let access = self
            .authenticator
            .keys()
            .issue(user, family)
            .map_err(ApiError::internal)?;
        Ok(Tokens {
            access,
            refresh: refresh.token,
        })
    }
}

/// The row of a new refresh token in session `family` (new or continued), to store, and
/// the token to hand out.
fn new_session(
    user: Uuid,
    family: Uuid,
    started_at: chrono::DateTime<Utc>,
    ttl: Duration,
    device: Device,
) -> Result<(NewRefreshSession, RefreshToken), ApiError> {
    let refresh = RefreshToken::generate()?;
    let ttl = chrono::Duration::from_std(ttl).map_err(ApiError::internal)?;
    let row = NewRefreshSession {
        id: Uuid::now_v7(),
        family_id: family,
        user_id: user,
        token_hash: refresh.hash.clone(),
        started_at,
        expires_at: Utc::now() + ttl,
        user_agent: device.user_agent,
        ip: device.ip.map(|ip| ip.to_string()),
    };
    Ok((row, refresh))
}

/// A policy error on `field` as a 422.
pub(super) fn invalid(error: FieldError) -> ApiError {
    UserError::Invalid(error).into()
}
