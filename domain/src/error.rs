use std::collections::BTreeMap;

/// Every way a command or a value can be refused by the domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A value failed to parse; `field` names the input field in the client's words.
    #[error("{field}: {message}")]
    InvalidValue { field: &'static str, message: String },
    /// Several fields failed at once (a registration form, say).
    #[error("invalid input")]
    InvalidFields(BTreeMap<String, Vec<String>>),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the account is inactive")]
    AccountInactive,
    #[error("the password reset token is invalid or expired")]
    InvalidResetToken,
    #[error("the session has ended")]
    SessionEnded,
    /// The caller may not do this, whatever the input (changing one's own roles, say).
    #[error("{0}")]
    Forbidden(&'static str),
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidValue { field, message: message.into() }
    }
}
