//! Background tasks against the local RabbitMQ (each test its own queue prefix, deleted
//! at the end) and PostgreSQL: the outbox, the relay, the worker's retries and dead
//! letters, a lost connection, shutdown, and the in-process runner.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::sql_types::{Integer, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use futures_util::future::BoxFuture;
use keel_core::db::Db;
use keel_core::settings::Settings;
use keel_core::tasks::local::LocalRunner;
use keel_core::tasks::{
    Broker, Envelope, Missed, Periodic, Registry, Relay, RelayTarget, RetryPolicy, Scheduler, Task,
    TaskContext, TaskError, Worker, WorkerStopped, enqueue,
};
use keel_testkit::{Link, Proxy, TestDb};
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

const QUEUE: &str = "notes";

/// Runs of "hold" under way in this test process, and the most at once.
static HOLDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static MOST_HOLDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many "hold" runs are under way (`RunQueryDsl::load` shadows the atomic's).
fn holding() -> usize {
    std::sync::atomic::AtomicUsize::load(&HOLDING, std::sync::atomic::Ordering::SeqCst)
}

/// Counts one "hold" run while it lives (a cancelled run included).
struct Holding;

impl Holding {
    fn start() -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = HOLDING.fetch_add(1, SeqCst) + 1;
        MOST_HOLDING.fetch_max(now, SeqCst);
        Self
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        HOLDING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A task whose text says how it behaves; every run is a row of `task_runs`.
#[derive(Debug, Serialize, Deserialize)]
struct Note {
    text: String,
}

impl Note {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
        }
    }
}

impl Task for Note {
    const NAME: &'static str = "test.note";
    const QUEUE: &'static str = QUEUE;
    type Services = Db;

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(100),
            max: Duration::from_millis(200),
        }
    }

    async fn run(self, ctx: TaskContext<Db>) -> Result<(), TaskError> {
        let mut conn = ctx.services.conn().await.map_err(TaskError::retry)?;
        diesel::sql_query("INSERT INTO task_runs (task_id, attempt, text) VALUES ($1, $2, $3)")
            .bind::<diesel::sql_types::Uuid, _>(ctx.task_id())
            .bind::<Integer, _>(i32::try_from(ctx.attempt()).unwrap_or(i32::MAX))
            .bind::<Text, _>(&self.text)
            .execute(&mut conn)
            .await
            .map_err(TaskError::retry)?;
        drop(conn);
        match self.text.as_str() {
            "fail once" if ctx.attempt() == 1 => Err(TaskError::retry("not yet")),
            "panic once" if ctx.attempt() == 1 => panic!("handler bug"),
            "always fail" => Err(TaskError::retry("boom")),
            "bad" => Err(TaskError::permanent("this can never work")),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(700)).await;
                Ok(())
            }
            "hold" => {
                let _running = Holding::start();
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

struct Fixture {
    _test_db: TestDb,
    db: Db,
    settings: Settings,
    registry: Arc<Registry>,
    broker: Arc<Broker>,
    /// (task, error) of each dead letter the hook saw.
    dead: Arc<Mutex<Vec<(String, String)>>>,
}

impl Fixture {
    async fn new() -> Self {
        Self::with(None, &[]).await
    }

    /// `amqp_url`: another address for the same broker (a proxy); `extra`: more settings.
    async fn with(amqp_url: Option<String>, extra: &[(&str, &str)]) -> Self {
        let test_db = TestDb::new().await;
        test_db
            .connect()
            .await
            .batch_execute(
                "CREATE TABLE task_runs (task_id uuid NOT NULL, attempt int NOT NULL, \
                 text text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())",
            )
            .await
            .unwrap();
        let [(_, url), (prefix_var, prefix)] = keel_testkit::amqp_settings();
        let url = amqp_url.unwrap_or(url);
        let mut overrides = vec![
            ("AMQP_URL", url.as_str()),
            (prefix_var, prefix.as_str()),
            ("TASK_SHUTDOWN_GRACE", "5s"),
            ("AMQP_TIMEOUT", "2s"),
        ];
        overrides.extend_from_slice(extra);
        let settings = keel_testkit::settings(test_db.url(), &overrides);
        let db = Db::new(&test_db.secret_url(), &settings.database, "keel-test");
        let dead = Arc::new(Mutex::new(Vec::new()));
        let seen = dead.clone();
        let mut registry = Registry::new();
        registry
            .register::<Note>(db.clone())
            .on_dead_letter(Arc::new(
                move |envelope: Envelope, error: String| -> BoxFuture<'static, ()> {
                    seen.lock().unwrap().push((envelope.task, error));
                    Box::pin(async {})
                },
            ));
        let amqp = settings.tasks.amqp_url.clone().unwrap();
        let broker = Arc::new(Broker::new(&settings.tasks, &amqp));
        Self {
            _test_db: test_db,
            db,
            settings,
            registry: Arc::new(registry),
            broker,
            dead,
        }
    }

    /// Enqueues in a committed transaction.
    async fn enqueue(&self, text: &str) {
        let note = Note::new(text);
        self.db
            .transaction(async move |conn| {
                enqueue(conn, &note).await?;
                Ok::<_, keel_core::ApiError>(())
            })
            .await
            .unwrap();
    }

    fn relay(&self) -> Relay {
        Relay::new(
            self.db.clone(),
            RelayTarget::Broker(self.broker.clone()),
            self.settings.tasks.relay_batch,
        )
    }

    fn worker(&self, broker: Arc<Broker>) -> Worker {
        Worker::new(
            broker,
            self.registry.clone(),
            self.settings.tasks.prefetch,
            self.settings.tasks.shutdown_grace,
        )
    }

    /// A worker running in the background until the sender fires.
    fn start_worker(&self) -> (oneshot::Sender<()>, tokio::task::JoinHandle<WorkerStopped>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let worker = self.worker(self.broker.clone());
        let running = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        (stop, running)
    }

    /// Each run so far: (text, attempt), in order.
    async fn runs(&self) -> Vec<(String, i32)> {
        #[derive(diesel::QueryableByName)]
        struct Run {
            #[diesel(sql_type = Text)]
            text: String,
            #[diesel(sql_type = Integer)]
            attempt: i32,
        }
        let mut conn = self.db.conn().await.unwrap();
        let runs: Vec<Run> = diesel::sql_query("SELECT text, attempt FROM task_runs ORDER BY at")
            .load(&mut conn)
            .await
            .unwrap();
        runs.into_iter().map(|r| (r.text, r.attempt)).collect()
    }

    /// Waits (up to 15 s) until `runs` rows have been written.
    async fn until_runs(&self, runs: usize) -> Vec<(String, i32)> {
        for _ in 0..300 {
            let seen = self.runs().await;
            if seen.len() >= runs {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {runs} runs, saw {:?}", self.runs().await);
    }

    /// Waits (up to 5 s) until the queue holds `dead` dead letters.
    async fn until_dead(&self, dead: u32) -> bool {
        keel_testkit::eventually(Duration::from_secs(5), async || {
            self.broker.stats(&[QUEUE]).await.unwrap()[0].dead == dead
        })
        .await
    }

    async fn outbox_rows(&self) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.db.conn().await.unwrap();
        let count: Count = diesel::sql_query("SELECT count(*) AS n FROM task_outbox")
            .get_result(&mut conn)
            .await
            .unwrap();
        count.n
    }

    async fn cleanup(self) {
        self.broker.delete_queues(QUEUE).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_committed_task_is_published_run_once_and_acked() {
    let f = Fixture::new().await;
    f.enqueue("hello").await;
    assert_eq!(f.outbox_rows().await, 1, "waiting in the outbox");
    assert_eq!(f.relay().relay_once().await.unwrap(), 1);
    assert_eq!(f.outbox_rows().await, 0, "deleted once confirmed");

    let (stop, worker) = f.start_worker();
    assert_eq!(f.until_runs(1).await, vec![("hello".to_owned(), 1)]);
    stop.send(()).unwrap();
    assert!(worker.await.unwrap().drained);

    let stats = f.broker.stats(&[QUEUE]).await.unwrap();
    assert_eq!(
        (stats[0].ready, stats[0].dead),
        (0, 0),
        "acked, nothing dead"
    );
    assert_eq!(f.runs().await.len(), 1, "run once");
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_transaction_enqueues_nothing() {
    let f = Fixture::new().await;
    let failed =
        f.db.transaction(async move |conn| {
            enqueue(conn, &Note::new("never")).await?;
            Err::<(), _>(keel_core::ApiError::internal("the business change failed"))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(f.outbox_rows().await, 0);
    assert_eq!(f.relay().relay_once().await.unwrap(), 0);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_and_panics_are_retried_after_a_delay_then_succeed() {
    let f = Fixture::new().await;
    f.enqueue("fail once").await;
    f.enqueue("panic once").await;
    f.relay().relay_once().await.unwrap();
    let (stop, worker) = f.start_worker();
    let runs = f.until_runs(4).await;
    for text in ["fail once", "panic once"] {
        let attempts: Vec<i32> = runs.iter().filter(|r| r.0 == text).map(|r| r.1).collect();
        assert_eq!(attempts, vec![1, 2], "{text}");
    }
    stop.send(()).unwrap();
    assert!(
        worker.await.unwrap().drained,
        "the panic didn't take the worker down"
    );
    let stats = f.broker.stats(&[QUEUE]).await.unwrap();
    assert_eq!((stats[0].ready, stats[0].dead), (0, 0));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_and_permanent_errors_end_in_the_dead_letters() {
    let f = Fixture::new().await;
    f.enqueue("always fail").await;
    f.enqueue("bad").await;
    f.relay().relay_once().await.unwrap();
    let (stop, worker) = f.start_worker();
    let runs = f.until_runs(4).await; // 3 attempts + 1
    assert!(f.until_dead(2).await, "both dead-lettered");
    stop.send(()).unwrap();
    worker.await.unwrap();
    let attempts: Vec<i32> = runs
        .iter()
        .filter(|r| r.0 == "always fail")
        .map(|r| r.1)
        .collect();
    assert_eq!(attempts, vec![1, 2, 3], "max_attempts runs in all");
    assert_eq!(runs.iter().filter(|r| r.0 == "bad").count(), 1, "no retry");

    // Each dead letter carries its last error and attempt count.
    let conn = f.broker.connect("keel-test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut letters = Vec::new();
    while let Some(message) = channel
        .basic_get(
            f.broker.topology().dead(QUEUE).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let headers = message.delivery.properties.headers().clone().unwrap();
        let header = |name: &str| headers.inner().get(name).cloned().unwrap();
        let envelope = Envelope::from_bytes(&message.delivery.data).unwrap();
        let error = match header("x-keel-error") {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("x-keel-error is {other:?}"),
        };
        let attempts = header("x-keel-attempts").as_long_long_int().unwrap();
        letters.push((
            envelope.payload["text"].as_str().unwrap().to_owned(),
            error,
            attempts,
        ));
    }
    letters.sort();
    assert_eq!(
        letters,
        vec![
            ("always fail".to_owned(), "boom".to_owned(), 3),
            ("bad".to_owned(), "this can never work".to_owned(), 1),
        ]
    );
    let mut hooked = f.dead.lock().unwrap().clone();
    hooked.sort();
    assert_eq!(hooked.len(), 2, "the dead-letter hook saw both: {hooked:?}");
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_rides_out_a_dropped_connection_and_the_relay_waits_for_the_broker() {
    let proxy = Proxy::start(amqp_addr()).await;
    let through_proxy = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let f = Fixture::with(Some(through_proxy), &[]).await;
    let (stop, worker) = f.start_worker();
    f.enqueue("before").await;
    f.relay().relay_once().await.unwrap();
    f.until_runs(1).await;

    // The broker is unreachable: the relay fails and keeps the task; the worker's
    // connection is gone.
    proxy.set(Link::Cut);
    f.enqueue("during").await;
    assert!(f.relay().relay_once().await.is_err());
    assert_eq!(f.outbox_rows().await, 1, "kept while the broker is away");

    proxy.set(Link::Up);
    let relayed = keel_testkit::eventually(Duration::from_secs(10), async || {
        f.relay().relay_once().await.is_ok_and(|n| n == 1)
    })
    .await;
    assert!(relayed, "the outbox drains once the broker is back");
    let runs = f.until_runs(2).await;
    assert_eq!(
        runs[1],
        ("during".to_owned(), 1),
        "the reconnected worker ran it"
    );
    stop.send(()).unwrap();
    worker.await.unwrap();
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_taking_tasks_and_lets_running_ones_finish() {
    let f = Fixture::new().await;
    f.enqueue("slow").await;
    f.relay().relay_once().await.unwrap();
    let (stop, worker) = f.start_worker();
    f.until_runs(1).await; // started (the row is written first), now sleeping
    stop.send(()).unwrap();
    assert!(
        worker.await.unwrap().drained,
        "finished within the grace period"
    );
    let stats = f.broker.stats(&[QUEUE]).await.unwrap();
    assert_eq!(
        (stats[0].ready, stats[0].dead),
        (0, 0),
        "acked before exiting"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_broker_the_relay_runs_tasks_in_process_with_retries() {
    let f = Fixture::new().await;
    let runner = Arc::new(LocalRunner::new(f.registry.clone()));
    let relay = Relay::new(f.db.clone(), RelayTarget::Local(runner.clone()), 100);
    f.enqueue("fail once").await;
    f.enqueue("bad").await;
    assert_eq!(relay.relay_once().await.unwrap(), 2);
    let runs = f.until_runs(3).await;
    let attempts: Vec<i32> = runs
        .iter()
        .filter(|r| r.0 == "fail once")
        .map(|r| r.1)
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    assert!(
        keel_testkit::eventually(Duration::from_secs(2), async || runner.in_flight() == 0).await
    );
    assert_eq!(
        f.dead.lock().unwrap().clone(),
        vec![("test.note".to_owned(), "this can never work".to_owned())],
        "given up, and reported to the hook"
    );
    f.cleanup().await;
}

fn amqp_addr() -> std::net::SocketAddr {
    let url = url::Url::parse(&keel_testkit::amqp_url()).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5672);
    format!("{host}:{port}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_can_be_listed_requeued_and_purged() {
    let f = Fixture::new().await;
    f.enqueue("bad").await;
    f.enqueue("bad").await;
    f.relay().relay_once().await.unwrap();
    let (stop, worker) = f.start_worker();
    f.until_runs(2).await;
    let dead_count = async || f.broker.stats(&[QUEUE]).await.unwrap()[0].dead;
    assert!(f.until_dead(2).await);

    let letters = f.broker.dead_letters(QUEUE, 10).await.unwrap();
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        assert_eq!(letter.error, "this can never work");
        assert_eq!(letter.attempts, 1);
        assert_eq!(letter.envelope.as_ref().unwrap().task, "test.note");
        assert!(!letter.failed_at.is_empty());
    }
    assert_eq!(dead_count().await, 2, "listing leaves them in place");

    // One goes back to work (and, still bad, ends up dead again after a new run).
    assert_eq!(f.broker.requeue_dead(QUEUE, 1).await.unwrap(), 1);
    f.until_runs(3).await;
    assert!(f.until_dead(2).await);
    assert_eq!(f.broker.purge_dead(QUEUE).await.unwrap(), 2);
    assert_eq!(dead_count().await, 0);
    stop.send(()).unwrap();
    worker.await.unwrap();
    f.cleanup().await;
}

/// A job every second that remembers its tick.
#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    at: chrono::DateTime<chrono::Utc>,
}

impl Task for Tick {
    const NAME: &'static str = "test.tick";
    const QUEUE: &'static str = QUEUE;
    type Services = ();

    async fn run(self, _: TaskContext<()>) -> Result<(), TaskError> {
        Ok(())
    }
}

impl Periodic for Tick {
    const SCHEDULE: &'static str = "* * * * * *";
    const MISSED: Missed = Missed::CatchUp;

    fn for_tick(at: chrono::DateTime<chrono::Utc>) -> Self {
        Self { at }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schedulers_enqueue_each_tick_once() {
    let f = Fixture::new().await;
    let mut registry = Registry::new();
    registry.register_periodic::<Tick>(());
    let one = Scheduler::new(f.db.clone(), registry.periodic_jobs());
    let two = Scheduler::new(f.db.clone(), registry.periodic_jobs());
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);

    // First seen: the job starts now, with nothing from its past.
    let (a, b) = tokio::join!(one.run_due(start), two.run_due(start));
    assert_eq!(a.unwrap() + b.unwrap(), 0);

    // Three ticks later, both look at once: three tasks in all, one per tick.
    let later = start + chrono::Duration::seconds(3);
    let (a, b) = tokio::join!(one.run_due(later), two.run_due(later));
    assert_eq!(a.unwrap() + b.unwrap(), 3);
    let (a, b) = tokio::join!(one.run_due(later), two.run_due(later));
    assert_eq!(a.unwrap() + b.unwrap(), 0, "nothing twice");

    #[derive(diesel::QueryableByName)]
    struct At {
        #[diesel(sql_type = Text)]
        at: String,
    }
    let mut conn = f.db.conn().await.unwrap();
    let ticks: Vec<At> = diesel::sql_query(
        "SELECT payload->>'at' AS at FROM task_outbox WHERE task = 'test.tick' ORDER BY id",
    )
    .load(&mut conn)
    .await
    .unwrap();
    drop(conn);
    let ticks: Vec<String> = ticks.into_iter().map(|t| t.at).collect();
    assert_eq!(
        ticks,
        [
            "2026-12-01T10:00:01Z",
            "2026-12-01T10:00:02Z",
            "2026-12-01T10:00:03Z"
        ]
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_relays_share_the_outbox_without_publishing_a_row_twice() {
    let f = Fixture::new().await;
    f.db.transaction(async move |conn| {
        for i in 0..300 {
            enqueue(conn, &Note::new(&format!("n{i}"))).await?;
        }
        Ok::<_, keel_core::ApiError>(())
    })
    .await
    .unwrap();
    // Small batches, so the two interleave.
    let relay = |f: &Fixture| {
        Relay::new(
            f.db.clone(),
            RelayTarget::Broker(Arc::new(Broker::new(
                &f.settings.tasks,
                f.settings.tasks.amqp_url.as_ref().unwrap(),
            ))),
            25,
        )
    };
    let drain = |relay: Relay| async move {
        let mut moved = 0;
        loop {
            match relay.relay_once().await.unwrap() {
                0 => return moved,
                n => moved += n,
            }
        }
    };
    let (a, b) = tokio::join!(drain(relay(&f)), drain(relay(&f)));
    assert_eq!(a + b, 300);
    assert!(a > 0 && b > 0, "both took part: {a} + {b}");
    assert_eq!(f.outbox_rows().await, 0);
    let stats = f.broker.stats(&[QUEUE]).await.unwrap();
    assert_eq!(stats[0].ready, 300, "each row published once");
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quorum_queues_carry_tasks_and_retries_too() {
    let f = Fixture::with(None, &[("TASK_QUORUM_QUEUES", "true")]).await;
    f.enqueue("fail once").await;
    f.relay().relay_once().await.unwrap();
    let (stop, worker) = f.start_worker();
    let runs = f.until_runs(2).await;
    assert_eq!(
        runs,
        vec![("fail once".to_owned(), 1), ("fail once".to_owned(), 2)]
    );
    stop.send(()).unwrap();
    worker.await.unwrap();
    let conn = f.broker.connect("keel-test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    // Declaring it as a classic queue is refused: it is a quorum queue.
    let classic = channel
        .queue_declare(
            f.broker.topology().work(QUEUE).as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await;
    assert!(classic.is_err(), "the work queue is a quorum queue");
    f.cleanup().await;
}

/// In quorum mode a task handed out again and again (a worker killed mid-run each
/// time, a task returned again and again) goes to the dead letters after 20
/// deliveries, where operators see it and why: neither dropped (RabbitMQ 4's default)
/// nor handed out for ever (3's). Reading the dead letters, however often, leaves them
/// there.
#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_task_delivered_past_the_limit_is_dead_lettered_not_dropped() {
    use lapin::options::BasicRejectOptions;

    let f = Fixture::with(None, &[("TASK_QUORUM_QUEUES", "true")]).await;
    f.enqueue("poison").await;
    f.relay().relay_once().await.unwrap();
    let conn = f.broker.connect("keel-test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    let work = f.broker.topology().work(QUEUE);
    // Rejected, not nacked: from RabbitMQ 4.3 only a reject counts as a delivery.
    let again = BasicRejectOptions { requeue: true };
    let mut deliveries = 0;
    let dead = async || f.broker.stats(&[QUEUE]).await.unwrap()[0].dead;
    while dead().await == 0 {
        assert!(
            deliveries < 100,
            "still handed out after {deliveries} deliveries"
        );
        let got = channel
            .basic_get(work.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap();
        match got {
            Some(message) => {
                deliveries += 1;
                message.delivery.reject(again).await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(
        deliveries > 20,
        "dead-lettered after {deliveries} deliveries"
    );
    assert_eq!(f.broker.stats(&[QUEUE]).await.unwrap()[0].ready, 0);
    for _ in 0..30 {
        let letters = f.broker.dead_letters(QUEUE, 10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert!(
            letters[0].error.contains("delivery_limit"),
            "{}",
            letters[0].error
        );
    }
    assert_eq!(dead().await, 1, "peeking leaves the dead letter in place");
    f.cleanup().await;
}

/// A queue an earlier keel declared with other arguments is refused by name, with
/// what to do, rather than as a bare channel error.
#[tokio::test(flavor = "multi_thread")]
async fn a_queue_declared_with_other_arguments_is_named_in_the_error() {
    let f = Fixture::with(None, &[("TASK_QUORUM_QUEUES", "true")]).await;
    let conn = f.broker.connect("keel-test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut older = lapin::types::FieldTable::default();
    older.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            f.broker.topology().work(QUEUE).as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            older,
        )
        .await
        .unwrap();
    let refused = f.broker.stats(&[QUEUE]).await.unwrap_err();
    assert!(
        matches!(&refused, keel_core::tasks::BrokerError::Inequivalent { queue, .. } if *queue == f.broker.topology().work(QUEUE)),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("docs/tasks.md"), "{refused}");
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_and_the_scheduler_leave_query_caches_alone() {
    use keel_core::db::cached::QueryCache;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let f = Fixture::new().await;
    let _listener = f.db.listen_for_changes();
    assert!(
        keel_testkit::eventually(Duration::from_secs(5), async || f.db.changes().is_live()).await
    );
    let cache: QueryCache<&str, usize> = QueryCache::new(
        "test",
        f.db.changes().clone(),
        &["users"],
        Duration::from_secs(60),
        16,
    );
    let loads = AtomicUsize::new(0);
    let read = async || {
        cache
            .get_or_load("k", async {
                Ok::<_, keel_core::ApiError>(loads.fetch_add(1, Ordering::SeqCst) + 1)
            })
            .await
            .unwrap()
    };
    assert_eq!(read().await, 1);

    let runner = Arc::new(LocalRunner::new(f.registry.clone()));
    let _relay = Relay::new(f.db.clone(), RelayTarget::Local(runner), 10).spawn();
    let mut registry = Registry::new();
    registry.register_periodic::<Tick>(());
    let _scheduler = Scheduler::new(f.db.clone(), registry.periodic_jobs()).spawn();
    f.enqueue("hello").await; // a business commit here: caches start over, once
    f.until_runs(1).await;
    assert_eq!(read().await, 2);

    // Seconds of relay polls and scheduler ticks (every second) later: still cached.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        read().await,
        2,
        "bookkeeping commits don't empty the caches"
    );
    f.cleanup().await;
}

/// Writes a row only the first time its task id comes, by claiming it in the same
/// transaction.
#[derive(Debug, Serialize, Deserialize)]
struct Once {}

impl Task for Once {
    const NAME: &'static str = "test.once";
    const QUEUE: &'static str = QUEUE;
    type Services = Db;

    async fn run(self, ctx: TaskContext<Db>) -> Result<(), TaskError> {
        let db = ctx.services.clone();
        db.transaction(async move |conn| {
            if ctx.claim(conn).await? {
                diesel::sql_query(
                    "INSERT INTO task_runs (task_id, attempt, text) VALUES ($1, 1, 'once')",
                )
                .bind::<diesel::sql_types::Uuid, _>(ctx.task_id())
                .execute(conn)
                .await?;
            }
            Ok::<_, keel_core::ApiError>(())
        })
        .await
        .map_err(TaskError::retry)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_task_id_runs_its_effects_once() {
    let f = Fixture::new().await;
    let mut registry = Registry::new();
    registry.register::<Once>(f.db.clone());
    let envelope = Envelope {
        id: uuid::Uuid::now_v7(),
        task: Once::NAME.to_owned(),
        queue: QUEUE.to_owned(),
        attempt: 1,
        enqueued_at: chrono::Utc::now(),
        payload: serde_json::json!({}),
    };
    // Delivered twice (a redelivery after a lost ack), and once more as a retry.
    for envelope in [envelope.clone(), envelope.clone(), envelope.next_attempt()] {
        assert_eq!(
            registry.run(&envelope).await,
            keel_core::tasks::Outcome::Succeeded
        );
    }
    assert_eq!(f.runs().await, vec![("once".to_owned(), 1)]);
    f.cleanup().await;
}

/// A run that starts the effect and is dropped after `after` mid-way (a kill, a
/// timeout): its start stays recorded, with no end.
async fn cut_short(effect: &keel_core::tasks::Effect, db: &Db, after: Duration) {
    let hung = effect.run_once(db, async || {
        std::future::pending::<()>().await;
        Ok(())
    });
    assert!(tokio::time::timeout(after, hung).await.is_err());
}

/// Eight deliveries of one task racing for its effect: exactly one runs it.
async fn race_for(
    effect: &keel_core::tasks::Effect,
    db: &Db,
    trial: usize,
) -> Vec<Result<keel_core::tasks::Ran, TaskError>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = AtomicUsize::new(0);
    let racers = (0..8).map(|_| {
        effect.run_once(db, async || {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        })
    });
    let ran = futures_util::future::join_all(racers).await;
    assert_eq!(
        AtomicUsize::load(&runs, Ordering::SeqCst),
        1,
        "trial {trial}: {ran:?}"
    );
    let now = ran.iter().filter(|r| **r == Ok(keel_core::tasks::Ran::Now));
    assert_eq!(now.count(), 1, "trial {trial}");
    ran
}

/// An effect outside the database (an email) starts once per task id however many
/// deliveries of the task race for it; a retryable failure lets the next attempt run it
/// again, a permanent one doesn't.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_effect_starts_once_per_task_however_many_deliveries_race() {
    use keel_core::tasks::{Earlier, Ping, Ran};

    let test_db = TestDb::new().await;
    let db = test_db.pool();
    let effect = || TaskContext::new::<Ping>((), uuid::Uuid::now_v7(), 1).effect();
    for trial in 0..20 {
        let effect = effect();
        let ran = race_for(&effect, &db, trial).await;
        assert!(ran.iter().all(Result::is_ok), "trial {trial}: {ran:?}");
    }

    let retried = effect();
    let down = retried.run_once(&db, async || Err(TaskError::retry("the server is down")));
    assert!(down.await.is_err());
    assert_eq!(retried.run_once(&db, async || Ok(())).await, Ok(Ran::Now));

    let refused = effect();
    let bad = refused.run_once(&db, async || Err(TaskError::permanent("no such mailbox")));
    assert!(bad.await.is_err());
    assert_eq!(
        refused.run_once(&db, async || Ok(())).await,
        Ok(Ran::Before(Earlier::Failed))
    );

    // A run cancelled mid-effect (a timeout, a kill) leaves it unfinished: while its
    // lease (Ping's 5-minute timeout) runs, the next run doesn't repeat it, and learns
    // that nobody saw it end.
    let cut = effect();
    cut_short(&cut, &db, Duration::from_millis(200)).await;
    assert_eq!(
        cut.run_once(&db, async || Ok(())).await,
        Ok(Ran::Before(Earlier::Unfinished))
    );
}

/// A run that died mid-effect (a kill: no end recorded) doesn't lose the effect: once
/// the lease (the task's timeout) has passed, exactly one of the deliveries racing for
/// it starts it again, under the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_effect_whose_run_died_is_taken_over_once_when_its_lease_has_passed() {
    use keel_core::tasks::{Earlier, Ran};
    use std::sync::atomic::AtomicBool;

    let test_db = TestDb::new().await;
    let db = test_db.pool();
    for trial in 0..10 {
        // Hang's timeout, 300 ms, and half that again, is the lease.
        let ctx =
            TaskContext::new::<Hang>(Arc::new(AtomicBool::new(false)), uuid::Uuid::now_v7(), 1);
        let effect = ctx.effect();
        cut_short(&effect, &db, Duration::from_millis(50)).await;
        assert_eq!(
            effect.run_once(&db, async || Ok(())).await,
            Ok(Ran::Before(Earlier::Unfinished)),
            "trial {trial}: taken over within the lease"
        );

        tokio::time::sleep(Duration::from_millis(500)).await;
        race_for(&effect, &db, trial).await;
        assert_eq!(
            effect.run_once(&db, async || Ok(())).await,
            Ok(Ran::Before(Earlier::Done)),
            "trial {trial}"
        );
        assert_eq!(ctx.effect().id(), effect.id());
    }

    // A run that outlived its lease (paused, not dead) ends late: what it records
    // leaves the start that took over alone, so a third delivery doesn't start it too.
    let effect =
        TaskContext::new::<Hang>(Arc::new(AtomicBool::new(false)), uuid::Uuid::now_v7(), 1)
            .effect();
    let (wake, woken) = oneshot::channel::<()>();
    let mut paused = std::pin::pin!(effect.run_once(&db, async || {
        let _ = woken.await;
        Err(TaskError::retry("the server went away"))
    }));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut paused)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut successor = std::pin::pin!(effect.run_once(&db, async || {
        std::future::pending::<()>().await;
        Ok(())
    }));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut successor)
            .await
            .is_err()
    );
    let _ = wake.send(());
    assert!(
        paused.await.is_err(),
        "the late run fails, and releases nothing"
    );
    assert_eq!(
        effect.run_once(&db, async || Ok(())).await,
        Ok(Ran::Before(Earlier::Unfinished)),
        "the successor's start stands"
    );
}

/// A long broker outage, as seen from outside: the outbox gauges keep counting what
/// piles up, the worker reports itself not ready while it can't consume, and once the
/// broker is back the relay and the worker move again within moments, not after a
/// backoff grown long during the outage.
#[tokio::test(flavor = "multi_thread")]
async fn through_a_long_broker_outage_gauges_stay_fresh_and_work_resumes_promptly() {
    let metrics = keel_core::telemetry::metrics::install().unwrap();
    let backlog = || {
        let text = metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix("task_outbox_backlog "))
            .and_then(|n| n.trim().parse::<f64>().ok())
    };
    let proxy = Proxy::start(amqp_addr()).await;
    let through_proxy = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let f = Fixture::with(Some(through_proxy), &[]).await;
    let worker = f.worker(f.broker.clone());
    let consuming = worker.consuming();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let _relay = f.relay().spawn();
    let ready = async |up: bool| {
        keel_testkit::eventually(Duration::from_secs(10), async || consuming.is_up() == up).await
    };
    assert!(ready(true).await, "consuming at first");

    proxy.set(Link::Cut);
    assert!(ready(false).await, "not ready while the broker is away");
    // Long enough for a doubling backoff to be deep into a long pause.
    tokio::time::sleep(Duration::from_secs(13)).await;
    for i in 0..3 {
        f.enqueue(&format!("piled up {i}")).await;
    }
    let counted =
        keel_testkit::eventually(Duration::from_secs(8), async || backlog() == Some(3.0)).await;
    assert!(
        counted,
        "the backlog gauge shows what piled up: {:?}",
        backlog()
    );

    proxy.set(Link::Up);
    let back = std::time::Instant::now();
    assert!(ready(true).await, "consuming again");
    let runs = f.until_runs(3).await;
    let resumed = back.elapsed();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(
        resumed < Duration::from_secs(6),
        "the outbox moved and the worker ran it {resumed:?} after the broker's return"
    );
    stop.send(()).unwrap();
    running.await.unwrap();
    f.cleanup().await;
}

/// A run that never ends, like a handler stuck on a peer that stopped answering.
#[derive(Debug, Serialize, Deserialize)]
struct Hang {}

impl Task for Hang {
    const NAME: &'static str = "test.hang";
    const TIMEOUT: Duration = Duration::from_millis(300);
    type Services = Arc<std::sync::atomic::AtomicBool>;

    async fn run(self, ctx: TaskContext<Self::Services>) -> Result<(), TaskError> {
        // Set when the run is dropped: cancelled, not left running in the background.
        struct Dropped(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _dropped = Dropped(ctx.services.clone());
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// A run past its task's `TIMEOUT` is cancelled and counts as a retryable failure,
/// so it frees its worker slot and is tried again.
#[tokio::test]
async fn a_run_past_its_timeout_is_cancelled_and_retried() {
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut registry = Registry::new();
    registry.register::<Hang>(cancelled.clone());
    let envelope = Envelope {
        id: uuid::Uuid::now_v7(),
        task: Hang::NAME.to_owned(),
        queue: "default".to_owned(),
        attempt: 1,
        enqueued_at: chrono::Utc::now(),
        payload: serde_json::json!({}),
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), registry.run(&envelope))
        .await
        .expect("the run ends at its timeout");
    let keel_core::tasks::Outcome::Retry { error, next, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(next.attempt, 2);
    let dropped = keel_testkit::eventually(Duration::from_secs(2), async || {
        std::sync::atomic::AtomicBool::load(&cancelled, std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    assert!(dropped, "the hung run was cancelled");
}

/// An outbox row that can never be published (larger than a message may be) is set
/// aside in `task_outbox_dead` with the reason on the first pass, and the rows around it
/// go on. A queue the broker won't declare as asked (it exists with other arguments) is
/// no row's fault: nothing is set aside, and the relay retries.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_that_can_never_be_published_is_set_aside_and_holds_nothing_up() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;

    let f = Fixture::new().await;
    f.enqueue("before").await;
    let huge = "x".repeat(keel_core::tasks::MAX_MESSAGE_BYTES);
    f.db.conn()
        .await
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO task_outbox (task_id, task, queue, payload) \
             VALUES (gen_random_uuid(), 'test.note', '{QUEUE}', '{{\"text\": \"{huge}\"}}')"
        ))
        .await
        .unwrap();
    f.enqueue("after").await;
    assert_eq!(f.relay().relay_once().await.unwrap(), 2, "both good rows");
    assert_eq!(f.outbox_rows().await, 0, "the huge row is set aside");

    #[derive(diesel::QueryableByName)]
    struct Dead {
        #[diesel(sql_type = Text)]
        last_error: String,
    }
    let dead: Vec<Dead> = diesel::sql_query("SELECT last_error FROM task_outbox_dead")
        .load(&mut f.db.conn().await.unwrap())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].last_error.contains("at most"),
        "{}",
        dead[0].last_error
    );
    let stats = f.broker.stats(&[QUEUE]).await.unwrap();
    assert_eq!(
        stats[0].ready, 2,
        "the good rows reached their queue, once each"
    );

    // A queue declared elsewhere with other arguments: the broker refuses the queue,
    // not a row. Its row waits, counted against nothing.
    let conn = f.broker.connect("test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut other_arguments = FieldTable::default();
    other_arguments.insert("x-max-length".into(), AMQPValue::LongInt(1));
    let taken = f.broker.topology().work("taken");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(taken.as_str().into(), durable, other_arguments)
        .await
        .unwrap();
    f.db.conn()
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO task_outbox (task_id, task, queue, payload) \
             VALUES (gen_random_uuid(), 'test.note', 'taken', '{\"text\": \"waits\"}')",
        )
        .await
        .unwrap();
    for _ in 0..6 {
        let refused = f.relay().relay_once().await.unwrap_err();
        assert!(
            refused.to_string().contains("refused to declare"),
            "{refused}"
        );
    }
    assert_eq!(f.outbox_rows().await, 1, "it waits in the outbox");
    f.broker.delete_queues("taken").await.unwrap();
    f.cleanup().await;
}

/// A worker runs at most its prefetch of tasks at once, counting the runs of a lost
/// session that are still finishing when it reconnects (their messages come back too).
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_never_runs_more_than_its_prefetch_across_a_reconnection() {
    use std::sync::atomic::Ordering::SeqCst;
    let proxy = Proxy::start(amqp_addr()).await;
    let through_proxy = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let f = Fixture::with(Some(through_proxy), &[("TASK_PREFETCH", "2")]).await;
    let (stop, worker) = f.start_worker();
    for _ in 0..4 {
        f.enqueue("hold").await;
    }
    f.relay().relay_once().await.unwrap();
    let both = keel_testkit::eventually(Duration::from_secs(10), async || holding() == 2).await;
    assert!(both, "two runs under way");
    // The session goes while both hold: their acks can't land, so the broker hands
    // their messages out again, with the two that waited.
    proxy.set(Link::Cut);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(Link::Up);
    let runs = f.until_runs(6).await;
    let idle = keel_testkit::eventually(Duration::from_secs(10), async || holding() == 0).await;
    assert!(idle, "every run ended: {runs:?}");
    let most = std::sync::atomic::AtomicUsize::load(&MOST_HOLDING, SeqCst);
    assert_eq!(most, 2, "at most the prefetch at once");
    stop.send(()).unwrap();
    worker.await.unwrap();
    f.cleanup().await;
}
