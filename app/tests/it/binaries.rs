//! The binaries as operators run them: exit codes, messages, signals.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_testkit::TestDb;

const API: &str = env!("CARGO_BIN_EXE_keel-api");
const ADMIN: &str = env!("CARGO_BIN_EXE_keel-admin");
const WORKER: &str = env!("CARGO_BIN_EXE_keel-worker");

/// A command with a clean environment, so the developer's own settings can't leak in.
fn command(program: &str, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .envs(vars.iter().copied());
    command
}

fn run(program: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
    command(program, vars).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `keel-admin check-settings` judges a deployment's config without reaching anything:
/// each problem named and exit 1, or exit 0 (the Kubernetes check runs it on every
/// ConfigMap and Secret).
#[test]
fn admin_check_settings_names_each_problem_or_passes() {
    let secret = "s".repeat(64);
    let production = [
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://keel@db.invalid/keel"),
        ("JWT_SECRET", secret.as_str()),
        ("PASSWORD_PEPPER", secret.as_str()),
    ];
    let valid = run(ADMIN, &["check-settings"], &production);
    assert!(valid.status.success(), "{}", stderr(&valid));
    assert!(
        stderr(&valid).contains("valid (APP_ENV=production)"),
        "{}",
        stderr(&valid)
    );

    let mut broken = production.to_vec();
    broken.push(("LOG_FORMAT", "xml"));
    broken.push(("LOGIN_MAX_FAILURES_PER_IP", "many"));
    let refused = run(ADMIN, &["check-settings"], &broken);
    let text = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    for var in ["LOG_FORMAT", "LOGIN_MAX_FAILURES_PER_IP"] {
        assert!(text.contains(&format!("{var}: ")), "{var} reported: {text}");
    }
}

#[test]
fn bad_settings_exit_non_zero_with_one_line_per_problem() {
    let output = run(
        API,
        &[],
        &[
            ("APP_ENV", "production"),
            ("APP_PORT", "99999"),
            ("LOG_FORMAT", "xml"),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "keel-api: invalid configuration (5 problems):",
        "{text}"
    );
    for var in [
        "APP_PORT",
        "DATABASE_URL",
        "LOG_FORMAT",
        "JWT_SECRET",
        "PASSWORD_PEPPER",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with(&format!("{var}: "))),
            "{var} reported: {text}"
        );
    }
    assert!(!text.contains("panicked"), "{text}");
}

/// A key pair that doesn't belong together is a configuration problem like any other:
/// every binary refuses it before touching anything (here, before even trying the
/// database, which doesn't exist), naming the variable.
#[test]
fn a_mismatched_jwt_key_pair_is_refused_before_anything_runs() {
    let fixture = |name: &str| {
        format!(
            "{}/../core/tests/fixtures/jwt/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let (private, public) = (
        fixture("ed25519-private.pem"),
        fixture("other-ed25519-public.pem"),
    );
    let vars = [
        ("JWT_ALGORITHM", "EdDSA"),
        ("JWT_PRIVATE_KEY_FILE", private.as_str()),
        ("JWT_PUBLIC_KEY_FILE", public.as_str()),
        ("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none"),
    ];
    for (program, args) in [
        (API, &[][..]),
        (ADMIN, &["migrate"][..]),
        (ADMIN, &["seed"][..]),
    ] {
        let output = run(program, args, &vars);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{program} {args:?}: {text}");
        assert!(text.contains("invalid configuration (1 problem)"), "{text}");
        assert!(text.contains("JWT_PUBLIC_KEY_FILE: "), "{text}");
        assert!(text.contains("does not belong"), "{text}");
    }
}

/// A feature's own settings (keel-user's sign-in limits, avatar size) are read and
/// checked with keel-core's: every binary reports both kinds together, before anything
/// runs.
#[test]
fn a_features_bad_setting_is_reported_with_keel_cores_before_anything_runs() {
    let vars = [
        ("ACCESS_TOKEN_TTL", "2d"),
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "0"),
        ("AVATAR_MAX_BYTES", "huge"),
        ("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none"),
    ];
    for (program, args) in [(API, &[][..]), (WORKER, &[][..]), (ADMIN, &["migrate"][..])] {
        let output = run(program, args, &vars);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{program} {args:?}: {text}");
        assert!(
            text.contains("invalid configuration (3 problems)"),
            "{text}"
        );
        for var in [
            "ACCESS_TOKEN_TTL",
            "LOGIN_MAX_FAILURES_PER_ACCOUNT",
            "AVATAR_MAX_BYTES",
        ] {
            assert!(text.contains(&format!("{var}: ")), "{var} missing: {text}");
        }
    }
}

/// keel-worker and the dead-letter commands need RabbitMQ: without `AMQP_URL` they say
/// so in one line and exit 1.
#[test]
fn commands_that_need_a_broker_say_so_in_one_line() {
    let database = ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused");
    for (program, args, vars, name) in [
        (WORKER, &[][..], &[database][..], "keel-worker"),
        (ADMIN, &["tasks", "dead", "list"][..], &[][..], "keel-admin"),
    ] {
        let output = run(program, args, vars);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        let expected = format!("{name}: AMQP_URL is not set");
        assert!(text.starts_with(&expected), "{text}");
    }
}

#[test]
fn a_non_utf8_environment_variable_does_not_crash_start_up() {
    use std::os::unix::ffi::OsStrExt;
    let output = command(API, &[("APP_PORT", "not-a-port")])
        .env("UNRELATED_BYTES", std::ffi::OsStr::from_bytes(b"\xff\xfe"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("APP_PORT: "), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[tokio::test]
async fn sigterm_stops_the_api_with_exit_code_zero() {
    let db = TestDb::new().await;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut child = command(
        API,
        &[
            ("APP_PORT", &port),
            ("DATABASE_URL", db.url()),
            ("LOG_FORMAT", "json"),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();

    let url = format!("http://127.0.0.1:{port}/health/ready");
    let started = Instant::now();
    loop {
        if let Ok(response) = reqwest::get(&url).await
            && response.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "keel-api did not become ready"
        );
        assert!(child.try_wait().unwrap().is_none(), "keel-api exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (output, logs) = crate::helpers::terminate(child).await;
    assert!(
        output.status.success(),
        "exit {:?}: {logs}{}",
        output.status,
        stderr(&output)
    );
    assert!(
        logs.contains("/docs"),
        "the start-up log names the docs URL: {logs}"
    );
    assert!(logs.contains("keel-api stopped"), "{logs}");
}

/// A database an earlier keel migrated only part of the way before its migrations were
/// folded would never get the rest: `migrate` names what it lacks and applies nothing.
#[tokio::test]
async fn admin_migrate_refuses_a_database_migrated_partly_before_the_fold() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::empty().await;
    let vars = [("DATABASE_URL", db.url())];
    assert!(run(ADMIN, &["migrate"], &vars).status.success());
    // As an earlier keel left it: the first folded step recorded, the later ones not.
    db.connect()
        .await
        .batch_execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('20261122000004')")
        .await
        .unwrap();
    for args in [&["migrate"][..], &["migrate", "--pending"]] {
        let refused = run(ADMIN, args, &vars);
        let err = stderr(&refused);
        assert!(!refused.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("migrated part of the way") && err.contains("20261201000006"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn admin_migrate_applies_then_reports_nothing_pending() {
    let db = TestDb::empty().await;
    let vars = [("DATABASE_URL", db.url())];

    for (args, says) in [
        (&["migrate", "--pending"][..], "pending: 00000000000000"),
        (&["migrate"], "applied: 00000000000000"),
        (&["migrate"], "no migrations applied"),
    ] {
        let output = run(ADMIN, args, &vars);
        let err = stderr(&output);
        assert!(
            output.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn admin_migrate_against_a_down_database_fails_in_one_line() {
    let output = run(
        ADMIN,
        &["migrate"],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("keel-admin: "), "{text}");
}

#[test]
fn admin_openapi_writes_the_spec() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi-test.json");
    let output = run(ADMIN, &["openapi", "--output", path.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(spec["paths"]["/health/ready"].is_object());

    let unwritable = run(
        ADMIN,
        &["openapi", "--output", "/nonexistent/dir/spec.json"],
        &[],
    );
    assert_eq!(unwritable.status.code(), Some(1));
    assert!(
        stderr(&unwritable).starts_with("keel-admin: cannot write"),
        "{}",
        stderr(&unwritable)
    );
}

/// `keel-admin password-cost` sizes sign-in: one verification alone and with every core
/// verifying, and the sign-ins a second that the second time allows. scripts/bench.sh
/// reads both times from this line.
#[test]
fn admin_password_cost_times_a_hash_alone_and_side_by_side() {
    let output = run(ADMIN, &["password-cost", "--rounds", "3"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let line = String::from_utf8(output.stdout).unwrap();
    let figure = |before: &str, after: &str| -> f64 {
        let start = line
            .find(before)
            .unwrap_or_else(|| panic!("{before:?} in {line}"))
            + before.len();
        let end = start + line[start..].find(after).unwrap();
        line[start..end].parse().unwrap()
    };
    let alone = figure("takes ", " ms alone");
    let side_by_side = figure("alone and ", " ms with all");
    let cores = figure("with all ", " cores verifying");
    let per_second = figure("sign in at most ", " a second");
    assert!(
        line.starts_with("argon2id v=19 m=19456,t=2,p=1: "),
        "{line}"
    );
    assert!(alone > 0.0 && side_by_side > 0.0, "{line}");
    let expected = cores * 1000.0 / side_by_side;
    assert!((per_second - expected).abs() <= 1.0, "{line}");

    let none = run(ADMIN, &["password-cost", "--rounds", "0"], &[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("invalid value '0'"),
        "{}",
        stderr(&none)
    );
}

/// Runs keel-admin with `stdin` piped in.
fn run_with_stdin(args: &[&str], vars: &[(&str, &str)], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = command(ADMIN, vars)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn admin_create_admin_creates_promotes_and_explains_failures() {
    let db = TestDb::new().await;
    let vars = [("DATABASE_URL", db.url())];
    let create = |email: &str, extra: &[&str], password: &str| {
        let mut args = vec!["create-admin", "--email", email, "--password-stdin"];
        args.extend_from_slice(extra);
        run_with_stdin(&args, &vars, &format!("{password}\n"))
    };

    let weak = create("root@example.com", &[], "short");
    assert_eq!(weak.status.code(), Some(1));
    assert_eq!(
        stderr(&weak).trim(),
        "keel-admin: password: must be at least 10 characters"
    );

    let created = create("Root@Example.com", &[], "correct horse battery");
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        stderr(&created).starts_with("keel-admin: created superuser root@example.com"),
        "{}",
        stderr(&created)
    );

    let exists = create("root@example.com", &[], "correct horse battery");
    assert_eq!(exists.status.code(), Some(1));
    let text = stderr(&exists);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("--promote"), "{text}");

    let again = create("root@example.com", &["--promote"], "correct horse battery");
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already is a superuser"),
        "{}",
        stderr(&again)
    );

    // A plain account is promoted.
    let plain = create("plain@example.com", &[], "correct horse battery");
    assert!(plain.status.success());
    let mut conn = db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "DELETE FROM user_roles WHERE user_id = \
             (SELECT id FROM users WHERE email = 'plain@example.com') \
             AND role_id = (SELECT id FROM roles WHERE name = 'superuser')",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    let promoted = create("plain@example.com", &["--promote"], "correct horse battery");
    assert!(promoted.status.success(), "{}", stderr(&promoted));
    assert!(
        stderr(&promoted).contains("promoted plain@example.com"),
        "{}",
        stderr(&promoted)
    );

    let no_terminal = run_with_stdin(&["create-admin"], &vars, "");
    assert_eq!(no_terminal.status.code(), Some(1));
    assert!(
        stderr(&no_terminal).contains("no terminal"),
        "{}",
        stderr(&no_terminal)
    );
}

#[tokio::test]
async fn admin_seed_is_idempotent() {
    let db = TestDb::new().await;
    let vars = [("DATABASE_URL", db.url())];
    let first = run(ADMIN, &["seed"], &vars);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("nothing to seed") || stderr(&first).contains("seeded"),
        "{}",
        stderr(&first)
    );
    let second = run(ADMIN, &["seed"], &vars);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        stderr(&second).trim(),
        "keel-admin: nothing to seed; permissions and roles are up to date"
    );
}

#[tokio::test]
async fn admin_activity_verify_passes_then_names_the_tampered_entry() {
    let db = TestDb::new().await;
    let vars = [("DATABASE_URL", db.url())];
    for email in ["one@example.com", "two@example.com"] {
        let created = run_with_stdin(
            &["create-admin", "--email", email, "--password-stdin"],
            &vars,
            "correct horse battery\n",
        );
        assert!(created.status.success(), "{}", stderr(&created));
    }
    let intact = run(ADMIN, &["activity", "verify"], &vars);
    assert!(intact.status.success(), "{}", stderr(&intact));
    let text = stderr(&intact);
    assert!(
        text.starts_with("keel-admin: audit chain intact: 2 sealed entries, head 2 "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");

    // A superuser rewrites history with the append-only triggers off.
    let mut conn = db.connect().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        "ALTER TABLE activity_entries DISABLE TRIGGER USER; \
         UPDATE activity_entries SET summary = 'nothing happened' \
         WHERE summary LIKE '%one@example.com%'; \
         ALTER TABLE activity_entries ENABLE TRIGGER USER;",
    )
    .await
    .unwrap();
    let broken = run(ADMIN, &["activity", "verify"], &vars);
    assert_eq!(broken.status.code(), Some(1));
    let text = stderr(&broken);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("keel-admin: audit chain broken at seal 1 (entry "),
        "{text}"
    );
    assert!(text.contains("changed after sealing"), "{text}");
}

#[tokio::test]
async fn admin_activity_head_is_what_verify_since_checks() {
    let db = TestDb::new().await;
    let vars = [("DATABASE_URL", db.url())];
    let created = run_with_stdin(
        &[
            "create-admin",
            "--email",
            "one@example.com",
            "--password-stdin",
        ],
        &vars,
        "correct horse battery\n",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let head = run(ADMIN, &["activity", "head"], &vars);
    assert!(head.status.success(), "{}", stderr(&head));
    let kept = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert!(kept.starts_with("1:") && kept.len() == 66, "{kept}");

    let holds = run(ADMIN, &["activity", "verify", "--since", &kept], &vars);
    assert!(holds.status.success(), "{}", stderr(&holds));
    assert!(
        stderr(&holds).contains(&format!("holds {kept}")),
        "{}",
        stderr(&holds)
    );
    let malformed = run(ADMIN, &["activity", "verify", "--since", "1:nothex"], &vars);
    assert_eq!(malformed.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&malformed).contains("SEQ:HASH"),
        "{}",
        stderr(&malformed)
    );

    // The owner rewrites the entry and recomputes the seal: plain verify is fooled...
    let mut conn = db.connect().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        "ALTER TABLE activity_entries DISABLE TRIGGER USER; \
         ALTER TABLE activity_seals DISABLE TRIGGER USER; \
         UPDATE activity_entries SET summary = 'nothing happened'; \
         DELETE FROM activity_seals; \
         ALTER TABLE activity_entries ENABLE TRIGGER USER; \
         ALTER TABLE activity_seals ENABLE TRIGGER USER;",
    )
    .await
    .unwrap();
    let fooled = run(ADMIN, &["activity", "verify"], &vars);
    assert!(fooled.status.success(), "{}", stderr(&fooled));
    // ...the kept head is not.
    let caught = run(ADMIN, &["activity", "verify", "--since", &kept], &vars);
    assert_eq!(caught.status.code(), Some(1));
    let text = stderr(&caught);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("no longer on the chain"), "{text}");
}
