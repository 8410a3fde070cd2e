//! `/api/v1/auth`: register, login, refresh, logout, and the caller's own account.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use keel_core::ApiError;
use keel_core::auth::Auth;
use keel_core::http::json::{FormBody, JsonBody, OptionalJsonBody, SerdeJson};
use keel_core::http::problems::Problems;
use keel_core::problem_statuses;
use keel_core::request::RequestContext;
use poem::{Body, Request};
use poem_openapi::param::Path;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::{Done, UserTags};
use crate::models::{Profile, Tokens};
use crate::schemas::{
    Accepted, ChangePassword, Credentials, LogoutRequest, Me, PasswordGrant, RefreshRequest,
    RegisterRequest, SessionOut, TokenPair, UpdateMe,
};
use crate::services::{Device, UserService};

problem_statuses!(RegisterProblems = [400, 413, 415, 422, 429, 503]);
problem_statuses!(LoginProblems = [400, 401, 413, 415, 422, 429, 503]);
problem_statuses!(RefreshProblems = [400, 401, 413, 415, 422, 503]);
problem_statuses!(SignedInProblems = [401, 503]);
problem_statuses!(SignedInBodyProblems = [400, 401, 413, 415, 422, 503]);
problem_statuses!(PasswordProblems = [400, 401, 403, 409, 413, 415, 422, 503]);
problem_statuses!(SessionProblems = [400, 401, 404, 422, 503]);
problem_statuses!(AvatarProblems = [401, 413, 415, 503]);

/// The whole body, or 413 as soon as it passes `limit` bytes (without reading the rest).
async fn read_at_most(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_bytes_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| ApiError::BadRequest(format!("unreadable body: {err}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// Cache-Control for every response that carries tokens.
const NO_STORE: &str = "no-store";

#[derive(Debug, ApiResponse)]
enum RegisterResponse {
    /// Accepted: the account exists now, or already did. Sign in to continue.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

#[derive(Debug, ApiResponse)]
enum TokenResponse {
    /// A fresh access token and refresh token.
    #[oai(status = 200)]
    Ok(
        Json<TokenPair>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Pragma")] String,
    ),
}

impl TokenResponse {
    fn new(tokens: Tokens) -> Self {
        Self::Ok(
            Json(tokens.into()),
            NO_STORE.to_owned(),
            "no-cache".to_owned(),
        )
    }
}

#[derive(Debug, ApiResponse)]
enum MeResponse {
    #[oai(status = 200)]
    Ok(SerdeJson<Me>, #[oai(header = "Cache-Control")] String),
}

impl MeResponse {
    fn new(profile: Profile) -> Self {
        Self::Ok(SerdeJson(profile.into()), "private, no-store".to_owned())
    }
}

/// The `/api/v1/auth` operations.
#[derive(Debug, Clone)]
pub struct AuthApi {
    service: UserService,
}

impl AuthApi {
    pub fn new(service: UserService) -> Self {
        Self { service }
    }
}

#[OpenApi(prefix_path = "/auth", tag = "UserTags::Auth")]
impl AuthApi {
    /// Create an account
    ///
    /// Creates an account with the `user` role. The answer is the same whether or not
    /// the email already had an account, so this can't be used to probe for accounts;
    /// sign in to continue. Registrations per client are limited (429).
    #[oai(path = "/register", method = "post", operation_id = "auth_register")]
    async fn register(
        &self,
        body: JsonBody<RegisterRequest>,
    ) -> Result<RegisterResponse, Problems<RegisterProblems>> {
        let RegisterRequest {
            email,
            password,
            full_name,
        } = body.0;
        self.service
            .register(&email, password.into(), &full_name, &device())
            .await?;
        Ok(RegisterResponse::Accepted(Json(Accepted {
            detail: "Registration accepted; sign in with your email and password.".to_owned(),
        })))
    }

    /// Sign in
    ///
    /// Wrong email and wrong password get the same 401; repeated failures per account
    /// or per IP get 429.
    #[oai(path = "/login", method = "post", operation_id = "auth_login")]
    async fn login(
        &self,
        body: JsonBody<Credentials>,
    ) -> Result<TokenResponse, Problems<LoginProblems>> {
        let Credentials { email, password } = body.0;
        let pair = self.service.login(&email, password, device()).await?;
        Ok(TokenResponse::new(pair))
    }

    /// Sign in (OAuth2 token endpoint)
    ///
    /// The OAuth2 password grant (RFC 6749 §4.3) as a form, `username` being the email:
    /// what Swagger UI's Authorize dialog and OAuth2 libraries send. The same checks and
    /// limits as `POST /auth/login`.
    #[oai(path = "/token", method = "post", operation_id = "auth_token")]
    async fn token(
        &self,
        body: FormBody<PasswordGrant>,
    ) -> Result<TokenResponse, Problems<LoginProblems>> {
        let PasswordGrant {
            username, password, ..
        } = body.0;
        let pair = self.service.login(&username, password, device()).await?;
        Ok(TokenResponse::new(pair))
    }

    /// Rotate tokens
    ///
    /// Trades a refresh token for a new access and refresh token. Each refresh token
    /// works once: presenting one that was already used revokes its whole session.
    #[oai(path = "/refresh", method = "post", operation_id = "auth_refresh")]
    async fn refresh(
        &self,
        body: JsonBody<RefreshRequest>,
    ) -> Result<TokenResponse, Problems<RefreshProblems>> {
        let pair = self.service.refresh(&body.refresh_token, device()).await?;
        Ok(TokenResponse::new(pair))
    }

    /// Sign out
    ///
    /// Ends the session of the refresh token in the body, or, without a body, the session
    /// of the bearer access token. Its access tokens stop working at once.
    #[oai(path = "/logout", method = "post", operation_id = "auth_logout")]
    async fn logout(
        &self,
        req: &Request,
        body: OptionalJsonBody<LogoutRequest>,
    ) -> Result<Done, Problems<RefreshProblems>> {
        let refresh = body.0.and_then(|b| b.refresh_token);
        let caller = keel_core::auth::optional_caller(req).await?;
        self.service
            .logout(refresh.as_deref(), caller.as_deref())
            .await?;
        Ok(Done::NoContent)
    }

    /// Sign out everywhere
    ///
    /// Ends every session of the caller, this one included.
    #[oai(
        path = "/logout-all",
        method = "post",
        operation_id = "auth_logout_all"
    )]
    async fn logout_all(&self, auth: Auth) -> Result<Done, Problems<SignedInProblems>> {
        self.service.logout_all(&auth).await?;
        Ok(Done::NoContent)
    }

    /// The signed-in user
    #[oai(path = "/me", method = "get", operation_id = "auth_me")]
    async fn me(&self, auth: Auth) -> Result<MeResponse, Problems<SignedInProblems>> {
        Ok(MeResponse::new(self.service.me(&auth).await?))
    }

    /// Set own avatar
    ///
    /// The body is the image itself: PNG, JPEG, GIF or WebP, told apart by its bytes
    /// (the `Content-Type` header is ignored), at most `AVATAR_MAX_BYTES` (413 beyond,
    /// 415 for anything else). Replaces the previous avatar; the answer's `avatar_url`
    /// links to the new one for 15 minutes.
    #[oai(path = "/me/avatar", method = "put", operation_id = "auth_set_avatar")]
    async fn set_avatar(
        &self,
        auth: Auth,
        body: Binary<Body>,
    ) -> Result<MeResponse, Problems<AvatarProblems>> {
        let image = read_at_most(body.0, self.service.avatar_max_bytes()).await?;
        Ok(MeResponse::new(
            self.service.set_avatar(&auth, image).await?,
        ))
    }

    /// Remove own avatar
    #[oai(
        path = "/me/avatar",
        method = "delete",
        operation_id = "auth_delete_avatar"
    )]
    async fn delete_avatar(&self, auth: Auth) -> Result<Done, Problems<SignedInProblems>> {
        self.service.delete_avatar(&auth).await?;
        Ok(Done::NoContent)
    }

    /// Edit own profile
    #[oai(path = "/me", method = "patch", operation_id = "auth_update_me")]
    async fn update_me(
        &self,
        auth: Auth,
        body: JsonBody<UpdateMe>,
    ) -> Result<MeResponse, Problems<SignedInBodyProblems>> {
        let me = self
            .service
            .update_me(&auth, body.full_name.as_deref())
            .await?;
        Ok(MeResponse::new(me))
    }

    /// Change own password
    ///
    /// Needs the current password (403 if wrong). Every other session of the user ends;
    /// this one stays signed in.
    #[oai(
        path = "/me/password",
        method = "put",
        operation_id = "auth_change_password"
    )]
    async fn change_password(
        &self,
        auth: Auth,
        body: JsonBody<ChangePassword>,
    ) -> Result<Done, Problems<PasswordProblems>> {
        let ChangePassword {
            current_password,
            new_password,
        } = body.0;
        self.service
            .change_password(&auth, current_password, new_password.into())
            .await?;
        Ok(Done::NoContent)
    }

    /// Own active sessions
    ///
    /// One entry per signed-in device, newest first; `current` marks this one.
    #[oai(path = "/sessions", method = "get", operation_id = "auth_sessions")]
    async fn sessions(
        &self,
        auth: Auth,
    ) -> Result<Json<Vec<SessionOut>>, Problems<SignedInProblems>> {
        let sessions = self.service.my_sessions(&auth).await?;
        let current = auth.session_id;
        Ok(Json(
            sessions
                .into_iter()
                .map(|row| SessionOut::new(row, current))
                .collect(),
        ))
    }

    /// End one of own sessions
    #[oai(
        path = "/sessions/:id",
        method = "delete",
        operation_id = "auth_revoke_session"
    )]
    async fn revoke_session(
        &self,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Done, Problems<SessionProblems>> {
        self.service.revoke_my_session(&auth, id.0).await?;
        Ok(Done::NoContent)
    }
}

/// Where the request being served comes from (observe's request context).
fn device() -> Device {
    RequestContext::current()
        .map(|request| Device::from(&request))
        .unwrap_or_default()
}
