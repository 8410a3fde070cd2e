//! `/api/v1/roles` and `/api/v1/permissions`.

use keel_core::auth::Auth;
use keel_core::crud::{Page, PageParams, Sort, SortParam};
use keel_core::http::json::JsonBody;
use keel_core::http::problems::Problems;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::{
    CreateProblems, Done, EditProblems, GuardedProblems, ListProblems, ReadProblems, StateProblems,
    UserTags, strings,
};
use crate::models::{RoleFilter, RoleSort};
use crate::permissions::UserPermission;
use crate::schemas::{CreateRole, PermissionOut, RoleOut, SetPermissions, UpdateRole};
use crate::services::UserService;

#[derive(Debug, ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Created(Json<RoleOut>),
}

/// The `/api/v1/roles` operations.
#[derive(Debug, Clone)]
pub struct RolesApi {
    service: UserService,
}

impl RolesApi {
    pub fn new(service: UserService) -> Self {
        Self { service }
    }
}

#[OpenApi(prefix_path = "/roles", tag = "UserTags::Roles")]
impl RolesApi {
    /// List roles
    ///
    /// `search` matches the name; `sort` is `name` or `created_at` (`-` descending).
    #[oai(path = "/", method = "get", operation_id = "roles_list")]
    async fn list(
        &self,
        #[oai(scope = "UserPermission::RolesRead")] _auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<
            Option<u32>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] size: Query<Option<u32>>,
        #[oai(validator(max_length = 200))] search: Query<Option<String>>,
        sort: Query<Option<SortParam<RoleSort>>>,
    ) -> Result<Json<Page<RoleOut>>, Problems<ListProblems>> {
        let page = PageParams::new(page.0, size.0)?;
        let sort = SortParam::resolve(sort.0, Sort::asc(RoleSort::Name))?;
        let listed = self
            .service
            .list_roles(RoleFilter { search: search.0 }, sort, page)
            .await?;
        Ok(Json(Page::from(listed.map(RoleOut::from))))
    }

    /// Get a role
    #[oai(path = "/:id", method = "get", operation_id = "roles_get")]
    async fn get(
        &self,
        #[oai(scope = "UserPermission::RolesRead")] _auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Json<RoleOut>, Problems<ReadProblems>> {
        Ok(Json(self.service.get_role(id.0).await?.into()))
    }

    /// Create a role
    ///
    /// You can only put permissions you hold yourself into a role (403).
    #[oai(path = "/", method = "post", operation_id = "roles_create")]
    async fn create(
        &self,
        #[oai(scope = "UserPermission::RolesWrite")] auth: Auth,
        body: JsonBody<CreateRole>,
    ) -> Result<Created, Problems<CreateProblems>> {
        let CreateRole {
            name,
            description,
            permissions,
        } = body.0;
        let role = self
            .service
            .create_role(&auth, &name, description, strings(permissions))
            .await?;
        Ok(Created::Created(Json(role.into())))
    }

    /// Edit a role
    ///
    /// System roles (`superuser`, `user`) can't be renamed (409).
    #[oai(path = "/:id", method = "patch", operation_id = "roles_update")]
    async fn update(
        &self,
        #[oai(scope = "UserPermission::RolesWrite")] auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<UpdateRole>,
    ) -> Result<Json<RoleOut>, Problems<EditProblems>> {
        let UpdateRole { name, description } = body.0;
        let role = self
            .service
            .update_role(&auth, id.0, name.as_deref(), description)
            .await?;
        Ok(Json(role.into()))
    }

    /// Delete a role
    ///
    /// Its holders lose its permissions at once. System roles can't be deleted (409).
    #[oai(path = "/:id", method = "delete", operation_id = "roles_delete")]
    async fn delete(
        &self,
        #[oai(scope = "UserPermission::RolesWrite")] auth: Auth,
        id: Path<Uuid>,
    ) -> Result<Done, Problems<StateProblems>> {
        self.service.delete_role(&auth, id.0).await?;
        Ok(Done::NoContent)
    }

    /// Set a role's permissions
    ///
    /// Replaces the set; applies to every holder on their next request. Adding a
    /// permission you don't hold is 403; the superuser role always holds all (409).
    #[oai(
        path = "/:id/permissions",
        method = "put",
        operation_id = "roles_set_permissions"
    )]
    async fn set_permissions(
        &self,
        #[oai(scope = "UserPermission::RolesWrite")] auth: Auth,
        id: Path<Uuid>,
        body: JsonBody<SetPermissions>,
    ) -> Result<Json<RoleOut>, Problems<EditProblems>> {
        let role = self
            .service
            .set_role_permissions(&auth, id.0, strings(body.0.permissions))
            .await?;
        Ok(Json(role.into()))
    }
}

/// The `/api/v1/permissions` operation.
#[derive(Debug, Clone)]
pub struct PermissionsApi {
    service: UserService,
}

impl PermissionsApi {
    pub fn new(service: UserService) -> Self {
        Self { service }
    }
}

#[OpenApi(prefix_path = "/permissions", tag = "UserTags::Roles")]
impl PermissionsApi {
    /// List permissions
    ///
    /// Read-only: each feature declares its permissions in code and start-up seeds them.
    #[oai(path = "/", method = "get", operation_id = "permissions_list")]
    async fn list(
        &self,
        #[oai(scope = "UserPermission::PermissionsRead")] _auth: Auth,
    ) -> Result<Json<Vec<PermissionOut>>, Problems<GuardedProblems>> {
        let all = self.service.list_permissions().await?;
        Ok(Json(all.into_iter().map(PermissionOut::from).collect()))
    }
}
