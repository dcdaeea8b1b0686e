//! Collections' read models: the items of each dataset and the collections built of them.

pub mod queries;
mod read_models;

use std::sync::Arc;

pub use read_models::{CollectionsProjection, DatasetItemsProjection};

use crate::Projection;

/// The read models' names, as the runner's progress knows them (`Progress::caught_up_on`).
pub const DATASET_ITEMS: &str = "dataset_items";
pub const COLLECTIONS: &str = "collections";

pub fn read_models() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(DatasetItemsProjection), Arc::new(CollectionsProjection)]
}
