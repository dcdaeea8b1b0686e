//! Read models and the runner that keeps them current.
//!
//! Each projection owns some tables in the read database and a checkpoint row; it
//! applies a page of events and moves its checkpoint in one transaction, so a crash
//! never applies an event twice or skips one. Sagas run on the same runner with
//! at-least-once delivery and idempotent effects.

mod access;
mod audit_log;
mod catalog;
pub mod catalog_index;
pub mod collection_queries;
mod collections;
mod error;
pub mod inference;
pub mod queries;
pub mod read_models;
mod runner;
mod tail;
mod users;

use async_trait::async_trait;
use medledger_application::codec::DecodedEvent;
use medledger_domain::EventTypes;
use sqlx::AnyConnection;

pub use access::AccessProjection;
pub use audit_log::AuditLogProjection;
pub use catalog::DatasetsProjection;
pub use collections::{CollectionsProjection, DatasetItemsProjection};
pub use error::ProjectionError;
pub use inference::{InferenceModelsProjection, InferenceTasksProjection, TaskWatch};
pub use runner::{Progress, Runner, RunnerHandle, Stuck, rebuild, table_snapshot};
pub use users::{SqlUserDirectory, UsersProjection};

#[async_trait]
pub trait Projection: Send + Sync {
    fn name(&self) -> &'static str;

    /// The tables this projection owns: cleared by a rebuild, compared by the tests.
    fn tables(&self) -> &'static [&'static str];

    /// The event types that can change this read model, asked once. The runner decides
    /// by an event's type name alone (nothing is deserialised to ask) and skips the write
    /// of a page with none of them (the checkpoint catches up later), so a busy history
    /// of events other read models care about does not contend for the read database.
    fn handles(&self) -> EventTypes;

    /// Applies one event of a type it handles; one that does not decode is an error
    /// (`ProjectionError::Decode`), and the runner stops the read model there.
    async fn apply(&self, tx: &mut AnyConnection, event: &DecodedEvent) -> Result<(), ProjectionError>;

    /// Called by the runner once a page of `events` (those it handles) has committed,
    /// before its position is published: for telling in-process waiters what changed.
    fn committed(&self, _events: &[std::sync::Arc<DecodedEvent>]) {}
}

/// How many events a read model's or saga's written checkpoint may lag behind what it
/// has applied when none of those events concerned it (the bound on what a restart
/// re-reads for nothing).
pub(crate) const LAZY_CHECKPOINT: medledger_application::ports::Position = 1_000;

/// Every read model the server keeps.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    all_with(TaskWatch::default())
}

/// Every read model, the task list telling `tasks` which tasks changed.
pub fn all_with(tasks: TaskWatch) -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(UsersProjection),
        std::sync::Arc::new(AuditLogProjection),
        std::sync::Arc::new(DatasetsProjection),
        std::sync::Arc::new(DatasetItemsProjection),
        std::sync::Arc::new(CollectionsProjection),
        std::sync::Arc::new(InferenceModelsProjection),
        std::sync::Arc::new(InferenceTasksProjection::new(tasks)),
    ]
}

pub(crate) fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
