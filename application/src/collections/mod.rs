//! Collections (contract 000): a user asks for items of chosen datasets that match a
//! query; a saga builds the ZIP; ready archives expire after a time to live.

pub mod archive;
mod build_saga;

pub use build_saga::CollectionBuildSaga;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use medledger_domain::Aggregate;
use medledger_domain::DomainError;
use medledger_domain::catalog::{self, Dataset, DatasetCommand, DatasetFields};
use medledger_domain::collections::collection::{self, BuiltArchive, Collection, CollectionCommand, CollectionId, CollectionRequest};
use medledger_domain::collections::dataset_item::{self, DatasetItem};

use crate::AppError;
use crate::collections::archive::{ArchiveEntry, write_archive};
use crate::jobs::{JobKind, JobProgress, JobRunner, Outcome, ProgressReport};
use crate::ledger::Ledger;
use crate::metadata::{Cause, CommandContext};
use crate::ports::{BlobStore, BlobWrite, ByteStream, Clock, ExpectedVersion, IdGenerator, Position, StoreError};

/// The query side collections choose from: a dataset's items as the `dataset_items`
/// read model holds them (adding an item never reads the dataset's other items).
#[async_trait]
pub trait DatasetItems: Send + Sync {
    /// Every item of `dataset_id`, once the read model has applied the history up to
    /// `as_of` (when given: a build sees every item added before its request).
    async fn items(&self, dataset_id: i64, as_of: Option<Position>) -> Result<Vec<DatasetItem>, StoreError>;
}

#[derive(Clone)]
pub struct Collections {
    ledger: Ledger,
    ids: Arc<dyn IdGenerator>,
    blobs: Arc<dyn BlobStore>,
    items: Arc<dyn DatasetItems>,
    clock: Arc<dyn Clock>,
    ttl: chrono::Duration,
    max_items: usize,
    builds: JobRunner<Collection>,
    /// How far this process's builds have got.
    pub progress: JobProgress,
}

/// The most items one collection archive holds unless configured otherwise.
pub const DEFAULT_MAX_ITEMS: usize = 10_000;

/// One item chosen for an archive, with what its manifest row says.
#[derive(Debug, Clone)]
pub struct ChosenItem {
    pub dataset_id: i64,
    pub dataset: DatasetFields,
    pub item: DatasetItem,
}

/// A dataset's fields and its items, in the order added.
type DatasetWithItems = (DatasetFields, Vec<DatasetItem>);

/// The items of `datasets` that match the query, best first, at most
/// `limit_per_dataset` from each (see [`Collections::choose_items`]).
fn choose(request: &CollectionRequest, datasets: Vec<(i64, DatasetWithItems)>) -> Vec<ChosenItem> {
    let groups = catalog::expand_query(&request.query_text);
    let matched = |text: &str| {
        let words: Vec<String> = text.to_lowercase().split(|c: char| !c.is_alphanumeric()).map(str::to_string).collect();
        groups.iter().filter(|g| g.iter().any(|t| t.split(' ').all(|part| words.iter().any(|w| w.starts_with(part))))).count()
    };
    let mut chosen = Vec::new();
    for (dataset_id, (dataset, items)) in datasets {
        let dataset_score = matched(&format!("{} {} {}", dataset.title, dataset.description, dataset.tags.join(" ")));
        let mut scored: Vec<(usize, DatasetItem)> = items
            .into_iter()
            .map(|item| {
                let own = matched(&format!("{} {} {}", item.caption, item.labels.join(" "), item.filename));
                (2 * own + dataset_score, item)
            })
            .filter(|(score, _)| groups.is_empty() || *score > 0)
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.item_id.cmp(&b.1.item_id)));
        let take = usize::try_from(request.limit_per_dataset).unwrap_or(usize::MAX);
        chosen.extend(scored.into_iter().take(take).map(|(_, item)| ChosenItem { dataset_id, dataset: dataset.clone(), item }));
    }
    chosen
}

fn too_many_items(items: usize, max: usize) -> DomainError {
    DomainError::invalid(
        "limit_per_dataset",
        format!(
            "this request matches {items} items and one collection holds at most {max}: \
             narrow the query, choose fewer datasets or lower limit_per_dataset"
        ),
    )
}

impl Collections {
    pub fn new(
        ledger: Ledger,
        ids: Arc<dyn IdGenerator>,
        blobs: Arc<dyn BlobStore>,
        items: Arc<dyn DatasetItems>,
        clock: Arc<dyn Clock>,
        ttl: chrono::Duration,
    ) -> Self {
        let builds = JobRunner::new(ledger.clone());
        let progress = builds.progress().clone();
        Self { ledger, ids, blobs, items, clock, ttl, max_items: DEFAULT_MAX_ITEMS, builds, progress }
    }

    /// Caps the items of one archive: each is copied into the ZIP, so a request for
    /// everything in a hundred datasets would otherwise cost unbounded disk and time.
    pub fn with_max_items(mut self, max_items: usize) -> Self {
        self.max_items = max_items.max(1);
        self
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// A live dataset's fields (from its own stream, checked live) and its items (from
    /// the read model, once it has applied `as_of`); None when the dataset is unknown
    /// or retired.
    async fn dataset_with_items(&self, dataset_id: i64, as_of: Option<Position>) -> Result<Option<DatasetWithItems>, AppError> {
        let (state, _) = self.ledger.load::<Dataset>(&catalog::stream_id(dataset_id)).await?;
        let Some(fields) = state.fields().filter(|_| state.exists() && !state.is_retired()).cloned() else { return Ok(None) };
        Ok(Some((fields, self.items.items(dataset_id, as_of).await?)))
    }

    /// Records a request after checking that every dataset exists and is live, and that
    /// the archive would not hold more than the configured number of items.
    pub async fn request(&self, request: CollectionRequest, ctx: &CommandContext) -> Result<(CollectionId, Position), AppError> {
        let request = request.validate()?;
        let mut missing = Vec::new();
        let mut datasets = Vec::with_capacity(request.dataset_ids.len());
        for id in &request.dataset_ids {
            match self.dataset_with_items(*id, None).await? {
                Some(dataset) => datasets.push((*id, dataset)),
                None => missing.push(id.to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(DomainError::invalid("dataset_ids", format!("unknown or retired datasets: {}", missing.join(", "))).into());
        }
        let items = choose(&request, datasets).len();
        if items > self.max_items {
            return Err(too_many_items(items, self.max_items).into());
        }
        let collection_id = self.ids.next_id("collection").await?;
        let events = Collection::default().handle(CollectionCommand::Request { collection_id, request })?;
        let part = self.ledger.prepare(&collection::stream_id(collection_id), ExpectedVersion::NoStream, &events, ctx).await?;
        let appended = self.ledger.commit(vec![part]).await?;
        Ok((collection_id, appended.last_position))
    }

    /// Items of the chosen datasets that match the query, best first, at most
    /// `limit_per_dataset` from each. An item matches through its own caption, labels
    /// and file name (counted double) or through its dataset's description.
    /// `as_of`: the position the items must include (a build: its request's).
    pub async fn choose_items(&self, request: &CollectionRequest, as_of: Option<Position>) -> Result<Vec<ChosenItem>, AppError> {
        let mut datasets = Vec::with_capacity(request.dataset_ids.len());
        for dataset_id in &request.dataset_ids {
            if let Some(dataset) = self.dataset_with_items(*dataset_id, as_of).await? {
                datasets.push((*dataset_id, dataset));
            }
        }
        Ok(choose(request, datasets))
    }

    /// Builds the archive for a pending collection and records the outcome. Safe to
    /// repeat: a collection already built, failed or expired is left alone, and an
    /// archive is only ever published whole (see [`write_archive`]). `cause`: the
    /// request's event, which the outcome records as its cause.
    pub async fn build(&self, collection_id: CollectionId, cause: Cause) -> Result<(), AppError> {
        self.builds.run(self, collection_id, &CommandContext::caused_by(cause)).await
    }

    /// Marks a ready collection expired (its archive is then deleted by the saga).
    pub async fn expire(&self, collection_id: CollectionId) -> Result<Option<Position>, AppError> {
        let ctx = CommandContext::system();
        let (_, position) =
            self.ledger.execute::<Collection>(&collection::stream_id(collection_id), &ctx, |c| c.handle(CollectionCommand::Expire)).await?;
        Ok(position)
    }

    /// Adds an uploaded file to a dataset: bytes first (`stage_item`), then the item
    /// (`record_item`). The metadata is checked before any byte is stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_item(
        &self,
        dataset_id: i64,
        filename: &str,
        content_type: &str,
        body: ByteStream,
        max_bytes: u64,
        metadata: (Vec<String>, String, BTreeMap<String, String>),
        ctx: &CommandContext,
    ) -> Result<(DatasetItem, Position), AppError> {
        dataset_item::clean_item_metadata(metadata.0.clone(), metadata.1.clone(), metadata.2.clone())?;
        let staged = self.stage_item(dataset_id, filename, content_type, body, max_bytes).await?;
        self.record_item(staged, metadata, ctx).await
    }

    /// Stores an uploaded file's bytes for a dataset under a fresh key, streamed and
    /// hashed on the way, at most `max_bytes`. Nothing is recorded yet: the caller
    /// records it (`record_item`) once it has the item's metadata, which a multipart
    /// form may send after the file, or discards it (`discard_item`).
    pub async fn stage_item(
        &self,
        dataset_id: i64,
        filename: &str,
        content_type: &str,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<StagedItem, AppError> {
        let filename = dataset_item::parse_item_path(filename)?;
        let (dataset, _) = self.ledger.load::<Dataset>(&catalog::stream_id(dataset_id)).await?;
        if !dataset.exists() || dataset.is_retired() {
            return Err(AppError::NotFound("dataset"));
        }
        let item_id = self.ids.next_id("dataset_item").await?;
        let blob_key = format!("items/{dataset_id}/{item_id}");
        let stored = self.blobs.put_stream(&blob_key, body, BlobWrite::HASHED.at_most(max_bytes)).await?;
        let Some(sha256) = stored.sha256 else {
            self.delete_blob(&blob_key).await;
            return Err(AppError::broken("the blob store did not hash an item"));
        };
        Ok(StagedItem { dataset_id, item_id, filename, content_type: content_type.to_string(), blob_key, size: stored.size, sha256 })
    }

    /// Records a staged item as `DatasetItemAdded`, the one event of the item's own
    /// stream. The dataset is checked live on its stream, which the append expects
    /// unchanged: a dataset retired meanwhile takes no item, while uploads to one
    /// dataset never conflict with each other. An item that is refused leaves no bytes.
    pub async fn record_item(
        &self,
        staged: StagedItem,
        metadata: (Vec<String>, String, BTreeMap<String, String>),
        ctx: &CommandContext,
    ) -> Result<(DatasetItem, Position), AppError> {
        let key = staged.blob_key.clone();
        let recorded = self.record_staged(staged, metadata, ctx).await;
        if recorded.is_err() {
            self.delete_blob(&key).await;
        }
        recorded
    }

    /// Removes a staged item's bytes (its upload was refused after they were stored).
    pub async fn discard_item(&self, staged: StagedItem) {
        self.delete_blob(&staged.blob_key).await;
    }

    async fn delete_blob(&self, key: &str) {
        if let Err(e) = self.blobs.delete(key).await {
            tracing::warn!(key, error = %e, "cannot remove the bytes of an item that was not recorded");
        }
    }

    async fn record_staged(
        &self,
        staged: StagedItem,
        metadata: (Vec<String>, String, BTreeMap<String, String>),
        ctx: &CommandContext,
    ) -> Result<(DatasetItem, Position), AppError> {
        let (labels, caption, identifiers) = dataset_item::clean_item_metadata(metadata.0, metadata.1, metadata.2)?;
        let StagedItem { dataset_id, item_id, filename, content_type, blob_key, size, sha256 } = staged;
        let dataset_stream = catalog::stream_id(dataset_id);
        let item = DatasetItem {
            item_id,
            filename,
            blob_key,
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            sha256: hex::encode(sha256),
            content_type,
            labels,
            caption,
            identifiers,
        };
        let mut attempt = 0;
        loop {
            let (dataset, version) = self.ledger.load::<Dataset>(&dataset_stream).await?;
            let events = dataset.handle(DatasetCommand::AddItem { item: item.clone() })?;
            let guard = self.ledger.expect_unchanged(&dataset_stream, version);
            // Ids as when items went on the dataset's stream: an upload retried with its
            // Idempotency-Key is recognised (409) rather than added twice.
            let item_stream = dataset_item::stream_id(item_id);
            let part = self.ledger.prepare_in(&item_stream, &dataset_stream, ExpectedVersion::NoStream, &events, ctx).await?;
            match self.ledger.commit(vec![guard, part]).await {
                Ok(appended) => return Ok((item, appended.last_position)),
                // Only a change to the dataset itself (an edit, a retirement) lands here.
                Err(AppError::Store(StoreError::Conflict { stream_id, .. })) if stream_id == dataset_stream && attempt < ITEM_RETRIES => {
                    attempt += 1
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// An item's bytes, stored under its key and not yet recorded.
#[derive(Debug)]
pub struct StagedItem {
    dataset_id: i64,
    item_id: i64,
    filename: String,
    content_type: String,
    blob_key: String,
    size: u64,
    sha256: [u8; 32],
}

/// How often an item's append is re-decided when its dataset changed meanwhile.
const ITEM_RETRIES: usize = 5;

/// A build: the items the request matches, into a ZIP archive.
#[async_trait]
impl JobKind for Collections {
    type Job = Collection;

    async fn perform(
        &self,
        collection_id: CollectionId,
        state: &Collection,
        progress: &ProgressReport,
    ) -> Result<Outcome<BuiltArchive>, AppError> {
        let request = state.request().ok_or(AppError::NotFound("collection"))?;
        // Every item added before the build began is chosen: the items read model is
        // waited for up to the head as the build finds it (past the request's position).
        let as_of = self.ledger.store().head().await?.position;
        let chosen = self.choose_items(request, Some(as_of)).await?;
        if chosen.is_empty() {
            return Ok(Err("no items of the chosen datasets match the query".into()));
        }
        // Items added to the datasets since the request was accepted can push it over.
        if chosen.len() > self.max_items {
            return Ok(Err(too_many_items(chosen.len(), self.max_items).to_string()));
        }
        let (entries, generated) = archive_layout(&chosen);
        let key = format!("collections/{collection_id}.zip");
        let progress = progress.clone();
        let report: Arc<dyn Fn(u8) + Send + Sync> = Arc::new(move |p| progress.report(p));
        let built = write_archive(self.blobs.clone(), &key, entries, generated, report).await;
        match built {
            Ok(info) => Ok(Ok(BuiltArchive {
                archive_key: key,
                archive_size: i64::try_from(info.size).unwrap_or(i64::MAX),
                items: chosen.len() as i64,
                expires_at: (self.clock.now() + self.ttl).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })),
            Err(e) => {
                tracing::warn!(collection_id, error = %e, "collection build failed");
                Ok(Err(format!("the archive could not be built: {e}")))
            }
        }
    }
}

/// Paths inside the archive (`{dataset slug}/{item id}-{file name}`: unique, and every
/// part already checked safe) and the two manifests.
fn archive_layout(chosen: &[ChosenItem]) -> (Vec<ArchiveEntry>, Vec<(String, Vec<u8>)>) {
    let mut entries = Vec::with_capacity(chosen.len());
    let mut rows = Vec::with_capacity(chosen.len());
    let mut csv = String::from("dataset,item,path,source_url,license,labels,sha256\n");
    for c in chosen {
        let base = c.item.filename.rsplit('/').next().unwrap_or("item");
        let path = format!("{}/{}-{}", c.dataset.slug, c.item.item_id, base);
        entries.push(ArchiveEntry { name: path.clone(), blob_key: c.item.blob_key.clone(), size_bytes: c.item.size_bytes });
        rows.push(serde_json::json!({
            "dataset": c.dataset.slug, "dataset_id": c.dataset_id, "item": c.item.item_id, "path": path,
            "filename": c.item.filename, "source_url": c.dataset.source_url, "license": c.dataset.license,
            "labels": c.item.labels, "caption": c.item.caption, "identifiers": c.item.identifiers, "sha256": c.item.sha256,
        }));
        let fields = [
            c.dataset.slug.clone(),
            c.item.item_id.to_string(),
            path,
            c.dataset.source_url.clone(),
            c.dataset.license.clone(),
            c.item.labels.join(";"),
            c.item.sha256.clone(),
        ];
        csv.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        csv.push('\n');
    }
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({ "items": rows })).unwrap_or_default();
    (entries, vec![("manifest.json".into(), manifest), ("manifest.csv".into(), csv.into_bytes())])
}

/// RFC 4180 quoting; a leading formula character is defused for spreadsheet users.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_string() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
