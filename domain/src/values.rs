//! Parse-don't-validate value types: once constructed, a value is valid.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// An email address, trimmed and lower-cased so that lookups and uniqueness agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let value = raw.trim().to_lowercase();
        let err = |m: &str| DomainError::invalid("email", m);
        if value.is_empty() {
            return Err(err("This field is required"));
        }
        if value.len() > 254 {
            return Err(err("Enter a valid email address (at most 254 characters)"));
        }
        let Some((local, domain)) = value.split_once('@') else {
            return Err(err("Enter a valid email address"));
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty() && local.len() <= 64 && local.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '@');
        if !domain_ok || !local_ok {
            return Err(err("Enter a valid email address"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A login name: Django's rules (letters, digits and `@.+-_`, at most 150).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(DomainError::invalid("username", "This field is required"));
        }
        if value.chars().count() > 150 {
            return Err(DomainError::invalid("username", "Ensure this field has no more than 150 characters"));
        }
        if !value.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c)) {
            return Err(DomainError::invalid("username", "Enter a valid username: letters, digits and @/./+/-/_ only"));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed, checked against the policy. Never stored or logged.
pub struct NewPassword(String);

/// What a new password must satisfy; the minimum length is a server setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_chars: usize,
}

impl PasswordPolicy {
    /// ASVS 2.1.1: at least 12 characters.
    pub const DEFAULT_MIN_CHARS: usize = 12;
    /// No setting goes below the minimum this server has always had.
    pub const LOWEST: usize = 8;

    /// `min_chars` is kept within `LOWEST..=NewPassword::MAX_CHARS`.
    pub fn with_min_chars(min_chars: usize) -> Self {
        Self { min_chars: min_chars.clamp(Self::LOWEST, NewPassword::MAX_CHARS) }
    }

    pub fn min_chars(&self) -> usize {
        self.min_chars
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self::with_min_chars(Self::DEFAULT_MIN_CHARS)
    }
}

impl NewPassword {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str, field: &'static str, policy: &PasswordPolicy) -> Result<Self, DomainError> {
        let n = raw.chars().count();
        if n < policy.min_chars {
            return Err(DomainError::invalid(
                field,
                format!("This password is too short. It must contain at least {} characters", policy.min_chars),
            ));
        }
        if n > Self::MAX_CHARS {
            return Err(DomainError::invalid(field, "This password is too long (at most 128 characters)"));
        }
        if raw.chars().all(|c| c.is_ascii_digit()) {
            return Err(DomainError::invalid(field, "This password is entirely numeric"));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

/// A PHC-format password hash produced by the password hasher port.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

/// Free text with a length bound and no control characters (names, clinic names).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedText(String);

impl BoundedText {
    pub fn parse(raw: &str, field: &'static str, max_chars: usize) -> Result<Self, DomainError> {
        let value = raw.trim();
        if value.chars().count() > max_chars {
            return Err(DomainError::invalid(field, format!("Ensure this field has no more than {max_chars} characters")));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(DomainError::invalid(field, "Control characters are not allowed"));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised() {
        assert_eq!(Email::parse("  Jane.Doe@Example.COM ").unwrap().as_str(), "jane.doe@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in ["", "plain", "@x.org", "a@", "a@b", "a b@x.org", "a@x..", "a@.x", "a@x.org'--", &format!("{}@x.org", "a".repeat(300))] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn username_rules() {
        assert!(Username::parse("dr.who+1@clinic").is_ok());
        assert!(Username::parse("robert'); DROP TABLE users;--").is_err());
        assert!(Username::parse(&"x".repeat(151)).is_err());
        assert!(Username::parse("   ").is_err());
    }

    #[test]
    fn password_policy() {
        let policy = PasswordPolicy::default();
        assert!(NewPassword::parse("short", "password", &policy).is_err());
        assert!(NewPassword::parse("123456789012", "password", &policy).is_err(), "entirely numeric");
        assert!(NewPassword::parse(&"p".repeat(129), "password", &policy).is_err());
        assert!(NewPassword::parse("correct horse", "password", &policy).is_ok());
        assert_eq!(format!("{:?}", NewPassword::parse("correct horse", "p", &policy).unwrap()), "NewPassword(***)");
    }

    #[test]
    fn passwords_need_twelve_characters_unless_configured_otherwise() {
        let eleven = "abcdefghijk";
        match NewPassword::parse(eleven, "password", &PasswordPolicy::default()) {
            Err(DomainError::InvalidValue { field, message }) => {
                assert_eq!(field, "password");
                assert!(message.contains("at least 12 characters"), "{message}");
            }
            other => panic!("an 11-character password: {other:?}"),
        }
        assert!(NewPassword::parse("abcdefghijkl", "password", &PasswordPolicy::default()).is_ok());
        assert!(NewPassword::parse(eleven, "password", &PasswordPolicy::with_min_chars(10)).is_ok());
        assert_eq!(PasswordPolicy::with_min_chars(3).min_chars(), PasswordPolicy::LOWEST);
        assert_eq!(PasswordPolicy::with_min_chars(1000).min_chars(), NewPassword::MAX_CHARS);
    }

    #[test]
    fn bounded_text_counts_characters_not_bytes() {
        assert!(BoundedText::parse(&"ж".repeat(30), "firstName", 30).is_ok());
        assert!(BoundedText::parse(&"ж".repeat(31), "firstName", 30).is_err());
        assert!(BoundedText::parse("a\u{0}b", "firstName", 30).is_err());
    }
}
