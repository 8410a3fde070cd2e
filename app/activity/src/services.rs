//! Reading the trail, and the chain's upkeep. Recording lives in [`crate::record`],
//! called by other features inside their own transactions.

use std::sync::Arc;

use keel_core::ApiError;
use keel_core::crud::{CursorKey, CursorParams, Cursored};
use keel_core::db::Db;

use crate::actions::{self, Action};
use crate::chain::{self, Sealer, Verdict};
use crate::crud;
use crate::models::{ActivityFilter, EntryRow};

/// keel-activity's service; cheap to clone.
#[derive(Debug, Clone)]
pub struct ActivityService {
    db: Db,
    /// The actions the application records: what the `action` filter accepts.
    actions: Arc<[&'static str]>,
}

impl ActivityService {
    /// Knows keel-activity's own actions; [`ActivityService::recording`] adds the rest.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            actions: actions::names(actions::ALL).into(),
        }
    }

    /// The same service, accepting `actions` (every feature's) in filters.
    pub fn recording(self, actions: &[&'static str]) -> Self {
        let mut known: Vec<&'static str> = self.actions.iter().chain(actions).copied().collect();
        known.sort_unstable();
        known.dedup();
        Self {
            actions: known.into(),
            ..self
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The declared action named `name`, or a 422 naming `field`.
    pub fn action(&self, field: &str, name: &str) -> Result<Action, ApiError> {
        self.actions
            .iter()
            .find(|&&known| known == name)
            .map(|&known| Action::new(known))
            .ok_or_else(|| ApiError::invalid(field, "not an action the audit trail records"))
    }

    /// Entries matching `filter`, newest first.
    pub async fn list(
        &self,
        filter: &ActivityFilter,
        page: CursorParams,
    ) -> Result<Cursored<EntryRow>, ApiError> {
        let mut conn = self.db.conn().await?;
        let rows = crud::list(&mut conn, filter, page).await?;
        let key = |row: &EntryRow| CursorKey {
            sort: row.occurred_at.timestamp_micros(),
            id: row.id,
        };
        Ok(page.page(rows, key))
    }

    /// Starts sealing in the background (see [`chain`]); stops when the guard drops.
    pub fn spawn_sealer(&self) -> Sealer {
        chain::spawn_sealer(self.db.clone())
    }

    /// Seals everything final now; returns how many entries.
    pub async fn seal_all(&self) -> Result<usize, ApiError> {
        chain::seal_all(&self.db).await
    }

    /// Walks the chain and reports the first broken link.
    pub async fn verify(&self) -> Result<Verdict, ApiError> {
        chain::verify(&self.db, None).await
    }

    /// [`ActivityService::verify`], and fails unless `anchor` (a head kept elsewhere)
    /// is still on the chain.
    pub async fn verify_since(&self, anchor: &chain::Anchor) -> Result<Verdict, ApiError> {
        chain::verify(&self.db, Some(anchor)).await
    }

    /// Entries a head taken now doesn't cover yet.
    pub async fn unsealed(&self) -> Result<i64, ApiError> {
        chain::unsealed(&self.db).await
    }

    /// The chain's head, to keep outside the database.
    pub async fn anchor(&self) -> Result<Option<chain::Anchor>, ApiError> {
        chain::anchor(&self.db).await
    }
}
