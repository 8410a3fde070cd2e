//! Typed settings, read once at start from the process environment and an optional `.env`.
//!
//! Every variable has a development default so a fresh clone starts with no configuration;
//! `APP_ENV=production` refuses the defaults that would be unsafe there (secrets, the
//! auto-provisioned database). All problems are collected and reported together, one line
//! each, so an operator fixes a bad deployment in one pass.

mod cache;
mod database;
mod http;
mod log;
mod mail;
mod reader;
mod secret;
mod security;
mod storage;
mod tasks;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use cache::CacheSettings;
pub use database::DatabaseSettings;
pub use http::HttpSettings;
pub use log::{LogFormat, LogSettings};
pub use mail::{MailSettings, SmtpSecurity, SmtpSettings};
pub use reader::{Problem, Reader, SettingsError};
pub use secret::Secret;
pub use security::{JwtAlgorithm, JwtKeys, KeyPair, SecuritySettings};
pub use storage::{S3Settings, StorageBackend, StorageSettings};
pub use tasks::TaskSettings;

/// Secrets shorter than this are refused in production (256 bits of base64-ish text).
const MIN_SECRET_LEN: usize = 32;

/// Where the process runs; decides which defaults are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Production,
}

impl AppEnv {
    pub fn is_production(self) -> bool {
        self == Self::Production
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

impl std::str::FromStr for AppEnv {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected development, test or production".into()),
        }
    }
}

/// A feature's own settings: read from the same variables as keel-core's sections and
/// checked with them, so a bad value is refused, with every other problem, before
/// anything runs. `()` is the section of a feature without settings.
pub trait Section: Sized + Send + Sync + 'static {
    fn read(r: &mut Reader<'_>, env: AppEnv) -> Self;
}

impl Section for () {
    fn read(_: &mut Reader<'_>, _: AppEnv) -> Self {}
}

/// The variables settings were read from, kept so features read their sections later.
/// Debug shows how many there are, never their values.
#[derive(Clone)]
struct Vars(Arc<HashMap<String, String>>);

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vars({} variables)", self.0.len())
    }
}

/// The whole configuration of a keel process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub env: AppEnv,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub security: SecuritySettings,
    pub cache: CacheSettings,
    pub storage: StorageSettings,
    pub tasks: TaskSettings,
    pub mail: MailSettings,
    vars: Vars,
}

impl Settings {
    /// Reads the process environment, with `.env` (if present in the working directory)
    /// filling in what the environment does not set. keel-core's sections only: a
    /// process with features loads through [`Settings::load_with`] (keel-app's
    /// `process::load_settings`), or a feature's bad value shows only as it is built.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_with(|_, _| {})
    }

    /// [`Settings::load`], checking also the sections `sections` reads (the features'),
    /// so their problems are reported with keel-core's.
    pub fn load_with(sections: fn(&mut Reader<'_>, AppEnv)) -> Result<Self, SettingsError> {
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut problems = Vec::new();
        match dotenvy::from_path_iter(Path::new(".env")) {
            Ok(iter) => {
                for item in iter {
                    match item {
                        Ok((key, value)) => {
                            vars.insert(key, value);
                        }
                        Err(err) => problems.push(Problem::new(
                            ".env",
                            format!("cannot be parsed: {err}"),
                            "KEY=value, one per line",
                        )),
                    }
                }
            }
            Err(err) if err.not_found() => {}
            Err(err) => problems.push(Problem::new(
                ".env",
                format!("cannot be read: {err}"),
                "a readable file of KEY=value lines",
            )),
        }
        // `env::vars()` panics on a non-UTF-8 value anywhere in the environment; a lossy
        // read keeps unrelated variables harmless and makes a mangled keel one fail to parse.
        vars.extend(std::env::vars_os().map(|(key, value)| {
            (
                key.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        }));
        Self::build(vars, problems, sections)
    }

    /// Builds settings from explicit variables; tests use this instead of the process env.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, SettingsError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect::<HashMap<_, _>>();
        Self::build(vars, Vec::new(), |_, _| {})
    }

    /// A feature's section, read from the variables these settings came from.
    pub fn section<S: Section>(&self) -> Result<S, SettingsError> {
        let mut r = Reader::new(&self.vars.0, Vec::new());
        let section = S::read(&mut r, self.env);
        r.finish()?;
        Ok(section)
    }

    fn build(
        vars: HashMap<String, String>,
        problems: Vec<Problem>,
        sections: fn(&mut Reader<'_>, AppEnv),
    ) -> Result<Self, SettingsError> {
        let mut r = Reader::new(&vars, problems);
        let env = r.parse("APP_ENV", AppEnv::Development, "production");
        let prod = env.is_production();
        let http = HttpSettings::read(&mut r);
        let database = DatabaseSettings::read(&mut r, prod);
        let log = LogSettings::read(&mut r, prod);
        let security = SecuritySettings::read(&mut r, prod);
        let cache = CacheSettings::read(&mut r);
        let storage = StorageSettings::read(&mut r);
        let tasks = TaskSettings::read(&mut r);
        let mail = MailSettings::read(&mut r);
        sections(&mut r, env);
        r.finish()?;
        Ok(Self {
            env,
            http,
            database,
            log,
            security,
            cache,
            storage,
            tasks,
            mail,
            vars: Vars(Arc::new(vars)),
        })
    }
}

impl fmt::Display for AppEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
