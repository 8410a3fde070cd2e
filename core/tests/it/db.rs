//! The database layer against a real PostgreSQL: migrations, pool limits, transactions.

use std::time::Duration;

use diesel::sql_types::{BigInt, Integer, Text};
use diesel::{ExpressionMethods, QueryDsl, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use keel_core::ApiError;
use keel_core::db::{Db, KeepPrepared, fixed, migrate};
use keel_testkit::TestDb;
use poem::http::StatusCode;

fn db_for(test_db: &TestDb, overrides: &[(&str, &str)]) -> Db {
    let settings = keel_testkit::settings(test_db.url(), overrides);
    Db::new(&test_db.secret_url(), &settings.database, "keel-test")
}

diesel::table! {
    prepared_probe (id) {
        id -> Integer,
        n -> Integer,
    }
}

/// The statements this connection keeps prepared whose text starts with `start`.
async fn kept(conn: &mut AsyncPgConnection, start: &str) -> i64 {
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE starts_with(statement, $1)",
    )
    .bind::<Text, _>(start)
    .get_result(conn)
    .await
    .unwrap();
    count.n
}

async fn probe_rows(conn: &mut AsyncPgConnection) -> Vec<(i32, i32)> {
    prepared_probe::table
        .order(prepared_probe::id)
        .load(conn)
        .await
        .unwrap()
}

const PROBE_UPDATE: &str = "UPDATE \"prepared_probe\"";

/// diesel prepares an UPDATE again on every call (a round trip each); `.prepared()`
/// keeps it, once per distinct SQL text, and another text never runs the first's plan.
#[tokio::test]
async fn a_kept_update_is_prepared_once_per_connection_and_sql_text() {
    let test_db = TestDb::new().await;
    let db = db_for(&test_db, &[]);
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute(
        "CREATE TEMP TABLE prepared_probe (id int PRIMARY KEY, n int NOT NULL); \
         INSERT INTO prepared_probe VALUES (1, 0), (2, 0)",
    )
    .await
    .unwrap();
    let set_n = |n: i32| diesel::update(prepared_probe::table.find(1)).set(prepared_probe::n.eq(n));
    for n in 1..=3 {
        set_n(n).execute(&mut conn).await.unwrap();
    }
    assert_eq!(
        kept(&mut conn, PROBE_UPDATE).await,
        0,
        "diesel alone keeps none"
    );
    for n in 4..=6 {
        assert_eq!(set_n(n).prepared().execute(&mut conn).await.unwrap(), 1);
    }
    assert_eq!(kept(&mut conn, PROBE_UPDATE).await, 1);
    // Other SQL (another filter, a RETURNING) is another statement.
    let returned: i32 = diesel::update(prepared_probe::table.filter(prepared_probe::n.eq(0)))
        .set(prepared_probe::n.eq(9))
        .returning(prepared_probe::id)
        .prepared()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(returned, 2);
    assert_eq!(kept(&mut conn, PROBE_UPDATE).await, 2);
    assert_eq!(probe_rows(&mut conn).await, [(1, 6), (2, 9)]);
}

/// A row with `Option` fields writes `DEFAULT` for each `None`: diesel keeps no such
/// INSERT, `.prepared()` keeps one per text.
#[tokio::test]
async fn a_kept_insert_is_prepared_once_per_text() {
    #[derive(diesel::Insertable)]
    #[diesel(table_name = prepared_probe)]
    struct NewProbe {
        id: i32,
        n: Option<i32>,
    }
    const PROBE_INSERT: &str = "INSERT INTO \"prepared_probe\"";
    let test_db = TestDb::new().await;
    let db = db_for(&test_db, &[]);
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute(
        "CREATE TEMP TABLE prepared_probe (id int PRIMARY KEY, n int NOT NULL DEFAULT 7)",
    )
    .await
    .unwrap();
    let insert = |id, n| diesel::insert_into(prepared_probe::table).values(NewProbe { id, n });
    for id in 1..=2 {
        insert(id, Some(id)).execute(&mut conn).await.unwrap();
    }
    assert_eq!(
        kept(&mut conn, PROBE_INSERT).await,
        0,
        "diesel alone keeps none"
    );
    for id in 3..=5 {
        insert(id, Some(id))
            .prepared()
            .execute(&mut conn)
            .await
            .unwrap();
    }
    insert(6, None).prepared().execute(&mut conn).await.unwrap();
    assert_eq!(kept(&mut conn, PROBE_INSERT).await, 2);
    assert_eq!(
        probe_rows(&mut conn).await,
        [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 7)]
    );
}

/// `sql_query` prepares its statement again on every call; `fixed` keeps it, once per
/// connection, and every call still gets its own parameters, read back by name.
#[tokio::test]
async fn a_fixed_statement_is_prepared_once_per_connection() {
    const DOUBLE: &str = "SELECT $1 * 2 AS n, $2 AS label";
    let test_db = TestDb::new().await;
    let db = db_for(&test_db, &[]);
    let mut conn = db.conn().await.unwrap();
    #[derive(QueryableByName, Debug, PartialEq)]
    struct Doubled {
        #[diesel(sql_type = Integer)]
        n: i32,
        #[diesel(sql_type = Text)]
        label: String,
    }
    for n in 1..=3 {
        let doubled: Doubled = diesel::sql_query(DOUBLE)
            .bind::<Integer, _>(n)
            .bind::<Text, _>(format!("#{n}"))
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!((doubled.n, doubled.label), (n * 2, format!("#{n}")));
    }
    assert_eq!(kept(&mut conn, DOUBLE).await, 0, "sql_query keeps none");
    for n in 4..=6 {
        let label = format!("#{n}");
        let doubled: Doubled = fixed(DOUBLE)
            .bind::<Integer, _>(n)
            .bind::<Text, _>(&label)
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!((doubled.n, doubled.label), (n * 2, label));
    }
    assert_eq!(kept(&mut conn, DOUBLE).await, 1);
    // A parameter inside a subquery, where a placeholder appended to the text would break it.
    let inside: Vec<Doubled> = fixed("SELECT n * 2 AS n, 'x' AS label FROM (SELECT $1 AS n) s")
        .bind::<Integer, _>(21)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        inside,
        [Doubled {
            n: 42,
            label: "x".into()
        }]
    );
}

#[tokio::test]
async fn migrations_apply_once_and_then_are_a_no_op() {
    let db = TestDb::empty().await;
    let url = db.secret_url();
    assert!(!migrate::pending(&url).await.unwrap().is_empty());
    let first = migrate::run(&url).await.unwrap();
    assert!(!first.is_empty());
    assert!(migrate::run(&url).await.unwrap().is_empty());
    assert!(migrate::pending(&url).await.unwrap().is_empty());
}

#[tokio::test]
async fn racing_starters_apply_each_migration_exactly_once() {
    let db = TestDb::empty().await;
    let expected = migrate::pending(&db.secret_url()).await.unwrap().len();
    let runs = (0..4).map(|_| {
        let url = db.secret_url();
        tokio::spawn(async move { migrate::run(&url).await })
    });
    let mut applied = Vec::new();
    for run in runs.collect::<Vec<_>>() {
        applied.extend(run.await.unwrap().unwrap());
    }
    assert_eq!(
        applied.len(),
        expected,
        "every migration applied once: {applied:?}"
    );
}

#[tokio::test]
async fn the_pool_answers_503_when_exhausted_instead_of_hanging() {
    let test_db = TestDb::new().await;
    let db = db_for(
        &test_db,
        &[
            ("DATABASE_POOL_SIZE", "1"),
            ("DATABASE_POOL_TIMEOUT", "200ms"),
        ],
    );
    let held = db.conn().await.unwrap();
    let Err(err) = db.conn().await else {
        panic!("a second connection from a pool of one");
    };
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    assert!(db.conn().await.is_ok(), "a released connection is reused");
}

#[tokio::test]
async fn an_unreachable_database_is_a_503() {
    let settings = keel_testkit::settings(
        "postgres://nobody@127.0.0.1:1/none",
        &[("DATABASE_POOL_TIMEOUT", "300ms")],
    );
    let url = settings.database.url.clone().unwrap();
    let db = Db::new(&url, &settings.database, "keel-test");
    let err = db.ping().await.unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn statement_timeout_comes_from_settings() {
    let test_db = TestDb::new().await;
    let db = db_for(&test_db, &[("DATABASE_STATEMENT_TIMEOUT", "100ms")]);
    let mut conn = db.conn().await.unwrap();
    let err = conn.batch_execute("SELECT pg_sleep(2)").await.unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &Db) -> i64 {
    let mut conn = db.conn().await.unwrap();
    let row: Count = diesel::sql_query("SELECT count(*) AS n FROM notes")
        .get_result(&mut conn)
        .await
        .unwrap();
    row.n
}

#[tokio::test]
async fn transactions_commit_on_ok_and_roll_back_on_err() {
    let test_db = TestDb::new().await;
    let db = db_for(&test_db, &[]);
    db.conn()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE notes (id int PRIMARY KEY, slug text UNIQUE)")
        .await
        .unwrap();

    let insert = |id: i32| {
        diesel::sql_query("INSERT INTO notes (id, slug) VALUES ($1, 'slug-' || $1)")
            .bind::<Integer, _>(id)
    };

    let committed: Result<(), ApiError> = db
        .transaction(async move |conn| {
            insert(1).execute(conn).await?;
            insert(2).execute(conn).await?;
            Ok(())
        })
        .await;
    assert!(committed.is_ok());
    assert_eq!(count(&db).await, 2);

    let rolled_back: Result<(), ApiError> = db
        .transaction(async move |conn| {
            insert(3).execute(conn).await?;
            Err(ApiError::BadRequest("changed my mind".to_owned()))
        })
        .await;
    assert!(rolled_back.is_err());
    assert_eq!(
        count(&db).await,
        2,
        "the failed transaction left nothing behind"
    );

    // A unique violation inside a transaction becomes a 409 naming the column.
    let duplicate: Result<(), ApiError> = db
        .transaction(async move |conn| {
            diesel::sql_query("INSERT INTO notes (id, slug) VALUES (9, 'slug-1')")
                .execute(conn)
                .await?;
            Ok(())
        })
        .await;
    let err = duplicate.unwrap_err();
    assert_eq!(err.status(), StatusCode::CONFLICT);
    assert!(
        matches!(err, ApiError::Conflict { ref field } if field == "slug"),
        "{err:?}"
    );
}

#[tokio::test]
async fn pool_state_is_published_as_metrics() {
    let handle = keel_core::telemetry::metrics::install().unwrap();
    let test_db = TestDb::new().await;
    let db = db_for(&test_db, &[("DATABASE_POOL_SIZE", "3")]);
    db.ping().await.unwrap();
    db.record_metrics();
    let text = handle.render();
    assert!(text.contains("db_pool_max_connections 3"), "{text}");
    assert!(text.contains("db_pool_connections "), "{text}");
    assert!(text.contains("db_pool_timeouts_total "), "{text}");
}

/// With `DATABASE_OWNER_URL`, the role keel serves with may append to the audit trail
/// but neither rewrite it nor switch its guards off; everything else it may use fully.
/// Two real roles, on a database the owner role owns.
#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_role_can_append_to_the_trail_but_never_rewrite_it() {
    use keel_core::db::{admin, privileges};

    let db = TestDb::empty().await;
    let roles = db.split_roles().await;
    let (owner, app) = (roles.owner.clone(), roles.runtime.clone());
    let mut superuser = db.connect().await;
    let (owner_url, app_url) = (db.url_as(&owner), db.url_as(&app));

    let applied = migrate::run_with_roles(&app_url, Some(&owner_url))
        .await
        .unwrap();
    assert!(!applied.is_empty());
    // Idempotent: every start runs it.
    assert!(
        migrate::run_with_roles(&app_url, Some(&owner_url))
            .await
            .unwrap()
            .is_empty()
    );
    let connect = |url: keel_core::settings::Secret| async move {
        admin::connect(url.expose(), Duration::from_secs(5))
            .await
            .unwrap()
    };
    let mut as_app = connect(app_url.clone()).await;
    let mut as_owner = connect(owner_url.clone()).await;
    assert!(!privileges::append_only_exposed(&mut as_app).await.unwrap());
    assert!(
        privileges::append_only_exposed(&mut as_owner)
            .await
            .unwrap(),
        "one role for everything: the trail is only as strong as it"
    );

    // What serving needs works: appending and sealing, and plain tables in full.
    as_app
        .batch_execute(
            "INSERT INTO activity_entries (action, entity_type, summary) \
                 VALUES ('user.created', 'user', 'appended by the app'); \
             INSERT INTO activity_seals (position, entry_id, hash) \
                 SELECT 1, id, sha256('seal') FROM activity_entries; \
             INSERT INTO users (id, email, password_hash) \
                 VALUES (gen_random_uuid(), 'ada@example.com', 'x'); \
             UPDATE users SET full_name = 'Ada'; DELETE FROM users;",
        )
        .await
        .unwrap();
    // What would rewrite the trail is refused by PostgreSQL itself, triggers or not.
    for sql in [
        "ALTER TABLE activity_entries DISABLE TRIGGER USER".to_owned(),
        "ALTER TABLE activity_seals DISABLE TRIGGER ALL".to_owned(),
        "DROP TRIGGER activity_entries_append_only ON activity_entries".to_owned(),
        format!("ALTER TABLE activity_entries OWNER TO {app}"),
        "UPDATE activity_entries SET summary = 'forged'".to_owned(),
        "DELETE FROM activity_entries".to_owned(),
        "TRUNCATE activity_entries".to_owned(),
        "UPDATE activity_seals SET hash = sha256('forged')".to_owned(),
        "DELETE FROM activity_words".to_owned(),
        "DELETE FROM __diesel_schema_migrations".to_owned(),
    ] {
        let err = as_app.batch_execute(&sql).await.unwrap_err().to_string();
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{sql}: {err}"
        );
    }
    // What it inserts can't claim another transaction or time (which would place an
    // entry inside the sealed history), nor keep its words out of search by shadowing
    // the postings table with a temporary one.
    let forged_id = as_app
        .batch_execute(
            "INSERT INTO activity_entries (id, action, entity_type, summary) \
                 OVERRIDING SYSTEM VALUE VALUES (1000000, 'user.created', 'user', 'ahead')",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        forged_id.contains("ids come from its sequence"),
        "{forged_id}"
    );
    as_app
        .batch_execute(
            "CREATE TEMP TABLE activity_words (word text, occurred_at timestamptz, entry_id bigint); \
             INSERT INTO activity_entries (tx_id, occurred_at, action, entity_type, summary) \
                 VALUES (1, '2000-01-01', 'user.created', 'user', 'backdated shadowed');",
        )
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Forged {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        stamped: bool,
        #[diesel(sql_type = BigInt)]
        postings: i64,
    }
    let forged: Forged = diesel::sql_query(
        "SELECT e.tx_id > 1 AND e.occurred_at > now() - interval '1 hour' AS stamped, \
                (SELECT count(*) FROM public.activity_words w WHERE w.entry_id = e.id) AS postings \
         FROM activity_entries e WHERE e.summary = 'backdated shadowed'",
    )
    .get_result(&mut superuser)
    .await
    .unwrap();
    assert!(forged.stamped, "tx_id and occurred_at are the database's");
    assert_eq!(
        forged.postings, 2,
        "backdated, shadowed: both words indexed"
    );
    // Dropped here, not by the session's exit: a temporary table vanishing while the
    // roles are reassigned at the end fails that ("could not open relation").
    as_app
        .batch_execute("DROP TABLE pg_temp.activity_words")
        .await
        .unwrap();

    // The owner still can (that is what `activity verify --since` is for).
    as_owner
        .batch_execute("ALTER TABLE activity_entries DISABLE TRIGGER USER")
        .await
        .unwrap();

    // A runtime role that owns a table can't be made safe by grants: said, not hidden.
    superuser
        .batch_execute(&format!("ALTER TABLE task_outbox OWNER TO {app}"))
        .await
        .unwrap();
    let err = migrate::run_with_roles(&app_url, Some(&owner_url))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("task_outbox") && err.contains("REASSIGN OWNED"),
        "{err}"
    );
    // Both URLs naming one role is not an error, just nothing to separate.
    migrate::run_with_roles(&owner_url, Some(&owner_url))
        .await
        .unwrap();

    drop((as_app, as_owner, superuser));
    db.drop_roles(roles).await;
}
