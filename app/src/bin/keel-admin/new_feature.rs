//! `keel-admin new-feature`: the generator (`keel_app::scaffold`) with the checks that
//! need the running application's document, and rustfmt.

use std::path::{Path, PathBuf};

use keel_app::{api, scaffold};

use crate::BoxError;

/// `keel-admin new-feature`: generates, formats, and says what to do next.
pub async fn new_feature(
    name: &str,
    singular: Option<&str>,
    root: Option<PathBuf>,
    version: Option<String>,
) -> Result<(), BoxError> {
    let names = scaffold::Names::new(name, singular)?;
    // What the application serves today: the new names must not be in it.
    let document: serde_json::Value = serde_json::from_str(&api::spec().await?)?;
    names.check_against(&document)?;
    let root = match root {
        Some(root) => root,
        None => checkout_root()?,
    };
    let version =
        version.unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d-%H%M%S").to_string());
    let generated = scaffold::generate(&root, &names, &version)?;
    let sources: Vec<PathBuf> = ["src", "tests/it"]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(generated.crate_dir.join(dir))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    let formatted = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(&sources)
        .status();
    if !formatted.is_ok_and(|status| status.success()) {
        eprintln!("keel-admin: rustfmt did not run; format the new crate with `cargo fmt`");
    }
    let crate_name = names.crate_name();
    eprintln!(
        "keel-admin: created {} (singular {:?}: audit actions {}.created, …) and {}; \
         app/Cargo.toml lists it: {}",
        generated.crate_dir.display(),
        names.item,
        names.item,
        generated.migration_dir.display(),
        generated.line
    );
    eprintln!(
        "keel-admin: next: `cargo test -p {crate_name}`, then refresh the API snapshot with \
         `cargo run --bin keel-admin -- openapi --output openapi.json`"
    );
    Ok(())
}

/// The nearest directory at or above the current one holding app/Cargo.toml and
/// migrations/.
fn checkout_root() -> Result<PathBuf, BoxError> {
    let here = std::env::current_dir()?;
    here.ancestors()
        .find(|dir| dir.join("app/Cargo.toml").is_file() && dir.join("migrations").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "no keel checkout at or above {}: run from one or pass --root",
                here.display()
            )
            .into()
        })
}
