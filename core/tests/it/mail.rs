//! Mail on both transports: SMTP to a real server (aiosmtpd, started by
//! scripts/test.sh, keeping messages in a Maildir) and `.eml` files.

use std::path::Path;
use std::time::Duration;

use keel_core::mail::{Email, MailError, Mailer};

fn mailer(overrides: &[(&str, &str)]) -> Mailer {
    let settings = keel_testkit::settings("postgres://postgres@127.0.0.1:5432/unused", overrides);
    Mailer::from_settings(&settings.mail).unwrap()
}

fn smtp() -> Mailer {
    let smtp = keel_testkit::smtp_settings();
    let overrides: Vec<(&str, &str)> = smtp.iter().map(|(k, v)| (*k, v.as_str())).collect();
    mailer(&overrides)
}

fn email(to: &str) -> Email {
    Email {
        to: to.to_owned(),
        subject: "Welcome: your account is ready".to_owned(),
        text: "Hello Ada,\n\nyour account is ready.\n".to_owned(),
        id: None,
    }
}

/// The messages in `dir` (any depth) that mention `needle`.
fn messages_with(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path)
                && text.contains(needle)
            {
                found.push(text);
            }
        }
    }
    found
}

#[tokio::test]
async fn smtp_delivers_to_a_real_server() {
    let to = format!("ada-{}@example.com", uuid::Uuid::now_v7().simple());
    let mailer = smtp();
    assert_eq!(mailer.backend(), "smtp");
    mailer.send(&email(&to)).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..50 {
        received = messages_with(&keel_testkit::maildir(), &to);
        if !received.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(received.len(), 1, "one message for {to}");
    let message = &received[0];
    assert!(
        message.contains("Subject: Welcome: your account is ready"),
        "{message}"
    );
    assert!(
        message.contains("From: keel <no-reply@localhost>"),
        "{message}"
    );
    assert!(message.contains("your account is ready."), "{message}");
}

#[tokio::test]
async fn without_smtp_mail_is_written_to_files() {
    let dir = std::env::temp_dir().join(format!("keel-mail-{}", uuid::Uuid::now_v7().simple()));
    let mailer = mailer(&[
        ("MAIL_DIR", dir.to_str().unwrap()),
        ("MAIL_FROM", "Example <hello@example.com>"),
    ]);
    assert_eq!(mailer.backend(), "files");
    mailer.send(&email("ada@example.com")).await.unwrap();
    let files = messages_with(&dir, "To: ada@example.com");
    assert_eq!(files.len(), 1);
    assert!(
        files[0].contains("From: Example <hello@example.com>"),
        "{}",
        files[0]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_bad_address_is_permanent_and_a_server_down_is_worth_a_retry() {
    let refused = smtp().send(&email("not an address")).await.unwrap_err();
    assert!(matches!(refused, MailError::Invalid(_)), "{refused}");
    assert!(refused.is_permanent());

    let down = mailer(&[
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", "1"),
        ("SMTP_SECURITY", "none"),
        ("SMTP_TIMEOUT", "1s"),
    ]);
    let failed = down.send(&email("ada@example.com")).await.unwrap_err();
    assert!(matches!(failed, MailError::Send(_)), "{failed}");
    assert!(!failed.is_permanent());
}
