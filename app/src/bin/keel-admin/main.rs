//! keel-admin: operator commands. Each prints one clear line and exits non-zero on failure.
//! One module per family of commands; each composes what it needs through `composed`.

mod accounts;
mod activity;
mod composed;
mod new_feature;
mod schema;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use activity::ActivityCommand;
use tasks::TasksCommand;

#[derive(Debug, Parser)]
#[command(name = "keel-admin", version, about = "Operate a keel deployment")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the settings in the environment as keel-api and keel-worker read them
    /// (a deployment's config before it rolls out): one line per problem, or none.
    CheckSettings,
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
    /// Time one password verification at the configured cost on this machine: what
    /// bounds the sign-ins a replica can serve (cores ÷ that time).
    PasswordCost {
        /// How many verifications to time; the median is reported.
        #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u16).range(1..))]
        rounds: u16,
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

type BoxError = Box<dyn std::error::Error>;

// mimalloc (see the workspace Cargo.toml for why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::CheckSettings => schema::check_settings(),
        Command::Migrate { pending } => schema::migrate(pending).await,
        Command::Seed => schema::seed_all().await,
        Command::Openapi { output } => schema::openapi(output).await,
        Command::CreateAdmin {
            email,
            password_stdin,
            promote,
        } => accounts::create_admin(email, password_stdin, promote).await,
        Command::PasswordCost { rounds } => accounts::password_cost(rounds).await,
        Command::Activity { command } => activity::run(command).await,
        Command::Tasks { command } => tasks::run(command).await,
        Command::NewFeature {
            name,
            singular,
            root,
            migration_version,
        } => new_feature::new_feature(&name, singular.as_deref(), root, migration_version).await,
    }
}
