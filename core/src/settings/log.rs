//! `LOG_*`: what is logged, how, and where.

use std::path::PathBuf;

use super::reader::Reader;

/// How console log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Coloured, multi-field lines for people.
    Pretty,
    /// One JSON object per line for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err("expected pretty or json".into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// An `EnvFilter` directive such as `info` or `info,keel_core=debug`.
    pub level: String,
    pub format: LogFormat,
    /// Daily-rotated log files go here when set.
    pub dir: Option<PathBuf>,
    /// Rotated files kept before the oldest is deleted.
    pub max_files: usize,
}

impl LogSettings {
    pub(super) fn read(r: &mut Reader<'_>, prod: bool) -> Self {
        let level = r.string("LOG_LEVEL", "info");
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&level) {
            r.problem(
                "LOG_LEVEL",
                &format!("is not a valid filter ({err})"),
                "info,keel_core=debug",
            );
        }
        Self {
            level,
            format: r.parse(
                "LOG_FORMAT",
                if prod {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                },
                "json",
            ),
            dir: r.optional_string("LOG_DIR").map(PathBuf::from),
            max_files: r.parse_where(
                "LOG_MAX_FILES",
                14,
                "14",
                |n: &usize| *n >= 1,
                "must be at least 1",
            ),
        }
    }
}
