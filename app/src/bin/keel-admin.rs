//! keel-admin: operator commands. Each prints one clear line and exits non-zero on failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_app::features::All;
use keel_app::{Root, api, database, scaffold};
use std::io::{BufRead, IsTerminal, Write};

use keel_activity::ActivityService;
use keel_activity::chain::Verdict;
use keel_core::ApiError;
use keel_core::db::local::PrivateServer;
use keel_core::db::migrate;
use keel_core::feature::{Feature, FeatureError, Features};
use keel_core::settings::Settings;
use keel_core::tasks::{self, Broker, Ping};
use keel_user::UserService;
use keel_user::services::AdminOutcome;

#[derive(Debug, Parser)]
#[command(name = "keel-admin", version, about = "Operate a keel deployment")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations (safe to run from several places at once).
    Migrate {
        /// Only list the pending migrations; apply nothing.
        #[arg(long)]
        pending: bool,
    },
    /// Write the OpenAPI document (JSON) to a file, or to stdout without --output.
    Openapi {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Create a superuser (prompts for email and a hidden password), or promote an
    /// existing account with --promote.
    CreateAdmin {
        /// The account's email; prompted for when omitted.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of standard input (for scripts).
        #[arg(long)]
        password_stdin: bool,
        /// If the email already has an account, give it the superuser role (and
        /// reactivate it) instead of failing.
        #[arg(long)]
        promote: bool,
    },
    /// Seed the declared permissions and the superuser and user roles (idempotent;
    /// keel-api also does this at start).
    Seed,
    /// The audit trail's hash chain.
    Activity {
        #[command(subcommand)]
        command: ActivityCommand,
    },
    /// Generate a feature crate (app/NAME), its migration and its line in
    /// app/Cargo.toml: served, seeded, documented and tested once built.
    NewFeature {
        /// The plural, lowercase words joined by `_` (widgets, blog_posts): the
        /// directory, table, URL (`/api/v1/blog-posts`) and permission prefix.
        name: String,
        /// The singular (audit actions `widget.created`, type `Widget`); defaults to
        /// NAME without its final `s`.
        #[arg(long)]
        singular: Option<String>,
        /// The keel checkout; defaults to the nearest one above the current directory.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The migration's version, YYYY-MM-DD-HHMMSS (default: now, UTC); it must sort
        /// after every existing migration.
        #[arg(long, value_name = "YYYY-MM-DD-HHMMSS")]
        migration_version: Option<String>,
    },
    /// Background tasks: a ping through the whole pipeline, dead letters.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TasksCommand {
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
enum DeadCommand {
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

#[derive(Debug, Subcommand)]
enum ActivityCommand {
    /// Seal what is final, then walk the whole chain; exit 1 at the first broken link.
    Verify {
        /// A head printed earlier by `activity head` (SEQ:HASH); exit 1 unless it is
        /// still on the chain, which catches a rewrite by someone who could also
        /// recompute every seal (a database owner).
        #[arg(long, value_name = "SEQ:HASH")]
        since: Option<keel_activity::chain::Anchor>,
    },
    /// Seal what is final and print the chain's head as SEQ:HASH on stdout: keep it
    /// outside the database (a ticket, a log store, a printout) for `verify --since`.
    Head,
}

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("keel-admin: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("keel-admin: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), BoxError> {
    match command {
        Command::Migrate { pending } => {
            let settings = Settings::load()?;
            let database = database::resolve(&settings).await?;
            let owner = settings.database.owner_url.as_ref();
            let versions = if pending {
                migrate::pending(owner.unwrap_or(&database.url)).await?
            } else {
                migrate::run_with_roles(&database.url, owner).await?
            };
            let verb = if pending { "pending" } else { "applied" };
            if versions.is_empty() {
                eprintln!("keel-admin: no migrations {verb}; the schema is up to date");
            } else {
                eprintln!(
                    "keel-admin: {} migration(s) {verb}: {}",
                    versions.len(),
                    versions.join(", ")
                );
            }
            stop(database.server).await
        }
        Command::Seed => {
            let (root, server) = open(Signed::AsOwner).await?;
            let changes = seed(&root).await?;
            if changes.is_empty() {
                eprintln!("keel-admin: nothing to seed; permissions and roles are up to date");
            } else {
                eprintln!("keel-admin: seeded: {}", changes.join(", "));
            }
            stop(server).await
        }
        Command::CreateAdmin {
            email,
            password_stdin,
            promote,
        } => {
            // A configuration problem is told before anyone types a password.
            let settings = Settings::load()?;
            let email = match email {
                Some(email) => email,
                None => prompt_line("Email: ")?,
            };
            let password = if password_stdin {
                read_stdin_password()?
            } else {
                prompt_new_password()?
            };
            let (root, server) = open_with(settings, Signed::AsRuntime).await?;
            seed(&root).await?;
            // The API's cache, so replicas see a promotion at once.
            let users = UserService::build(&root.context)
                .await
                .map_err(|e| describe(&e))?;
            let outcome = users
                .create_admin(&email, password, promote)
                .await
                .map_err(|e| match e {
                    ApiError::Conflict { .. } => format!(
                        "an account with {email} exists; pass --promote to make it a superuser"
                    ),
                    other => describe(&other),
                })?;
            match outcome {
                AdminOutcome::Created(user) => {
                    eprintln!("keel-admin: created superuser {} ({})", user.email, user.id);
                }
                AdminOutcome::Promoted(user) => {
                    eprintln!(
                        "keel-admin: promoted {} ({}) to superuser",
                        user.email, user.id
                    );
                }
                AdminOutcome::AlreadySuperuser(user) => {
                    eprintln!(
                        "keel-admin: {} ({}) already is a superuser; nothing changed",
                        user.email, user.id
                    );
                }
            }
            stop(server).await
        }
        Command::Activity {
            command: ActivityCommand::Head,
        } => {
            let (activity, server) = sealed_trail().await?;
            let anchor = activity.anchor().await.map_err(|e| describe(&e));
            let unsealed = activity.unsealed().await.map_err(|e| describe(&e));
            stop(server).await?;
            match anchor? {
                Some(anchor) => {
                    // The head alone on stdout, for scripts to keep.
                    writeln!(std::io::stdout().lock(), "{anchor}")?;
                    let unsealed = unsealed?;
                    if unsealed > 0 {
                        eprintln!(
                            "keel-admin: {unsealed} entries are not sealed yet (a transaction \
                             still open, or the sealer held back): this head doesn't cover them"
                        );
                    }
                    Ok(())
                }
                None => Err("the audit chain is empty: nothing is sealed yet".into()),
            }
        }
        Command::Activity {
            command: ActivityCommand::Verify { since },
        } => {
            let (activity, server) = sealed_trail().await?;
            let verdict = match &since {
                Some(anchor) => activity.verify_since(anchor).await,
                None => activity.verify().await,
            }
            .map_err(|e| describe(&e));
            stop(server).await?;
            match verdict? {
                Verdict::Intact {
                    sealed,
                    head,
                    unsealed,
                } => {
                    let head = head.map_or_else(
                        || "empty chain".to_owned(),
                        |(position, hash)| format!("head {position} {hash}"),
                    );
                    let kept = since.map_or_else(String::new, |a| format!("; holds {a}"));
                    eprintln!(
                        "keel-admin: audit chain intact: {sealed} sealed entries, {head}; \
                         {unsealed} not sealed yet{kept}"
                    );
                    Ok(())
                }
                Verdict::Broken {
                    position,
                    entry_id,
                    reason,
                } => {
                    let entry = entry_id.map_or_else(String::new, |id| format!(" (entry {id})"));
                    Err(format!("audit chain broken at seal {position}{entry}: {reason}").into())
                }
            }
        }
        Command::Tasks {
            command: TasksCommand::Ping { count, hold_ms },
        } => {
            let (root, server) = open(Signed::AsRuntime).await?;
            root.context
                .db
                .transaction(|conn| {
                    Box::pin(async move {
                        for _ in 0..count {
                            tasks::enqueue(conn, &Ping { hold_ms }).await?;
                        }
                        Ok::<_, ApiError>(())
                    })
                })
                .await
                .map_err(|e| describe(&e))?;
            eprintln!(
                "keel-admin: enqueued {count} system.ping task(s); keel-api's relay hands them on"
            );
            stop(server).await
        }
        Command::Tasks {
            command: TasksCommand::Dead { command },
        } => dead_letters(command).await,
        Command::NewFeature {
            name,
            singular,
            root,
            migration_version,
        } => new_feature(&name, singular.as_deref(), root, migration_version).await,
        Command::Openapi { output } => {
            let spec = api::spec().await?;
            match output {
                Some(path) => std::fs::write(&path, spec)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                None => std::io::stdout().write_all(spec.as_bytes())?,
            }
            Ok(())
        }
    }
}

/// `keel-admin new-feature`: generates, formats, and says what to do next.
async fn new_feature(
    name: &str,
    singular: Option<&str>,
    root: Option<PathBuf>,
    version: Option<String>,
) -> Result<(), BoxError> {
    let names = scaffold::Names::new(name, singular)?;
    // What the application serves today: the new names must not be in it.
    let document: serde_json::Value = serde_json::from_str(&api::spec().await?)?;
    names.check_against(&document)?;
    let root = match root {
        Some(root) => root,
        None => checkout_root()?,
    };
    let version =
        version.unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d-%H%M%S").to_string());
    let generated = scaffold::generate(&root, &names, &version)?;
    let sources: Vec<PathBuf> = ["src", "tests/it"]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(generated.crate_dir.join(dir))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    let formatted = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(&sources)
        .status();
    if !formatted.is_ok_and(|status| status.success()) {
        eprintln!("keel-admin: rustfmt did not run; format the new crate with `cargo fmt`");
    }
    let crate_name = names.crate_name();
    eprintln!(
        "keel-admin: created {} (singular {:?}: audit actions {}.created, …) and {}; \
         app/Cargo.toml lists it: {}",
        generated.crate_dir.display(),
        names.item,
        names.item,
        generated.migration_dir.display(),
        generated.line
    );
    eprintln!(
        "keel-admin: next: `cargo test -p {crate_name}`, then refresh the API snapshot with \
         `cargo run --bin keel-admin -- openapi --output openapi.json`"
    );
    Ok(())
}

/// The nearest directory at or above the current one holding app/Cargo.toml and
/// migrations/.
fn checkout_root() -> Result<PathBuf, BoxError> {
    let here = std::env::current_dir()?;
    here.ancestors()
        .find(|dir| dir.join("app/Cargo.toml").is_file() && dir.join("migrations").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "no keel checkout at or above {}: run from one or pass --root",
                here.display()
            )
            .into()
        })
}

/// The audit trail with everything final sealed, and the private server it runs on (if
/// keel started one), to stop when done.
async fn sealed_trail() -> Result<(ActivityService, Option<PrivateServer>), BoxError> {
    let (root, server) = open(Signed::AsRuntime).await?;
    let activity = ActivityService::build(&root.context)
        .await
        .map_err(|e| describe(&e))?;
    activity.seal_all().await.map_err(|e| describe(&e))?;
    Ok((activity, server))
}

/// Which database role a command signs in as.
#[derive(Debug, Clone, Copy)]
enum Signed {
    /// keel-api's (`DATABASE_URL`).
    AsRuntime,
    /// `DATABASE_OWNER_URL` when set (it may change the schema and seed), else the same.
    AsOwner,
}

/// The composed process on the configured database (or keel's private server, which
/// the caller stops when done).
async fn open(signed: Signed) -> Result<(Root, Option<PrivateServer>), BoxError> {
    open_with(Settings::load()?, signed).await
}

async fn open_with(
    settings: Settings,
    signed: Signed,
) -> Result<(Root, Option<PrivateServer>), BoxError> {
    let database = database::resolve(&settings).await?;
    let url = match (signed, &settings.database.owner_url) {
        (Signed::AsOwner, Some(owner)) => owner,
        _ => &database.url,
    };
    match Root::new(&settings, url, "keel-admin").await {
        Ok(root) => Ok((root, database.server)),
        Err(err) => {
            // Don't leave a private PostgreSQL running behind the error.
            stop(database.server).await?;
            Err(err.into())
        }
    }
}

/// Seeds every feature; returns what changed.
async fn seed(root: &Root) -> Result<Vec<String>, BoxError> {
    All::seed(&root.context.db, &root.context.declared.permissions)
        .await
        .map_err(|FeatureError { feature, source }| {
            format!("seeding {feature}: {}", describe(&source)).into()
        })
}

async fn stop(server: Option<PrivateServer>) -> Result<(), BoxError> {
    if let Some(server) = server {
        server.stop().await?;
    }
    Ok(())
}

/// One line for an error, naming each broken rule for validation errors.
fn describe(err: &ApiError) -> String {
    match err {
        ApiError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Unavailable { .. } => "the database is unavailable".to_owned(),
        other => other.to_string(),
    }
}

fn prompt_line(prompt: &str) -> Result<String, BoxError> {
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to prompt on: pass --email (and --password-stdin)".into());
    }
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Asks twice, without echo, and insists the two match.
fn prompt_new_password() -> Result<String, BoxError> {
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to prompt on: pass --password-stdin".into());
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Password (again): ")?;
    if first != second {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

/// The first line of standard input, without its line ending.
fn read_stdin_password() -> Result<String, BoxError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err("no password on standard input".into());
    }
    Ok(password)
}

/// `keel-admin tasks dead …`: one line per dead letter or per queue.
async fn dead_letters(command: DeadCommand) -> Result<(), BoxError> {
    let settings = Settings::load()?;
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
