//! The Prometheus recorder and the names of the metrics keel itself records.
//!
//! One recorder per process, rendered by our own `GET /metrics` (no side listener), with
//! real histogram buckets so latency can be aggregated across replicas.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;
pub use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const DB_POOL_IDLE: &str = "db_pool_idle_connections";
pub const DB_POOL_MAX: &str = "db_pool_max_connections";
pub const DB_POOL_WAITS: &str = "db_pool_waits_total";
pub const DB_POOL_TIMEOUTS: &str = "db_pool_timeouts_total";
pub const DB_POOL_WAIT_SECONDS: &str = "db_pool_wait_seconds_total";
pub const DB_CHANGE_LISTENER_UP: &str = "db_change_listener_up";
pub const QUERY_CACHE_HITS: &str = "query_cache_hits_total";
pub const QUERY_CACHE_MISSES: &str = "query_cache_misses_total";
pub const CACHE_HITS: &str = "cache_hits_total";
pub const CACHE_MISSES: &str = "cache_misses_total";
pub const CACHE_OPERATIONS: &str = "cache_operations_total";
pub const CACHE_OPERATION_DURATION: &str = "cache_operation_duration_seconds";
pub const CACHE_BREAKER_STATE: &str = "cache_breaker_state";
pub const CACHE_NEAR_FEED_UP: &str = "cache_near_feed_up";
pub const TASKS_PUBLISHED: &str = "tasks_published_total";
pub const TASKS_SUCCEEDED: &str = "tasks_succeeded_total";
pub const TASKS_FAILED: &str = "tasks_failed_total";
pub const TASKS_RETRIED: &str = "tasks_retried_total";
pub const TASKS_DEAD_LETTERED: &str = "tasks_dead_lettered_total";
pub const TASK_DURATION: &str = "task_duration_seconds";
pub const TASK_OUTBOX_BACKLOG: &str = "task_outbox_backlog";
pub const TASK_OUTBOX_OLDEST_AGE: &str = "task_outbox_oldest_age_seconds";
pub const TASK_OUTBOX_DEAD_LETTERED: &str = "task_outbox_dead_lettered_total";
pub const TASK_WORKER_CONNECTED: &str = "task_worker_connected";
pub const BUILD_INFO: &str = "keel_build_info";

/// Latency buckets in seconds, from a cached read (1 ms) to a slow report (10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often idle histogram buckets are drained; the exporter needs it to bound memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the global recorder on first call and returns its handle on every call.
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
            describe();
            Ok(handle)
        })
        .clone()
}

/// Runs the exporter's upkeep until the returned task is aborted.
pub fn spawn_upkeep(handle: PrometheusHandle) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

/// HELP text for every series, so `promtool check metrics` has nothing to say.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests served, by method, route template and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time from request received to response produced, by method, route template and status"
    );
    describe_gauge!(HTTP_REQUESTS_IN_FLIGHT, "HTTP requests being served now");
    describe_gauge!(DB_POOL_CONNECTIONS, "Open database connections in the pool");
    describe_gauge!(DB_POOL_IDLE, "Idle database connections in the pool");
    describe_gauge!(DB_POOL_MAX, "Configured maximum size of the database pool");
    describe_counter!(
        DB_POOL_WAITS,
        "Connection checkouts that had to wait for a free connection"
    );
    describe_counter!(
        DB_POOL_TIMEOUTS,
        "Connection checkouts that gave up waiting (answered 503)"
    );
    describe_counter!(
        DB_POOL_WAIT_SECONDS,
        Unit::Seconds,
        "Total time spent waiting for a pooled connection"
    );
    describe_gauge!(
        DB_CHANGE_LISTENER_UP,
        "1 while the table change listener is connected; at 0 query caches are bypassed"
    );
    describe_counter!(
        QUERY_CACHE_HITS,
        "Query results served from memory, by cache"
    );
    describe_counter!(
        QUERY_CACHE_MISSES,
        "Query results loaded from the database, by cache"
    );
    describe_counter!(CACHE_HITS, "Cache reads that found a usable value");
    describe_counter!(
        CACHE_MISSES,
        "Cache reads that found nothing usable (absent, expired, undecodable or unreachable)"
    );
    describe_counter!(
        CACHE_OPERATIONS,
        "Calls to Redis by operation and result (ok, error, or skipped by the open breaker)"
    );
    describe_histogram!(
        CACHE_OPERATION_DURATION,
        Unit::Seconds,
        "Time of one Redis call, by operation"
    );
    describe_gauge!(
        CACHE_BREAKER_STATE,
        "The Redis circuit breaker: 0 closed, 1 half open (probing), 2 open"
    );
    describe_gauge!(
        CACHE_NEAR_FEED_UP,
        "1 while this replica follows Redis's stamp bumps and serves stamped values from memory"
    );
    describe_counter!(
        TASKS_PUBLISHED,
        "Tasks handed on by the outbox relay (to RabbitMQ, or to the in-process runner), by task"
    );
    describe_counter!(TASKS_SUCCEEDED, "Task runs that succeeded, by task");
    describe_counter!(
        TASKS_FAILED,
        "Task runs that failed (a panic included), by task"
    );
    describe_counter!(
        TASKS_RETRIED,
        "Failed tasks scheduled for another run, by task"
    );
    describe_counter!(
        TASKS_DEAD_LETTERED,
        "Tasks given up on (permanent error or attempts used up), by task"
    );
    describe_histogram!(
        TASK_DURATION,
        Unit::Seconds,
        "Time of one task run, by task"
    );
    describe_gauge!(
        TASK_OUTBOX_BACKLOG,
        "Tasks committed and not yet handed on by the relay"
    );
    describe_gauge!(
        TASK_OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest task waiting in the outbox (0 when empty)"
    );
    describe_counter!(
        TASK_OUTBOX_DEAD_LETTERED,
        "Outbox rows set aside in task_outbox_dead after the broker kept refusing them"
    );
    describe_gauge!(
        TASK_WORKER_CONNECTED,
        "1 while this worker is consuming from RabbitMQ"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels carry the running build");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
