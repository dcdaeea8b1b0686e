//! The error bodies of the contracts (API-MAP §5), as `crate::error::ShapeKind`
//! renders them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

/// 000, 003, 004 and medledger's own endpoints (FastAPI / DRF style).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct PlainError {
    pub detail: String,
}

/// 002 (MyoMetrics).
#[derive(Debug, Serialize, JsonSchema)]
pub struct MyoError {
    pub detail: String,
    /// A machine-readable reason (`invalid`, `not_authenticated`, `token_not_valid`, …).
    pub code: String,
    /// Messages per request field; empty when the error is not about one field.
    pub field_errors: BTreeMap<String, Vec<String>>,
}

/// 001 (ToothFairy4M, Django views).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DjangoError {
    pub error: String,
}

/// FastAPI's validation error (004): one entry per problem.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ValidationError {
    pub detail: Vec<crate::extract::Invalid>,
}

/// 004's 422: FastAPI's validation list for a form it cannot read, or the seed's
/// sentence (`"Incorrect username or password"`).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Unprocessable {
    Validation(ValidationError),
    Sentence(PlainError),
}
