//! Read models and the runner that keeps them current.
//!
//! Each projection owns some tables in the read database and a checkpoint row; it
//! applies a page of events and moves its checkpoint in one transaction, so a crash
//! never applies an event twice or skips one. Sagas run on the same runner with
//! at-least-once delivery and idempotent effects.

// Shared: the runner, its tail, the traits read models implement.
mod error;
mod runner;
mod tail;

// The bounded contexts, one folder each (ARCHITECTURE.md).
pub mod catalog;
pub mod collections;
pub mod identity;
pub mod inference;

use async_trait::async_trait;
use medledger_application::codec::DecodedEvent;
use medledger_domain::EventTypes;
use sqlx::AnyConnection;

pub use error::ProjectionError;
pub use runner::{Progress, Runner, RunnerHandle, Stuck, rebuild, table_snapshot};

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

#[async_trait]
/// How the runner drives a read model that keeps its own checkpoint.
pub trait SelfCheckpointed: Send + Sync {
    fn name(&self) -> &'static str;
    /// The event types it is built from, asked once (see `Projection::handles`).
    fn handles(&self) -> EventTypes;
    async fn checkpoint(&self) -> Result<medledger_application::ports::Position, ProjectionError>;
    /// Applies the events (those of a page it handles) and durably records `through`,
    /// the page's last event, as the checkpoint, atomically. An event that does not
    /// decode is an error, and nothing of the page is applied.
    async fn apply_page(
        &self,
        events: Vec<std::sync::Arc<DecodedEvent>>,
        through: medledger_application::ports::ChainHead,
    ) -> Result<(), ProjectionError>;
}

/// How many events a read model's or saga's written checkpoint may lag behind what it
/// has applied when none of those events concerned it (the bound on what a restart
/// re-reads for nothing).
pub(crate) const LAZY_CHECKPOINT: medledger_application::ports::Position = 1_000;

pub(crate) fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
