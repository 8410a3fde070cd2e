//! PostgreSQL access: the pooled connection type, the transaction helper, and the
//! mapping of database failures to the errors clients see.

pub mod admin;
pub mod cached;
pub mod changes;
pub mod local;
pub mod migrate;
mod prepared;
pub mod privileges;

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::future::BoxFuture;

pub use prepared::{
    Caching, Fixed, KeepPrepared, PlannedEachCall, Prepared, fixed, pipelined, planned_each_call,
};

use crate::error::{ApiError, ErrorChain};
use crate::health::{Check, CheckError};
use crate::settings::{DatabaseSettings, Secret};
use crate::telemetry::metrics as names;

type Manager = AsyncDieselConnectionManager<AsyncPgConnection>;

/// What [`Db::transaction`] runs: an async closure (`async move |conn| { .. }`) over the
/// transaction's connection, whose future is `Send` so handlers stay spawnable. Stable
/// Rust can't bound an async closure's future directly yet; naming it through the
/// closure's `FnOnce` output, as diesel-async does, is how it is said today.
pub trait InTransaction<'c, R>:
    AsyncFnOnce(&'c mut AsyncPgConnection) -> R
    + FnOnce(&'c mut AsyncPgConnection) -> <Self as InTransaction<'c, R>>::Fut
    + Send
{
    type Fut: Future<Output = R> + Send;
}

impl<'c, R, F, Fut> InTransaction<'c, R> for F
where
    F: AsyncFnOnce(&'c mut AsyncPgConnection) -> R
        + FnOnce(&'c mut AsyncPgConnection) -> Fut
        + Send,
    Fut: Future<Output = R> + Send,
{
    type Fut = Fut;
}

/// A connection checked out of the pool; derefs to [`AsyncPgConnection`], so query
/// functions that take `&mut AsyncPgConnection` accept it as well as a transaction's.
pub type PooledConn<'a> = bb8::PooledConnection<'a, Manager>;

/// How long a client waits before retrying after the database was unavailable.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The shared database handle: cheap to clone, one pool per process.
#[derive(Clone)]
pub struct Db {
    pool: bb8::Pool<Manager>,
    max_size: u32,
    url: Secret,
    changes: changes::ChangeFeed,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("state", &self.pool.state())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Builds the pool without connecting: a database that is down at start makes
    /// `/health/ready` report it instead of keeping the process from starting.
    /// `app` becomes the connections' `application_name` in `pg_stat_activity`.
    pub fn new(url: &Secret, settings: &DatabaseSettings, app: &str) -> Self {
        let statement_timeout_ms = settings.statement_timeout.as_millis();
        let app = app.replace('\'', "''");
        let setup_sql = format!(
            "SET statement_timeout = {statement_timeout_ms}; SET application_name = '{app}'"
        );
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.custom_setup = Box::new(move |url| {
            let setup_sql = setup_sql.clone();
            Box::pin(async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                conn.batch_execute(&setup_sql)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let manager = Manager::new_with_config(url.expose(), config);
        let pool = bb8::Pool::builder()
            .max_size(settings.pool_size)
            .connection_timeout(settings.pool_timeout)
            .idle_timeout(Some(Duration::from_secs(10 * 60)))
            .max_lifetime(Some(Duration::from_secs(30 * 60)))
            .error_sink(Box::new(LogErrors))
            .build_unchecked(manager);
        Self {
            pool,
            max_size: settings.pool_size,
            url: url.clone(),
            changes: changes::ChangeFeed::default(),
        }
    }

    /// A handle whose every connection attempt fails (an [`ApiError::Unavailable`] on
    /// use): for [`crate::context::Context::offline`], which builds the features without
    /// a database to generate the OpenAPI document.
    pub fn offline() -> Self {
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.custom_setup = Box::new(|_| {
            Box::pin(async {
                Err(diesel::ConnectionError::BadConnection(
                    "offline: this process has no database".to_owned(),
                ))
            })
        });
        let url = Secret::new("postgres://offline.invalid/keel");
        let manager = Manager::new_with_config(url.expose(), config);
        let pool = bb8::Pool::builder()
            .max_size(1)
            .connection_timeout(Duration::from_millis(100))
            .build_unchecked(manager);
        Self {
            pool,
            max_size: 1,
            url,
            changes: changes::ChangeFeed::default(),
        }
    }

    /// The table change counters query caches check; live only while
    /// [`Db::listen_for_changes`]'s listener runs.
    pub fn changes(&self) -> &changes::ChangeFeed {
        &self.changes
    }

    /// Starts the change listener (one extra connection); it stops when the returned
    /// guard is dropped.
    pub fn listen_for_changes(&self) -> changes::Listener {
        self.changes.listen(&self.url)
    }

    /// Sends `payload` to every session listening on `channel` (PostgreSQL's NOTIFY,
    /// delivered at commit): with [`changes::ChangeFeed::on_message`], a message to
    /// every replica, this one included.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), ApiError> {
        let mut conn = self.conn().await?;
        fixed("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(channel)
            .bind::<diesel::sql_types::Text, _>(payload)
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// A pooled connection; waiting longer than the pool timeout is a 503, not a hang.
    /// Use it for reads; write through [`Db::transaction`], which also tells this
    /// process's query caches at once.
    pub async fn conn(&self) -> Result<PooledConn<'_>, ApiError> {
        self.pool.get().await.map_err(ApiError::from)
    }

    /// Runs `f` in a transaction on a pooled connection: commit on `Ok`, roll back on
    /// `Err` (or if the future is dropped: the pool discards the broken connection).
    /// After a commit, this process's query caches start over (other replicas hear of
    /// the change from PostgreSQL).
    ///
    /// ```ignore
    /// db.transaction(async move |conn| {
    ///     let user = users::create(conn, &new_user).await?;
    ///     activity::record(conn, entry).await?;
    ///     Ok(user)
    /// })
    /// .await
    /// ```
    pub async fn transaction<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: for<'c> InTransaction<'c, Result<R, E>>,
        E: From<DieselError> + From<ApiError> + Send,
        R: Send,
    {
        let result = self.transaction_untracked(f).await;
        if result.is_ok() {
            self.changes.committed_here();
        }
        result
    }

    /// [`Db::transaction`] for bookkeeping that no query cache reads (the task outbox,
    /// periodic ticks): its commit leaves this process's caches alone. Running every
    /// second, it would otherwise empty them every second.
    pub async fn transaction_untracked<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: for<'c> InTransaction<'c, Result<R, E>>,
        E: From<DieselError> + From<ApiError> + Send,
        R: Send,
    {
        let mut conn = self.conn().await?;
        let result = conn.transaction(async move |c| f(c).await).await;
        // Whatever a failure looked like from inside (a server's message in any
        // language, a half-read reply), a transaction whose connection died is the
        // database going away: try again, not a bug.
        if result.is_err() && conn.is_broken() {
            return Err(lost_connection().into());
        }
        result
    }

    /// Round-trips a trivial query; used by the readiness check.
    pub async fn ping(&self) -> Result<(), ApiError> {
        let mut conn = self.conn().await?;
        conn.batch_execute("SELECT 1").await?;
        Ok(())
    }

    /// Publishes the pool's state as gauges and counters; called before each scrape.
    pub fn record_metrics(&self) {
        let state = self.pool.state();
        let stats = state.statistics;
        metrics::gauge!(names::DB_POOL_CONNECTIONS).set(state.connections);
        metrics::gauge!(names::DB_POOL_IDLE).set(state.idle_connections);
        metrics::gauge!(names::DB_POOL_MAX).set(self.max_size);
        metrics::counter!(names::DB_POOL_WAITS).absolute(stats.get_waited);
        metrics::counter!(names::DB_POOL_TIMEOUTS).absolute(stats.get_timed_out);
        metrics::counter!(names::DB_POOL_WAIT_SECONDS).absolute(stats.get_wait_time.as_secs());
    }
}

/// bb8 reports only "timed out" to the waiter; the real connect error goes to the log.
#[derive(Debug, Clone, Copy)]
struct LogErrors;

impl bb8::ErrorSink<PoolError> for LogErrors {
    fn sink(&self, error: PoolError) {
        tracing::warn!(error = %ErrorChain(&error), "database connection failed");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(*self)
    }
}

impl From<bb8::RunError<PoolError>> for ApiError {
    fn from(err: bb8::RunError<PoolError>) -> Self {
        // A timeout's cause already went to the log through `LogErrors`.
        if let bb8::RunError::User(err) = &err {
            tracing::warn!(error = %ErrorChain(err), "database connection failed");
        }
        Self::Unavailable {
            detail: "The database is unavailable; try again shortly.".to_owned(),
            retry_after: Some(RETRY_AFTER),
        }
    }
}

impl From<DieselError> for ApiError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::Conflict {
                    field: conflict_field(info.table_name(), info.constraint_name()),
                }
            }
            DieselError::DatabaseError(kind, info) if connection_lost(&kind, info.message()) => {
                tracing::warn!(error = info.message(), "database connection lost");
                lost_connection()
            }
            other => Self::internal(other),
        }
    }
}

/// The connection to the database went away under a query: the client lost the socket
/// (tokio-postgres's "connection closed" and I/O errors, which diesel-async reports as
/// `UnableToSendCommand` with other client-side errors, such as a query's missing
/// binds, that stay 500s), or the server is ending it as it stops, restarts or recovers
/// (57P01-57P03, matched by PostgreSQL's English messages: diesel doesn't pass the
/// SQLSTATE on; an idle-in-transaction timeout is the application's bug and stays a
/// 500). [`Db::transaction`] also catches a server speaking another language, by the
/// connection it leaves broken.
fn connection_lost(kind: &DatabaseErrorKind, message: &str) -> bool {
    match kind {
        DatabaseErrorKind::ClosedConnection => true,
        DatabaseErrorKind::UnableToSendCommand => {
            message.starts_with("connection closed")
                || message.starts_with("error communicating with the server")
        }
        DatabaseErrorKind::Unknown => {
            (message.starts_with("terminating connection") && !message.contains("idle"))
                || message.starts_with("the database system is")
        }
        _ => false,
    }
}

fn lost_connection() -> ApiError {
    ApiError::Unavailable {
        detail: "The database connection was lost; try again.".to_owned(),
        retry_after: Some(RETRY_AFTER),
    }
}

/// The field a unique constraint protects, from PostgreSQL's default naming
/// (`<table>_<column>_key`, `<table>_<column>_idx`); the constraint name otherwise.
fn conflict_field(table: Option<&str>, constraint: Option<&str>) -> String {
    let Some(constraint) = constraint else {
        return "value".to_owned();
    };
    let without_table = table
        .and_then(|t| constraint.strip_prefix(t))
        .and_then(|rest| rest.strip_prefix('_'))
        .unwrap_or(constraint);
    ["_key", "_idx", "_unique"]
        .iter()
        .find_map(|suffix| without_table.strip_suffix(suffix))
        .unwrap_or(without_table)
        .to_owned()
}

impl Check for Db {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move { Ok(self.ping().await?) })
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::conflict_field;
    use crate::ApiError;

    #[test]
    fn a_lost_connection_is_unavailable_and_other_failures_are_not() {
        use DatabaseErrorKind::{CheckViolation, ClosedConnection, UnableToSendCommand, Unknown};
        let lost = true;
        for (kind, message, unavailable) in [
            (UnableToSendCommand, "connection closed", lost),
            (ClosedConnection, "server closed the connection", lost),
            (
                Unknown,
                "terminating connection due to administrator command",
                lost,
            ),
            (Unknown, "the database system is shutting down", lost),
            (Unknown, "division by zero", !lost),
            (CheckViolation, "violates check constraint", !lost),
            (
                UnableToSendCommand,
                "expected 2 parameters but got 1",
                !lost,
            ),
            (
                Unknown,
                "terminating connection due to idle-in-transaction timeout",
                !lost,
            ),
        ] {
            let error = DieselError::DatabaseError(kind, Box::new(message.to_owned()));
            let answer = ApiError::from(error);
            let expected = if unavailable {
                matches!(answer, ApiError::Unavailable { .. })
            } else {
                matches!(answer, ApiError::Internal(..))
            };
            assert!(expected, "{message}: {answer:?}");
        }
    }

    #[test]
    fn conflict_field_follows_postgres_naming() {
        assert_eq!(
            conflict_field(Some("users"), Some("users_email_key")),
            "email"
        );
        assert_eq!(
            conflict_field(Some("roles"), Some("roles_name_idx")),
            "name"
        );
        assert_eq!(conflict_field(Some("users"), Some("custom")), "custom");
        assert_eq!(conflict_field(None, None), "value");
    }
}
