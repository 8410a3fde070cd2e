//! `SMTP_*`, `MAIL_*`: the relay mail goes through, or the directory it is written to.

use std::path::PathBuf;
use std::time::Duration;

use super::Secret;
use super::reader::Reader;

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `None`: mail is written as `.eml` files under `dir` (development).
    pub smtp: Option<SmtpSettings>,
    /// The sender, `Name <address>` or a bare address.
    pub from: String,
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub security: SmtpSecurity,
    /// Longest wait to connect or for one SMTP reply.
    pub timeout: Duration,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a relay on the same host or network only.
    None,
}

impl std::str::FromStr for SmtpSecurity {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "starttls" => Ok(Self::Starttls),
            "tls" => Ok(Self::Tls),
            "none" => Ok(Self::None),
            _ => Err("must be starttls, tls or none"),
        }
    }
}

impl MailSettings {
    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        if r.optional_string("SMTP_HOST").is_none() {
            // Credentials without a server are a mistake; a port or security left at
            // its default (as in .env.example) is not.
            for name in ["SMTP_USERNAME", "SMTP_PASSWORD"] {
                if r.optional_string(name).is_some() {
                    r.problem(
                        "SMTP_HOST",
                        &format!("is required when {name} is set"),
                        "smtp.example.com",
                    );
                }
            }
        }
        Self {
            smtp: r.optional_string("SMTP_HOST").map(|host| SmtpSettings {
                host,
                port: r.parse("SMTP_PORT", 587, "587"),
                username: r.optional_string("SMTP_USERNAME"),
                password: r.optional_string("SMTP_PASSWORD").map(Secret::new),
                security: r.parse("SMTP_SECURITY", SmtpSecurity::Starttls, "starttls"),
                timeout: r.duration_within(
                    "SMTP_TIMEOUT",
                    Duration::from_secs(10),
                    "10s",
                    Duration::from_millis(100)..=Duration::from_secs(120),
                ),
            }),
            from: r.parse_where(
                "MAIL_FROM",
                "keel <no-reply@localhost>".to_owned(),
                "Example <no-reply@example.com>",
                |from: &String| from.parse::<lettre::message::Mailbox>().is_ok(),
                "must be an address, optionally with a name: Name <user@example.com>",
            ),
            dir: PathBuf::from(r.string("MAIL_DIR", ".keel/mail")),
        }
    }
}
