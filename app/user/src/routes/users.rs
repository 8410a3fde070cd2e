//! `/api/v1/users`: account administration, guarded by `users:*` permissions.

use keel_core::auth::Auth;
use keel_core::crud::{Page, PageParams, Sort, SortParam};
use keel_core::http::json::JsonBody;
use keel_core::http::problems::Problems;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::{
    CreateProblems, Done, EditProblems, ListProblems, ReadProblems, StateProblems, UserTags,
    strings,
};
use crate::models::{UserFilter, UserSort};
use crate::permissions::UserPermission;
use crate::schemas::{CreateUser, SetRoles, UpdateUser, UserOut};
use crate::services::{NewAccount, UserService};

#[derive(Debug, ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Created(Json<UserOut>),
}

/// The `/api/v1/users` operations.
#[derive(Debug, Clone)]
pub struct UsersApi {
    service: UserService,
}

impl UsersApi {
    pub fn new(service: UserService) -> Self {
        Self { service }
    }
}

#[OpenApi(prefix_path = "/users", tag = "UserTags::Users")]
impl UsersApi {
    /// List users
    ///
    /// Filters combine; `search` matches email or name (case-insensitive); `sort` is
    /// `email`, `full_name`, `created_at` or `last_login_at`, `-` for descending.
    #[oai(path = "/", method = "get", operation_id = "users_list")]
    #[expect(clippy::too_many_arguments, reason = "one parameter per query field")]
    async fn list(
        &self,
        #[oai(scope = "UserPermission::UsersRead")] _auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<
            Option<u32>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] size: Query<Option<u32>>,
        #[oai(validator(max_length = 200))] search: Query<Option<String>>,
        #[oai(validator(max_length = 63))] role: Query<Option<String>>,
        is_active: Query<Option<bool>>,
        sort: Query<Option<SortParam<UserSort>>>,
    ) -> Result<Json<Page<UserOut>>, Problems<ListProblems>> {
        let page = PageParams::new(page.0, size.0)?;
        let sort = SortParam::resolve(sort.0, Sort::asc(UserSort::CreatedAt))?;
        let filter = UserFilter {
            search: search.0,
            role: role.0,
            is_active: is_active.0,
        };
        let listed = self.service.list_users(filter, sort, page).await?;
        Ok(Json(Page::from(listed.map(UserOut::from))))
    }

    /// Get a user
    #[oai(path = "/:id", method = "get", operation_id = "users_get")]
    async fn get(
        &self,
        #[oai(scope = "UserPermission::UsersRead")] _auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Json<UserOut>, Problems<ReadProblems>> {
        Ok(Json(self.service.get_user(id.0).await?.into()))
    }

    /// Create a user
    ///
    /// Roles default to `user`; granting a role needs every permission it carries.
    #[oai(path = "/", method = "post", operation_id = "users_create")]
    async fn create(
        &self,
        #[oai(scope = "UserPermission::UsersWrite")] auth: Auth,
        body: JsonBody<CreateUser>,
    ) -> Result<Created, Problems<CreateProblems>> {
        let CreateUser { account, roles } = body.0;
        let account = NewAccount {
            email: account.email.0,
            password: account.password.into(),
            full_name: account.full_name.into(),
            roles: roles.map(strings),
        };
        let user = self.service.create_user(Some(&auth), account).await?;
        Ok(Created::Created(Json(user.into())))
    }

    /// Edit a user
    ///
    /// A new password ends every session of the user.
    ///
    /// Delegation: you act only on accounts whose every permission you hold, and only a
    /// superuser acts on a superuser (403, recorded as `user.action_refused`).
    #[oai(path = "/:id", method = "patch", operation_id = "users_update")]
    async fn update(
        &self,
        #[oai(scope = "UserPermission::UsersWrite")] auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<UpdateUser>,
    ) -> Result<Json<UserOut>, Problems<EditProblems>> {
        let UpdateUser {
            email,
            full_name,
            password,
        } = body.0;
        let user = self
            .service
            .update_user(
                &auth,
                id.0,
                email.as_deref(),
                full_name.as_deref(),
                password.map(String::from),
            )
            .await?;
        Ok(Json(user.into()))
    }

    /// Deactivate a user
    ///
    /// Ends every session at once. You can't deactivate yourself or the last active
    /// superuser (409).
    ///
    /// Delegation: you act only on accounts whose every permission you hold, and only a
    /// superuser acts on a superuser (403, recorded as `user.action_refused`).
    #[oai(
        path = "/:id/deactivate",
        method = "post",
        operation_id = "users_deactivate"
    )]
    async fn deactivate(
        &self,
        #[oai(scope = "UserPermission::UsersWrite")] auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Json<UserOut>, Problems<StateProblems>> {
        Ok(Json(
            self.service.deactivate_user(&auth, id.0).await?.into(),
        ))
    }

    /// Activate a user
    ///
    /// Delegation: you act only on accounts whose every permission you hold, and only a
    /// superuser acts on a superuser (403, recorded as `user.action_refused`).
    #[oai(
        path = "/:id/activate",
        method = "post",
        operation_id = "users_activate"
    )]
    async fn activate(
        &self,
        #[oai(scope = "UserPermission::UsersWrite")] auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Json<UserOut>, Problems<ReadProblems>> {
        Ok(Json(self.service.activate_user(&auth, id.0).await?.into()))
    }

    /// Set a user's roles
    ///
    /// Replaces the set. Adding a role needs every permission it grants (403); removing
    /// the superuser role from the last active superuser is refused (409).
    ///
    /// Delegation: you act only on accounts whose every permission you hold, and only a
    /// superuser acts on a superuser (403, recorded as `user.action_refused`).
    #[oai(path = "/:id/roles", method = "put", operation_id = "users_set_roles")]
    async fn set_roles(
        &self,
        #[oai(scope = "UserPermission::UsersWrite")] auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<SetRoles>,
    ) -> Result<Json<UserOut>, Problems<EditProblems>> {
        let user = self
            .service
            .set_user_roles(&auth, id.0, strings(body.0.roles))
            .await?;
        Ok(Json(user.into()))
    }

    /// Sign a user out everywhere
    ///
    /// Delegation: you act only on accounts whose every permission you hold, and only a
    /// superuser acts on a superuser (403, recorded as `user.action_refused`).
    #[oai(
        path = "/:id/sessions",
        method = "delete",
        operation_id = "users_force_logout"
    )]
    async fn force_logout(
        &self,
        #[oai(scope = "UserPermission::UsersWrite")] auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Done, Problems<ReadProblems>> {
        self.service.force_logout(&auth, id.0).await?;
        Ok(Done::NoContent)
    }
}
