//! `keel-admin new-feature NAME`: a complete feature crate in keel's layout (models,
//! schemas, crud, services, routes, permissions, audit actions, errors, an integration
//! test), its migration, and its one line in app/Cargo.toml. Nothing else changes.

use std::path::{Path, PathBuf};

use keel_core::http::versioned::PREFIX;

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

/// Names a feature (its directory, table, module and crate) can't take: keel's own
/// crates, directories and routes; crates the generated code imports; the table's
/// columns; Rust keywords; PostgreSQL key words that can't name a table unquoted.
const RESERVED: &[&str] = &[
    // keel's crates, directories and routes
    "app",
    "core",
    "src",
    "tests",
    "testkit",
    "target",
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
    "scripts",
    "docker",
    "deploy",
    // crates the generated code names
    "alloc",
    "std",
    "chrono",
    "diesel",
    "diesel_async",
    "futures_util",
    "keel_activity",
    "keel_core",
    "keel_testkit",
    "keel_user",
    "poem",
    "poem_openapi",
    "reqwest",
    "serde",
    "serde_json",
    "thiserror",
    "tokio",
    "uuid",
    // the generated table's columns
    "id",
    "name",
    "description",
    "created_at",
    "updated_at",
    // Rust keywords, reserved ones included
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
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
    "override",
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
    // PostgreSQL key words reserved, or reserved except as function or type names
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "end",
    "except",
    "fetch",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "union",
    "unique",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// What the generated files import or define by name: a type derived from the feature's
/// name must not be one of them.
const TAKEN_TYPES: &[&str] = &[
    "Action",
    "Actor",
    "Answer",
    "ApiError",
    "ApiResponse",
    "Auth",
    "Context",
    "Created",
    "CrudBase",
    "DateTime",
    "Db",
    "Done",
    "Entry",
    "Feature",
    "FeatureApp",
    "FromStr",
    "Json",
    "JsonBody",
    "Listed",
    "Object",
    "OpenApi",
    "OAuthScopes",
    "Page",
    "PageParams",
    "Path",
    "Pg",
    "Principal",
    "Problems",
    "Query",
    "Registry",
    "Sort",
    "SortKey",
    "SortParam",
    "StatusCode",
    "Tags",
    "Under",
    "Utc",
    "Uuid",
    "Value",
];

/// A tuple of features has at most this many (keel-core implements `Features` up to it).
pub const MAX_FEATURES: usize = 15;

/// Every spelling of a feature's name the templates use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `blog_posts`: directory, table, module, `Feature::NAME`, permission prefix.
    pub feature: String,
    /// `blog_post`: audit actions (`blog_post.created`) and the entity type.
    pub item: String,
}

impl Names {
    /// `feature` is the plural (`widgets`); the singular defaults to it without its `s`
    /// (`categories` → `category`, `addresses` → `address`, `boxes` → `box`).
    pub fn new(feature: &str, singular: Option<&str>) -> Result<Self, String> {
        check_word("NAME", feature)?;
        if RESERVED.contains(&feature) {
            return Err(format!(
                "NAME {feature:?} is taken (keel uses it, the generated code imports it, or \
                 it is a Rust or SQL keyword)"
            ));
        }
        let item = singular.map_or_else(|| singular_of(feature), str::to_owned);
        check_word("--singular", &item)?;
        let names = Self {
            feature: feature.to_owned(),
            item,
        };
        let types = names.types();
        if let Some(taken) = types.iter().find(|t| TAKEN_TYPES.contains(&t.as_str())) {
            return Err(format!(
                "NAME {feature:?} with singular {:?} would name a type {taken}, which the \
                 generated code already uses; pick another (or pass --singular)",
                names.item
            ));
        }
        Ok(names)
    }

    pub fn kebab(&self) -> String {
        self.feature.replace('_', "-")
    }

    /// The crate's name, `keel-blog-posts`.
    pub fn crate_name(&self) -> String {
        format!("keel-{}", self.kebab())
    }

    /// The types the templates define from the name.
    fn types(&self) -> Vec<String> {
        let (item, items) = (camel(&self.item), camel(&self.feature));
        let mut types: Vec<String> = [
            "", "Changes", "Sort", "Crud", "Filter", "Service", "Error", "Out",
        ]
        .iter()
        .map(|suffix| format!("{item}{suffix}"))
        .collect();
        types.extend(
            ["New", "Create", "Update"]
                .iter()
                .map(|p| format!("{p}{item}")),
        );
        types.extend(
            ["Api", "Permission", "Tags"]
                .iter()
                .map(|s| format!("{items}{s}")),
        );
        types
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

    /// Refuses a name the application already uses in its published document (a path,
    /// an operation, a schema, a permission or an audit action): poem-openapi refuses
    /// two schemas of one name at start, and the rest would be ambiguous.
    pub fn check_against(&self, document: &serde_json::Value) -> Result<(), String> {
        let taken = |what: &str, name: &str| {
            Err(format!(
                "{what} {name} already exists in the API; pick another NAME (or --singular)"
            ))
        };
        let prefix = format!("{PREFIX}/{}", self.kebab());
        let paths = document["paths"].as_object().into_iter().flatten();
        for (path, item) in paths {
            if path == &prefix || path.starts_with(&format!("{prefix}/")) {
                return taken("the path", path);
            }
            let operations = item.as_object().into_iter().flatten();
            for (_, operation) in operations {
                let id = operation["operationId"].as_str().unwrap_or_default();
                if id
                    .strip_prefix(&self.feature)
                    .is_some_and(|rest| rest.starts_with('_'))
                {
                    return taken("the operation", id);
                }
            }
        }
        let schemas = document["components"]["schemas"].as_object();
        for name in self.types() {
            if schemas.is_some_and(|s| s.contains_key(&name)) {
                return taken("the schema", &name);
            }
        }
        let scopes =
            &document["components"]["securitySchemes"]["OAuth2"]["flows"]["password"]["scopes"];
        for code in ["read", "write"].map(|verb| format!("{}:{verb}", self.feature)) {
            if scopes.get(&code).is_some() {
                return taken("the permission", &code);
            }
        }
        let noun = format!("{}.", self.item);
        let actions = document["paths"][format!("{PREFIX}/activity")]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "action")
            .flat_map(|p| p["schema"]["enum"].as_array().into_iter().flatten())
            .filter_map(serde_json::Value::as_str);
        for action in actions {
            if action.starts_with(&noun) {
                return taken("the audit action", action);
            }
        }
        Ok(())
    }
}

/// Lowercase letters in words joined by single `_`, 2 to 40 long. No digits: audit
/// actions and entity types are letters and `_` only (the trail's CHECK constraints).
fn check_word(what: &str, word: &str) -> Result<(), String> {
    let parts_ok = word
        .split('_')
        .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase()));
    if !(2..=40).contains(&word.len()) || !parts_ok {
        return Err(format!(
            "{what} {word:?} must be 2 to 40 lowercase letters, words joined by `_` \
             (e.g. widgets, blog_posts)"
        ));
    }
    if word == "self" {
        return Err(format!("{what} {word:?} is a Rust keyword"));
    }
    Ok(())
}

/// The English singular, for the common endings; `--singular` is there for the rest.
fn singular_of(plural: &str) -> String {
    let strip = |suffix: &str, with: &str| {
        plural
            .strip_suffix(suffix)
            .map(|stem| format!("{stem}{with}"))
    };
    // Only endings that are never wrong: `houses` and `caches` rule out more.
    strip("ies", "y")
        .or_else(|| strip("sses", "ss"))
        .or_else(|| strip("xes", "x"))
        .or_else(|| (!plural.ends_with("ss")).then(|| strip("s", "")).flatten())
        .filter(|singular| singular.len() >= 2)
        .unwrap_or_else(|| plural.to_owned())
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

/// The manifest with `line` added last to the feature list (before the first end
/// marker after the begin marker), its line endings kept.
fn with_feature_line(manifest: &str, crate_name: &str, line: &str) -> Result<String, String> {
    let lines: Vec<&str> = manifest.split_inclusive('\n').collect();
    let begin = lines.iter().position(|l| l.trim() == "# features: begin");
    let end = begin.and_then(|b| {
        lines[b..]
            .iter()
            .position(|l| l.trim() == FEATURES_END)
            .map(|e| b + e)
    });
    let (Some(begin), Some(end)) = (begin, end) else {
        return Err(
            "app/Cargo.toml has no feature list (`# features: begin` … `# features: end`)"
                .to_owned(),
        );
    };
    let listed: Vec<&str> = lines[begin + 1..end]
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if listed.len() >= MAX_FEATURES {
        return Err(format!(
            "app/Cargo.toml already lists {MAX_FEATURES} features, the most one list holds; \
             merge some, or split the application"
        ));
    }
    if listed
        .iter()
        .any(|l| l.split(['=', '.']).next().map(str::trim) == Some(crate_name))
    {
        return Err(format!("app/Cargo.toml already lists {crate_name}"));
    }
    let newline = if manifest.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut updated = lines[..end].concat();
    updated.push_str(line);
    updated.push_str(newline);
    updated.push_str(&lines[end..].concat());
    Ok(updated)
}

/// Refuses a name a migration already uses (for its directory, or for a table, view,
/// sequence, index or type it creates or renames to) and a version that would not sort
/// after every existing migration.
fn check_migrations(dir: &Path, names: &Names, version: &str) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
    let ours: String = version.chars().filter(char::is_ascii_digit).collect();
    let name = regex::escape(&names.feature);
    let creates = regex::Regex::new(&format!(
        r#"(?:(?:table|view|sequence|index|type)\s+(?:if\s+not\s+exists\s+)?|rename\s+to\s+)(?:"?public"?\.)?"?{name}"?(?:[^a-z0-9_]|$)"#
    ))
    .map_err(|err| err.to_string())?;
    let folded = keel_core::db::migrate::FOLDED
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    if ours.as_str() <= folded {
        return Err(format!(
            "{version} is not after {folded}, the last version folded into keel's own \
             migrations (databases migrated before record it): pass a later --migration-version"
        ));
    }
    for entry in entries {
        let entry = entry.map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let (existing_version, what) = file_name.split_once('_').unwrap_or((&file_name, ""));
        if what == names.feature {
            return Err(format!("migrations/{file_name} already exists"));
        }
        let existing_version: String = existing_version
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if !existing_version.is_empty() && existing_version >= ours {
            return Err(format!(
                "migrations/{file_name} is dated at or after {version}: check the clock, or \
                 pass a later --migration-version"
            ));
        }
        let up = std::fs::read_to_string(entry.path().join("up.sql")).unwrap_or_default();
        if creates.is_match(&up.to_lowercase()) {
            return Err(format!(
                "migrations/{file_name} already makes a table or another relation named {}",
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
        for (plural, singular) in [
            ("categories", "category"),
            ("addresses", "address"),
            ("boxes", "box"),
            ("houses", "house"),
            ("caches", "cache"),
            ("glass", "glass"),
        ] {
            assert_eq!(Names::new(plural, None).unwrap().item, singular, "{plural}");
        }
        assert_eq!(Names::new("people", Some("person")).unwrap().item, "person");
        // The singular is never a table: an SQL key word is fine there.
        assert_eq!(Names::new("orders", None).unwrap().item, "order");
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        for bad in [
            "", "x", "Widgets", "2fa", "a-b", "a__b", "_a", "a_", "wid gets", "user", "order",
            "type", "a\0b", "testkit", "uuid", "name", "verbose", "final",
        ] {
            let err = Names::new(bad, None).unwrap_err();
            assert!(err.contains("NAME"), "{bad}: {err}");
        }
        // Digits break the audit trail's CHECK on actions and entity types.
        assert!(Names::new("oauth2_clients", None).is_err());
        assert!(Names::new("widgets", Some("Widget")).is_err());
        assert!(Names::new("widgets", Some("w2")).is_err());
        // A derived type the generated code already imports.
        for clash in ["uuids", "sorts", "entries", "actions", "principals", "dbs"] {
            let err = Names::new(clash, None).unwrap_err();
            assert!(err.contains("would name a type"), "{clash}: {err}");
        }
    }

    #[test]
    fn names_the_api_already_has_are_refused() {
        let document = serde_json::json!({
            "paths": {
                "/api/v1/gadgets/{id}": {"get": {"operationId": "gadgets_get"}},
                "/api/v1/things": {"get": {"operationId": "doodads_list"}},
                "/api/v1/activity": {"get": {"parameters": [
                    {"name": "action", "schema": {"enum": ["release_note.created"]}}]}}
            },
            "components": {
                "schemas": {"SessionOut": {}},
                "securitySchemes": {"OAuth2": {"flows": {"password": {"scopes": {"gizmos:read": ""}}}}}
            }
        });
        let refused = |name: &str, singular: Option<&str>| {
            Names::new(name, singular)
                .unwrap()
                .check_against(&document)
                .unwrap_err()
        };
        assert!(refused("sessions", None).contains("SessionOut"));
        assert!(refused("notes", Some("release_note")).contains("release_note.created"));
        assert!(refused("gadgets", None).contains("/api/v1/gadgets/{id}"));
        assert!(refused("doodads", None).contains("doodads_list"));
        assert!(refused("gizmos", None).contains("gizmos:read"));
        assert!(
            Names::new("widgets", None)
                .unwrap()
                .check_against(&document)
                .is_ok()
        );
        // A prefix of another feature's operations is not taken.
        let doo = Names::new("doo", None).unwrap();
        assert!(doo.check_against(&document).is_ok());
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
    fn the_line_goes_last_in_the_first_list_and_only_once() {
        let manifest = "[dependencies]\n# features: begin\nkeel-user = { path = \"user\" }\n# features: end\nkeel-core.workspace = true\n# features: end\n";
        let line = "keel-widgets = { path = \"widgets\" }";
        let updated = with_feature_line(manifest, "keel-widgets", line).unwrap();
        assert_eq!(
            updated,
            "[dependencies]\n# features: begin\nkeel-user = { path = \"user\" }\nkeel-widgets = { path = \"widgets\" }\n# features: end\nkeel-core.workspace = true\n# features: end\n"
        );
        assert!(with_feature_line(&updated, "keel-widgets", "x").is_err());
        assert!(with_feature_line("[dependencies]\n", "keel-widgets", "x").is_err());
        let crlf = manifest.replace('\n', "\r\n");
        let updated = with_feature_line(&crlf, "keel-widgets", line).unwrap();
        assert!(!updated.replace("\r\n", "").contains('\n'), "{updated:?}");
    }

    #[test]
    fn a_full_list_takes_no_more() {
        let listed: String = (0..MAX_FEATURES)
            .map(|i| format!("keel-f{i} = {{ path = \"f{i}\" }}\n"))
            .collect();
        let manifest = format!("# features: begin\n{listed}# features: end\n");
        let err = with_feature_line(&manifest, "keel-widgets", "x").unwrap_err();
        assert!(err.contains("the most"), "{err}");
    }

    /// A checkout with what `generate` reads: app/Cargo.toml's list and migrations.
    fn checkout(dir: &Path, migration: (&str, &str)) {
        std::fs::create_dir_all(dir.join("app")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[workspace.dependencies]\nkeel-testkit = { path = \"core/testkit\" }\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("app/Cargo.toml"),
            "[dependencies]\n# features: begin\nkeel-user = { path = \"user\" }\n# features: end\n",
        )
        .unwrap();
        let migration_dir = dir.join("migrations").join(migration.0);
        std::fs::create_dir_all(&migration_dir).unwrap();
        std::fs::write(migration_dir.join("up.sql"), migration.1).unwrap();
    }

    #[test]
    fn generate_writes_the_crate_the_migration_and_one_line_or_nothing() {
        let dir = std::env::temp_dir().join(format!("keel-scaffold-{}", uuid_like()));
        checkout(
            &dir,
            (
                "2026-12-05-000001_users",
                "CREATE TABLE \"public\".users(id uuid);\nCREATE TABLE gadgets (id uuid);",
            ),
        );
        let before = std::fs::read_to_string(dir.join("app/Cargo.toml")).unwrap();

        // Refused, changing nothing: a table an old migration made, a dated-later
        // migration, a folded version, a crate the workspace has.
        let gadgets = Names::new("gadgets", None).unwrap();
        let err = generate(&dir, &gadgets, "2026-12-06-000000").unwrap_err();
        assert!(err.contains("already makes a table"), "{err}");
        let widgets = Names::new("widgets", None).unwrap();
        let err = generate(&dir, &widgets, "2026-12-04-000000").unwrap_err();
        assert!(err.contains("dated at or after"), "{err}");
        // A version keel folded away: databases from before the fold record it as run.
        let err = generate(&dir, &widgets, "2026-12-01-000003").unwrap_err();
        assert!(err.contains("last version folded"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("app/Cargo.toml")).unwrap(),
            before
        );
        assert!(!dir.join("app/widgets").exists());

        let generated = generate(&dir, &widgets, "2026-12-06-000000").unwrap();
        assert!(generated.crate_dir.join("src/lib.rs").is_file());
        assert!(
            generated
                .migration_dir
                .ends_with("2026-12-06-000000_widgets")
        );
        let after = std::fs::read_to_string(dir.join("app/Cargo.toml")).unwrap();
        assert_eq!(after.lines().count(), before.lines().count() + 1);
        assert!(after.contains("keel-widgets = { path = \"widgets\" }\n# features: end"));
        // Twice is refused.
        assert!(generate(&dir, &widgets, "2026-12-07-000000").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn uuid_like() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos}", std::process::id())
    }
}
