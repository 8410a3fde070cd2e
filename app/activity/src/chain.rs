//! Tamper evidence: seals chain committed entries, and verification walks the chain.
//!
//! Entries carry the id of the transaction that wrote them. No entry can appear below
//! the oldest transaction of this database still running (the frontier), so the sealer
//! seals everything below it in `(tx_id, id)` order: seal N holds
//! `SHA-256(domain ‖ N ‖ seal N-1 ‖ digest(entry))`. Business transactions never wait
//! on it; an entry is sealed within a round or two after every transaction older than
//! it has ended. Changing or removing a sealed entry (or seal) breaks its link and every
//! later one; verification recomputes each link from the raw columns, trusting no code
//! in the database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_core::ApiError;
use keel_core::db::{Db, fixed};
use keel_core::hex;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Entries sealed per transaction.
const BATCH: i64 = 1000;
/// How often the sealer looks for entries to seal.
pub const SEAL_INTERVAL: Duration = Duration::from_secs(1);
/// Advisory lock key: one sealer at a time across every replica.
const SEALER_LOCK: i64 = 0x6b65_656c_5345_414c; // "keelSEAL"
/// Mixed into every link, so a hash from another context can't be replayed here.
const DOMAIN: &[u8] = b"keel-activity-chain-v1";

/// An entry's columns exactly as stored, the input of its digest.
#[derive(Debug, QueryableByName)]
struct Sealable {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    tx_id: i64,
    #[diesel(sql_type = Timestamptz)]
    occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    actor_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    actor_email: Option<String>,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Text)]
    entity_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    entity_id: Option<String>,
    #[diesel(sql_type = Text)]
    summary: String,
    /// `metadata::text`: PostgreSQL's canonical form of the JSONB value.
    #[diesel(sql_type = Text)]
    metadata: String,
    #[diesel(sql_type = Nullable<Text>)]
    request_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ip: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    user_agent: Option<String>,
}

/// The oldest transaction that might still add an entry: the lowest one in progress,
/// ignoring those that a backend of another database is running (they can't write
/// here), or the snapshot's horizon when none is. Entries below it are final. A
/// long-running writing transaction in this database holds sealing back.
const FRONTIER: &str = "WITH snap AS (SELECT pg_current_snapshot() AS s), \
     elsewhere AS (SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity \
                   WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()), \
     frontier AS (SELECT coalesce( \
         (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x \
          WHERE (x::text::bigint & 4294967295) NOT IN (SELECT xid FROM elsewhere)), \
         (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap)) AS xid)";

const ENTRY_COLUMNS: &str = "e.id, e.tx_id, e.occurred_at, e.actor_id, e.actor_email, e.action, \
     e.entity_type, e.entity_id, e.summary, e.metadata::text AS metadata, e.request_id, e.ip, \
     e.user_agent";

impl Sealable {
    /// SHA-256 over every column, each length-prefixed so no two rows encode alike.
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |value: Option<&[u8]>| match value {
            Some(bytes) => {
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(bytes);
            }
            None => h.update(u64::MAX.to_be_bytes()),
        };
        field(Some(&self.id.to_be_bytes()));
        field(Some(&self.tx_id.to_be_bytes()));
        field(Some(&self.occurred_at.timestamp_micros().to_be_bytes()));
        field(self.actor_id.as_ref().map(|id| id.as_bytes().as_slice()));
        field(self.actor_email.as_deref().map(str::as_bytes));
        field(Some(self.action.as_bytes()));
        field(Some(self.entity_type.as_bytes()));
        field(self.entity_id.as_deref().map(str::as_bytes));
        field(Some(self.summary.as_bytes()));
        field(Some(self.metadata.as_bytes()));
        field(self.request_id.as_deref().map(str::as_bytes));
        field(self.ip.as_deref().map(str::as_bytes));
        field(self.user_agent.as_deref().map(str::as_bytes));
        h.finalize().into()
    }
}

/// Seal `position`: it covers the entry and, through `previous`, all before it.
fn link(position: i64, previous: &[u8], entry: &Sealable) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(position.to_be_bytes());
    h.update(previous);
    h.update(entry.digest());
    h.finalize().into()
}

/// The hash before the first seal.
const GENESIS: [u8; 32] = [0; 32];

#[derive(Debug, QueryableByName)]
struct Head {
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = Bytea)]
    hash: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    tx_id: i64,
    #[diesel(sql_type = BigInt)]
    entry_id: i64,
}

/// The last seal and the entry it covers.
async fn head(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Option<Head>> {
    fixed(
        "SELECT s.position, s.hash, e.tx_id, e.id AS entry_id \
         FROM activity_seals s JOIN activity_entries e ON e.id = s.entry_id \
         ORDER BY s.position DESC LIMIT 1",
    )
    .get_result(conn)
    .await
    .optional()
}

#[derive(Debug, QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Seals up to [`BATCH`] final entries; returns how many (0 when another sealer holds
/// the lock or nothing is final yet).
pub async fn seal_batch(conn: &mut AsyncPgConnection) -> Result<usize, ApiError> {
    // A transaction of its own, not `Db::transaction`: seals are read by no cache, so
    // there is nothing for this replica's caches to drop.
    let sealed = conn
        .transaction(async |conn| {
            let Locked { locked } = fixed("SELECT pg_try_advisory_xact_lock($1) AS locked")
                .bind::<BigInt, _>(SEALER_LOCK)
                .get_result(conn)
                .await?;
            if !locked {
                return Ok::<_, diesel::result::Error>(0);
            }
            let head = head(conn).await?;
            let (mut position, mut previous, after) = match &head {
                Some(h) => (h.position, h.hash.clone(), (h.tx_id, h.entry_id)),
                None => (0, GENESIS.to_vec(), (i64::MIN, i64::MIN)),
            };
            // One statement, one snapshot: every entry below the frontier is committed
            // and visible, or will never exist.
            let entries: Vec<Sealable> = diesel::sql_query(format!(
                "{FRONTIER} SELECT {ENTRY_COLUMNS} FROM activity_entries e, frontier f \
                 WHERE (e.tx_id, e.id) > ($1, $2) AND e.tx_id < f.xid \
                 ORDER BY e.tx_id, e.id LIMIT $3"
            ))
            .bind::<BigInt, _>(after.0)
            .bind::<BigInt, _>(after.1)
            .bind::<BigInt, _>(BATCH)
            .load(conn)
            .await?;
            if entries.is_empty() {
                return Ok(0);
            }
            let mut positions = Vec::with_capacity(entries.len());
            let mut ids = Vec::with_capacity(entries.len());
            let mut hashes = Vec::with_capacity(entries.len());
            for entry in &entries {
                position += 1;
                let hash = link(position, &previous, entry);
                positions.push(position);
                ids.push(entry.id);
                hashes.push(hash.to_vec());
                previous = hash.to_vec();
            }
            fixed(
                "INSERT INTO activity_seals (position, entry_id, hash) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])",
            )
            .bind::<diesel::sql_types::Array<BigInt>, _>(&positions)
            .bind::<diesel::sql_types::Array<BigInt>, _>(&ids)
            .bind::<diesel::sql_types::Array<Bytea>, _>(&hashes)
            .execute(conn)
            .await?;
            tracing::info!(
                sealed = entries.len(),
                head_position = position,
                head_hash = %hex::encode(&previous),
                "sealed audit entries"
            );
            Ok(entries.len())
        })
        .await?;
    Ok(sealed)
}

/// Seals everything final now, batch after batch.
pub async fn seal_all(db: &Db) -> Result<usize, ApiError> {
    let mut conn = db.conn().await?;
    let mut total = 0;
    loop {
        let sealed = seal_batch(&mut conn).await?;
        total += sealed;
        if sealed < BATCH as usize {
            return Ok(total);
        }
    }
}

/// Runs [`seal_all`] every [`SEAL_INTERVAL`] until the guard is dropped. Any number of
/// replicas may run one; the advisory lock lets one seal at a time.
pub fn spawn_sealer(db: Db) -> Sealer {
    Sealer(tokio::spawn(async move {
        let mut tick = tokio::time::interval(SEAL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = seal_all(&db).await {
                tracing::warn!(error = %err, "sealing audit entries failed; retrying");
            }
        }
    }))
}

/// Stops the sealer when dropped.
#[derive(Debug)]
pub struct Sealer(JoinHandle<()>);

impl Drop for Sealer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every seal matches; `head` is the last (position, hash), to compare with a copy
    /// kept elsewhere (the sealer logs it), which is what catches a cut-off tail.
    Intact {
        sealed: i64,
        head: Option<(i64, String)>,
        /// Entries not sealed yet (written within the last moments, or behind a
        /// long-running transaction).
        unsealed: i64,
    },
    /// The first broken link.
    Broken {
        position: i64,
        entry_id: Option<i64>,
        reason: String,
    },
}

#[derive(Debug, QueryableByName)]
struct SealedRow {
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = BigInt)]
    seal_entry_id: i64,
    #[diesel(sql_type = Bytea)]
    hash: Vec<u8>,
    #[diesel(embed)]
    entry: Option<Sealable>,
}

#[derive(Debug, QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(Debug, QueryableByName)]
struct Stray {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// A chain head kept outside the database (`keel-admin activity head` prints it as
/// `SEQ:HASH`). Anyone able to rewrite the tables — a database owner — could also
/// recompute every seal, since the hashes are unkeyed; a head kept elsewhere can't be
/// recomputed, so checking that it is still on the chain catches the rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub position: i64,
    /// Lowercase hex, as printed.
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not SEQ:HASH (a seal position and 64 hex digits)");
        let (position, hash) = text.split_once(':').ok_or_else(invalid)?;
        let position: i64 = position.parse().map_err(|_| invalid())?;
        let hash = hash.to_ascii_lowercase();
        if position < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        Ok(Self { position, hash })
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.position, self.hash)
    }
}

async fn count_unsealed(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    let Count { count } = fixed(
        "SELECT count(*) AS count FROM activity_entries e \
         WHERE NOT EXISTS (SELECT 1 FROM activity_seals s WHERE s.entry_id = e.id)",
    )
    .get_result(conn)
    .await?;
    Ok(count)
}

/// Entries not sealed yet: a head taken now doesn't cover them.
pub async fn unsealed(db: &Db) -> Result<i64, ApiError> {
    Ok(count_unsealed(&mut *db.conn().await?).await?)
}

/// The last seal as an [`Anchor`] to keep elsewhere; `None` while nothing is sealed.
pub async fn anchor(db: &Db) -> Result<Option<Anchor>, ApiError> {
    let mut conn = db.conn().await?;
    Ok(head(&mut conn).await?.map(|h| Anchor {
        position: h.position,
        hash: hex::encode(&h.hash),
    }))
}

/// Walks the whole chain from the first seal and reports the first broken link; with
/// `since`, also that the kept head is still on it.
pub async fn verify(db: &Db, since: Option<&Anchor>) -> Result<Verdict, ApiError> {
    let mut conn = db.conn().await?;
    let mut previous = GENESIS.to_vec();
    let mut expected = 1_i64;
    loop {
        let rows: Vec<SealedRow> = diesel::sql_query(format!(
            "SELECT s.position, s.entry_id AS seal_entry_id, s.hash, {ENTRY_COLUMNS} \
             FROM activity_seals s LEFT JOIN activity_entries e ON e.id = s.entry_id \
             WHERE s.position >= $1 ORDER BY s.position LIMIT $2"
        ))
        .bind::<BigInt, _>(expected)
        .bind::<BigInt, _>(BATCH)
        .load(&mut conn)
        .await?;
        let complete = rows.len() < BATCH as usize;
        for row in &rows {
            let broken = |reason: &str| Verdict::Broken {
                position: row.position,
                entry_id: Some(row.seal_entry_id),
                reason: reason.to_owned(),
            };
            if row.position != expected {
                return Ok(Verdict::Broken {
                    position: expected,
                    entry_id: None,
                    reason: format!("seal {expected} is missing"),
                });
            }
            let Some(entry) = &row.entry else {
                return Ok(broken("the sealed entry is missing"));
            };
            if entry.id != row.seal_entry_id {
                return Ok(broken("the seal points at another entry"));
            }
            let hash = link(row.position, &previous, entry);
            if hash.as_slice() != row.hash.as_slice() {
                return Ok(broken(
                    "the entry or its seal was changed after sealing (hash mismatch)",
                ));
            }
            if since.is_some_and(|a| a.position == row.position && a.hash != hex::encode(&row.hash))
            {
                return Ok(broken(
                    "the kept head is no longer on the chain: the trail was rewritten and \
                     its seals recomputed",
                ));
            }
            previous = row.hash.clone();
            expected += 1;
        }
        if complete {
            break;
        }
    }
    let sealed = expected - 1;
    if let Some(anchor) = since.filter(|a| a.position > sealed) {
        return Ok(Verdict::Broken {
            position: anchor.position,
            entry_id: None,
            reason: format!(
                "the chain ends at seal {sealed}, before the kept head: sealed entries were \
                 removed"
            ),
        });
    }
    let head = head(&mut conn).await?;
    // An entry slipped in below the sealed frontier was never sealed: inserted with
    // the triggers off and a forged transaction id.
    if let Some(h) = &head {
        let stray: Option<Stray> = fixed(
            "SELECT e.id FROM activity_entries e \
             WHERE (e.tx_id, e.id) < ($1, $2) \
               AND NOT EXISTS (SELECT 1 FROM activity_seals s WHERE s.entry_id = e.id) \
             ORDER BY e.id LIMIT 1",
        )
        .bind::<BigInt, _>(h.tx_id)
        .bind::<BigInt, _>(h.entry_id)
        .get_result(&mut conn)
        .await
        .optional()?;
        if let Some(stray) = stray {
            return Ok(Verdict::Broken {
                position: h.position,
                entry_id: Some(stray.id),
                reason: "an unsealed entry sits inside the sealed part of the trail".to_owned(),
            });
        }
    }
    let unsealed = count_unsealed(&mut conn).await?;
    Ok(Verdict::Intact {
        sealed,
        head: head.map(|h| (h.position, hex::encode(&h.hash))),
        unsealed,
    })
}
