//! Per-test databases cloned from a migrated template.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use keel_core::db::{Db, admin, migrate};
use keel_core::settings::Secret;

/// The server tests run against; override with `TEST_DATABASE_URL` (any database on the
/// server: the harness only uses it to create and drop others).
const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Every test database's name starts with this, followed by when it was made.
const TEST_PREFIX: &str = "keel_test_";
const TEMPLATE_PREFIX: &str = "keel_template_";
/// Serialises template builds and sweeps across the test processes of a run.
const LOCK_KEY: i64 = 0x6b65_656c_7465_7374;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A test database this old was left by a run that crashed or was killed: no test
/// lives this long, so the sweep can tell by age, on any OS and from any machine.
const LEFTOVER_AFTER: Duration = Duration::from_secs(6 * 60 * 60);
/// Another checkout's template (other migrations) is left alone until no run has used
/// it for this long.
const TEMPLATE_UNUSED_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// What a template's comment says before the time a run last used it.
const USED_AT: &str = "keel-testkit: last used at ";

static COUNTER: AtomicU32 = AtomicU32::new(0);
/// The sweep runs once per process (the first database it makes).
static SWEPT: AtomicBool = AtomicBool::new(false);

/// The role names of [`TestDb::split_roles`].
#[derive(Debug)]
pub struct SplitRoles {
    pub owner: String,
    pub runtime: String,
}

/// A database of its own for one test; dropped (with any open connections) on drop.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    server_url: String,
}

impl TestDb {
    /// Clones a fresh database from the migrated template (building the template first
    /// if the migrations changed since it was built).
    pub async fn new() -> Self {
        let (server_url, mut conn) = connect_server().await;
        let template = template_name();
        conn.batch_execute(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))
            .await
            .expect("take the test-harness lock");
        let prepared = prepare(&mut conn, &server_url, &template).await;
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))
            .await
            .expect("release the test-harness lock");
        prepared.unwrap_or_else(|e| panic!("cannot prepare the template database: {e}"));
        Self::create(server_url, &mut conn, Some(&template)).await
    }

    /// An empty database with no migrations applied, for testing migrations themselves.
    pub async fn empty() -> Self {
        let (server_url, mut conn) = connect_server().await;
        Self::create(server_url, &mut conn, None).await
    }

    async fn create(
        server_url: String,
        conn: &mut AsyncPgConnection,
        template: Option<&str>,
    ) -> Self {
        let name = unique_name();
        admin::create_database(conn, &name, template)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        Self {
            url: with_database(&server_url, &name),
            name,
            server_url,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn secret_url(&self) -> Secret {
        Secret::new(&self.url)
    }

    /// A pool on this database with the default settings, as process `keel-test`.
    pub fn pool(&self) -> Db {
        let settings = crate::settings(&self.url, &[]);
        Db::new(&self.secret_url(), &settings.database, "keel-test")
    }

    /// This database's URL signed in as `role`, with no password: the local test server
    /// trusts its local roles.
    pub fn url_as(&self, role: &str) -> Secret {
        let mut url = url::Url::parse(&self.url).expect("the test database URL is a URL");
        let signed_in = url.set_username(role).and_then(|()| url.set_password(None));
        signed_in.expect("the test database URL takes a user name");
        Secret::new(url.as_str())
    }

    /// Makes two login roles — a schema owner that owns this database, and a runtime
    /// role — as `DATABASE_OWNER_URL` and `DATABASE_URL` would name them. Roles are
    /// cluster-wide: give them back with [`TestDb::drop_roles`] (a failed test leaves
    /// its pair behind, named after its database).
    pub async fn split_roles(&self) -> SplitRoles {
        let roles = SplitRoles {
            owner: format!("{}_owner", self.name),
            runtime: format!("{}_app", self.name),
        };
        self.connect()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {owner} LOGIN; CREATE ROLE {runtime} LOGIN; \
                 ALTER DATABASE {name} OWNER TO {owner};",
                owner = roles.owner,
                runtime = roles.runtime,
                name = self.name,
            ))
            .await
            .expect("create the owner and runtime roles");
        roles
    }

    /// Drops the roles of [`TestDb::split_roles`] and everything they own here.
    pub async fn drop_roles(&self, roles: SplitRoles) {
        let SplitRoles { owner, runtime } = roles;
        self.connect()
            .await
            .batch_execute(&format!(
                "REASSIGN OWNED BY {owner}, {runtime} TO CURRENT_USER; \
                 DROP OWNED BY {owner}, {runtime}; DROP ROLE {owner}; DROP ROLE {runtime};"
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot drop the test roles {owner} and {runtime}: {e}"));
    }

    /// A direct connection to this test's database.
    pub async fn connect(&self) -> AsyncPgConnection {
        admin::connect(&self.url, CONNECT_TIMEOUT)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which can't be blocked on; a short-lived
        // thread with its own runtime does the cleanup.
        let name = self.name.clone();
        let server_url = self.server_url.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                let mut conn = admin::connect(&server_url, CONNECT_TIMEOUT).await?;
                admin::drop_database(&mut conn, &name)
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
            })
        });
        if let Ok(Err(err)) = cleanup.join() {
            // Not fatal: the next run's sweep drops it.
            eprintln!("keel-testkit: could not drop {}: {err}", self.name);
        }
    }
}

/// `keel_test_<unix seconds>_<pid>_<n>_<random>`: the time lets a later run's sweep
/// tell a leftover from a database in use.
fn unique_name() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{TEST_PREFIX}{}_{}_{}_{}",
        unix_seconds(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        &random[..8]
    )
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Whether `made` (unix seconds) is more than `limit` ago.
fn older_than(made: u64, limit: Duration) -> bool {
    unix_seconds().saturating_sub(made) > limit.as_secs()
}

/// The server URL and a connection to it, or a panic saying how to provide one.
async fn connect_server() -> (String, AsyncPgConnection) {
    let server_url = server_url();
    let conn = admin::connect(&server_url, CONNECT_TIMEOUT)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {server_url} ({e}); start it, or set \
                 TEST_DATABASE_URL (see README.md)"
            )
        });
    (server_url, conn)
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

/// `url` with its database (path) replaced.
fn with_database(url: &str, database: &str) -> String {
    let mut url = url::Url::parse(url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(database);
    url.to_string()
}

/// The template's name carries a hash of the migrations, so a changed migration builds a
/// new template instead of testing against a stale schema.
fn template_name() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files = Vec::new();
    collect_files(&dir, &mut files);
    files.sort();
    let mut hasher = DefaultHasher::new();
    for path in files {
        path.strip_prefix(&dir).unwrap_or(&path).hash(&mut hasher);
        std::fs::read(&path)
            .expect("read a migration file")
            .hash(&mut hasher);
    }
    format!("{TEMPLATE_PREFIX}{:016x}", hasher.finish())
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read migrations at {}: {e}", dir.display()));
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[derive(QueryableByName)]
struct Harnessed {
    #[diesel(sql_type = Text)]
    datname: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    note: Option<String>,
}

impl Harnessed {
    /// Left by a run that is gone: a test database past [`LEFTOVER_AFTER`], or a
    /// template (not `ours`) no run has used for [`TEMPLATE_UNUSED_AFTER`]. A name or
    /// comment in an older harness's format counts as gone.
    fn is_leftover(&self, ours: &str) -> bool {
        if let Some(rest) = self.datname.strip_prefix(TEST_PREFIX) {
            let made = rest.split('_').next().and_then(|s| s.parse().ok());
            return made.is_none_or(|made| older_than(made, LEFTOVER_AFTER));
        }
        let used = self
            .note
            .as_deref()
            .and_then(|note| note.strip_prefix(USED_AT));
        self.datname != ours
            && used
                .and_then(|s| s.parse().ok())
                .is_none_or(|used| older_than(used, TEMPLATE_UNUSED_AFTER))
    }
}

/// Under the harness lock: sweep leftovers (once per process), build the template if it
/// is missing, and note that this run uses it.
async fn prepare(
    conn: &mut AsyncPgConnection,
    server_url: &str,
    template: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    if !SWEPT.swap(true, Ordering::Relaxed) {
        sweep(conn, template).await?;
    }
    if !admin::database_exists(conn, template).await? {
        build_template(conn, server_url, template).await?;
    }
    conn.batch_execute(&format!(
        "COMMENT ON DATABASE {} IS '{USED_AT}{}'",
        admin::quote_ident(template),
        unix_seconds()
    ))
    .await?;
    Ok(())
}

/// Drops what runs that are gone left behind; other checkouts' templates in use stay.
async fn sweep(
    conn: &mut AsyncPgConnection,
    template: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let databases: Vec<Harnessed> = diesel::sql_query(
        "SELECT datname, shobj_description(oid, 'pg_database') AS note FROM pg_database \
         WHERE datname LIKE 'keel\\_test\\_%' OR datname LIKE 'keel\\_template\\_%'",
    )
    .load(conn)
    .await?;
    for database in databases {
        if database.is_leftover(template) {
            let datname = database.datname;
            // Two round trips: a multi-statement query runs as one transaction block,
            // which DROP DATABASE refuses.
            let name = admin::quote_ident(&datname);
            conn.batch_execute(&format!("ALTER DATABASE {name} IS_TEMPLATE false"))
                .await?;
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
        }
    }
    Ok(())
}

/// Migrates a new template under a temporary name, then renames it into place.
async fn build_template(
    conn: &mut AsyncPgConnection,
    server_url: &str,
    template: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let building = format!("{template}_building");
    admin::drop_database(conn, &building).await?;
    admin::create_database(conn, &building, None).await?;
    migrate::run(&Secret::new(with_database(server_url, &building))).await?;
    conn.batch_execute(&format!(
        "ALTER DATABASE {0} RENAME TO {1}; ALTER DATABASE {1} IS_TEMPLATE true",
        admin::quote_ident(&building),
        admin::quote_ident(template)
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harnessed(datname: &str, note: Option<String>) -> Harnessed {
        Harnessed {
            datname: datname.to_owned(),
            note,
        }
    }

    #[test]
    fn leftovers_are_told_by_age_not_by_process() {
        let now = unix_seconds();
        let day = 24 * 60 * 60;
        let test_db = |made: u64| harnessed(&format!("{TEST_PREFIX}{made}_42_0_abcdef12"), None);
        assert!(
            !test_db(now - 60).is_leftover("t"),
            "a test database in use"
        );
        assert!(test_db(now - day).is_leftover("t"), "a crashed run's");
        assert!(
            harnessed("keel_test_4242_3_0123456789abcdef", None).is_leftover("t"),
            "an older harness's name (pid first)"
        );

        let used = |ago: u64| Some(format!("{USED_AT}{}", now - ago));
        let ours = "keel_template_0000000000000001";
        assert!(!harnessed(ours, None).is_leftover(ours));
        let other = "keel_template_0000000000000002";
        assert!(
            !harnessed(other, used(day)).is_leftover(ours),
            "another checkout's, in use"
        );
        assert!(
            harnessed(other, used(30 * day)).is_leftover(ours),
            "unused for a month"
        );
        assert!(
            harnessed(other, None).is_leftover(ours),
            "an older harness's"
        );
    }
}
