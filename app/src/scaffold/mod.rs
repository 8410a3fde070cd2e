//! `keel-admin new-feature NAME`: a complete feature crate in keel's layout (models,
//! schemas, crud, services, routes, permissions, audit actions, errors, an integration
//! test), its migration, and its one line in app/Cargo.toml. Nothing else changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The templates, by the path they are written to inside the new crate.
const CRATE_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("template/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("template/lib.rs.tmpl")),
    ("src/actions.rs", include_str!("template/actions.rs.tmpl")),
    ("src/crud.rs", include_str!("template/crud.rs.tmpl")),
    ("src/errors.rs", include_str!("template/errors.rs.tmpl")),
    ("src/models.rs", include_str!("template/models.rs.tmpl")),
    (
        "src/permissions.rs",
        include_str!("template/permissions.rs.tmpl"),
    ),
    ("src/routes.rs", include_str!("template/routes.rs.tmpl")),
    ("src/schemas.rs", include_str!("template/schemas.rs.tmpl")),
    ("src/services.rs", include_str!("template/services.rs.tmpl")),
    ("tests/it/main.rs", include_str!("template/test.rs.tmpl")),
];

const MIGRATION_FILES: &[(&str, &str)] = &[
    ("up.sql", include_str!("template/up.sql.tmpl")),
    ("down.sql", include_str!("template/down.sql.tmpl")),
];

const FEATURES_END: &str = "# features: end";

/// Names that would collide with a crate, a route keel already serves, a Rust keyword
/// (the table is a module) or a PostgreSQL reserved word (the table is unquoted).
const RESERVED: &[&str] = &[
    // keel's own crates, directories and routes
    "app",
    "core",
    "src",
    "tests",
    "user",
    "users",
    "activity",
    "release_notes",
    "auth",
    "admin",
    "tasks",
    "roles",
    "permissions",
    "health",
    "metrics",
    "docs",
    "storage",
    "keel",
    "migrations",
    // Rust keywords
    "as",
    "async",
    "await",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    // PostgreSQL reserved key words
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "end",
    "except",
    "fetch",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "union",
    "unique",
    "using",
    "variadic",
    "when",
    "window",
    "with",
];

/// Every spelling of a feature's name the templates use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `blog_posts`: directory, table, module, `Feature::NAME`, permission prefix.
    pub feature: String,
    /// `blog_post`: audit actions (`blog_post.created`) and the entity type.
    pub item: String,
}

impl Names {
    /// `feature` is the plural (`widgets`); the singular defaults to it without a final
    /// `s` (`ies` → `y`).
    pub fn new(feature: &str, singular: Option<&str>) -> Result<Self, String> {
        check_word("NAME", feature)?;
        let item = match singular {
            Some(item) => item.to_owned(),
            None => singular_of(feature),
        };
        check_word("--singular", &item)?;
        Ok(Self {
            feature: feature.to_owned(),
            item,
        })
    }

    pub fn kebab(&self) -> String {
        self.feature.replace('_', "-")
    }

    /// The crate's name, `keel-blog-posts`.
    pub fn crate_name(&self) -> String {
        format!("keel-{}", self.kebab())
    }

    fn values(&self) -> [(&'static str, String); 8] {
        [
            ("{{feature}}", self.feature.clone()),
            ("{{kebab}}", self.kebab()),
            ("{{item}}", self.item.clone()),
            ("{{ITEM}}", self.item.to_uppercase()),
            ("{{Items}}", camel(&self.feature)),
            ("{{Item}}", camel(&self.item)),
            ("{{items_text}}", self.feature.replace('_', " ")),
            ("{{item_text}}", self.item.replace('_', " ")),
        ]
    }

    /// `template` with every placeholder filled in.
    fn render(&self, template: &str) -> String {
        self.values()
            .iter()
            .fold(template.to_owned(), |text, (key, value)| {
                text.replace(key, value)
            })
    }
}

fn check_word(what: &str, word: &str) -> Result<(), String> {
    let parts_ok = word.split('_').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    let starts_ok = word.starts_with(|c: char| c.is_ascii_lowercase());
    if !(2..=40).contains(&word.len()) || !parts_ok || !starts_ok {
        return Err(format!(
            "{what} {word:?} must be 2 to 40 characters of lowercase words joined by `_` \
             (e.g. widgets, blog_posts)"
        ));
    }
    if RESERVED.contains(&word) {
        return Err(format!(
            "{what} {word:?} is taken (keel uses it, or it is a Rust or SQL keyword)"
        ));
    }
    Ok(())
}

fn singular_of(plural: &str) -> String {
    if let Some(stem) = plural.strip_suffix("ies") {
        format!("{stem}y")
    } else if plural.ends_with('s') && !plural.ends_with("ss") {
        plural[..plural.len() - 1].to_owned()
    } else {
        plural.to_owned()
    }
}

/// `blog_posts` → `BlogPosts`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// What [`generate`] wrote.
#[derive(Debug)]
pub struct Generated {
    pub crate_dir: PathBuf,
    pub migration_dir: PathBuf,
    /// The line added to app/Cargo.toml.
    pub line: String,
}

/// Writes the feature `names` into the checkout at `root`, with a migration versioned
/// `version` (`YYYY-MM-DD-HHMMSS`, after every existing one). Refuses, changing
/// nothing, when the name is taken anywhere (a crate, a listed feature, a migration or
/// a table); if writing fails midway, removes what it wrote.
pub fn generate(root: &Path, names: &Names, version: &str) -> Result<Generated, String> {
    check_version(version)?;
    let manifest_path = root.join("app/Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path).map_err(|err| {
        format!(
            "{} is not a keel checkout (cannot read app/Cargo.toml: {err}); run from the \
             checkout or pass --root",
            root.display()
        )
    })?;
    let line = format!(
        "{} = {{ path = \"{}\" }}",
        names.crate_name(),
        names.feature
    );
    let updated = with_feature_line(&manifest, &names.crate_name(), &line)?;
    let crate_dir = root.join("app").join(&names.feature);
    if crate_dir.exists() {
        return Err(format!("{} already exists", crate_dir.display()));
    }
    let migrations = root.join("migrations");
    check_migrations(&migrations, names, version)?;
    let migration_dir = migrations.join(format!("{version}_{}", names.feature));

    let written = write_files(&crate_dir, CRATE_FILES, names)
        .and_then(|()| write_files(&migration_dir, MIGRATION_FILES, names))
        .and_then(|()| write_atomically(&manifest_path, &updated));
    if let Err(err) = written {
        let _ = std::fs::remove_dir_all(&crate_dir);
        let _ = std::fs::remove_dir_all(&migration_dir);
        return Err(err);
    }
    Ok(Generated {
        crate_dir,
        migration_dir,
        line,
    })
}

fn check_version(version: &str) -> Result<(), String> {
    let shape_ok = version.len() == 17
        && version.char_indices().all(|(i, c)| match i {
            4 | 7 | 10 => c == '-',
            _ => c.is_ascii_digit(),
        });
    if shape_ok {
        Ok(())
    } else {
        Err(format!(
            "migration version {version:?} is not YYYY-MM-DD-HHMMSS"
        ))
    }
}

/// The manifest with `line` added last to the feature list.
fn with_feature_line(manifest: &str, crate_name: &str, line: &str) -> Result<String, String> {
    let listed = manifest
        .lines()
        .skip_while(|l| l.trim() != "# features: begin")
        .take_while(|l| l.trim() != FEATURES_END);
    if listed
        .clone()
        .any(|l| l.split(['=', '.']).next().map(str::trim) == Some(crate_name))
    {
        return Err(format!("app/Cargo.toml already lists {crate_name}"));
    }
    if listed.count() == 0 || !manifest.lines().any(|l| l.trim() == FEATURES_END) {
        return Err(
            "app/Cargo.toml has no feature list (`# features: begin` … `# features: end`)"
                .to_owned(),
        );
    }
    let mut updated = String::with_capacity(manifest.len() + line.len() + 1);
    for existing in manifest.lines() {
        if existing.trim() == FEATURES_END {
            let _ = writeln!(updated, "{line}");
        }
        let _ = writeln!(updated, "{existing}");
    }
    Ok(updated)
}

/// Refuses a name a migration already uses (for its directory or a table) and a
/// version that would not sort after every existing migration.
fn check_migrations(dir: &Path, names: &Names, version: &str) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
    let creates = format!("create table {} ", names.feature);
    for entry in entries {
        let entry = entry.map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(&format!("_{}", names.feature)) {
            return Err(format!("migrations/{name} already exists"));
        }
        let existing_version: String = name.chars().filter(char::is_ascii_digit).take(14).collect();
        let ours: String = version.chars().filter(char::is_ascii_digit).collect();
        if existing_version >= ours {
            return Err(format!(
                "migrations/{name} is dated at or after {version}: check the clock"
            ));
        }
        let up = std::fs::read_to_string(entry.path().join("up.sql")).unwrap_or_default();
        let up = up
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            + " ";
        if up.contains(&creates)
            || up.contains(&format!("create table if not exists {} ", names.feature))
        {
            return Err(format!(
                "migrations/{name} already creates a table named {}",
                names.feature
            ));
        }
    }
    Ok(())
}

fn write_files(dir: &Path, files: &[(&str, &str)], names: &Names) -> Result<(), String> {
    for (path, template) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| format!("cannot create {}: {err}", parent.display()))?;
        }
        std::fs::write(&path, names.render(template))
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    }
    Ok(())
}

fn write_atomically(path: &Path, contents: &str) -> Result<(), String> {
    let temporary = path.with_extension("toml.new");
    std::fs::write(&temporary, contents)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|err| format!("cannot update {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_every_way() {
        let names = Names::new("blog_posts", None).unwrap();
        assert_eq!(names.item, "blog_post");
        assert_eq!(names.crate_name(), "keel-blog-posts");
        let rendered = names.render("{{Items}} {{Item}} {{ITEM}} {{kebab}} {{item_text}}");
        assert_eq!(
            rendered,
            "BlogPosts BlogPost BLOG_POST blog-posts blog post"
        );
        assert_eq!(Names::new("categories", None).unwrap().item, "category");
        assert_eq!(Names::new("glass", None).unwrap().item, "glass");
        assert_eq!(Names::new("people", Some("person")).unwrap().item, "person");
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        for bad in [
            "", "x", "Widgets", "2fa", "a-b", "a__b", "_a", "a_", "wid gets", "user", "order",
            "type", "a\0b",
        ] {
            let err = Names::new(bad, None).unwrap_err();
            assert!(err.contains("NAME"), "{bad}: {err}");
        }
        assert!(Names::new("widgets", Some("Widget")).is_err());
    }

    #[test]
    fn migration_versions_are_dated() {
        assert!(check_version("2026-12-01-234500").is_ok());
        for bad in [
            "2026-12-01",
            "2026-12-01-23450x",
            "2026_12_01_234500",
            "../2026-12-01-2345",
        ] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let names = Names::new("widgets", None).unwrap();
        for (path, template) in CRATE_FILES.iter().chain(MIGRATION_FILES) {
            let rendered = names.render(template);
            assert!(!rendered.contains("{{"), "{path} keeps a placeholder");
        }
    }

    #[test]
    fn the_line_goes_last_in_the_list_and_only_once() {
        let manifest = "[dependencies]\n# features: begin\nkeel-user = { path = \"user\" }\n# features: end\nkeel-core.workspace = true\n";
        let updated = with_feature_line(
            manifest,
            "keel-widgets",
            "keel-widgets = { path = \"widgets\" }",
        )
        .unwrap();
        assert_eq!(
            updated,
            "[dependencies]\n# features: begin\nkeel-user = { path = \"user\" }\nkeel-widgets = { path = \"widgets\" }\n# features: end\nkeel-core.workspace = true\n"
        );
        assert!(with_feature_line(&updated, "keel-widgets", "x").is_err());
        assert!(with_feature_line("[dependencies]\n", "keel-widgets", "x").is_err());
    }
}
