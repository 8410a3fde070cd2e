//! Parsed input values: once constructed, they are valid ("parse, don't validate").

use keel_core::error::FieldError;
use validator::ValidateEmail;

/// A syntactically valid email address, trimmed and lowercased (keel treats addresses
/// case-insensitively, as nearly every mail system does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        if email.chars().count() > 254 || !email.validate_email() {
            return Err(FieldError::new(field, "must be a valid email address"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A role name: lowercase letters, digits, `-` and `_`, starting with a letter.
pub fn role_name(field: &str, raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    let valid = (2..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "must be 2-63 lowercase letters, digits, - or _, starting with a letter",
        ))
    }
}

/// A display name, trimmed; at most 200 characters.
pub fn full_name(field: &str, raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    if name.chars().count() > 200 {
        return Err(FieldError::new(field, "must be at most 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(
            Email::parse("email", " Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in ["", "ada", "ada@", "@example.com", "a b@example.com"] {
            assert_eq!(
                Email::parse("email", bad).unwrap_err().field,
                "email",
                "{bad}"
            );
        }
    }

    #[test]
    fn role_names_follow_the_pattern() {
        assert_eq!(role_name("name", "editor").unwrap(), "editor");
        for bad in ["E", "Editor", "1abc", "a b", "x"] {
            assert!(role_name("name", bad).is_err(), "{bad}");
        }
    }
}
