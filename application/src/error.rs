use medledger_domain::DomainError;

use crate::codec::DecodeError;
use crate::ports::StoreError;

/// Every way a use case can fail. The API maps each to a status and a contract's shape.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this refresh token was already used; the session has been revoked")]
    TokenReuse,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event this code should read does not decode: it must not be skipped.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}
