//! The zero-config development database.
//!
//! With `DATABASE_URL` unset (never in production), keel uses the local server at
//! [`DEFAULT_URL`], creating the `keel` database if missing; if nothing answers there it
//! starts a private PostgreSQL from the installed binaries in a git-ignored directory,
//! reuses it on later runs, and stops it on exit.

use std::net::TcpListener as StdTcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use super::admin;
use crate::settings::Secret;

/// The URL tried first: the usual local PostgreSQL with trust or peer-less auth.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/keel";
/// Where the private server keeps its data, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".keel/postgres";
const DB_NAME: &str = "keel";
const PORT_FILE: &str = "keel.port";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// initdb and postgres refuse to run as root; as root we run them as this user.
const SERVICE_USER: &str = "postgres";

/// Ways to give keel a database, printed when none can be found or started.
const HOW_TO_FIX: &str = "give keel a database: install PostgreSQL (e.g. `apt install postgresql`), \
     or run `docker compose up -d postgres`, or set DATABASE_URL=postgres://user:password@host:5432/keel";

/// Why no development database could be provided; `Display` is one line ending in the fixes.
#[derive(Debug, thiserror::Error)]
#[error(
    "no database: nothing usable at {DEFAULT_URL} ({default}) and no private server ({private}); {HOW_TO_FIX}"
)]
pub struct ProvisionError {
    default: String,
    private: String,
}

/// A database URL for development, and the private server behind it if keel started one.
#[derive(Debug)]
pub struct LocalDatabase {
    pub url: Secret,
    pub server: Option<PrivateServer>,
}

/// Finds or starts a development database (see the module docs).
pub async fn provision(data_dir: &Path) -> Result<LocalDatabase, ProvisionError> {
    let default = match ensure_keel_database(5432).await {
        Ok(()) => {
            return Ok(LocalDatabase {
                url: Secret::new(DEFAULT_URL),
                server: None,
            });
        }
        Err(err) => err,
    };
    tracing::info!(reason = %default, "no usable PostgreSQL on 127.0.0.1:5432; starting a private one");
    let server = PrivateServer::start(data_dir)
        .await
        .map_err(|private| ProvisionError {
            default: default.clone(),
            private,
        })?;
    ensure_keel_database(server.port)
        .await
        .map_err(|private| ProvisionError { default, private })?;
    Ok(LocalDatabase {
        url: Secret::new(server.url(DB_NAME)),
        server: Some(server),
    })
}

async fn ensure_keel_database(port: u16) -> Result<(), String> {
    let url = format!("postgres://{SERVICE_USER}@127.0.0.1:{port}/postgres");
    let mut conn = admin::connect(&url, CONNECT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    admin::create_database(&mut conn, DB_NAME, None)
        .await
        .map_err(|e| format!("cannot create database {DB_NAME}: {e}"))
}

/// A PostgreSQL server keel runs from the installed binaries, for development only.
#[derive(Debug)]
pub struct PrivateServer {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    /// Whether this process started it (and so stops it); a server left running by
    /// another keel process is reused and left alone.
    owned: bool,
}

impl PrivateServer {
    /// Initialises `data_dir` on first use and starts the server (or reuses a running one).
    pub async fn start(data_dir: &Path) -> Result<Self, String> {
        let bin_dir = find_bin_dir().ok_or(
            "PostgreSQL's initdb and pg_ctl were not found on PATH or under /usr/lib/postgresql/*/bin",
        )?;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", data_dir.display()))?;
        let mut server = Self {
            bin_dir,
            port: 0,
            owned: false,
            data_dir,
        };

        if !server.data_dir.join("PG_VERSION").exists() {
            if running_as_root() {
                server
                    .run("chown", &["-R", SERVICE_USER, &server.path_str()], false)
                    .await?;
            }
            let initdb = server.bin("initdb");
            server
                .run(
                    &initdb,
                    &[
                        "-D",
                        &server.path_str(),
                        "-U",
                        "postgres",
                        "-A",
                        "trust",
                        "-E",
                        "UTF8",
                        "--no-sync",
                    ],
                    true,
                )
                .await?;
        }

        let port_file = server.data_dir.join(PORT_FILE);
        server.port = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        if server.port != 0 && server.is_running().await {
            tracing::info!(
                port = server.port,
                "reusing the private PostgreSQL already running"
            );
            return Ok(server);
        }
        if server.port == 0 || !port_is_free(server.port) {
            server.port = free_port()?;
            std::fs::write(&port_file, server.port.to_string())
                .map_err(|e| format!("cannot write {}: {e}", port_file.display()))?;
        }

        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            server.port
        );
        let log = server.data_dir.join("server.log");
        let pg_ctl = server.bin("pg_ctl");
        server
            .run(
                &pg_ctl,
                &[
                    "-D",
                    &server.path_str(),
                    "-l",
                    &log.to_string_lossy(),
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ],
                true,
            )
            .await
            .map_err(|e| format!("{e} (see {})", log.display()))?;
        server.owned = true;
        tracing::info!(port = server.port, dir = %server.data_dir.display(), "started a private PostgreSQL");
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SERVICE_USER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Stops the server if this process started it.
    pub async fn stop(self) -> Result<(), String> {
        if !self.owned {
            return Ok(());
        }
        let pg_ctl = self.bin("pg_ctl");
        self.run(
            &pg_ctl,
            &["-D", &self.path_str(), "-m", "fast", "-w", "stop"],
            true,
        )
        .await
    }

    async fn is_running(&self) -> bool {
        let pg_ctl = self.bin("pg_ctl");
        self.run(&pg_ctl, &["-D", &self.path_str(), "status"], true)
            .await
            .is_ok()
    }

    fn bin(&self, name: &str) -> String {
        self.bin_dir.join(name).to_string_lossy().into_owned()
    }

    fn path_str(&self) -> String {
        self.data_dir.to_string_lossy().into_owned()
    }

    /// Runs a command, as the service user when we are root and `as_service` is set.
    async fn run(&self, program: &str, args: &[&str], as_service: bool) -> Result<(), String> {
        let mut command = if as_service && running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVICE_USER, "--", program]);
            c
        } else {
            Command::new(program)
        };
        let output = command
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!("{program} failed ({}): {last}", output.status))
    }
}

/// The directory holding `pg_ctl` and `initdb`: from PATH, else the newest Debian install.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("pg_ctl").is_file() && dir.join("initdb").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `/proc/self` is owned by the process's effective user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn port_is_free(port: u16) -> bool {
    StdTcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> Result<u16, String> {
    StdTcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}
