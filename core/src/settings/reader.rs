//! Reads variables one by one, falling back to defaults and collecting every problem.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{MIN_SECRET_LEN, Secret};
use crate::net::IpNetwork;

/// One thing wrong with the configuration: which variable, what is wrong, a good value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: String,
    pub message: String,
    pub example: String,
}

impl Problem {
    pub fn new(
        variable: impl Into<String>,
        message: impl Into<String>,
        example: impl Into<String>,
    ) -> Self {
        Self {
            variable: variable.into(),
            message: message.into(),
            example: example.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (e.g. {}={})",
            self.variable, self.message, self.variable, self.example
        )
    }
}

/// Every problem found in the configuration; `Display` prints one per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SettingsError {
    pub problems: Vec<Problem>,
}

impl SettingsError {
    pub fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Reads variables for keel-core's sections and for the features' own ([`super::Section`]):
/// each getter falls back to its default and records what is wrong instead of failing.
pub struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    problems: Vec<Problem>,
}

/// Shows what it found wrong, never the values it reads (some are secrets).
impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl<'a> Reader<'a> {
    /// A prefix that namespaces keys or queue names (`keel` by default), so several apps or
    /// environments can share one Redis or one broker.
    pub fn name_prefix(&mut self, name: &str) -> String {
        self.parse_where(
            name,
            "keel".to_owned(),
            "keel",
            |p: &String| {
                !p.is_empty()
                    && p.len() <= 64
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            },
            "must be 1-64 letters, digits, '_', '-' or '.'",
        )
    }

    pub(super) fn new(vars: &'a HashMap<String, String>, problems: Vec<Problem>) -> Self {
        Self { vars, problems }
    }

    /// The trimmed value; empty counts as unset so `.env` files can list blank keys.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn problem(&mut self, name: &str, message: &str, example: &str) {
        self.problems.push(Problem::new(name, message, example));
    }

    /// No problem has been recorded for this variable yet.
    pub fn is_fine(&self, name: &str) -> bool {
        self.problems.iter().all(|p| p.variable != name)
    }

    pub fn parse<T>(&mut self, name: &str, default: T, example: &str) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let Some(raw) = self.get(name) else {
            return default;
        };
        match raw.parse() {
            Ok(value) => value,
            Err(err) => {
                self.problem(name, &format!("{raw:?} is not valid: {err}"), example);
                default
            }
        }
    }

    pub fn parse_where<T>(
        &mut self,
        name: &str,
        default: T,
        example: &str,
        ok: impl Fn(&T) -> bool,
        rule: &str,
    ) -> T
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        let value = self.parse(name, default, example);
        if self.is_fine(name) && !ok(&value) {
            self.problem(name, &format!("{value} {rule}"), example);
        }
        value
    }

    pub fn string(&mut self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// The contents of the file this variable names, which must be set (`why` says
    /// when) and readable.
    pub fn required_file(&mut self, name: &str, why: &str, example: &str) -> Option<Vec<u8>> {
        let Some(path) = self.get(name) else {
            self.problem(name, &format!("is required {why}"), example);
            return None;
        };
        match std::fs::read(path) {
            Ok(contents) => Some(contents),
            Err(err) => {
                self.problem(name, &format!("cannot read {path:?}: {err}"), example);
                None
            }
        }
    }

    pub fn optional_string(&mut self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    /// A comma-separated list; blanks between commas are ignored.
    pub fn list(&mut self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// CORS origins: `*` or full `scheme://host[:port]` origins without a path.
    pub fn origins(&mut self, name: &str) -> Vec<String> {
        let origins = self.list(name);
        for origin in &origins {
            let valid = origin == "*"
                || url::Url::parse(origin).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.path() == "/"
                        && !origin.ends_with('/')
                });
            if !valid {
                self.problem(
                    name,
                    &format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
                    "https://app.example.com,http://localhost:5173",
                );
            }
        }
        origins
    }

    /// Durations as `500ms`, `30s`, `5m`, `1h` or `7d`; a bare number is seconds.
    pub fn duration(&mut self, name: &str, default: Duration, example: &str) -> Duration {
        let Some(raw) = self.get(name) else {
            return default;
        };
        match parse_duration(raw) {
            Some(value) if !value.is_zero() => value,
            _ => {
                self.problem(
                    name,
                    &format!("{raw:?} is not a positive duration (units: ms, s, m, h, d)"),
                    example,
                );
                default
            }
        }
    }

    /// A duration that must fall within `range` (which may admit zero, e.g. "no cache").
    pub fn duration_within(
        &mut self,
        name: &str,
        default: Duration,
        example: &str,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Duration {
        let Some(raw) = self.get(name) else {
            return default;
        };
        match parse_duration(raw) {
            Some(value) if range.contains(&value) => value,
            Some(_) => {
                self.problem(
                    name,
                    &format!(
                        "{raw:?} is out of range ({:?} to {:?})",
                        range.start(),
                        range.end()
                    ),
                    example,
                );
                default
            }
            None => {
                self.problem(
                    name,
                    &format!("{raw:?} is not a duration (units: ms, s, m, h, d)"),
                    example,
                );
                default
            }
        }
    }

    /// Proxy addresses as IPs or CIDR blocks (`10.0.0.0/8`, `::1`).
    pub fn networks(&mut self, name: &str) -> Vec<IpNetwork> {
        let mut networks = Vec::new();
        for item in self.list(name) {
            match item.parse() {
                Ok(net) => networks.push(net),
                Err(err) => self.problem(name, &format!("{item:?}: {err}"), "10.0.0.0/8,127.0.0.1"),
            }
        }
        networks
    }

    /// Sizes as `512KiB`, `1MiB`, `2MB` or plain bytes.
    pub fn byte_size(&mut self, name: &str, default: usize, example: &str) -> usize {
        let Some(raw) = self.get(name) else {
            return default;
        };
        match parse_byte_size(raw) {
            Some(value) if value > 0 => value,
            _ => {
                self.problem(
                    name,
                    &format!(
                        "{raw:?} is not a positive size (units: B, KiB, MiB, GiB, KB, MB, GB)"
                    ),
                    example,
                );
                default
            }
        }
    }

    /// A PostgreSQL URL; the value is never echoed because it may hold a password.
    pub fn postgres_url(&mut self, name: &str) -> Option<Secret> {
        self.url(
            name,
            &["postgres", "postgresql"],
            "postgres://user:password@localhost:5432/keel",
        )
    }

    /// A URL with one of `schemes`, kept secret (it may carry a password).
    pub fn url(&mut self, name: &str, schemes: &[&str], example: &str) -> Option<Secret> {
        let raw = self.get(name)?;
        match url::Url::parse(raw) {
            Ok(url) if schemes.contains(&url.scheme()) => Some(Secret::new(raw)),
            Ok(_) => {
                self.problem(
                    name,
                    &format!("must use the {}:// scheme", schemes[0]),
                    example,
                );
                None
            }
            Err(err) => {
                self.problem(name, &format!("is not a URL ({err})"), example);
                None
            }
        }
    }

    /// A secret with a development default that production refuses.
    pub fn secret(&mut self, name: &str, dev_default: &str, production: bool) -> Secret {
        let example = "$(openssl rand -base64 48)";
        match self.get(name) {
            None if production => {
                self.problem(name, "is required in production", example);
            }
            Some(value) if production && value == dev_default => {
                self.problem(
                    name,
                    "still has the development default, which is public",
                    example,
                );
            }
            Some(value) if production && value.len() < MIN_SECRET_LEN => {
                self.problem(
                    name,
                    &format!("is too short: production needs at least {MIN_SECRET_LEN} characters"),
                    example,
                );
            }
            Some(value) => return Secret::new(value),
            None => {}
        }
        Secret::new(dev_default)
    }

    pub(super) fn finish(self) -> Result<(), SettingsError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::new(self.problems))
        }
    }
}

fn split_number(raw: &str) -> Option<(u64, &str)> {
    let raw = raw.trim();
    let end = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let number = raw[..end].parse().ok()?;
    Some((number, raw[end..].trim()))
}

fn parse_duration(raw: &str) -> Option<Duration> {
    let (n, unit) = split_number(raw)?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86_400).map(Duration::from_secs),
        _ => None,
    }
}

fn parse_byte_size(raw: &str) -> Option<usize> {
    let (n, unit) = split_number(raw)?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    usize::try_from(n.checked_mul(factor)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1 day"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_byte_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_byte_size("2MB"), Some(2_000_000));
        assert_eq!(parse_byte_size("77"), Some(77));
        assert_eq!(parse_byte_size("1TB"), None);
        assert_eq!(parse_byte_size("-1"), None);
    }
}
