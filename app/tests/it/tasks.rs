//! Background tasks through the app and the binaries: the monitoring endpoint, the
//! audit entry of a dead letter, and keel-worker as operators run it (a killed worker's
//! task goes to another; SIGTERM drains).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keel_core::db::Db;
use keel_core::tasks::{Broker, Envelope, Relay, RelayTarget};
use keel_testkit::TestDb;
use reqwest::StatusCode;

use crate::helpers::{Client, TestApp, terminate, until};

const WORKER: &str = env!("CARGO_BIN_EXE_keel-worker");
const ADMIN: &str = env!("CARGO_BIN_EXE_keel-admin");

#[tokio::test(flavor = "multi_thread")]
async fn the_tasks_overview_needs_tasks_read_and_shows_the_in_process_backend() {
    let app = TestApp::spawn(&[]).await;
    let c = Client::new(&app);
    let (status, _) = c.get("/api/v1/admin/tasks", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let user = c.sign_up("ada@example.com").await;
    let (status, body) = c.get("/api/v1/admin/tasks", Some(&user)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let admin = c.superuser("root@example.com").await;
    let (status, body) = c.get("/api/v1/admin/tasks", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backend"], "in_process");
    assert_eq!(body["outbox"]["waiting"], 0);
    assert_eq!(body["queues"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tasks_overview_shows_the_rabbitmq_queues() {
    let amqp = keel_testkit::amqp_settings();
    let overrides: Vec<(&str, &str)> = amqp.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn(&overrides).await;
    let c = Client::new(&app);
    let admin = c.superuser("root@example.com").await;
    let (status, body) = c.get("/api/v1/admin/tasks", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backend"], "rabbitmq");
    let queues = body["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 1, "{body}");
    assert_eq!(queues[0]["queue"], "default");
    assert_eq!(queues[0]["dead"], 0);
    let ready = app.get("/health/ready").await;
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["components"]["broker"]["status"], "up", "{ready}");
    broker(&amqp).delete_queues("default").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_task_is_recorded_in_the_audit_trail() {
    let app = TestApp::spawn(&[]).await;
    let settings = keel_testkit::settings(app.db().url(), &[]);
    let root = keel_app::Root::new(&settings, &app.db().secret_url(), "keel-test")
        .await
        .unwrap();
    let envelope = Envelope {
        id: uuid::Uuid::now_v7(),
        task: "user.send_welcome_email".to_owned(),
        queue: "default".to_owned(),
        attempt: 5,
        enqueued_at: chrono::Utc::now(),
        payload: serde_json::json!({}),
    };
    // What every process does with a task given up on (keel-activity's hook).
    root.registry.dead_lettered(&envelope, "smtp refused").await;

    let c = Client::new(&app);
    let admin = c.superuser("root@example.com").await;
    let (status, body) = c
        .get("/api/v1/activity?action=task.dead_lettered", Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["entity_id"], envelope.id.to_string());
    assert_eq!(items[0]["metadata"]["error"], "smtp refused");
    assert_eq!(items[0]["metadata"]["attempts"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_task_is_run_by_another_and_sigterm_drains() {
    let db = TestDb::new().await;
    let amqp = keel_testkit::amqp_settings();
    let mut vars: Vec<(&str, String)> = amqp.to_vec();
    vars.push(("DATABASE_URL", db.url().to_owned()));
    vars.push(("LOG_FORMAT", "json".to_owned()));
    vars.push(("TASK_SHUTDOWN_GRACE", "10s".to_owned()));
    let broker = broker(&amqp);
    let settings = keel_testkit::settings(db.url(), &[]);
    let relay = Relay::new(
        Db::new(&db.secret_url(), &settings.database, "keel-test"),
        RelayTarget::Broker(broker.clone()),
        100,
    );

    // A ping that takes 3 s, picked up by worker A, which is then killed.
    ping(&vars, 3000);
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    let (mut a, a_port) = start_worker(&vars);
    until("worker A holds the task", async || {
        let stats = broker.stats(&["default"]).await.unwrap();
        stats[0].ready == 0 && stats[0].consumers == 1
    })
    .await;
    a.kill().unwrap();
    a.wait().unwrap();
    assert_eq!(succeeded(a_port).await, None, "A is gone");

    // Redelivered to worker B, which completes it.
    let (b, b_port) = start_worker(&vars);
    until("worker B runs the redelivered task", async || {
        succeeded(b_port).await == Some(1)
    })
    .await;

    // SIGTERM while B runs another: it finishes and acks before B exits 0.
    ping(&vars, 1000);
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    until("worker B holds the second task", async || {
        let stats = broker.stats(&["default"]).await.unwrap();
        stats[0].ready == 0 && succeeded(b_port).await == Some(1)
    })
    .await;
    let (output, logs) = terminate(b).await;
    assert!(output.status.success(), "exit {:?}: {logs}", output.status);
    assert!(logs.contains("keel-worker stopped"), "{logs}");
    assert!(logs.contains(r#""drained":true"#), "{logs}");
    assert_eq!(logs.matches(r#""message":"pong""#).count(), 2, "{logs}");
    let stats = broker.stats(&["default"]).await.unwrap();
    assert_eq!(
        (stats[0].ready, stats[0].dead),
        (0, 0),
        "acked, not requeued"
    );
    broker.delete_queues("default").await.unwrap();
}

fn broker(amqp: &[(&str, String); 2]) -> Arc<Broker> {
    let overrides: Vec<(&str, &str)> = amqp.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let settings = keel_testkit::settings("postgres://postgres@127.0.0.1:5432/unused", &overrides);
    let url = settings.tasks.amqp_url.clone().unwrap();
    Arc::new(Broker::new(&settings.tasks, &url))
}

/// `keel-admin tasks ping --hold-ms`, as an operator would.
fn ping(vars: &[(&str, String)], hold_ms: u64) {
    let output = Command::new(ADMIN)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["tasks", "ping", "--hold-ms", &hold_ms.to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// keel-worker on a free port; returns the process and its port.
fn start_worker(vars: &[(&str, String)]) -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(WORKER)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("WORKER_PORT", port.to_string())
        .env("APP_HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, port)
}

/// Workers with `WORKER_PORT=0` share a host: each serves its probes on a free port it
/// names in its start-up log.
#[tokio::test(flavor = "multi_thread")]
async fn workers_on_one_host_take_free_ports_with_worker_port_0() {
    use std::io::BufRead;
    let db = TestDb::new().await;
    let mut vars: Vec<(&str, String)> = keel_testkit::amqp_settings().to_vec();
    vars.push(("DATABASE_URL", db.url().to_owned()));
    vars.push(("LOG_FORMAT", "json".to_owned()));
    vars.push(("WORKER_PORT", "0".to_owned()));
    let mut ports = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new(WORKER)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env("APP_HOST", "127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (found, address) = std::sync::mpsc::channel();
        // Reads the log to its end, so the worker never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let fields = if entry["fields"].is_object() {
                    &entry["fields"]
                } else {
                    &entry
                };
                let starting = fields["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("keel-worker starting"));
                if let Some(addr) = fields["addr"].as_str().filter(|_| starting) {
                    let _ = found.send(addr.to_owned());
                }
            }
        });
        let addr = address.recv_timeout(Duration::from_secs(30)).unwrap();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0, "{addr}");
        let live = reqwest::get(format!("http://{addr}/health/live"))
            .await
            .unwrap();
        assert_eq!(live.status(), StatusCode::OK);
        ports.push(port);
        workers.push(child);
    }
    assert_ne!(ports[0], ports[1]);
    for worker in workers {
        let (output, _) = terminate(worker).await;
        assert!(output.status.success(), "{:?}", output.status);
    }
}

/// The worker's `tasks_succeeded_total` for pings; `None` when it doesn't answer.
async fn succeeded(port: u16) -> Option<u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix(r#"tasks_succeeded_total{task="system.ping"} "#))
            .map_or(0, |n| n.trim().parse().unwrap_or(0)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_broker_away_requests_still_work_and_the_outbox_drains_when_it_returns() {
    use diesel_async::RunQueryDsl;
    use keel_testkit::{Link, Proxy};

    let amqp = keel_testkit::amqp_settings();
    let url = url::Url::parse(&amqp[0].1).unwrap();
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5672)
    );
    let proxy = Proxy::start(target.parse().unwrap()).await;
    let through_proxy = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let app = TestApp::spawn(&[
        ("AMQP_URL", &through_proxy),
        (amqp[1].0, &amqp[1].1),
        ("AMQP_TIMEOUT", "500ms"),
    ])
    .await;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let outbox = || async {
        let mut conn = app.db().connect().await;
        let count: Count = diesel::sql_query("SELECT count(*) AS n FROM task_outbox")
            .get_result(&mut conn)
            .await
            .unwrap();
        count.n
    };
    let c = Client::new(&app);
    let admin = c.superuser("root@example.com").await;
    let (status, _) = c.get("/api/v1/admin/tasks", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    // Root's welcome email is published before the broker goes away.
    let relayed =
        keel_testkit::eventually(Duration::from_secs(10), async || outbox().await == 0).await;
    assert!(relayed);
    proxy.set(Link::Cut);

    // The overview needs the broker: a problem, not a hang or a crash.
    let overview = reqwest::Client::new()
        .get(app.url("/api/v1/admin/tasks"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        overview.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = overview.json().await.unwrap();
    assert_eq!(
        problem["detail"], "the task broker is unreachable",
        "{problem}"
    );

    let (status, body) = c
        .post(
            "/api/v1/auth/register",
            None,
            serde_json::json!({"email": "ada@example.com", "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ready: serde_json::Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["components"]["broker"]["status"], "down", "{ready}");

    assert_eq!(outbox().await, 1, "the welcome email waits in the outbox");

    proxy.set(Link::Up);
    let drained =
        keel_testkit::eventually(Duration::from_secs(40), async || outbox().await == 0).await;
    assert!(drained, "the outbox drains once the broker is back");
    let stats = broker(&amqp).stats(&["default"]).await.unwrap();
    assert_eq!(
        stats[0].ready, 2,
        "root's and ada's, each published once, waiting for a worker"
    );
    broker(&amqp).delete_queues("default").await.unwrap();
}
