//! Process managers: they react to events and cause effects or further commands.
//! The projection runner feeds them with durable checkpoints (at-least-once), so
//! every effect here must be idempotent.

mod collection_build;
mod reset_mail;

use async_trait::async_trait;

use crate::AppError;
use crate::codec::DecodedEvent;

pub use collection_build::CollectionBuildSaga;
pub use reset_mail::ResetMailSaga;

#[async_trait]
pub trait Saga: Send + Sync {
    fn name(&self) -> &'static str;
    async fn handle(&self, event: &DecodedEvent) -> Result<(), AppError>;
}
