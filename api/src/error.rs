//! One error type for the HTTP layer, rendered in each contract's own shape
//! (API-MAP.md §5): `{"detail"}` for 000/003/004, `{"detail","code","field_errors"}`
//! for 002, `{"error"}` for 001.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_application::AppError;
use medledger_application::ports::{BlobError, StoreError};
use medledger_domain::DomainError;
use serde_json::json;

/// How a contract spells an error body.
pub trait Shape: Send + Sync + 'static {
    const KIND: ShapeKind;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeKind {
    /// `{"detail": "..."}` — 000 MedAgg, 003 labeling, 004 inference, medledger's own.
    Detail,
    /// `{"detail", "code", "field_errors"}` — 002 MyoMetrics.
    Myo,
    /// `{"error": "..."}` — 001 ToothFairy4M.
    Django,
}

pub struct Detail;
pub struct Myo;
pub struct Django;

impl Shape for Detail {
    const KIND: ShapeKind = ShapeKind::Detail;
}
impl Shape for Myo {
    const KIND: ShapeKind = ShapeKind::Myo;
}
impl Shape for Django {
    const KIND: ShapeKind = ShapeKind::Django;
}

impl ShapeKind {
    /// Which contract a path belongs to, for errors raised before a handler runs
    /// (unknown routes, wrong methods, oversize bodies).
    pub fn for_path(path: &str) -> Self {
        let myo = ["/api/auth", "/api/users", "/api/analytics", "/api/audit-logs", "/api/health"];
        let django = [
            "/login",
            "/logout",
            "/register",
            "/upload",
            "/scan/",
            "/api/processing",
            "/api/scan",
            "/cbct",
            "/panoramic",
            "/nifti-metadata",
        ];
        if myo.iter().any(|p| path.starts_with(p)) {
            ShapeKind::Myo
        } else if django.iter().any(|p| path.starts_with(p)) {
            ShapeKind::Django
        } else {
            ShapeKind::Detail
        }
    }

    pub fn render(self, detail: &str, code: &str, field_errors: &BTreeMap<String, Vec<String>>) -> serde_json::Value {
        match self {
            ShapeKind::Detail => json!({ "detail": detail }),
            ShapeKind::Myo => json!({ "detail": detail, "code": code, "field_errors": field_errors }),
            ShapeKind::Django => json!({ "error": detail }),
        }
    }
}

#[derive(Debug)]
pub struct ApiError<S: Shape> {
    pub status: StatusCode,
    pub detail: String,
    pub code: &'static str,
    pub field_errors: BTreeMap<String, Vec<String>>,
    pub retry_after: Option<u64>,
    shape: PhantomData<S>,
}

impl<S: Shape> ApiError<S> {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into(), code, field_errors: BTreeMap::new(), retry_after: None, shape: PhantomData }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", detail)
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid", format!("{field}: {message}"));
        e.field_errors.insert(field.to_string(), vec![message]);
        e
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not_authenticated", detail)
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", "You do not have permission to perform this action.")
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Internal server error.")
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl<S: Shape> From<DomainError> for ApiError<S> {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::InvalidValue { field, message } => Self::field(field, message),
            DomainError::InvalidFields(errors) => {
                let detail = errors.iter().map(|(f, m)| format!("{f}: {}", m.join(" "))).collect::<Vec<_>>().join("; ");
                let mut err = Self::new(StatusCode::BAD_REQUEST, "invalid", detail);
                err.field_errors = errors;
                err
            }
            DomainError::AlreadyExists(what) => Self::new(StatusCode::CONFLICT, "conflict", format!("{what} already exists")),
            DomainError::NotFound(what) => Self::not_found(format!("{what} not found")),
            DomainError::AccountInactive => Self::new(StatusCode::FORBIDDEN, "account_inactive", "User account is disabled."),
            DomainError::InvalidResetToken => Self::field("token", "The password reset token is invalid or has expired."),
            DomainError::SessionEnded => Self::unauthorized("Token is invalid or expired"),
            DomainError::Forbidden(why) => Self::new(StatusCode::FORBIDDEN, "permission_denied", why),
        }
    }
}

impl<S: Shape> From<AppError> for ApiError<S> {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Domain(d) => d.into(),
            AppError::InvalidCredentials => Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "Invalid credentials"),
            AppError::Unauthorized(m) => Self::new(StatusCode::UNAUTHORIZED, "token_not_valid", m),
            AppError::NotFound(what) => Self::not_found(format!("{what} not found")),
            AppError::TokenReuse => {
                Self::new(StatusCode::UNAUTHORIZED, "token_not_valid", "Token has already been used; the session has been revoked")
            }
            AppError::Store(StoreError::Conflict { .. }) => {
                Self::new(StatusCode::CONFLICT, "conflict", "The resource was changed by another request; retry")
            }
            AppError::Store(StoreError::DuplicateEvent(_)) => {
                Self::new(StatusCode::CONFLICT, "conflict", "This request was already applied with different content")
            }
            AppError::Store(StoreError::Erased(_)) => Self::new(StatusCode::GONE, "erased", "This account's personal data has been erased"),
            AppError::Store(StoreError::Unavailable(m)) => {
                tracing::error!(error = %m, "event store unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable")
            }
            AppError::Blob(e @ BlobError::Unavailable(_)) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "blob store unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable")
            }
            other => {
                tracing::error!(error = %other, "request failed");
                Self::internal()
            }
        }
    }
}

impl<S: Shape> From<sqlx::Error> for ApiError<S> {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "read model query failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable")
    }
}

impl<S: Shape> IntoResponse for ApiError<S> {
    fn into_response(self) -> Response {
        let body = S::KIND.render(&self.detail, self.code, &self.field_errors);
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED && S::KIND != ShapeKind::Django {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T, S> = Result<T, ApiError<S>>;

impl<S: Shape> From<medledger_projections::catalog_index::IndexError> for ApiError<S> {
    fn from(e: medledger_projections::catalog_index::IndexError) -> Self {
        tracing::error!(error = %e, "catalog index search failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable")
    }
}
