//! Background tasks: `tasks ping`, `tasks dead list|requeue|purge`.

use std::io::Write;

use clap::Subcommand;
use keel_app::Root;
use keel_app::process::load_settings;
use keel_core::ApiError;
use keel_core::tasks::{self, Broker, Ping};

use crate::BoxError;
use crate::composed::{Signed, describe, open, stop};

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Enqueue no-op tasks through the outbox: keel-api's relay publishes them and a
    /// worker runs them (watch `tasks_succeeded_total{task="system.ping"}`).
    Ping {
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Milliseconds each run takes (up to 60000): to watch a worker drain.
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
    },
    /// Tasks given up on (needs AMQP_URL).
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// Print dead letters with their last error, oldest first; they stay where they are.
    List {
        /// One task queue; every registered queue without it.
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send dead letters back to their work queue, as first attempts again.
    Requeue {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
    },
    /// Drop every dead letter.
    Purge {
        #[arg(long)]
        queue: Option<String>,
    },
}

/// `keel-admin tasks …`.
pub async fn run(command: TasksCommand) -> Result<(), BoxError> {
    match command {
        TasksCommand::Ping { count, hold_ms } => ping(count, hold_ms).await,
        TasksCommand::Dead { command } => dead_letters(command).await,
    }
}

async fn ping(count: u32, hold_ms: u64) -> Result<(), BoxError> {
    let (root, server) = open(Signed::AsRuntime).await?;
    root.context
        .db
        .transaction(async move |conn| {
            for _ in 0..count {
                tasks::enqueue(conn, &Ping { hold_ms }).await?;
            }
            Ok::<_, ApiError>(())
        })
        .await
        .map_err(|e| describe(&e))?;
    eprintln!("keel-admin: enqueued {count} system.ping task(s); keel-api's relay hands them on");
    stop(server).await
}

/// `keel-admin tasks dead …`: one line per dead letter or per queue.
async fn dead_letters(command: DeadCommand) -> Result<(), BoxError> {
    let settings = load_settings()?;
    let Some(url) = settings.tasks.amqp_url.clone() else {
        return Err(
            "AMQP_URL is not set: without a broker, tasks given up on are only \
                    logged and audited (task.dead_lettered), not kept"
                .into(),
        );
    };
    let broker = Broker::new(&settings.tasks, &url);
    // The registered tasks' queues; nothing here needs the database.
    let registry = Root::offline(settings.clone()).await?.registry;
    let queues = |queue: Option<String>| {
        queue.map_or_else(
            || registry.queues().into_iter().map(str::to_owned).collect(),
            |q| vec![q],
        )
    };
    match command {
        DeadCommand::List { queue, limit } => {
            for queue in queues(queue) {
                let letters = broker.dead_letters(&queue, limit).await?;
                eprintln!(
                    "keel-admin: {queue}: {} dead letter(s) shown",
                    letters.len()
                );
                for letter in letters {
                    let (task, id) = letter.envelope.as_ref().map_or_else(
                        || ("(not a task)".to_owned(), String::new()),
                        |e| (e.task.clone(), e.id.to_string()),
                    );
                    writeln!(
                        std::io::stdout(),
                        "{queue}\t{task}\t{id}\tattempts={}\tfailed_at={}\terror={}",
                        letter.attempts,
                        letter.failed_at,
                        letter.error
                    )?;
                }
            }
        }
        DeadCommand::Requeue { queue, limit } => {
            for queue in queues(queue) {
                let moved = broker.requeue_dead(&queue, limit).await?;
                eprintln!(
                    "keel-admin: {queue}: {moved} dead letter(s) sent back to the work queue"
                );
            }
        }
        DeadCommand::Purge { queue } => {
            for queue in queues(queue) {
                let purged = broker.purge_dead(&queue).await?;
                eprintln!("keel-admin: {queue}: {purged} dead letter(s) dropped");
            }
        }
    }
    Ok(())
}
