//! The catalog's full-text read model: a tantivy index on local disk, fed by the runner
//! like any projection but keeping its own checkpoint in the index commit's payload, so
//! documents and checkpoint become visible together (and a crash between them is
//! impossible). Each server keeps its own index and catches up from its own commit.

mod analysis;
mod search;
mod tiers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use medledger_application::codec::{DecodeError, DecodedEvent};
use medledger_application::ports::{ChainHead, EventStore, Position, RecordedEvent};
use medledger_domain::EventTypes;
use medledger_domain::catalog::{DatasetEvent, DatasetEventKind, DatasetFields};
use tantivy::schema::{Facet, FacetOptions, Field, INDEXED, STORED, STRING, Schema};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

pub use search::{Faceted, Facets, SearchFilters, SearchHit, SearchHits, SearchRequest, Semantics};

use crate::ProjectionError;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("catalog index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("catalog index directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("catalog index worker stopped")]
    Worker,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl From<IndexError> for ProjectionError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Decode(d) => ProjectionError::Decode(d),
            other => ProjectionError::Index(other.to_string()),
        }
    }
}

/// The fields every document has.
#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub id: Field,
    pub title_en: Field,
    pub text_en: Field,
    pub title_ru: Field,
    pub text_ru: Field,
    pub modality: Field,
    pub area: Field,
    pub task: Field,
    pub tag: Field,
    pub facets: Field,
    /// The dataset as the API shows it (JSON), so a search answers without a read-model
    /// round trip, and with the version of each dataset it ranked.
    pub row: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |analyzer: &str| {
        tantivy::schema::TextOptions::default().set_indexing_options(
            tantivy::schema::TextFieldIndexing::default()
                .set_tokenizer(analyzer)
                .set_index_option(tantivy::schema::IndexRecordOption::WithFreqsAndPositions),
        )
    };
    let fields = Fields {
        id: b.add_i64_field("id", INDEXED | STORED | tantivy::schema::FAST),
        title_en: b.add_text_field("title_en", text(analysis::ENGLISH)),
        text_en: b.add_text_field("text_en", text(analysis::ENGLISH)),
        title_ru: b.add_text_field("title_ru", text(analysis::RUSSIAN)),
        text_ru: b.add_text_field("text_ru", text(analysis::RUSSIAN)),
        modality: b.add_text_field("modality", STRING),
        area: b.add_text_field("area", STRING),
        task: b.add_text_field("task", STRING),
        tag: b.add_text_field("tag", STRING),
        facets: b.add_facet_field("facets", FacetOptions::default()),
        row: b.add_text_field("row", STORED),
    };
    (b.build(), fields)
}

/// The catalog index: one writer (the runner's), any number of concurrent searches.
pub struct CatalogIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    /// The position the last commit recorded.
    committed_position: AtomicI64,
}

/// Heap for the single indexing thread: tantivy's minimum. Catalog documents are small
/// and pages are committed every few hundred events, so more would only raise RSS.
const WRITER_HEAP: usize = 15_000_000;

impl CatalogIndex {
    /// Opens the index in `dir`, creating it (empty, checkpoint 0) if there is none. An
    /// index written with another schema is discarded: it is rebuilt from the history.
    pub fn open(dir: &Path) -> Result<Arc<Self>, IndexError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let index = match Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => index,
            Ok(_) | Err(tantivy::TantivyError::OpenDirectoryError(_)) | Err(tantivy::TantivyError::SchemaError(_)) => {
                Self::wipe(dir)?;
                Index::create_in_dir(dir, schema)?
            }
            Err(_) if !dir.join("meta.json").exists() => Index::create_in_dir(dir, schema)?,
            Err(e) => return Err(e.into()),
        };
        Self::from_index(index, fields)
    }

    /// An index held in memory only (tests of the search itself, benchmarks).
    pub fn in_memory() -> Result<Arc<Self>, IndexError> {
        let (schema, fields) = schema();
        Self::from_index(Index::create_in_ram(schema), fields)
    }

    fn from_index(mut index: Index, fields: Fields) -> Result<Arc<Self>, IndexError> {
        analysis::register(&mut index);
        let writer = index.writer_with_num_threads(1, WRITER_HEAP)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let me = Self { index, reader, writer: Mutex::new(writer), fields, committed_position: AtomicI64::new(0) };
        me.committed_position.store(me.checkpoint()?, Ordering::SeqCst);
        Ok(Arc::new(me))
    }

    fn wipe(dir: &Path) -> Result<(), IndexError> {
        for entry in std::fs::read_dir(dir)? {
            let path: PathBuf = entry?.path();
            if path.is_file() {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// The digest (`POSITION:HASH`, as `medledger verify --digest` prints it) of the last
    /// event the committed index reflects. The hash ties the index to one history: an
    /// index left over from another database (or from before a restore) is detected and
    /// rebuilt rather than trusted.
    fn committed(&self) -> Result<String, IndexError> {
        Ok(self.index.load_metas()?.payload.unwrap_or_default())
    }

    pub fn checkpoint(&self) -> Result<Position, IndexError> {
        let digest = self.committed()?;
        Ok(digest.split_once(':').and_then(|(p, _)| p.parse().ok()).unwrap_or(0))
    }

    /// Empties the index and its checkpoint (the runner then replays from the start).
    pub fn reset(&self) -> Result<(), IndexError> {
        let mut writer = self.lock()?;
        writer.delete_all_documents()?;
        self.commit(&mut writer, ChainHead::GENESIS)
    }

    /// Opens the index in `dir` and checks that its checkpoint belongs to `store`'s
    /// history; if not, it starts over empty.
    pub async fn open_for(dir: &Path, store: &dyn EventStore) -> Result<Arc<Self>, ProjectionError> {
        let index = Self::open(dir)?;
        let position = CatalogIndex::checkpoint(&index)?;
        if position > 0 {
            let digest = index.committed()?;
            let at = store.read_all(position - 1, 1).await?;
            let same = at.first().is_some_and(|e| head_of(e).digest() == digest);
            if !same {
                tracing::warn!(position, "catalog index does not match this history; rebuilding it");
                index.reset()?;
            }
        }
        Ok(index)
    }

    /// Merges every segment into one. A rebuild leaves a dozen segments; each costs
    /// every query its own term-dictionary walk (fuzzy matches above all) and postings
    /// set-up, so one segment answers several times faster.
    pub fn compact(&self) -> Result<(), IndexError> {
        let mut writer = self.lock()?;
        Self::compact_with(&self.index, &mut writer)?;
        self.reader.reload()?;
        Ok(())
    }

    fn compact_with(index: &Index, writer: &mut IndexWriter) -> Result<(), IndexError> {
        let segments = index.searchable_segment_ids()?;
        if segments.len() > 1 {
            // The merge keeps the last commit's payload: the checkpoint is unchanged.
            writer.merge(&segments).wait()?;
        }
        Ok(())
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn document(&self, id: i64, f: &DatasetFields) -> TantivyDocument {
        let fl = self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_i64(fl.id, id);
        if let Ok(row) = serde_json::to_string(&crate::catalog::queries::DatasetRow::from_fields(id, f)) {
            doc.add_text(fl.row, row);
        }
        let body = format!("{}\n{}\n{}\n{}", f.description, f.tags.join(", "), f.task_types.join(" "), f.slug.replace('-', " "));
        for (title, text) in [(fl.title_en, fl.text_en), (fl.title_ru, fl.text_ru)] {
            doc.add_text(title, &f.title);
            doc.add_text(text, &body);
        }
        for m in &f.modality {
            doc.add_text(fl.modality, m);
            doc.add_facet(fl.facets, Facet::from_path(["modality", m.as_str()]));
        }
        if !f.area.is_empty() {
            doc.add_text(fl.area, &f.area);
            doc.add_facet(fl.facets, Facet::from_path(["area", f.area.as_str()]));
        }
        for t in &f.task_types {
            doc.add_text(fl.task, t);
            doc.add_facet(fl.facets, Facet::from_path(["task_type", t.as_str()]));
        }
        for t in &f.tags {
            let tag = t.to_lowercase();
            doc.add_facet(fl.facets, Facet::from_path(["tags", tag.as_str()]));
            doc.add_text(fl.tag, tag);
        }
        doc
    }

    /// The dataset events that change a document.
    pub fn handles() -> EventTypes {
        EventTypes::only([DatasetEventKind::DatasetCreated, DatasetEventKind::DatasetUpdated, DatasetEventKind::DatasetRetired])
    }

    /// Stages one event's effect in the writer (uncommitted); false if it has none.
    fn stage(&self, writer: &mut IndexWriter, event: &DecodedEvent) -> Result<bool, DecodeError> {
        let Some(e) = event.to_domain::<DatasetEvent>()? else { return Ok(false) };
        match e {
            DatasetEvent::DatasetCreated { dataset_id, fields } | DatasetEvent::DatasetUpdated { dataset_id, fields } => {
                writer.delete_term(Term::from_field_i64(self.fields.id, dataset_id));
                // Errors here are schema mismatches (impossible: the schema is ours).
                if let Err(e) = writer.add_document(self.document(dataset_id, &fields)) {
                    tracing::error!(dataset_id, error = %e, "catalog index refused a document");
                }
            }
            DatasetEvent::DatasetRetired { dataset_id } => {
                writer.delete_term(Term::from_field_i64(self.fields.id, dataset_id));
            }
            DatasetEvent::DatasetSlugClaimed { .. } | DatasetEvent::DatasetItemAdded { .. } => return Ok(false),
        }
        Ok(true)
    }

    /// Commits staged changes with the checkpoint as the payload and makes them searchable.
    fn commit(&self, writer: &mut IndexWriter, checkpoint: ChainHead) -> Result<(), IndexError> {
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&checkpoint.digest());
        prepared.commit()?;
        self.committed_position.store(checkpoint.position, Ordering::SeqCst);
        self.reader.reload()?;
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, IndexError> {
        // A panic while holding the writer leaves staged changes of unknown shape: drop them.
        match self.writer.lock() {
            Ok(g) => Ok(g),
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                g.rollback()?;
                Ok(g)
            }
        }
    }

    /// Applies a page's events and records `through` (the page's last event, whatever
    /// its type) as the checkpoint, atomically. A page that changes no dataset is not
    /// committed (a commit writes and syncs files): its checkpoint is recorded by a later
    /// commit, or once it is `LAZY_CHECKPOINT` events ahead of the last one, and a
    /// restart re-reads those events to no effect. An event that does not decode drops
    /// what the page staged: nothing of it is applied.
    pub fn apply_page<E: std::borrow::Borrow<DecodedEvent>>(&self, events: &[E], through: ChainHead) -> Result<(), IndexError> {
        let mut writer = self.lock()?;
        let mut changed = false;
        for e in events {
            match self.stage(&mut writer, e.borrow()) {
                Ok(staged) => changed |= staged,
                Err(e) => {
                    writer.rollback()?;
                    return Err(e.into());
                }
            }
        }
        let behind = through.position - self.committed_position.load(Ordering::SeqCst);
        if !changed && behind < crate::LAZY_CHECKPOINT {
            return Ok(());
        }
        self.commit(&mut writer, through)
    }

    /// Starts a rebuild: everything is deleted in the writer, but searches keep seeing
    /// the old documents until [`Rebuild::finish`] commits the new ones.
    pub fn rebuild<'a>(self: &'a Arc<Self>) -> Result<Rebuild<'a>, IndexError> {
        let writer = self.lock()?;
        writer.delete_all_documents()?;
        Ok(Rebuild { index: self, writer, last: ChainHead::GENESIS })
    }
}

/// A replay in progress: stages every page, commits once at the end.
pub struct Rebuild<'a> {
    index: &'a CatalogIndex,
    writer: std::sync::MutexGuard<'a, IndexWriter>,
    last: ChainHead,
}

impl Rebuild<'_> {
    pub fn stage(&mut self, events: &[DecodedEvent]) -> Result<(), DecodeError> {
        for e in events {
            self.index.stage(&mut self.writer, e)?;
        }
        if let Some(last) = events.last() {
            self.last = head_of(&last.recorded);
        }
        Ok(())
    }

    /// Commits the rebuilt index, then merges it into one segment; returns the position
    /// it reflects.
    pub fn finish(mut self) -> Result<Position, IndexError> {
        let last = self.last;
        self.index.commit(&mut self.writer, last)?;
        CatalogIndex::compact_with(&self.index.index, &mut self.writer)?;
        self.index.reader.reload()?;
        Ok(last.position)
    }
}

/// The chain head as of `event`: what the index's checkpoint records.
fn head_of(event: &RecordedEvent) -> ChainHead {
    ChainHead { position: event.position, hash: event.hash }
}

/// Rebuilds the index from the whole history (`medledger replay --projection catalog_index`). Searches
/// see the old index until the new one is committed, in one piece, at the end.
pub async fn rebuild_index(
    index: &Arc<CatalogIndex>,
    store: &dyn EventStore,
    codec: &medledger_application::codec::EventCodec,
    mut on_page: impl FnMut(Position),
) -> Result<Position, ProjectionError> {
    const PAGE: usize = 5_000;
    let mut rebuild = index.rebuild()?;
    let mut after = 0;
    loop {
        let page = store.read_all(after, PAGE).await?;
        let Some(last) = page.last().map(|e| e.position) else { break };
        let mut decoded = Vec::with_capacity(page.len());
        for recorded in page {
            decoded.push(codec.decode(recorded).await?);
        }
        // Staging only fills the writer's memory (tantivy flushes segments itself).
        rebuild.stage(&decoded)?;
        after = last;
        on_page(after);
    }
    // One blocking commit at the end of a one-off job (the CLI, tests): not worth a thread.
    Ok(rebuild.finish()?)
}

#[async_trait]
impl crate::SelfCheckpointed for Arc<CatalogIndex> {
    fn name(&self) -> &'static str {
        super::CATALOG_INDEX
    }

    fn handles(&self) -> EventTypes {
        CatalogIndex::handles()
    }

    async fn checkpoint(&self) -> Result<Position, ProjectionError> {
        let me = self.clone();
        let c = tokio::task::spawn_blocking(move || CatalogIndex::checkpoint(&me)).await.map_err(|_| IndexError::Worker)??;
        Ok(c)
    }

    async fn apply_page(&self, events: Vec<Arc<DecodedEvent>>, through: ChainHead) -> Result<(), ProjectionError> {
        let me = self.clone();
        // Commits fsync: off the async runtime.
        tokio::task::spawn_blocking(move || CatalogIndex::apply_page(&me, &events, through)).await.map_err(|_| IndexError::Worker)??;
        Ok(())
    }
}
