//! How a use case fails. Refusals a client reads are typed per context (`AccountError`,
//! `CatalogError`, `InferenceError`): the contracts' wording of them (field names,
//! sentences) lives in the api's error mapping. Failures no request can fix keep their
//! source for the log.

use medledger_domain::DomainError;

use crate::catalog::CatalogError;
use crate::codec::DecodeError;
use crate::identity::AccountError;
use crate::inference::InferenceError;
use crate::ports::{HashError, MailError, SigningError, StoreError};

/// Every way a use case can fail. The API maps each to a status and a contract's shape.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this refresh token was already used; the session has been revoked")]
    TokenReuse,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event this code should read does not decode: it must not be skipped.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Blob(#[from] crate::ports::BlobError),
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// A failure no request can fix: clients get a plain "internal error", the log gets
/// this with its source.
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    #[error(transparent)]
    PasswordHash(#[from] HashError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("work handed to another thread did not finish")]
    Worker(#[from] tokio::task::JoinError),
    #[error("a value does not encode as JSON")]
    Encoding(#[from] serde_json::Error),
    #[error("built-in model {model_id}: its manifest does not read")]
    BuiltinManifest { model_id: i64, source: serde_json::Error },
    #[error("model {model_id} does not load")]
    ModelNotLoaded { model_id: i64, source: crate::ports::EngineError },
    #[error("model {model_id}: its file is missing")]
    ModelFileMissing { model_id: i64 },
    #[error("the image decoder's turns are closed")]
    DecoderClosed(#[from] tokio::sync::AcquireError),
    /// Something the code relies on did not hold (a command that recorded nothing).
    #[error("{0}")]
    Broken(&'static str),
}

impl AppError {
    /// A broken invariant: `what` says which.
    pub fn broken(what: &'static str) -> Self {
        Self::Internal(Internal::Broken(what))
    }
}

macro_rules! internal_from {
    ($($source:ty),*) => {$(
        impl From<$source> for AppError {
            fn from(e: $source) -> Self {
                Self::Internal(e.into())
            }
        }
    )*};
}

internal_from!(HashError, SigningError, MailError, tokio::task::JoinError, serde_json::Error, tokio::sync::AcquireError);

#[cfg(test)]
mod tests {
    use super::*;

    /// What failed underneath stays reachable for the log, however it was wrapped.
    #[test]
    fn an_internal_failure_keeps_its_source() {
        let io = std::io::Error::other("disk full");
        let e = AppError::from(MailError::Outbox(io));
        let mut chain = Vec::new();
        let mut next: Option<&dyn std::error::Error> = Some(&e);
        while let Some(error) = next {
            chain.push(error.to_string());
            next = error.source();
        }
        assert_eq!(chain.last().map(String::as_str), Some("disk full"), "{chain:?}");
    }
}
