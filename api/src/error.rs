//! One error type for the HTTP layer, rendered in each contract's own shape
//! (API-MAP.md §5): `{"detail"}` for 000/003/004, `{"detail","code","field_errors"}`
//! for 002, `{"error"}` for 001.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_application::AppError;
use medledger_application::catalog::CatalogError;
use medledger_application::identity::AccountError;
use medledger_application::identity::accounts;
use medledger_application::inference::InferenceError;
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

/// A field as the contracts spell it: the application names fields by its own (Rust)
/// names; 002's forms (and so every contract's registration) use camelCase ones.
pub fn contract_field(field: &str) -> &str {
    match field {
        accounts::FIRST_NAME => "firstName",
        accounts::LAST_NAME => "lastName",
        accounts::CLINIC_NAME => "clinicName",
        accounts::WHOLE_FORM => "non_field_errors",
        other => other,
    }
}

/// An error and the sources under it, for the log.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One field's refusal, as a form's errors read.
fn one_field(field: &str, sentence: &str) -> DomainError {
    DomainError::InvalidFields(BTreeMap::from([(field.to_string(), vec![sentence.to_string()])]))
}

impl<S: Shape> From<DomainError> for ApiError<S> {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::InvalidValue { field, message } => Self::field(contract_field(field), message),
            DomainError::InvalidFields(errors) => {
                let errors: BTreeMap<String, Vec<String>> =
                    errors.into_iter().map(|(field, messages)| (contract_field(&field).to_string(), messages)).collect();
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
            AppError::Account(e) => e.into(),
            AppError::Catalog(CatalogError::SlugTaken) => one_field("slug", "A dataset with this slug already exists.").into(),
            AppError::Catalog(CatalogError::NoFreeSlug { slug, tries }) => {
                Self::field("slug", format!("the title's slug '{slug}' and its next {tries} numbered forms are taken; give a slug"))
            }
            AppError::Inference(InferenceError::NoSuchModel) => Self::field("model_id", "no such model of that kind"),
            AppError::Inference(InferenceError::ModelRefused(reason)) => Self::field("file", reason.0),
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
            AppError::Blob(BlobError::TooLarge { limit }) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("The file is larger than {limit} bytes."))
            }
            // The upload itself broke off (the client went away, a malformed part).
            AppError::Blob(BlobError::Source(e)) => Self::bad_request(format!("The upload could not be read: {e}")),
            AppError::Blob(e @ BlobError::Unavailable(_)) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "blob store unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable")
            }
            AppError::Internal(e) => {
                tracing::error!(error = %with_sources(&e), "request failed");
                Self::internal()
            }
            other @ (AppError::Decode(_) | AppError::Blob(_) | AppError::Store(StoreError::Empty | StoreError::Corrupt(_))) => {
                tracing::error!(error = %other, "request failed");
                Self::internal()
            }
        }
    }
}

impl<S: Shape> From<AccountError> for ApiError<S> {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::EmailTaken => one_field("email", "A user with this email already exists.").into(),
            AccountError::UsernameTaken => one_field("username", "A user with that username already exists.").into(),
            AccountError::TokenInvalid => Self::new(StatusCode::UNAUTHORIZED, "token_not_valid", "Token is invalid or expired"),
            AccountError::UserInactive => Self::new(StatusCode::UNAUTHORIZED, "token_not_valid", "User is inactive"),
            AccountError::OldPasswordWrong => Self::field("old_password", "Old password is incorrect"),
            AccountError::OwnRolesOrActivation => {
                Self::new(StatusCode::FORBIDDEN, "permission_denied", "You cannot change your own roles or activation.")
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

impl<S: Shape> From<medledger_projections::catalog::index::IndexError> for ApiError<S> {
    fn from(e: medledger_projections::catalog::index::IndexError) -> Self {
        tracing::error!(error = %e, "catalog index search failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable")
    }
}

/// A context's state that no module provided: a wiring mistake, logged, and a 500.
impl<S: Shape> From<crate::module::Unwired> for ApiError<S> {
    fn from(e: crate::module::Unwired) -> Self {
        tracing::error!(error = %e, "a handler asked for state no module provided");
        Self::internal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: AppError) -> (StatusCode, serde_json::Value) {
        let e = ApiError::<Myo>::from(e);
        (e.status, ShapeKind::Myo.render(&e.detail, e.code, &e.field_errors))
    }

    /// The application's typed refusals come out worded as the contracts always had them.
    #[test]
    fn the_contracts_wording_is_the_apis() {
        let (status, b) = body(AccountError::EmailTaken.into());
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            b,
            json!({"detail": "email: A user with this email already exists.", "code": "invalid",
                   "field_errors": {"email": ["A user with this email already exists."]}})
        );
        let fields = BTreeMap::from([
            (accounts::FIRST_NAME.to_string(), vec!["too long".to_string()]),
            (accounts::CLINIC_NAME.to_string(), vec!["too long".to_string()]),
        ]);
        let (_, b) = body(DomainError::InvalidFields(fields).into());
        assert_eq!(b["detail"], "clinicName: too long; firstName: too long");
        assert_eq!(b["field_errors"], json!({"clinicName": ["too long"], "firstName": ["too long"]}));
        let (status, b) = body(AccountError::OwnRolesOrActivation.into());
        assert_eq!((status, b["detail"].as_str()), (StatusCode::FORBIDDEN, Some("You cannot change your own roles or activation.")));
        let (status, b) = body(AccountError::TokenInvalid.into());
        assert_eq!((status, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_not_valid")));
    }
}
