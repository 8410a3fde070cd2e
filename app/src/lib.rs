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

/// Every process that links keel-app allocates through mimalloc: serving a request makes
/// and drops many small objects, which glibc's allocator served at about a sixth of
/// keel-api's CPU (`perf` on /api/v1/auth/me under `scripts/bench.sh`'s load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
