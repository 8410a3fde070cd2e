//! Typed settings, read once at start from the process environment and an optional `.env`.
//!
//! Every variable has a development default so a fresh clone starts with no configuration;
//! `APP_ENV=production` refuses the defaults that would be unsafe there (secrets, the
//! auto-provisioned database). All problems are collected and reported together, one line
//! each, so an operator fixes a bad deployment in one pass.

mod reader;
mod secret;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use reader::{Problem, SettingsError};
pub use secret::Secret;

use crate::net::IpNetwork;
use reader::Reader;

/// Development-only secret values; refused when `APP_ENV=production`.
const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-change-me-0123456789abcdef";
const DEV_PASSWORD_PEPPER: &str = "dev-only-password-pepper-change-me-0123456789";
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

/// How console log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Coloured, multi-field lines for people.
    Pretty,
    /// One JSON object per line for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err("expected pretty or json".into()),
        }
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
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: IpAddr,
    pub port: u16,
    /// Requests with a larger body get 413.
    pub body_limit: usize,
    /// A request still running after this gets 503 and is cancelled.
    pub request_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM before the process exits anyway.
    pub shutdown_grace: Duration,
    /// Browser origins allowed by CORS; empty disables CORS (same-origin only).
    pub cors_origins: Vec<String>,
    /// Accepted `Host` header values; empty accepts any host.
    pub trusted_hosts: Vec<String>,
    /// Peers whose `X-Forwarded-For` we believe (our load balancers).
    pub trusted_proxies: Vec<IpNetwork>,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `None`: find or start a local PostgreSQL (development only).
    pub url: Option<Secret>,
    /// The schema owner: migrations and seeding run as it, and it grants the role of
    /// `url` only what serving needs (see `db::privileges`). `None`: one role does both.
    pub owner_url: Option<Secret>,
    pub pool_size: u32,
    /// How long a request waits for a pooled connection before it gets 503.
    pub pool_timeout: Duration,
    /// Server-side limit for a single statement.
    pub statement_timeout: Duration,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `None`: the in-process memory cache, which only this replica sees.
    pub redis_url: Option<Secret>,
    /// Starts every key, so several apps (or test runs) can share one Redis.
    pub key_prefix: String,
    pub redis_pool_size: usize,
    /// Longest wait for a pooled connection, a new connection, or one command; past it
    /// the operation counts as failed and the request goes on without the cache.
    pub redis_timeout: Duration,
    /// Entries the memory cache keeps before evicting the least useful.
    pub memory_capacity: u64,
}

#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// `None`: tasks run in the API process (see `tasks::local`), not durably.
    pub amqp_url: Option<Secret>,
    /// Starts every queue name, so several apps (or test runs) can share a broker.
    pub queue_prefix: String,
    /// Messages a worker holds unacknowledged at once: how many tasks it runs together.
    pub prefetch: u16,
    /// Declare quorum queues (replicated, for a RabbitMQ cluster) instead of classic ones.
    pub quorum_queues: bool,
    /// Longest wait to connect to RabbitMQ or for a publisher confirm.
    pub broker_timeout: Duration,
    /// How long a stopping worker lets running tasks finish before it exits.
    pub shutdown_grace: Duration,
    /// Outbox rows the relay publishes per transaction.
    pub relay_batch: u32,
    /// Where keel-worker serves `/health/*` and `/metrics` (on `APP_HOST`).
    pub worker_port: u16,
}

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `None`: mail is written as `.eml` files under `dir` (development).
    pub smtp: Option<SmtpSettings>,
    /// The sender, `Name <address>` or a bare address.
    pub from: String,
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub security: SmtpSecurity,
    /// Longest wait to connect or for one SMTP reply.
    pub timeout: Duration,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a relay on the same host or network only.
    None,
}

impl std::str::FromStr for SmtpSecurity {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "starttls" => Ok(Self::Starttls),
            "tls" => Ok(Self::Tls),
            "none" => Ok(Self::None),
            _ => Err("must be starttls, tls or none"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    /// How clients reach keel-api (`PUBLIC_URL`), which local-disk links start with;
    /// empty: the links are relative (`/storage/…`).
    pub public_url: String,
    /// Largest avatar upload accepted; larger ones get 413.
    pub avatar_max_bytes: usize,
}

#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// Files under this directory (`STORAGE_DIR`): one machine, or a shared volume.
    Local {
        dir: PathBuf,
    },
    S3(S3Settings),
}

/// An S3 bucket on AWS or any S3-compatible store (MinIO, R2, Spaces, …).
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `None`: AWS itself, for `region`.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`; what
    /// MinIO and most self-hosted stores need.
    pub force_path_style: bool,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// An `EnvFilter` directive such as `info` or `info,keel_core=debug`.
    pub level: String,
    pub format: LogFormat,
    /// Daily-rotated log files go here when set.
    pub dir: Option<PathBuf>,
    /// Rotated files kept before the oldest is deleted.
    pub max_files: usize,
}

/// The signing algorithms keel accepts in `JWT_ALGORITHM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `JWT_SECRET`: every verifier holds the signing secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl std::str::FromStr for JwtAlgorithm {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "HS256" => Ok(Self::Hs256),
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            "EdDSA" => Ok(Self::EdDsa),
            _ => Err("expected HS256, RS256, ES256 or EdDSA"),
        }
    }
}

/// How access tokens are signed, as configured.
#[derive(Debug, Clone)]
pub enum JwtKeys {
    /// HS256 with `JWT_SECRET`: every verifier holds the signing secret.
    Secret(Secret),
    /// An asymmetric `JWT_ALGORITHM` with the contents of the PEM files.
    Pair(KeyPair),
}

/// A PEM key pair as read from `JWT_PRIVATE_KEY_FILE` and `JWT_PUBLIC_KEY_FILE`.
#[derive(Clone)]
pub struct KeyPair {
    pub algorithm: JwtAlgorithm,
    private_pem: Vec<u8>,
    pub public_pem: Vec<u8>,
}

impl KeyPair {
    /// The private key; read it only to build the signing key, never to log it.
    pub fn private_pem(&self) -> &[u8] {
        &self.private_pem
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Signs and verifies access tokens: `JWT_SECRET` (HS256) or the key pair in
    /// `JWT_PRIVATE_KEY_FILE`/`JWT_PUBLIC_KEY_FILE` (`JWT_ALGORITHM`). Plain data: auth
    /// builds the keys (and checks the pair) from it.
    pub jwt_keys: JwtKeys,
    pub password_pepper: Secret,
    /// `iss` of the access tokens we issue and the only one we accept.
    pub jwt_issuer: String,
    /// `aud` of the access tokens we issue and the only one we accept.
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token; each rotation starts a new one.
    pub refresh_token_ttl: Duration,
    /// How long a replica may serve an authenticated principal from memory before it
    /// re-reads it; bounds staleness across replicas that share no cache.
    pub auth_cache_ttl: Duration,
    /// Password hashes computed at once; the rest queue, then get 503.
    pub password_hash_concurrency: usize,
    /// Failed logins allowed per account, and per client IP, within `login_window`.
    pub login_max_failures_per_account: u32,
    pub login_max_failures_per_ip: u32,
    pub login_window: Duration,
    /// IPv6 clients are counted per network of this prefix length (one customer's
    /// allocation, typically a /64), since one host can use every address in it.
    pub ipv6_limit_prefix: u8,
    /// Registrations allowed per client IP (network, for IPv6) within
    /// `register_window`.
    pub register_max_per_ip: u32,
    pub register_window: Duration,
}

impl Settings {
    /// Reads the process environment, with `.env` (if present in the working directory)
    /// filling in what the environment does not set.
    pub fn load() -> Result<Self, SettingsError> {
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
        Self::build(&vars, problems)
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
        Self::build(&vars, Vec::new())
    }

    fn build(
        vars: &HashMap<String, String>,
        problems: Vec<Problem>,
    ) -> Result<Self, SettingsError> {
        let mut r = Reader::new(vars, problems);

        let env = r.parse("APP_ENV", AppEnv::Development, "production");
        let prod = env.is_production();

        let http = HttpSettings {
            host: r.parse("APP_HOST", IpAddr::from([127, 0, 0, 1]), "0.0.0.0"),
            port: r.parse("APP_PORT", 8000, "8000"),
            body_limit: r.byte_size("HTTP_BODY_LIMIT", 1024 * 1024, "1MiB"),
            request_timeout: r.duration("HTTP_REQUEST_TIMEOUT", Duration::from_secs(30), "30s"),
            shutdown_grace: r.duration("SHUTDOWN_GRACE_PERIOD", Duration::from_secs(20), "20s"),
            cors_origins: r.origins("CORS_ALLOWED_ORIGINS"),
            trusted_hosts: r.list("TRUSTED_HOSTS"),
            trusted_proxies: r.networks("TRUSTED_PROXIES"),
        };

        let url = r.postgres_url("DATABASE_URL");
        if prod && url.is_none() && r.is_fine("DATABASE_URL") {
            r.problem(
                "DATABASE_URL",
                "is required in production (no local database is provisioned there)",
                "postgres://keel:secret@db:5432/keel",
            );
        }
        let owner_url = r.postgres_url("DATABASE_OWNER_URL");
        if owner_url.is_some() && url.is_none() && r.is_fine("DATABASE_URL") {
            r.problem(
                "DATABASE_OWNER_URL",
                "needs DATABASE_URL too (the role keel serves with)",
                "postgres://keel_app:secret@db:5432/keel",
            );
        }
        let database = DatabaseSettings {
            url,
            owner_url,
            pool_size: r.parse_where(
                "DATABASE_POOL_SIZE",
                10,
                "20",
                |n: &u32| (1..=1000).contains(n),
                "must be between 1 and 1000",
            ),
            pool_timeout: r.duration("DATABASE_POOL_TIMEOUT", Duration::from_secs(5), "5s"),
            statement_timeout: r.duration(
                "DATABASE_STATEMENT_TIMEOUT",
                Duration::from_secs(30),
                "30s",
            ),
            migrate_on_start: r.parse("DATABASE_MIGRATE_ON_START", !prod, "true"),
        };

        let level = r.string("LOG_LEVEL", "info");
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&level) {
            r.problem(
                "LOG_LEVEL",
                &format!("is not a valid filter ({err})"),
                "info,keel_core=debug",
            );
        }
        let log = LogSettings {
            level,
            format: r.parse(
                "LOG_FORMAT",
                if prod {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                },
                "json",
            ),
            dir: r.optional_string("LOG_DIR").map(PathBuf::from),
            max_files: r.parse_where(
                "LOG_MAX_FILES",
                14,
                "14",
                |n: &usize| *n >= 1,
                "must be at least 1",
            ),
        };

        let jwt_keys = jwt_keys(&mut r, prod);
        let security = SecuritySettings {
            jwt_keys,
            password_pepper: r.secret("PASSWORD_PEPPER", DEV_PASSWORD_PEPPER, prod),
            jwt_issuer: r.string("JWT_ISSUER", "keel"),
            jwt_audience: r.string("JWT_AUDIENCE", "keel-api"),
            access_token_ttl: r.duration_within(
                "ACCESS_TOKEN_TTL",
                Duration::from_secs(15 * 60),
                "15m",
                Duration::from_secs(10)..=Duration::from_secs(24 * 3600),
            ),
            refresh_token_ttl: r.duration_within(
                "REFRESH_TOKEN_TTL",
                Duration::from_secs(30 * 86_400),
                "30d",
                Duration::from_secs(60)..=Duration::from_secs(365 * 86_400),
            ),
            auth_cache_ttl: r.duration_within(
                "AUTH_CACHE_TTL",
                Duration::from_secs(30),
                "30s",
                Duration::ZERO..=Duration::from_secs(3600),
            ),
            password_hash_concurrency: r.parse_where(
                "PASSWORD_HASH_CONCURRENCY",
                default_hash_concurrency(),
                "1",
                |n: &usize| (1..=256).contains(n),
                "must be between 1 and 256",
            ),
            login_max_failures_per_account: r.parse_where(
                "LOGIN_MAX_FAILURES_PER_ACCOUNT",
                5,
                "5",
                |n: &u32| *n >= 1,
                "must be at least 1",
            ),
            login_max_failures_per_ip: r.parse_where(
                "LOGIN_MAX_FAILURES_PER_IP",
                50,
                "50",
                |n: &u32| *n >= 1,
                "must be at least 1",
            ),
            login_window: r.duration_within(
                "LOGIN_FAILURE_WINDOW",
                Duration::from_secs(15 * 60),
                "15m",
                Duration::from_secs(1)..=Duration::from_secs(86_400),
            ),
            ipv6_limit_prefix: r.parse_where(
                "RATE_LIMIT_IPV6_PREFIX",
                64,
                "64",
                |n: &u8| (1..=128).contains(n),
                "must be between 1 and 128",
            ),
            register_max_per_ip: r.parse_where(
                "REGISTER_MAX_PER_IP",
                10,
                "10",
                |n: &u32| *n >= 1,
                "must be at least 1",
            ),
            register_window: r.duration_within(
                "REGISTER_WINDOW",
                Duration::from_secs(3600),
                "1h",
                Duration::from_secs(1)..=Duration::from_secs(86_400),
            ),
        };

        let cache = CacheSettings {
            redis_url: r.url(
                "REDIS_URL",
                &["redis", "rediss"],
                "redis://localhost:6379/0",
            ),
            key_prefix: name_prefix(&mut r, "CACHE_KEY_PREFIX"),
            redis_pool_size: r.parse_where(
                "REDIS_POOL_SIZE",
                16,
                "16",
                |n: &usize| (1..=1000).contains(n),
                "must be between 1 and 1000",
            ),
            redis_timeout: r.duration_within(
                "REDIS_TIMEOUT",
                Duration::from_millis(250),
                "250ms",
                Duration::from_millis(1)..=Duration::from_secs(30),
            ),
            memory_capacity: r.parse_where(
                "CACHE_MEMORY_MAX_ENTRIES",
                100_000,
                "100000",
                |n: &u64| *n >= 1,
                "must be at least 1",
            ),
        };

        let storage = StorageSettings {
            backend: storage_backend(&mut r),
            public_url: r
                .url("PUBLIC_URL", &["http", "https"], "https://api.example.com")
                .map(|url| url.expose().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
            avatar_max_bytes: r.byte_size("AVATAR_MAX_BYTES", 1024 * 1024, "1MiB"),
        };

        let tasks = TaskSettings {
            amqp_url: r.url(
                "AMQP_URL",
                &["amqp", "amqps"],
                "amqp://guest:guest@localhost:5672/%2f",
            ),
            queue_prefix: name_prefix(&mut r, "TASK_QUEUE_PREFIX"),
            prefetch: r.parse_where(
                "TASK_PREFETCH",
                32,
                "32",
                |n: &u16| *n >= 1,
                "must be between 1 and 65535",
            ),
            quorum_queues: r.parse("TASK_QUORUM_QUEUES", false, "true"),
            broker_timeout: r.duration_within(
                "AMQP_TIMEOUT",
                Duration::from_secs(5),
                "5s",
                Duration::from_millis(100)..=Duration::from_secs(60),
            ),
            shutdown_grace: r.duration_within(
                "TASK_SHUTDOWN_GRACE",
                Duration::from_secs(30),
                "30s",
                Duration::ZERO..=Duration::from_secs(3600),
            ),
            relay_batch: r.parse_where(
                "TASK_RELAY_BATCH",
                500,
                "500",
                |n: &u32| (1..=10_000).contains(n),
                "must be between 1 and 10000",
            ),
            worker_port: r.parse("WORKER_PORT", 8001, "8001"),
        };

        if r.optional_string("SMTP_HOST").is_none() {
            // Credentials without a server are a mistake; a port or security left at
            // its default (as in .env.example) is not.
            for name in ["SMTP_USERNAME", "SMTP_PASSWORD"] {
                if r.optional_string(name).is_some() {
                    r.problem(
                        "SMTP_HOST",
                        &format!("is required when {name} is set"),
                        "smtp.example.com",
                    );
                }
            }
        }
        let mail = MailSettings {
            smtp: r.optional_string("SMTP_HOST").map(|host| SmtpSettings {
                host,
                port: r.parse("SMTP_PORT", 587, "587"),
                username: r.optional_string("SMTP_USERNAME"),
                password: r.optional_string("SMTP_PASSWORD").map(Secret::new),
                security: r.parse("SMTP_SECURITY", SmtpSecurity::Starttls, "starttls"),
                timeout: r.duration_within(
                    "SMTP_TIMEOUT",
                    Duration::from_secs(10),
                    "10s",
                    Duration::from_millis(100)..=Duration::from_secs(120),
                ),
            }),
            from: r.parse_where(
                "MAIL_FROM",
                "keel <no-reply@localhost>".to_owned(),
                "Example <no-reply@example.com>",
                |from: &String| from.parse::<lettre::message::Mailbox>().is_ok(),
                "must be an address, optionally with a name: Name <user@example.com>",
            ),
            dir: PathBuf::from(r.string("MAIL_DIR", ".keel/mail")),
        };

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
        })
    }
}

/// A prefix that namespaces keys or queue names (`keel` by default), so several apps or
/// environments can share one Redis or one broker.
fn name_prefix(r: &mut Reader<'_>, name: &str) -> String {
    r.parse_where(
        name,
        "keel".to_owned(),
        "keel",
        |p: &String| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        },
        "must be 1-64 letters, digits, '_', '-' or '.'",
    )
}

/// S3 when `S3_BUCKET` is set (then the credentials are required), else local disk.
fn storage_backend(r: &mut Reader<'_>) -> StorageBackend {
    let local = || StorageBackend::Local {
        dir: PathBuf::from(".keel/storage"),
    };
    let Some(bucket) = r.optional_string("S3_BUCKET") else {
        for name in ["S3_ENDPOINT", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] {
            if r.optional_string(name).is_some() {
                r.problem(
                    "S3_BUCKET",
                    &format!("is required when {name} is set"),
                    "my-app-uploads",
                );
            }
        }
        return r
            .optional_string("STORAGE_DIR")
            .map_or_else(local, |dir| StorageBackend::Local {
                dir: PathBuf::from(dir),
            });
    };
    let endpoint = r
        .url(
            "S3_ENDPOINT",
            &["https", "http"],
            "https://s3.eu-west-1.amazonaws.com",
        )
        .map(|url| url.expose().to_owned());
    let why = "when S3_BUCKET is set";
    let access_key_id = r.optional_string("S3_ACCESS_KEY_ID");
    let secret_access_key = r.optional_string("S3_SECRET_ACCESS_KEY");
    for (name, value) in [
        ("S3_ACCESS_KEY_ID", &access_key_id),
        ("S3_SECRET_ACCESS_KEY", &secret_access_key),
    ] {
        if value.is_none() {
            r.problem(
                name,
                &format!("is required {why}"),
                "the key of an account that may use the bucket",
            );
        }
    }
    StorageBackend::S3(S3Settings {
        force_path_style: r.parse("S3_FORCE_PATH_STYLE", endpoint.is_some(), "true"),
        endpoint,
        region: r.string("S3_REGION", "us-east-1"),
        bucket,
        access_key_id: access_key_id.unwrap_or_default(),
        secret_access_key: Secret::new(secret_access_key.unwrap_or_default()),
    })
}

/// HS256 with `JWT_SECRET`, or the PEM key pair an asymmetric `JWT_ALGORITHM` names
/// (read here; whether the keys parse and belong together is auth's to check).
fn jwt_keys(r: &mut Reader<'_>, prod: bool) -> JwtKeys {
    let algorithm = r.parse("JWT_ALGORITHM", JwtAlgorithm::Hs256, "EdDSA");
    if algorithm == JwtAlgorithm::Hs256 {
        return JwtKeys::Secret(r.secret("JWT_SECRET", DEV_JWT_SECRET, prod));
    }
    let why = "when JWT_ALGORITHM is not HS256";
    let private = r.required_file("JWT_PRIVATE_KEY_FILE", why, "/run/secrets/jwt-private.pem");
    let public = r.required_file("JWT_PUBLIC_KEY_FILE", why, "/run/secrets/jwt-public.pem");
    match (private, public) {
        (Some(private_pem), Some(public_pem)) => JwtKeys::Pair(KeyPair {
            algorithm,
            private_pem,
            public_pem,
        }),
        // The missing file is already reported.
        _ => JwtKeys::Secret(Secret::new(DEV_JWT_SECRET)),
    }
}

/// Half the cores, at least one: argon2 is pure CPU, and the async reactor must keep a
/// core to itself or every other request stalls behind the hashes.
fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

impl fmt::Display for AppEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
