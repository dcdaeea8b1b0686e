//! Reads of the `collections` and `dataset_items` read models.

use serde::Serialize;
use sqlx::AnyPool;

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
