//! Settings: defaults, validation messages, production rules, secret redaction.

use std::time::Duration;

use keel_core::settings::{AppEnv, LogFormat, Settings};

fn load(vars: &[(&str, &str)]) -> Result<Settings, keel_core::settings::SettingsError> {
    Settings::from_vars(vars.iter().copied())
}

#[test]
fn nothing_set_gives_a_working_development_configuration() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.env, AppEnv::Development);
    assert_eq!(settings.http.port, 8000);
    assert_eq!(settings.http.host.to_string(), "127.0.0.1");
    assert_eq!(settings.http.body_limit, 1024 * 1024);
    assert!(settings.database.url.is_none());
    assert!(settings.database.migrate_on_start);
    assert_eq!(settings.log.format, LogFormat::Pretty);
    assert!(settings.log.dir.is_none());
}

#[test]
fn values_are_parsed_with_units() {
    let settings = load(&[
        ("APP_PORT", "9000"),
        ("HTTP_BODY_LIMIT", "256KiB"),
        ("HTTP_REQUEST_TIMEOUT", "1500ms"),
        ("DATABASE_POOL_TIMEOUT", "2s"),
        (
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, http://localhost:5173",
        ),
        ("LOG_DIR", "/var/log/keel"),
    ])
    .unwrap();
    assert_eq!(settings.http.port, 9000);
    assert_eq!(settings.http.body_limit, 256 * 1024);
    assert_eq!(settings.http.request_timeout, Duration::from_millis(1500));
    assert_eq!(settings.database.pool_timeout, Duration::from_secs(2));
    assert_eq!(
        settings.http.cors_origins,
        ["https://a.example", "http://localhost:5173"]
    );
    assert_eq!(
        settings.log.dir.as_deref(),
        Some(std::path::Path::new("/var/log/keel"))
    );
}

#[test]
fn every_problem_is_reported_at_once_one_line_each() {
    let err = load(&[
        ("APP_PORT", "eighty"),
        ("DATABASE_URL", "mysql://localhost/keel"),
        ("DATABASE_POOL_SIZE", "0"),
        ("HTTP_REQUEST_TIMEOUT", "soon"),
        ("LOG_FORMAT", "xml"),
        ("CORS_ALLOWED_ORIGINS", "app.example.com/path"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = err.problems.iter().map(|p| p.variable.as_str()).collect();
    assert_eq!(
        vars,
        [
            "APP_PORT",
            "HTTP_REQUEST_TIMEOUT",
            "CORS_ALLOWED_ORIGINS",
            "DATABASE_URL",
            "DATABASE_POOL_SIZE",
            "LOG_FORMAT"
        ]
    );
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + vars.len(), "{text}");
    assert_eq!(lines[0], "invalid configuration (6 problems):");
    assert_eq!(
        lines[1],
        r#"  APP_PORT: "eighty" is not valid: invalid digit found in string (e.g. APP_PORT=8000)"#
    );
    for (line, var) in lines[1..].iter().zip(&vars) {
        assert!(line.trim_start().starts_with(&format!("{var}: ")), "{line}");
        assert!(line.contains(&format!("(e.g. {var}=")), "{line}");
    }
}

#[test]
fn production_refuses_development_defaults() {
    let err = load(&[("APP_ENV", "production")]).unwrap_err();
    let vars: Vec<&str> = err.problems.iter().map(|p| p.variable.as_str()).collect();
    assert_eq!(vars, ["DATABASE_URL", "JWT_SECRET", "PASSWORD_PEPPER"]);

    let err = load(&[
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://keel@db/keel"),
        ("JWT_SECRET", "short"),
        (
            "PASSWORD_PEPPER",
            "dev-only-password-pepper-change-me-0123456789",
        ),
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("JWT_SECRET: is too short"), "{text}");
    assert!(
        text.contains("PASSWORD_PEPPER: still has the development default"),
        "{text}"
    );
    assert!(
        !text.contains("dev-only-password-pepper"),
        "secrets are never echoed: {text}"
    );
}

#[test]
fn production_with_real_secrets_is_accepted() {
    let settings = load(&[
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://keel:pw@db:5432/keel"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef-jwt"),
        ("PASSWORD_PEPPER", "0123456789abcdef0123456789abcdef-pep"),
    ])
    .unwrap();
    assert_eq!(settings.log.format, LogFormat::Json);
    assert!(!settings.database.migrate_on_start);
}

#[test]
fn debug_output_redacts_every_secret() {
    let settings = load(&[
        ("DATABASE_URL", "postgres://keel:db-password-42@db/keel"),
        ("JWT_SECRET", "jwt-secret-value-that-is-long-enough-42"),
        ("PASSWORD_PEPPER", "pepper-value-that-is-long-enough-42"),
    ])
    .unwrap();
    let debug = format!("{settings:?}");
    for secret in ["db-password-42", "jwt-secret-value", "pepper-value"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
}

#[test]
fn a_database_url_with_a_password_is_never_echoed() {
    let err = load(&[("DATABASE_URL", "postgres://keel:hunter2@db:notaport/keel")]).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// `.env.example` is a working configuration, and every variable the configuration
/// reference documents appears in it (and the other way round).
#[test]
fn env_example_parses_and_matches_the_configuration_reference() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let vars: Vec<(String, String)> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            // As dotenvy reads it: surrounding double quotes are not part of the value.
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect();
    Settings::from_vars(vars.clone()).unwrap();

    let reference = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    let documented: Vec<&str> = reference
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name))
        .collect();
    let mut in_example: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    let mut documented_sorted = documented.clone();
    in_example.sort_unstable();
    documented_sorted.sort_unstable();
    assert_eq!(in_example, documented_sorted);
}

#[test]
fn auth_settings_have_safe_defaults_and_checked_ranges() {
    let settings = load(&[]).unwrap();
    assert_eq!(
        settings.security.access_token_ttl,
        Duration::from_secs(15 * 60)
    );
    assert_eq!(
        settings.security.refresh_token_ttl,
        Duration::from_secs(30 * 86_400)
    );
    let err = load(&[
        ("ACCESS_TOKEN_TTL", "2d"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,nonsense"),
    ])
    .unwrap_err()
    .to_string();
    for var in ["ACCESS_TOKEN_TTL", "TRUSTED_PROXIES"] {
        assert!(err.contains(var), "{var} missing from: {err}");
    }
}
