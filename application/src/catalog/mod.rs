//! Catalog use cases (contract 000): admins create, update and retire datasets; an
//! import loads a JSONL file and is idempotent by slug.

mod error;

pub use error::CatalogError;

use std::sync::Arc;

use medledger_domain::Aggregate;
use medledger_domain::DomainError;
use medledger_domain::catalog::{self, Dataset, DatasetCommand, DatasetEvent, DatasetFields, DatasetId};

use crate::AppError;
use crate::ledger::Ledger;
use crate::metadata::CommandContext;
use crate::ports::{ExpectedVersion, IdGenerator, Position, StoreError};

#[derive(Clone)]
pub struct Catalog {
    ledger: Ledger,
    ids: Arc<dyn IdGenerator>,
}

/// What an import did, line by line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub last_position: Option<Position>,
}

impl Catalog {
    pub fn new(ledger: Ledger, ids: Arc<dyn IdGenerator>) -> Self {
        Self { ledger, ids }
    }

    /// The dataset that holds `slug`, from its claim stream (the history, not a read model).
    pub async fn find_slug(&self, slug: &str) -> Result<Option<DatasetId>, AppError> {
        let recorded = self.ledger.store().read_stream(&catalog::slug_stream_id(slug)).await?;
        for r in recorded {
            if let Some(DatasetEvent::DatasetSlugClaimed { dataset_id }) = self.ledger.decode(r).await?.to_domain()? {
                return Ok(Some(dataset_id));
            }
        }
        Ok(None)
    }

    /// Creates a dataset. Without a slug, one is derived from the title and the first
    /// free one of `slug`, `slug-2`, `slug-3`, ... is taken; free means its claim
    /// stream does not exist when the dataset is appended with it, so two concurrent
    /// creates of one title cannot both win a slug: the loser moves on to the next.
    pub async fn create(&self, mut fields: DatasetFields, ctx: &CommandContext) -> Result<(DatasetId, Position), AppError> {
        let derived = fields.slug.trim().is_empty();
        if derived {
            fields.slug = catalog::slug_from_title(&fields.title);
        }
        let fields = fields.validate()?;
        let base = fields.slug.clone();
        let mut dataset_id = None;
        for n in 1..=MAX_DERIVED_SLUG_TRIES {
            let slug = catalog::numbered_slug(&base, n);
            if self.find_slug(&slug).await?.is_some() {
                if derived {
                    continue;
                }
                return Err(slug_taken());
            }
            // One id for every try: a try that loses appends nothing.
            let id = match dataset_id {
                Some(id) => id,
                None => *dataset_id.insert(self.ids.next_id("dataset").await?),
            };
            match self.append_created(id, DatasetFields { slug, ..fields.clone() }, ctx).await {
                Ok(position) => return Ok((id, position)),
                Err(AppError::Store(StoreError::Conflict { .. })) if derived => continue,
                Err(AppError::Store(StoreError::Conflict { .. })) => return Err(slug_taken()),
                Err(e) => return Err(e),
            }
        }
        Err(CatalogError::NoFreeSlug { slug: base, tries: MAX_DERIVED_SLUG_TRIES }.into())
    }

    /// The slug's claim and the dataset, atomically: a conflict means the slug (or,
    /// never in practice, the id) was taken in the meantime.
    async fn append_created(&self, dataset_id: DatasetId, fields: DatasetFields, ctx: &CommandContext) -> Result<Position, AppError> {
        let slug_stream = catalog::slug_stream_id(&fields.slug);
        let created = Dataset::default().handle(DatasetCommand::Create { dataset_id, fields })?;
        let parts = vec![
            self.ledger.prepare(&slug_stream, ExpectedVersion::NoStream, &[DatasetEvent::DatasetSlugClaimed { dataset_id }], ctx).await?,
            self.ledger.prepare(&catalog::stream_id(dataset_id), ExpectedVersion::NoStream, &created, ctx).await?,
        ];
        Ok(self.ledger.commit(parts).await?.last_position)
    }

    /// Replaces a dataset's fields; `None` when nothing changed.
    pub async fn update(&self, dataset_id: DatasetId, fields: DatasetFields, ctx: &CommandContext) -> Result<Option<Position>, AppError> {
        let (_, position) = self
            .ledger
            .execute::<Dataset>(&catalog::stream_id(dataset_id), ctx, |d| d.handle(DatasetCommand::Update { fields: fields.clone() }))
            .await?;
        Ok(position)
    }

    /// Retires a dataset: it leaves the catalog; its history stays.
    pub async fn retire(&self, dataset_id: DatasetId, ctx: &CommandContext) -> Result<Option<Position>, AppError> {
        let (_, position) =
            self.ledger.execute::<Dataset>(&catalog::stream_id(dataset_id), ctx, |d| d.handle(DatasetCommand::Retire)).await?;
        Ok(position)
    }

    /// Creates what is new, updates what changed, leaves the rest: importing the same
    /// file twice writes nothing the second time.
    pub async fn import(&self, datasets: Vec<DatasetFields>, ctx: &CommandContext) -> Result<ImportReport, AppError> {
        let mut report = ImportReport::default();
        for fields in datasets {
            let fields = fields.validate()?;
            match self.find_slug(&fields.slug).await? {
                None => {
                    let (_, p) = self.create(fields, ctx).await?;
                    report.created += 1;
                    report.last_position = Some(p);
                }
                Some(id) => match self.update(id, fields, ctx).await {
                    Ok(Some(p)) => {
                        report.updated += 1;
                        report.last_position = Some(p);
                    }
                    // Unchanged, or retired by an admin: an import does not bring it back.
                    Ok(None) | Err(AppError::Domain(DomainError::NotFound(_))) => report.unchanged += 1,
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(report)
    }
}

/// How many numbered forms of a derived slug are tried before the admin is asked for one.
const MAX_DERIVED_SLUG_TRIES: usize = 1_000;

fn slug_taken() -> AppError {
    CatalogError::SlugTaken.into()
}

/// Parses one line of the catalog JSONL format. Unlike an admin's create, a line must
/// name its slug: the slug is what makes a re-import update instead of duplicate.
pub fn parse_line(line: &str) -> Result<DatasetFields, String> {
    let fields = serde_json::from_str::<DatasetFields>(line).map_err(|e| e.to_string())?;
    if fields.slug.trim().is_empty() {
        return Err("missing field `slug`".to_string());
    }
    Ok(fields)
}
