//! Contract 000 (MedAgg, `catalog/`, `collections/`): search results, items, collections. The
//! dataset itself is the read model's row (`medledger_projections::catalog::queries::DatasetRow`).

use std::collections::BTreeMap;

use medledger_projections::catalog::queries::DatasetRow;
use schemars::JsonSchema;
use serde::Serialize;

/// One search hit.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResult {
    pub dataset: DatasetRow,
    pub relevance_score: f32,
}

/// A search with `facets`: the page, how many match in all, and counts per value.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FacetedSearch {
    pub count: usize,
    pub results: Vec<SearchResult>,
    /// Per dimension (`modality`, `area`, `task_type`, `tags`): value → datasets.
    pub facets: medledger_projections::catalog::index::Facets,
}

/// The search answers a bare list, or the faceted object when asked for facets.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SearchAnswer {
    Results(Vec<SearchResult>),
    Faceted(FacetedSearch),
}

/// An item just attached to a dataset.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NewItem {
    pub id: i64,
    pub dataset_id: i64,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub labels: Vec<String>,
    pub caption: String,
    pub identifiers: BTreeMap<String, String>,
}

/// The parts of an item upload (multipart/form-data).
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the form `items::upload` reads part by part
pub struct ItemUpload {
    /// The file, with its filename.
    #[schemars(with = "Binary")]
    file: (),
    /// Comma-separated labels.
    labels: Option<String>,
    caption: Option<String>,
    /// A JSON object of strings (e.g. `{"patient": "P-1"}`).
    identifiers: Option<String>,
}

/// Bytes in a form part.
#[derive(JsonSchema)]
#[allow(dead_code)] // a schema only: parts are read as bytes
#[schemars(inline)]
#[schemars(transform = binary_format)]
pub struct Binary(String);

fn binary_format(schema: &mut schemars::Schema) {
    schema.insert("format".into(), "binary".into());
}

/// A collection as its owner sees it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Collection {
    pub id: i64,
    pub query_text: String,
    pub dataset_ids: Vec<i64>,
    pub limit_per_dataset: i64,
    #[schemars(with = "CollectionStatus")]
    pub status: String,
    /// Percent built: 0-100 while pending, 100 when ready, null otherwise.
    pub progress: Option<u8>,
    pub created_at: String,
    /// Bytes of the ZIP, once ready.
    pub archive_size: Option<i64>,
    pub items_count: Option<i64>,
    pub download_url: Option<String>,
    pub expires_at: Option<String>,
    pub failure_reason: Option<String>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // describes the words `status` takes
enum CollectionStatus {
    Pending,
    Ready,
    Failed,
    Expired,
}

/// A collection in the admin's list of every request.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CollectionRequestView {
    #[serde(flatten)]
    pub collection: Collection,
    pub owner: Owner,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Owner {
    pub id: i64,
    pub email: Option<String>,
}

/// A collection just requested.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NewCollection {
    pub id: i64,
    #[schemars(with = "CollectionStatus")]
    pub status: String,
    pub created_at: String,
}

/// `GET /api/v1/vocabulary/`: the values of each filter dimension, with the id a
/// client may send instead of the code or name.
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the JSON `datasets::vocabulary` builds
pub struct Vocabulary {
    modality: Vec<VocabularyCode>,
    area: Vec<VocabularyCode>,
    task_type: Vec<VocabularyCode>,
    tags: Vec<VocabularyTag>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct VocabularyCode {
    id: i64,
    code: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct VocabularyTag {
    id: i64,
    name: String,
    /// How many datasets carry the tag.
    datasets: i64,
}
