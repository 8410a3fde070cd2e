//! Accounts: `create-admin`, and `password-cost` for sizing sign-in capacity.

use std::io::{BufRead, IsTerminal, Write};
use std::num::NonZero;
use std::time::{Duration, Instant};

use keel_app::process::load_settings;
use keel_core::ApiError;
use keel_core::feature::Features;
use keel_user::UserService;
use keel_user::models::Account;
use keel_user::password::Passwords;
use keel_user::services::AdminOutcome;

use crate::BoxError;
use crate::composed::{Signed, describe, open_with, seed, stop};

/// `keel-admin create-admin`: a superuser, or `promote`d an existing account.
pub async fn create_admin(
    email: Option<String>,
    password_stdin: bool,
    promote: bool,
) -> Result<(), BoxError> {
    // A configuration problem is told before anyone types a password.
    let settings = load_settings()?;
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
    let users = root
        .features
        .get::<UserService>()
        .ok_or("keel-user is not among the features (app/Cargo.toml)")?;
    let outcome = users
        .create_admin(&email, password, promote)
        .await
        .map_err(|e| match e {
            ApiError::Conflict { .. } => {
                format!("an account with {email} exists; pass --promote to make it a superuser")
            }
            other => describe(&other),
        })?;
    match outcome {
        AdminOutcome::Created(Account { user, .. }) => {
            eprintln!("keel-admin: created superuser {} ({})", user.email, user.id);
        }
        AdminOutcome::Promoted(Account { user, .. }) => {
            eprintln!(
                "keel-admin: promoted {} ({}) to superuser",
                user.email, user.id
            );
        }
        AdminOutcome::AlreadySuperuser(Account { user, .. }) => {
            eprintln!(
                "keel-admin: {} ({}) already is a superuser; nothing changed",
                user.email, user.id
            );
        }
    }
    stop(server).await
}

/// `keel-admin password-cost`: the median time of one password verification at the cost
/// keel hashes with, on the hashing threads keel-api runs: alone, then with every core
/// verifying at once. argon2 is memory-hard: hashes running side by side share the
/// caches and memory bandwidth, and on some machines each takes longer than one alone.
/// A replica signs in at most cores ÷ the second time a second. `scripts/bench.sh` holds
/// sign-in to cores ÷ the first and prints the second beside it.
pub async fn password_cost(rounds: u16) -> Result<(), BoxError> {
    let cores = std::thread::available_parallelism().map_or(1, NonZero::get);
    let passwords = Passwords::new("password-cost", cores)
        .await
        .map_err(|e| describe(&e))?;
    let password = "a password to time".to_owned();
    let stored = passwords
        .hash(password.clone())
        .await
        .map_err(|e| describe(&e))?;
    let alone = median(time_verifications(&passwords, &password, &stored, rounds).await?);
    let side_by_side = futures_util::future::try_join_all(
        (0..cores).map(|_| time_verifications(&passwords, &password, &stored, rounds)),
    )
    .await?;
    let together = median(side_by_side.concat());
    // `$argon2id$v=19$m=19456,t=2,p=1$salt$hash`: the algorithm and its parameters.
    let cost: Vec<&str> = stored.split('$').skip(1).take(3).collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    writeln!(
        std::io::stdout(),
        "{}: one verification takes {:.2} ms alone and {:.2} ms with all {cores} cores verifying (medians of {rounds}); {cores} cores sign in at most {:.0} a second",
        cost.join(" "),
        ms(alone),
        ms(together),
        cores as f64 / together.as_secs_f64(),
    )?;
    Ok(())
}

/// How long each of `rounds` verifications of `password` took, one after another.
async fn time_verifications(
    passwords: &Passwords,
    password: &str,
    stored: &str,
    rounds: u16,
) -> Result<Vec<Duration>, BoxError> {
    let mut times = Vec::with_capacity(rounds.into());
    for _ in 0..rounds {
        let started = Instant::now();
        passwords
            .verify(password.to_owned(), Some(stored.to_owned()))
            .await
            .map_err(|e| describe(&e))?;
        times.push(started.elapsed());
    }
    Ok(times)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or(Duration::MAX)
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
