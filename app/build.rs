//! Turns the feature list in Cargo.toml (the dependencies between `# features: begin`
//! and `# features: end`) into `features::All`, so a feature is added in one line.

use std::path::Path;

fn main() -> Result<(), String> {
    println!("cargo::rerun-if-changed=Cargo.toml");
    let manifest = std::fs::read_to_string("Cargo.toml")
        .map_err(|err| format!("cannot read app/Cargo.toml: {err}"))?;
    let crates = listed(&manifest)?;
    let out = std::env::var("OUT_DIR").map_err(|err| format!("OUT_DIR: {err}"))?;
    let members: Vec<String> = crates
        .iter()
        .map(|name| format!("    {}::Feature,\n", name.replace('-', "_")))
        .collect();
    let source = format!(
        "/// Every feature, in the order app/Cargo.toml lists them.\n\
         pub type All = (\n{});\n",
        members.concat()
    );
    std::fs::write(Path::new(&out).join("features.rs"), source)
        .map_err(|err| format!("cannot write the feature list: {err}"))
}

/// The crate names between the markers, in order.
fn listed(manifest: &str) -> Result<Vec<String>, String> {
    let mut lines = manifest.lines().map(str::trim);
    if !lines.any(|line| line == "# features: begin") {
        return Err("app/Cargo.toml has no `# features: begin` line".to_owned());
    }
    let mut crates = Vec::new();
    for line in lines {
        if line == "# features: end" {
            if crates.is_empty() {
                return Err("app/Cargo.toml lists no feature".to_owned());
            }
            return Ok(crates);
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line
            .split(['=', '.'])
            .next()
            .map(str::trim)
            .filter(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
            .ok_or_else(|| {
                format!("app/Cargo.toml: not a dependency line in the feature list: {line}")
            })?;
        crates.push(name.to_owned());
    }
    Err("app/Cargo.toml has no `# features: end` line".to_owned())
}
