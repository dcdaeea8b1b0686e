//! Process managers: they react to events and cause effects or further commands.
//! The projection runner feeds them with durable checkpoints (at-least-once), so
//! every effect here must be idempotent.

use async_trait::async_trait;
use medledger_domain::EventTypes;

use crate::AppError;
use crate::codec::DecodedEvent;

#[async_trait]
pub trait Saga: Send + Sync {
    fn name(&self) -> &'static str;

    /// The event types the saga acts on, asked once: the runner hands it no other
    /// events (and writes no checkpoint for pages without one), deciding by type name
    /// alone. An event of these types that does not decode stops the saga there.
    fn handles(&self) -> EventTypes;

    async fn handle(&self, event: &DecodedEvent) -> Result<(), AppError>;

    /// How many events the runner hands over at once; the checkpoint moves past them
    /// only when all are handled.
    fn batch(&self) -> usize {
        1
    }

    /// Handles a batch; a saga may work on its events concurrently.
    async fn handle_batch(&self, events: &[std::sync::Arc<DecodedEvent>]) -> Result<(), AppError> {
        for event in events {
            self.handle(event).await?;
        }
        Ok(())
    }
}
