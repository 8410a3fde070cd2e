//! The audit trail's hash chain: `activity verify`, `activity head`.

use std::io::Write;

use clap::Subcommand;
use keel_activity::ActivityService;
use keel_activity::chain::Verdict;
use keel_core::db::local::PrivateServer;
use keel_core::feature::Features;

use crate::BoxError;
use crate::composed::{Signed, describe, open, stop};

#[derive(Debug, Subcommand)]
pub enum ActivityCommand {
    /// Seal what is final, then walk the whole chain; exit 1 at the first broken link.
    Verify {
        /// A head printed earlier by `activity head` (SEQ:HASH); exit 1 unless it is
        /// still on the chain, which catches a rewrite by someone who could also
        /// recompute every seal (a database owner).
        #[arg(long, value_name = "SEQ:HASH")]
        since: Option<keel_activity::chain::Anchor>,
    },
    /// Seal what is final and print the chain's head as SEQ:HASH on stdout: keep it
    /// outside the database (a ticket, a log store, a printout) for `verify --since`.
    Head,
}

/// `keel-admin activity …`.
pub async fn run(command: ActivityCommand) -> Result<(), BoxError> {
    match command {
        ActivityCommand::Head => head().await,
        ActivityCommand::Verify { since } => verify(since).await,
    }
}

async fn head() -> Result<(), BoxError> {
    let (activity, server) = sealed_trail().await?;
    let anchor = activity.anchor().await.map_err(|e| describe(&e));
    let unsealed = activity.unsealed().await.map_err(|e| describe(&e));
    stop(server).await?;
    match anchor? {
        Some(anchor) => {
            // The head alone on stdout, for scripts to keep.
            writeln!(std::io::stdout().lock(), "{anchor}")?;
            let unsealed = unsealed?;
            if unsealed > 0 {
                eprintln!(
                    "keel-admin: {unsealed} entries are not sealed yet (a transaction \
                     still open, or the sealer held back): this head doesn't cover them"
                );
            }
            Ok(())
        }
        None => Err("the audit chain is empty: nothing is sealed yet".into()),
    }
}

async fn verify(since: Option<keel_activity::chain::Anchor>) -> Result<(), BoxError> {
    let (activity, server) = sealed_trail().await?;
    let verdict = match &since {
        Some(anchor) => activity.verify_since(anchor).await,
        None => activity.verify().await,
    }
    .map_err(|e| describe(&e));
    stop(server).await?;
    match verdict? {
        Verdict::Intact {
            sealed,
            head,
            unsealed,
        } => {
            let head = head.map_or_else(
                || "empty chain".to_owned(),
                |(position, hash)| format!("head {position} {hash}"),
            );
            let kept = since.map_or_else(String::new, |a| format!("; holds {a}"));
            eprintln!(
                "keel-admin: audit chain intact: {sealed} sealed entries, {head}; \
                 {unsealed} not sealed yet{kept}"
            );
            Ok(())
        }
        Verdict::Broken {
            position,
            entry_id,
            reason,
        } => {
            let entry = entry_id.map_or_else(String::new, |id| format!(" (entry {id})"));
            Err(format!("audit chain broken at seal {position}{entry}: {reason}").into())
        }
    }
}

/// The audit trail with everything final sealed, and the private server it runs on (if
/// keel started one), to stop when done.
async fn sealed_trail() -> Result<(ActivityService, Option<PrivateServer>), BoxError> {
    let (root, server) = open(Signed::AsRuntime).await?;
    let activity = root
        .features
        .get::<ActivityService>()
        .ok_or("keel-activity is not among the features (app/Cargo.toml)")?
        .clone();
    activity.seal_all().await.map_err(|e| describe(&e))?;
    Ok((activity, server))
}
