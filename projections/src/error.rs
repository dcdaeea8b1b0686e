use medledger_application::AppError;
use medledger_application::codec::DecodeError;
use medledger_application::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    App(#[from] AppError),
    /// An event of a type the subscriber handles does not decode: it stops there.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Index(String),
}

impl ProjectionError {
    /// The event that does not decode, if that is what failed (from a read model or,
    /// through the use case it runs, a saga).
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            ProjectionError::Decode(d) | ProjectionError::App(AppError::Decode(d)) => Some(d),
            _ => None,
        }
    }
}
