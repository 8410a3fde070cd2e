//! keel-app: the composition root. It mounts the feature crates under `/api/v1`, wires
//! keel-core's infrastructure, and holds the binaries (`keel-api`, `keel-admin`).
//!
//! Binaries are thin shells over [`Application`], so tests run the very same wiring.

pub mod api;
pub mod database;
pub mod process;
pub mod startup;
pub mod tasks;

pub use startup::{Application, StartError};
