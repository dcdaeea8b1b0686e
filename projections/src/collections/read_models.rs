//! The `dataset_items` and `collections` read models.

use async_trait::async_trait;
use medledger_application::codec::DecodedEvent;
use medledger_domain::EventTypes;
use medledger_domain::catalog::{DatasetEvent, DatasetEventKind};
use medledger_domain::collections::collection::{CollectionEvent, CollectionStatus};
use sqlx::AnyConnection;

use crate::{Projection, ProjectionError, timestamp};

pub struct DatasetItemsProjection;

#[async_trait]
impl Projection for DatasetItemsProjection {
    fn name(&self) -> &'static str {
        super::DATASET_ITEMS
    }

    fn handles(&self) -> EventTypes {
        EventTypes::only([DatasetEventKind::DatasetItemAdded])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["dataset_items"]
    }

    async fn apply(&self, tx: &mut AnyConnection, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let Some(DatasetEvent::DatasetItemAdded { dataset_id, item }) = event.to_domain::<DatasetEvent>()? else { return Ok(()) };
        sqlx::query(
            "INSERT INTO dataset_items (id, dataset_id, filename, content_type, size_bytes, sha256, labels, caption, \
             identifiers, created_at, blob_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
        )
        .bind(item.item_id)
        .bind(dataset_id)
        .bind(item.filename)
        .bind(item.content_type)
        .bind(item.size_bytes)
        .bind(item.sha256)
        .bind(serde_json::json!(item.labels).to_string())
        .bind(item.caption)
        .bind(serde_json::json!(item.identifiers).to_string())
        .bind(timestamp(event.recorded.recorded_at()))
        .bind(item.blob_key)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

pub struct CollectionsProjection;

#[async_trait]
impl Projection for CollectionsProjection {
    fn name(&self) -> &'static str {
        super::COLLECTIONS
    }

    fn handles(&self) -> EventTypes {
        EventTypes::of::<CollectionEvent>()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["collections"]
    }

    async fn apply(&self, tx: &mut AnyConnection, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let Some(e) = event.to_domain::<CollectionEvent>()? else { return Ok(()) };
        let at = timestamp(event.recorded.recorded_at());
        let query = match e {
            CollectionEvent::CollectionRequested { collection_id, request } => sqlx::query(
                "INSERT INTO collections (id, owner_id, query_text, dataset_ids, limit_per_dataset, status, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(collection_id)
            .bind(request.owner_id)
            .bind(request.query_text)
            .bind(serde_json::json!(request.dataset_ids).to_string())
            .bind(request.limit_per_dataset)
            .bind(CollectionStatus::Pending.as_str())
            .bind(at),
            CollectionEvent::CollectionBuilt { collection_id, archive } => sqlx::query(
                "UPDATE collections SET status = $2, archive_key = $3, archive_size = $4, items = $5, expires_at = $6, \
                 updated_at = $7 WHERE id = $1",
            )
            .bind(collection_id)
            .bind(CollectionStatus::Ready.as_str())
            .bind(archive.archive_key)
            .bind(archive.archive_size)
            .bind(archive.items)
            .bind(archive.expires_at)
            .bind(at),
            CollectionEvent::CollectionFailed { collection_id, reason } => {
                sqlx::query("UPDATE collections SET status = $2, failure_reason = $3, updated_at = $4 WHERE id = $1")
                    .bind(collection_id)
                    .bind(CollectionStatus::Failed.as_str())
                    .bind(reason)
                    .bind(at)
            }
            CollectionEvent::CollectionExpired { collection_id } => {
                sqlx::query("UPDATE collections SET status = $2, updated_at = $3 WHERE id = $1")
                    .bind(collection_id)
                    .bind(CollectionStatus::Expired.as_str())
                    .bind(at)
            }
        };
        query.execute(&mut *tx).await?;
        Ok(())
    }
}
