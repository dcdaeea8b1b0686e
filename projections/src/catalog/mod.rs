//! The catalog's read models: the `datasets` table and the full-text index.

mod datasets;
pub mod index;
pub mod queries;

use std::sync::Arc;

pub use datasets::DatasetsProjection;
pub use queries::{DatasetRow, dataset};

use crate::Projection;

/// The read models' names, as the runner's progress knows them (`Progress::caught_up_on`).
pub const DATASETS: &str = "datasets";
/// The catalog's full-text index (tantivy, one per server; fed as an index).
pub const CATALOG_INDEX: &str = "catalog_index";

pub fn read_models() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(DatasetsProjection)]
}
