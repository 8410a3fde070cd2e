//! Query caches kept in step with PostgreSQL by the table change listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use keel_core::ApiError;
use keel_core::db::Db;
use keel_core::db::cached::QueryCache;
use keel_core::db::changes::Listener;
use keel_testkit::TestDb;

/// A table that opts in to change notifications, as a feature's migration would.
const SCHEMA: &str = "
    CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
    CREATE TABLE unwatched (id serial PRIMARY KEY);
    CREATE TRIGGER notes_notify_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON notes
        FOR EACH STATEMENT EXECUTE FUNCTION keel_notify_change();
    INSERT INTO notes (body) VALUES ('first');
";

struct Fixture {
    db: Db,
    test_db: TestDb,
    cache: QueryCache<&'static str, usize>,
    loads: Arc<AtomicUsize>,
}

impl Fixture {
    async fn new() -> Self {
        let test_db = TestDb::new().await;
        test_db.connect().await.batch_execute(SCHEMA).await.unwrap();
        let db = test_db.pool();
        let cache = QueryCache::new(
            "notes",
            db.changes().clone(),
            &["notes"],
            Duration::from_secs(60),
            16,
        );
        Self {
            db,
            test_db,
            cache,
            loads: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A fixture whose change listener is connected (until the guard is dropped).
    async fn listening() -> (Self, Listener) {
        let f = Self::new().await;
        let listener = f.db.listen_for_changes();
        until("the listener connects", || f.db.changes().is_live()).await;
        (f, listener)
    }

    /// Reads through the cache; returns how many loads have run so far.
    async fn read(&self) -> usize {
        let loads = Arc::clone(&self.loads);
        self.cache
            .get_or_load("all", async move {
                Ok::<_, ApiError>(loads.fetch_add(1, Ordering::SeqCst) + 1)
            })
            .await
            .unwrap();
        self.loads.load(Ordering::SeqCst)
    }

    /// Runs SQL on a connection of its own, as another replica or psql would.
    async fn elsewhere(&self, sql: &str) {
        self.test_db
            .connect()
            .await
            .batch_execute(sql)
            .await
            .unwrap();
    }

    /// Reads until a load happens (the change was heard) or 5 s pass.
    async fn reloads_after(&self, before: usize) -> bool {
        for _ in 0..100 {
            if self.read().await > before {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn without_a_listener_nothing_is_cached() {
    let f = Fixture::new().await;
    assert_eq!(f.read().await, 1);
    assert_eq!(f.read().await, 2, "no listener: every read loads");
}

#[tokio::test]
async fn a_change_from_another_connection_drops_the_cached_result() {
    let (f, _listener) = Fixture::listening().await;

    let loaded = f.read().await;
    assert_eq!(
        f.read().await,
        loaded,
        "a repeated read is served from memory"
    );

    // A table the cache doesn't read changes nothing.
    f.elsewhere("INSERT INTO unwatched DEFAULT VALUES").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.read().await, loaded);

    // A rolled-back change sends nothing either.
    f.elsewhere("BEGIN; UPDATE notes SET body = 'draft'; ROLLBACK")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.read().await, loaded);

    for sql in [
        "UPDATE notes SET body = 'second'",
        "INSERT INTO notes (body) VALUES ('third')",
        "DELETE FROM notes WHERE body = 'third'",
        "TRUNCATE notes",
    ] {
        let before = f.read().await;
        f.elsewhere(sql).await;
        assert!(f.reloads_after(before).await, "{sql} was not heard");
    }
}

#[tokio::test]
async fn a_commit_through_db_transaction_is_seen_by_the_next_read_at_once() {
    let (f, _listener) = Fixture::listening().await;
    let loaded = f.read().await;
    assert_eq!(f.read().await, loaded);
    f.db.transaction(async move |conn| {
        conn.batch_execute("INSERT INTO notes (body) VALUES ('mine')")
            .await?;
        Ok::<_, ApiError>(())
    })
    .await
    .unwrap();
    // No waiting for the notification: the writer's own next read loads.
    assert_eq!(f.read().await, loaded + 1);
}

#[tokio::test]
async fn a_lost_listener_bypasses_the_cache_until_it_reconnects() {
    let (f, _listener) = Fixture::listening().await;
    let loaded = f.read().await;
    assert_eq!(f.read().await, loaded);

    f.elsewhere(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'keel-change-listener' AND datname = current_database()",
    )
    .await;
    until("the feed notices", || !f.db.changes().is_live()).await;
    let during = f.read().await;
    assert!(during > loaded);
    assert_eq!(
        f.read().await,
        during + 1,
        "no caching while nobody listens"
    );

    until("the listener reconnects", || f.db.changes().is_live()).await;
    let after = f.read().await;
    assert_eq!(f.read().await, after, "caching resumes");
}

/// A channel registered after the listener connected is followed at once, and each
/// message sent on it (from any process) reaches its handler.
#[tokio::test]
async fn a_channel_registered_while_listening_gets_its_messages() {
    let (f, _listener) = Fixture::listening().await;
    let heard = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let keep = heard.clone();
    f.db.changes().on_message(
        "keel_test_messages",
        Arc::new(move |payload: &str| keep.lock().unwrap().push(payload.to_owned())),
    );
    for n in 0..3 {
        let sent = format!("message {n}");
        let landed = async || {
            f.db.notify("keel_test_messages", &sent).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            heard.lock().unwrap().contains(&sent)
        };
        assert!(
            keel_testkit::eventually(Duration::from_secs(5), landed).await,
            "{n}"
        );
    }
}
