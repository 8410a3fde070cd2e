//! What recording an audit entry adds to the transaction that writes it.
//!
//!     cargo bench -p keel-activity --bench record
//!
//! Runs against the PostgreSQL of the test suite (`TEST_DATABASE_URL`, default the local
//! server) in a throwaway database: N transactions that update one row, then N that
//! update it and record an entry, one after the other on one connection, and prints the
//! mean and percentiles of each and the difference.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use keel_activity::{Action, Actor, Entry, record};
use keel_core::ApiError;
use keel_core::db::Db;
use keel_testkit::TestDb;
use serde_json::json;

const ROUNDS: usize = 3000;

#[tokio::main]
async fn main() {
    let test_db = TestDb::new().await;
    let settings = keel_testkit::settings(test_db.url(), &[]);
    let db = Db::new(&test_db.secret_url(), &settings.database, "keel-bench");
    let mut conn = test_db.connect().await;
    if let Err(err) = conn
        .batch_execute("CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO counters VALUES (1, 0)")
        .await
    {
        eprintln!("bench: cannot prepare the table: {err}");
        std::process::exit(1);
    }
    let actor = Actor {
        id: uuid::Uuid::now_v7(),
        email: "ada@example.com".to_owned(),
    };

    // Warm the pool and PostgreSQL's caches.
    run(&db, 200, None).await;
    run(&db, 200, Some(&actor)).await;
    let without = run(&db, ROUNDS, None).await;
    let with = run(&db, ROUNDS, Some(&actor)).await;
    report("business transaction", &without);
    report("business transaction + record", &with);
    println!(
        "recording adds {:.3} ms (mean), {:.3} ms (p50)",
        ms(mean(&with)) - ms(mean(&without)),
        ms(pct(&with, 50)) - ms(pct(&without, 50)),
    );
}

async fn run(db: &Db, rounds: usize, actor: Option<&Actor>) -> Vec<Duration> {
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let entry = actor.map(|a| {
            Entry::new(
                Action::new("user.updated"),
                "user",
                format!("{} edited user {i}", a.email),
            )
            .actor(a.clone())
            .entity(i)
            .metadata(json!({"changed": ["full_name"]}))
        });
        let started = Instant::now();
        let result = db
            .transaction(async move |conn| {
                conn.batch_execute("UPDATE counters SET n = n + 1 WHERE id = 1")
                    .await?;
                if let Some(entry) = entry {
                    record(conn, entry).await?;
                }
                Ok::<_, ApiError>(())
            })
            .await;
        if let Err(err) = result {
            eprintln!("bench: transaction failed: {err}");
            std::process::exit(1);
        }
        times.push(started.elapsed());
    }
    times
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mean(times: &[Duration]) -> Duration {
    times.iter().sum::<Duration>() / times.len().max(1) as u32
}

fn pct(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn report(name: &str, times: &[Duration]) {
    println!(
        "{name:<32} mean {:.3} ms   p50 {:.3} ms   p99 {:.3} ms   ({} transactions)",
        ms(mean(times)),
        ms(pct(times, 50)),
        ms(pct(times, 99)),
        times.len()
    );
}
