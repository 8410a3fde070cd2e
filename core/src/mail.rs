//! Sending email: SMTP through lettre when `SMTP_HOST` is set, otherwise `.eml` files
//! under `MAIL_DIR` (development: open them in any mail client), each one logged.
//!
//! Sending happens in background tasks, never in a request: a slow or refusing SMTP
//! server makes a task retry, not a client wait.

use std::path::PathBuf;
use std::sync::Arc;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::settings::{MailSettings, SmtpSecurity};

/// A plain-text message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// Makes the Message-ID `<id@sender's domain>`: give the sending task's
    /// [`Effect::id`](crate::tasks::Effect::id), so every attempt sends the same id and
    /// a duplicate that slips through is recognisable. `None`: a fresh one each time.
    pub id: Option<uuid::Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message can't be sent as it is (an address that doesn't parse): retrying
    /// won't help.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The server or the disk failed: worth a retry.
    #[error("cannot send: {0}")]
    Send(String),
    #[error("invalid mail settings: {0}")]
    Config(String),
}

impl MailError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Config(_))
    }
}

/// A cheap handle (clone it freely) to the configured transport.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Arc<Transport>,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("backend", &self.backend())
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// Builds the transport without connecting: an SMTP server that is down fails the
    /// sends (which retry), not the start.
    pub fn from_settings(settings: &MailSettings) -> Result<Self, MailError> {
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|err| MailError::Config(format!("MAIL_FROM: {err}")))?;
        let transport = match &settings.smtp {
            None => Transport::Files(settings.dir.clone()),
            Some(smtp) => {
                let builder = match smtp.security {
                    SmtpSecurity::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                    }
                    SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
                    SmtpSecurity::None => Ok(
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
                    ),
                }
                .map_err(|err| MailError::Config(format!("SMTP_HOST: {err}")))?;
                let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
                if let Some(username) = &smtp.username {
                    let password = smtp
                        .password
                        .as_ref()
                        .map(|p| p.expose().to_owned())
                        .unwrap_or_default();
                    builder = builder.credentials(Credentials::new(username.clone(), password));
                }
                Transport::Smtp(builder.build())
            }
        };
        Ok(Self {
            from,
            transport: Arc::new(transport),
        })
    }

    /// `smtp` or `files`.
    pub fn backend(&self) -> &'static str {
        match *self.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Files(_) => "files",
        }
    }

    pub async fn send(&self, email: &Email) -> Result<(), MailError> {
        let to = email
            .to
            .parse::<Mailbox>()
            .map_err(|err| MailError::Invalid(format!("recipient {:?}: {err}", email.to)))?;
        let message_id = email
            .id
            .map(|id| format!("<{}@{}>", id.simple(), self.from.email.domain()));
        let message = Message::builder()
            .message_id(message_id)
            .from(self.from.clone())
            .to(to)
            .subject(&email.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(email.text.clone())
            .map_err(|err| MailError::Invalid(err.to_string()))?;
        match &*self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .map_err(|err| MailError::Send(err.to_string()))?;
                tracing::info!(to = %email.to, subject = %email.subject, "mail sent");
            }
            Transport::Files(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|err| MailError::Send(format!("{}: {err}", dir.display())))?;
                let path = dir.join(format!("{}.eml", uuid::Uuid::now_v7()));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(|err| MailError::Send(format!("{}: {err}", path.display())))?;
                tracing::info!(to = %email.to, subject = %email.subject, file = %path.display(), "mail written (no SMTP_HOST)");
            }
        }
        Ok(())
    }
}
