//! Tracing setup: console output (pretty or JSON lines) and optional daily-rotated files.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{InitError, RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::settings::{LogFormat, LogSettings};

/// Keeps the log-file writer thread alive; logs written after it drops are lost, so the
/// binaries hold it until `main` returns.
#[must_use = "dropping the guard stops file logging"]
#[derive(Debug)]
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("LOG_LEVEL: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("LOG_DIR: cannot create rotating log files: {0}")]
    File(#[from] InitError),
    #[error("LOG_DIR: cannot create the directory: {0}")]
    Dir(#[from] std::io::Error),
}

/// Libraries whose own lines repeat what keel says once: lapin logs each lost broker
/// connection at ERROR, several times, while the relay and the workers log one WARN per
/// outage. Named in `LOG_LEVEL` (`info,lapin=debug`), they log as it says.
const QUIET: &[&str] = &["lapin"];

/// `LOG_LEVEL` with the [`QUIET`] libraries it doesn't name switched off.
fn directives(level: &str) -> String {
    let mut directives = level.to_owned();
    for library in QUIET.iter().filter(|library| !level.contains(*library)) {
        directives.push_str(&format!(",{library}=off"));
    }
    directives
}

/// Installs the global subscriber. `app` names the log files (`<app>.<date>.log`).
///
/// Calling it again in the same process (tests) keeps the first subscriber.
pub fn init(settings: &LogSettings, app: &str) -> Result<LogGuard, LoggingError> {
    let filter = EnvFilter::try_new(directives(&settings.level))?;
    let console = match settings.format {
        LogFormat::Pretty => fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };

    let (file, guard) = match &settings.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix(app)
                .filename_suffix("log")
                .max_log_files(settings.max_files)
                .build(dir)?;
            // Block instead of dropping lines when the writer falls behind: an audit of
            // what happened matters more than the latency of a log call.
            let (writer, guard) = NonBlockingBuilder::default().lossy(false).finish(appender);
            let layer = fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_ansi(false)
                .with_writer(writer);
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };

    // A second init in one process (tests) keeps the first subscriber; that is fine.
    let _already_set = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(file)
        .try_init()
        .is_err();
    Ok(LogGuard { _file: guard })
}

#[cfg(test)]
mod quiet_tests {
    use super::directives;

    #[test]
    fn quiet_libraries_are_off_unless_named() {
        assert_eq!(directives("info"), "info,lapin=off");
        assert_eq!(directives("warn,lapin=debug"), "warn,lapin=debug");
    }
}
