//! Cluster-level statements (create and drop databases) for provisioning and tests.

use std::time::Duration;

use diesel::sql_types::{Bool, Text};
use diesel::{ConnectionError, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::fixed;

/// A direct (unpooled) connection that gives up after `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<AsyncPgConnection, ConnectionError> {
    tokio::time::timeout(timeout, AsyncPgConnection::establish(url))
        .await
        .unwrap_or_else(|_| {
            Err(ConnectionError::BadConnection(format!(
                "no answer within {} ms",
                timeout.as_millis()
            )))
        })
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

pub async fn database_exists(
    conn: &mut AsyncPgConnection,
    name: &str,
) -> diesel::QueryResult<bool> {
    let row: Exists =
        fixed("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result(conn)
            .await?;
    Ok(row.exists)
}

/// Creates `name` (as a copy of `template` when given) unless it exists; safe when several
/// processes race to create the same database.
pub async fn create_database(
    conn: &mut AsyncPgConnection,
    name: &str,
    template: Option<&str>,
) -> diesel::QueryResult<()> {
    if database_exists(conn, name).await? {
        return Ok(());
    }
    let sql = match template {
        // FILE_COPY clones small databases much faster than the default WAL_LOG strategy.
        Some(t) => format!(
            "CREATE DATABASE {} TEMPLATE {} STRATEGY = FILE_COPY",
            quote_ident(name),
            quote_ident(t)
        ),
        None => format!("CREATE DATABASE {}", quote_ident(name)),
    };
    match conn.batch_execute(&sql).await {
        Err(err) if err.to_string().contains("already exists") => Ok(()),
        other => other,
    }
}

/// Drops `name`, disconnecting anyone still connected to it.
pub async fn drop_database(conn: &mut AsyncPgConnection, name: &str) -> diesel::QueryResult<()> {
    conn.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    ))
    .await
}

/// Quotes an SQL identifier (`"a""b"` for `a"b`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
