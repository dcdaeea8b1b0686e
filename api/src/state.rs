//! What every handler can reach, built once at start-up.

use std::sync::Arc;
use std::time::Duration;

use medledger_application::identity::accounts::Accounts;
use medledger_application::ledger::Ledger;
use medledger_application::ports::Position;
use medledger_infrastructure::idempotency::IdempotencyRecords;
use medledger_infrastructure::store::Databases;
use medledger_projections::Progress;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::module::{Contexts, Unwired};
use crate::ratelimit::RateLimiter;

/// How long a response waits for the read models to reflect the command it ran.
pub const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub dbs: Databases,
    pub ledger: Ledger,
    /// Identity: every request is judged by it, so the shared code holds it by name.
    pub accounts: Accounts,
    /// Every other context's state (`get`).
    pub contexts: Contexts,
    pub progress: Progress,
    pub idempotency: Arc<IdempotencyRecords>,
    pub auth_limiter: Arc<RateLimiter>,
    pub api_limiter: Arc<RateLimiter>,
    pub metrics: Option<PrometheusHandle>,
    /// Keys the MAC of 001's CSRF tokens (derived from the server secret).
    pub csrf_key: Arc<Vec<u8>>,
    /// The OpenAPI document, built from the routes as they were mounted.
    pub openapi: Arc<serde_json::Value>,
}

impl AppState {
    /// What a context's module provided at start-up (its use cases, its read models'
    /// handles).
    pub fn get<T: std::any::Any + Send + Sync>(&self) -> Result<&T, Unwired> {
        self.contexts.get()
    }

    /// Read-your-writes across every read model: for start-up and tests. A response
    /// waits with `caught_up_on` for the read models it reads.
    pub async fn caught_up(&self, position: Position) {
        if !self.progress.wait_for(position, READ_YOUR_WRITES).await {
            tracing::warn!(position, "read models did not reach the command's position in time");
        }
    }

    /// Read-your-writes for one response: waits until the read models it reads, and
    /// those its contract's next requests read for what the command changed, have
    /// applied `position` (`read_models`); a slow or stuck other one does not hold it.
    pub async fn caught_up_on(&self, read_models: &[&str], position: Position) {
        if !self.progress.caught_up_on(read_models, position, READ_YOUR_WRITES).await {
            tracing::warn!(position, ?read_models, "the read models did not reach the command's position in time");
        }
    }
}
