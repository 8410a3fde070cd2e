//! A fresh database with the audit tables, and helpers to write and read entries.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_activity::{Action, ActivityService, Entry, record};
use keel_core::ApiError;
use keel_core::db::Db;
use keel_testkit::TestDb;

pub struct Trail {
    pub test_db: TestDb,
    pub db: Db,
    pub service: ActivityService,
}

impl Trail {
    /// The sealed head, as an operator keeps it outside the database.
    pub async fn head(&self) -> keel_activity::chain::Anchor {
        self.service.anchor().await.unwrap().unwrap()
    }

    pub async fn new() -> Self {
        let test_db = TestDb::new().await;
        let settings = keel_testkit::settings(test_db.url(), &[("DATABASE_POOL_SIZE", "20")]);
        let db = Db::new(
            &test_db.secret_url(),
            &settings.database,
            "keel-activity-tests",
        );
        let service = ActivityService::new(db.clone());
        Self {
            test_db,
            db,
            service,
        }
    }

    /// Records one entry in a transaction of its own.
    pub async fn record(&self, summary: &str) {
        let entry = Entry::new(Action::new("user.updated"), "user", summary);
        self.db
            .transaction(async move |conn| {
                record(conn, entry).await?;
                Ok::<_, ApiError>(())
            })
            .await
            .unwrap();
    }

    /// A connection of its own, outside the pool (as psql would be).
    pub async fn raw(&self) -> AsyncPgConnection {
        self.test_db.connect().await
    }

    pub async fn summaries(&self) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            summary: String,
        }
        let rows: Vec<Row> = diesel::sql_query("SELECT summary FROM activity_entries ORDER BY id")
            .load(&mut self.raw().await)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.summary).collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.count_on(&mut self.raw().await, sql).await
    }

    /// `count`'s answer on `conn`, for what one connection keeps (its prepared statements).
    pub async fn count_on(&self, conn: &mut AsyncPgConnection, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            count: i64,
        }
        let row: Count = diesel::sql_query(sql).get_result(conn).await.unwrap();
        row.count
    }
}

/// Runs `sql` on its own connection and returns the error PostgreSQL gave, if any.
pub async fn try_sql(conn: &mut AsyncPgConnection, sql: &str) -> Result<(), String> {
    use diesel_async::SimpleAsyncConnection;
    conn.batch_execute(sql).await.map_err(|e| e.to_string())
}
