//! Two database roles: the owner (`DATABASE_OWNER_URL`) migrates and owns the schema;
//! the runtime role (`DATABASE_URL`) gets only what serving needs.
//!
//! Append-only tables — those a `keel_refuse_change` trigger guards, such as the audit
//! trail — are granted to the runtime role for `SELECT` and `INSERT` only. A role that
//! owns a table can switch its triggers off (`ALTER TABLE … DISABLE TRIGGER`) and
//! rewrite it; a role that merely holds `INSERT` can't, so the guarantee then binds the
//! application's own credentials too.

use std::time::Duration;

use diesel::sql_types::{Bool, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::admin::{connect, quote_ident};
use super::fixed;
use crate::settings::Secret;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tables a `keel_refuse_change` trigger makes append-only, in the current schema.
const APPEND_ONLY_TABLES: &str = "SELECT DISTINCT c.relname AS name \
     FROM pg_trigger t \
     JOIN pg_class c ON c.oid = t.tgrelid \
     JOIN pg_proc p ON p.oid = t.tgfoid \
     WHERE p.proname = 'keel_refuse_change' AND c.relnamespace = current_schema()::regnamespace \
     ORDER BY 1";

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("cannot connect as the {role} role: {source}")]
    Connect {
        role: &'static str,
        source: diesel::ConnectionError,
    },
    #[error("granting the runtime role its privileges failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error(
        "{table} is owned by {runtime}, the role DATABASE_URL connects as, so it could switch \
         the table's guards off; give it to the owner first (as {runtime} or a superuser: \
         REASSIGN OWNED BY {runtime} TO {owner})"
    )]
    RuntimeOwns {
        table: String,
        runtime: String,
        owner: String,
    },
}

/// What [`grant_runtime`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Separation {
    /// The runtime role holds DML on every table, and only `SELECT, INSERT` on these.
    Granted {
        runtime: String,
        append_only: Vec<String>,
    },
    /// Both URLs name the same role: nothing to separate.
    SameRole(String),
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

async fn current_user(conn: &mut AsyncPgConnection) -> diesel::QueryResult<String> {
    let row: Name = fixed("SELECT current_user::text AS name")
        .get_result(conn)
        .await?;
    Ok(row.name)
}

async fn connect_as(url: &Secret, role: &'static str) -> Result<AsyncPgConnection, GrantError> {
    connect(url.expose(), CONNECT_TIMEOUT)
        .await
        .map_err(|source| GrantError::Connect { role, source })
}

/// As the owner, grants the role of `runtime_url` what keel needs: usage of the schema,
/// `SELECT, INSERT, UPDATE, DELETE` on every table, sequences and functions — except
/// on append-only tables, where it keeps `SELECT, INSERT` only, and the migrations
/// table, which it may only read. Idempotent; run it after every migration.
pub async fn grant_runtime(
    owner_url: &Secret,
    runtime_url: &Secret,
) -> Result<Separation, GrantError> {
    let runtime =
        current_user(&mut connect_as(runtime_url, "runtime (DATABASE_URL)").await?).await?;
    let mut conn = connect_as(owner_url, "owner (DATABASE_OWNER_URL)").await?;
    let owner = current_user(&mut conn).await?;
    if owner == runtime {
        return Ok(Separation::SameRole(runtime));
    }
    let append_only: Vec<String> = fixed(APPEND_ONLY_TABLES)
        .load::<Name>(&mut conn)
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let owned_by_runtime: Option<Name> = fixed(
        "SELECT c.relname AS name FROM pg_class c \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') \
           AND pg_get_userbyid(c.relowner) = $1 LIMIT 1",
    )
    .bind::<Text, _>(&runtime)
    .get_result(&mut conn)
    .await
    .optional()?;
    if let Some(table) = owned_by_runtime {
        return Err(GrantError::RuntimeOwns {
            table: table.name,
            runtime,
            owner,
        });
    }

    let schema: Name = fixed("SELECT current_schema()::text AS name")
        .get_result(&mut conn)
        .await?;
    let (schema, role) = (quote_ident(&schema.name), quote_ident(&runtime));
    let mut sql = format!(
        "GRANT USAGE ON SCHEMA {schema} TO {role};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};\n\
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};\n\
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role};\n\
         REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON __diesel_schema_migrations FROM {role};\n"
    );
    for table in &append_only {
        sql.push_str(&format!(
            "REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {role};\n",
            quote_ident(table)
        ));
    }
    // One transaction: the runtime role never holds a partial set.
    conn.batch_execute(&format!("BEGIN;\n{sql}COMMIT;")).await?;
    Ok(Separation::Granted {
        runtime,
        append_only,
    })
}

#[derive(QueryableByName)]
struct Exposed {
    #[diesel(sql_type = Bool)]
    exposed: bool,
}

/// Whether the role `conn` is signed in as could rewrite an append-only table: it owns
/// one (or is a superuser), or holds `UPDATE`, `DELETE` or `TRUNCATE` on one. Then the
/// audit trail is only as trustworthy as that role's credentials.
pub async fn append_only_exposed(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    let row: Exposed = diesel::sql_query(format!(
        "SELECT coalesce(bool_or( \
             pg_has_role(current_user, c.relowner, 'USAGE') \
             OR has_table_privilege(c.oid, 'UPDATE') \
             OR has_table_privilege(c.oid, 'DELETE') \
             OR has_table_privilege(c.oid, 'TRUNCATE')), false) AS exposed \
         FROM pg_class c WHERE c.relname IN (SELECT name FROM ({APPEND_ONLY_TABLES}) t) \
           AND c.relnamespace = current_schema()::regnamespace"
    ))
    .get_result(conn)
    .await?;
    Ok(row.exposed)
}
