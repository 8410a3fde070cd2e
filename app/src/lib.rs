//! keel-app: the composition root. It lists the feature crates ([`features::All`]),
//! builds every process's context in one place ([`Root`]), mounts the features under
//! `/api/v1`, and holds the binaries (`keel-api`, `keel-worker`, `keel-admin`).
//!
//! Binaries are thin shells over [`Application`], so tests run the very same wiring.

pub mod api;
pub mod database;
pub mod features;
pub mod process;
pub mod root;
pub mod scaffold;
pub mod startup;

pub use root::Root;
pub use startup::{Application, StartError};
