//! Builds each requested collection's archive; deletes an archive once it expires.
//!
//! Delivery is at-least-once: a server killed mid-build has not moved this saga's
//! checkpoint past the request, so the build runs again after restart, from scratch.
//! Nothing half-written is offered meanwhile: the archive is published whole or not at
//! all, and the collection is ready only once `CollectionBuilt` is recorded.

use async_trait::async_trait;
use medledger_domain::EventTypes;
use medledger_domain::collections::collection::{CollectionEvent, CollectionEventKind};

use crate::AppError;
use crate::codec::DecodedEvent;
use crate::collections::Collections;
use crate::metadata::Cause;
use crate::sagas::Saga;

pub struct CollectionBuildSaga {
    collections: Collections,
}

impl CollectionBuildSaga {
    pub fn new(collections: Collections) -> Self {
        Self { collections }
    }
}

#[async_trait]
impl Saga for CollectionBuildSaga {
    fn name(&self) -> &'static str {
        "collection_build"
    }

    fn handles(&self) -> EventTypes {
        EventTypes::only([CollectionEventKind::CollectionRequested, CollectionEventKind::CollectionExpired])
    }

    async fn handle(&self, event: &DecodedEvent) -> Result<(), AppError> {
        match event.to_domain::<CollectionEvent>()? {
            Some(CollectionEvent::CollectionRequested { collection_id, .. }) => {
                self.collections.build(collection_id, Cause::of(event)).await
            }
            Some(CollectionEvent::CollectionExpired { collection_id }) => {
                // Deleting twice is fine: a missing archive is not an error.
                self.collections.blobs().delete(&format!("collections/{collection_id}.zip")).await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
