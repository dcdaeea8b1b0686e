//! Feeds the identity context's in-memory access model (`application::access`) from
//! the runner. It keeps no checkpoint: each process starts it from the beginning of
//! the history, and `Progress` shows how far it has got like any read model's.

use std::sync::Arc;

use async_trait::async_trait;
use medledger_application::codec::DecodedEvent;
use medledger_application::identity::access::AccessModel;
use medledger_application::ports::{ChainHead, Position};
use medledger_domain::EventTypes;

use crate::ProjectionError;
use crate::SelfCheckpointed;

pub struct AccessProjection(pub Arc<AccessModel>);

#[async_trait]
impl SelfCheckpointed for AccessProjection {
    fn name(&self) -> &'static str {
        super::ACCESS
    }

    fn handles(&self) -> EventTypes {
        AccessModel::handles()
    }

    async fn checkpoint(&self) -> Result<Position, ProjectionError> {
        Ok(self.0.position())
    }

    async fn apply_page(&self, events: Vec<Arc<DecodedEvent>>, through: ChainHead) -> Result<(), ProjectionError> {
        Ok(self.0.apply(&events, through.position)?)
    }
}
