//! Loading a principal from the database when the authenticator's cache misses.

use std::collections::BTreeSet;

use futures_util::future::BoxFuture;
use keel_core::ApiError;
use keel_core::auth::{AccessClaims, Principal, PrincipalSource};
use keel_core::crud::CrudBase;
use keel_core::db::Db;

use crate::crud::{access, sessions, users::UserCrud};

/// The database as the source of principals: the session must be live and the user
/// active; roles and permissions come from their tables.
#[derive(Debug, Clone)]
pub struct DbPrincipals {
    db: Db,
}

impl DbPrincipals {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    async fn load(&self, claims: &AccessClaims) -> Result<Option<Principal>, ApiError> {
        let mut conn = self.db.conn().await?;
        if !sessions::is_active(&mut conn, claims.sid, claims.sub).await? {
            return Ok(None);
        }
        let user = match UserCrud::get(&mut conn, claims.sub).await {
            Ok(user) if user.is_active => user,
            Ok(_) | Err(diesel::result::Error::NotFound) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let roles = access::roles_of(&mut conn, user.id).await?;
        let permissions = access::permissions_of(&mut conn, user.id).await?;
        Ok(Some(Principal {
            user_id: user.id,
            session_id: claims.sid,
            email: user.email,
            roles: roles.into_iter().map(|r| r.name).collect(),
            permissions: permissions.into_iter().collect::<BTreeSet<_>>(),
        }))
    }
}

impl PrincipalSource for DbPrincipals {
    fn load<'a>(
        &'a self,
        claims: &'a AccessClaims,
    ) -> BoxFuture<'a, Result<Option<Principal>, ApiError>> {
        Box::pin(self.load(claims))
    }
}
