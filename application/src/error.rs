use medledger_domain::DomainError;

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
    #[error(transparent)]
    Blob(#[from] crate::ports::BlobError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}
