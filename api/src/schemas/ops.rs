//! medledger's own endpoints (`ops.rs`).

use schemars::JsonSchema;
use serde::Serialize;

/// `/healthz`, and `/readyz` when ready.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Status {
    pub status: &'static str,
}

/// `/readyz` when the event store cannot be reached or a read model is stuck (503).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Unready {
    pub status: &'static str,
    pub detail: &'static str,
    /// The read models and sagas stopped at an event they cannot decode: where, on
    /// which type, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stuck: Vec<medledger_projections::Stuck>,
}

/// `/api/verify`: the chain holds (`valid: true`, with its head), or where it breaks.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Verification {
    Valid(ValidChain),
    Broken(BrokenChain),
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ValidChain {
    #[schemars(with = "True")]
    pub valid: bool,
    pub events: u64,
    pub head: ChainHead,
    /// A digest of the head to compare with a copy kept elsewhere.
    pub digest: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ChainHead {
    pub position: i64,
    /// Hex SHA-256.
    pub hash: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BrokenChain {
    #[schemars(with = "False")]
    pub valid: bool,
    pub position: i64,
    pub reason: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)] // schemas only: `valid` is a plain bool
#[schemars(inline)]
#[schemars(transform = const_true)]
struct True(bool);

#[derive(JsonSchema)]
#[allow(dead_code)]
#[schemars(inline)]
#[schemars(transform = const_false)]
struct False(bool);

fn const_true(schema: &mut schemars::Schema) {
    schema.insert("const".into(), true.into());
}

fn const_false(schema: &mut schemars::Schema) {
    schema.insert("const".into(), false.into());
}

/// 001's processing health (`/api/processing/health/`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProcessingHealth {
    pub success: bool,
    pub status: &'static str,
    pub pending_jobs: i64,
    pub processing_jobs: i64,
    pub dataset_dir_exists: bool,
    pub dataset_raw_dir_exists: bool,
    pub dataset_processed_dir_exists: bool,
}
