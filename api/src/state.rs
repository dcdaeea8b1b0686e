//! What every handler can reach, built once at start-up.

use std::sync::Arc;
use std::time::Duration;

use medledger_application::identity::accounts::Accounts;
use medledger_application::catalog::Catalog;
use medledger_application::collections::Collections;
use medledger_application::inference::InferenceTasks;
use medledger_application::ledger::Ledger;
use medledger_application::ports::Position;
use medledger_infrastructure::idempotency::IdempotencyRecords;
use medledger_infrastructure::store::Databases;
use medledger_projections::Progress;
use medledger_projections::catalog::index::CatalogIndex;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::ratelimit::RateLimiter;

/// How long a response waits for the read models to reflect the command it ran.
pub const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub dbs: Databases,
    pub ledger: Ledger,
    pub accounts: Accounts,
    pub catalog: Catalog,
    /// The catalog's full-text index (kept current by the runner).
    pub catalog_index: Arc<CatalogIndex>,
    pub collections: Collections,
    pub inference: InferenceTasks,
    pub progress: Progress,
    /// Wakes a request waiting on one inference task when that task's row changes.
    pub task_watch: medledger_projections::inference::TaskWatch,
    pub idempotency: Arc<IdempotencyRecords>,
    pub auth_limiter: Arc<RateLimiter>,
    pub api_limiter: Arc<RateLimiter>,
    /// `POST /api/tasks` per user (each creation costs an upload, a decode and a run).
    pub task_limiter: Arc<RateLimiter>,
    pub metrics: Option<PrometheusHandle>,
    /// Keys the MAC of 001's CSRF tokens (derived from the server secret).
    pub csrf_key: Arc<Vec<u8>>,
    /// The OpenAPI document, built from the routes as they were mounted.
    pub openapi: Arc<serde_json::Value>,
}

impl AppState {
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
