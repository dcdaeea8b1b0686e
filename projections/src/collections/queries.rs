//! Reads of the `collections` and `dataset_items` read models.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use medledger_application::collections::DatasetItems;
use medledger_application::ports::{Position, StoreError};
use medledger_domain::collections::dataset_item::DatasetItem;
use serde::Serialize;
use sqlx::AnyPool;

use crate::Progress;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CollectionRow {
    pub id: i64,
    pub owner_id: i64,
    pub owner_email: Option<String>,
    pub query_text: String,
    pub dataset_ids: Vec<i64>,
    pub limit_per_dataset: i64,
    pub status: String,
    pub failure_reason: Option<String>,
    pub archive_key: Option<String>,
    pub archive_size: Option<i64>,
    pub items: Option<i64>,
    pub created_at: String,
    pub expires_at: Option<String>,
}

type Tuple = (
    i64,
    i64,
    Option<String>,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    String,
    Option<String>,
);

const COLUMNS: &str = "c.id, c.owner_id, u.email, c.query_text, c.dataset_ids, c.limit_per_dataset, c.status, \
                       c.failure_reason, c.archive_key, c.archive_size, c.items, c.created_at, c.expires_at";
const FROM: &str = "collections c LEFT JOIN users u ON u.id = c.owner_id";

fn row(t: Tuple) -> CollectionRow {
    let (
        id,
        owner_id,
        owner_email,
        query_text,
        dataset_ids,
        limit_per_dataset,
        status,
        failure_reason,
        archive_key,
        archive_size,
        items,
        created_at,
        expires_at,
    ) = t;
    CollectionRow {
        id,
        owner_id,
        owner_email,
        query_text,
        dataset_ids: serde_json::from_str(&dataset_ids).unwrap_or_default(),
        limit_per_dataset,
        status,
        failure_reason,
        archive_key,
        archive_size,
        items,
        created_at,
        expires_at,
    }
}

pub async fn collection(read: &AnyPool, id: i64) -> Result<Option<CollectionRow>, sqlx::Error> {
    let t: Option<Tuple> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM {FROM} WHERE c.id = $1"))).bind(id).fetch_optional(read).await?;
    Ok(t.map(row))
}

/// Newest first; one owner's, or everyone's (`owner` = None: the admin view).
pub async fn collections(read: &AnyPool, owner: Option<i64>, limit: i64, offset: i64) -> Result<Vec<CollectionRow>, sqlx::Error> {
    let rows: Vec<Tuple> = match owner {
        Some(owner) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE c.owner_id = $1 ORDER BY c.id DESC LIMIT $2 OFFSET $3"
            )))
            .bind(owner)
            .bind(limit)
            .bind(offset)
            .fetch_all(read)
            .await?
        }
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM {FROM} ORDER BY c.id DESC LIMIT $1 OFFSET $2")))
                .bind(limit)
                .bind(offset)
                .fetch_all(read)
                .await?
        }
    };
    Ok(rows.into_iter().map(row).collect())
}

/// How many collections [`collections`] lists in all.
pub async fn count_collections(read: &AnyPool, owner: Option<i64>) -> Result<i64, sqlx::Error> {
    match owner {
        Some(owner) => sqlx::query_scalar("SELECT COUNT(*) FROM collections WHERE owner_id = $1").bind(owner).fetch_one(read).await,
        None => sqlx::query_scalar("SELECT COUNT(*) FROM collections").fetch_one(read).await,
    }
}

/// Ready collections whose time to live ran out by `now` (RFC 3339, UTC: compares as text).
pub async fn expired_collections(read: &AnyPool, now: &str) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM collections WHERE status = 'ready' AND expires_at <= $1 ORDER BY id LIMIT 1000")
        .bind(now)
        .fetch_all(read)
        .await
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
#[schemars(rename = "DatasetItem")]
pub struct ItemRow {
    pub id: i64,
    pub dataset_id: i64,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub labels: Vec<String>,
    pub caption: String,
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub identifiers: serde_json::Value,
    pub created_at: String,
}

type ItemTuple = (i64, i64, String, String, i64, String, String, String, String, String);

/// How many items [`dataset_items`] lists in all.
pub async fn count_dataset_items(read: &AnyPool, dataset_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM dataset_items WHERE dataset_id = $1").bind(dataset_id).fetch_one(read).await
}

pub async fn dataset_items(read: &AnyPool, dataset_id: i64, limit: i64, offset: i64) -> Result<Vec<ItemRow>, sqlx::Error> {
    let rows: Vec<ItemTuple> = sqlx::query_as(
        "SELECT id, dataset_id, filename, content_type, size_bytes, sha256, labels, caption, identifiers, created_at \
         FROM dataset_items WHERE dataset_id = $1 ORDER BY id LIMIT $2 OFFSET $3",
    )
    .bind(dataset_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(read)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, dataset_id, filename, content_type, size_bytes, sha256, labels, caption, identifiers, created_at)| ItemRow {
            id,
            dataset_id,
            filename,
            content_type,
            size_bytes,
            sha256,
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            caption,
            identifiers: serde_json::from_str(&identifiers).unwrap_or_default(),
            created_at,
        })
        .collect())
}

/// The `dataset_items` read model as the collections use case reads it
/// ([`DatasetItems`]): items to choose from, waiting (bounded) for the position a build
/// must include.
#[derive(Clone)]
pub struct ItemsReadModel {
    read: AnyPool,
    progress: Arc<OnceLock<Progress>>,
}

/// How long a build waits for the read model to reach its request before it gives up
/// (the saga then tries again).
const ITEMS_CATCH_UP: Duration = Duration::from_secs(60);

type ItemColumns = (i64, String, String, i64, String, String, String, String, String);

impl ItemsReadModel {
    pub fn new(read: AnyPool) -> Self {
        Self { read, progress: Arc::new(OnceLock::new()) }
    }

    /// The runner's progress, once it runs. Reads without a position (a request's check)
    /// take the table as it is; the CLI runs no projections and never builds.
    pub fn follow(&self, progress: Progress) {
        let _ = self.progress.set(progress);
    }
}

#[async_trait]
impl DatasetItems for ItemsReadModel {
    async fn items(&self, dataset_id: i64, as_of: Option<Position>) -> Result<Vec<DatasetItem>, StoreError> {
        if let Some(position) = as_of {
            let behind = || StoreError::Unavailable(format!("the dataset_items read model has not reached position {position}"));
            let started = tokio::time::Instant::now();
            // Only a saga asks with a position, and sagas start with the runner an instant
            // before `follow` is called.
            let progress = loop {
                match self.progress.get() {
                    Some(progress) => break progress,
                    None if started.elapsed() > ITEMS_CATCH_UP => return Err(behind()),
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            if !progress.wait_for_one("dataset_items", position, ITEMS_CATCH_UP.saturating_sub(started.elapsed())).await {
                return Err(behind());
            }
        }
        let rows: Vec<ItemColumns> = sqlx::query_as(
            "SELECT id, filename, blob_key, size_bytes, sha256, content_type, labels, caption, identifiers \
             FROM dataset_items WHERE dataset_id = $1 ORDER BY id",
        )
        .bind(dataset_id)
        .fetch_all(&self.read)
        .await
        .map_err(|e| StoreError::Unavailable(format!("dataset_items: {e}")))?;
        let decode = |column: &str, text: &str, id: i64| {
            StoreError::Corrupt(format!("dataset_items row {id}: {column} is not the JSON it should be: {text:?}"))
        };
        rows.into_iter()
            .map(|(item_id, filename, blob_key, size_bytes, sha256, content_type, labels, caption, identifiers)| {
                Ok(DatasetItem {
                    item_id,
                    filename,
                    blob_key,
                    size_bytes,
                    sha256,
                    content_type,
                    labels: serde_json::from_str(&labels).map_err(|_| decode("labels", &labels, item_id))?,
                    caption,
                    identifiers: serde_json::from_str(&identifiers).map_err(|_| decode("identifiers", &identifiers, item_id))?,
                })
            })
            .collect()
    }
}
