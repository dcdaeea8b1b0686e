//! The `datasets` read model: the catalog as the 000 contract lists it.

use async_trait::async_trait;
use medledger_application::codec::DecodedEvent;
use medledger_domain::EventTypes;
use medledger_domain::catalog::{DatasetEvent, DatasetEventKind, DatasetFields};
use sqlx::AnyConnection;

use crate::{Projection, ProjectionError, timestamp};

pub struct DatasetsProjection;

fn json_list(v: &[String]) -> String {
    serde_json::json!(v).to_string()
}

/// Inserts a new dataset or replaces an existing one's fields (its slug, creation time
/// and retirement stay as they were).
async fn write_fields(tx: &mut AnyConnection, id: i64, fields: DatasetFields, at: &str) -> Result<(), sqlx::Error> {
    let DatasetFields { slug, title, description, source_url, modality, area, task_types, num_images, size_mb, license, tags, year } =
        fields;
    sqlx::query(
        "INSERT INTO datasets (id, slug, title, description, source_url, modality, area, task_types, num_images, \
         size_mb, license, tags, year, retired, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $14) \
         ON CONFLICT (id) DO UPDATE SET title = excluded.title, description = excluded.description, \
         source_url = excluded.source_url, modality = excluded.modality, area = excluded.area, \
         task_types = excluded.task_types, num_images = excluded.num_images, size_mb = excluded.size_mb, \
         license = excluded.license, tags = excluded.tags, year = excluded.year, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(slug)
    .bind(title)
    .bind(description)
    .bind(source_url)
    .bind(json_list(&modality))
    .bind(area)
    .bind(json_list(&task_types))
    .bind(num_images)
    .bind(size_mb)
    .bind(license)
    .bind(json_list(&tags))
    .bind(year.map(i64::from))
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for DatasetsProjection {
    fn name(&self) -> &'static str {
        super::DATASETS
    }

    fn handles(&self) -> EventTypes {
        EventTypes::only([DatasetEventKind::DatasetCreated, DatasetEventKind::DatasetUpdated, DatasetEventKind::DatasetRetired])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["datasets"]
    }

    async fn apply(&self, tx: &mut AnyConnection, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let Some(e) = event.to_domain::<DatasetEvent>()? else { return Ok(()) };
        let at = timestamp(event.recorded.recorded_at());
        match e {
            DatasetEvent::DatasetCreated { dataset_id, fields } | DatasetEvent::DatasetUpdated { dataset_id, fields } => {
                write_fields(tx, dataset_id, fields, &at).await?;
            }
            DatasetEvent::DatasetRetired { dataset_id } => {
                sqlx::query("UPDATE datasets SET retired = 1, updated_at = $2 WHERE id = $1")
                    .bind(dataset_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            DatasetEvent::DatasetSlugClaimed { .. } | DatasetEvent::DatasetItemAdded { .. } => {}
        }
        Ok(())
    }
}
