//! Read-side queries of the catalog's datasets.

use medledger_domain::catalog::DatasetFields;
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(rename = "Dataset")]
pub struct DatasetRow {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub description: String,
    pub source_url: String,
    pub modality: Vec<String>,
    pub area: String,
    pub task_types: Vec<String>,
    pub num_images: Option<i64>,
    pub size_mb: Option<i64>,
    pub license: String,
    pub tags: Vec<String>,
    pub year: Option<i64>,
}

impl DatasetRow {
    /// The row as the datasets read model holds it after this dataset's latest event.
    pub fn from_fields(id: i64, f: &DatasetFields) -> Self {
        Self {
            id,
            slug: f.slug.clone(),
            title: f.title.clone(),
            description: f.description.clone(),
            source_url: f.source_url.clone(),
            modality: f.modality.clone(),
            area: f.area.clone(),
            task_types: f.task_types.clone(),
            num_images: f.num_images,
            size_mb: f.size_mb,
            license: f.license.clone(),
            tags: f.tags.clone(),
            year: f.year.map(i64::from),
        }
    }
}

type DatasetTuple = (i64, String, String, String, String, String, String, String, Option<i64>, Option<i64>, String, String, Option<i64>);

const DATASET_COLUMNS: &str =
    "id, slug, title, description, source_url, modality, area, task_types, num_images, size_mb, license, tags, year";

fn dataset_row(t: DatasetTuple) -> DatasetRow {
    let (id, slug, title, description, source_url, modality, area, task_types, num_images, size_mb, license, tags, year) = t;
    let list = |s: &str| serde_json::from_str(s).unwrap_or_default();
    DatasetRow {
        id,
        slug,
        title,
        description,
        source_url,
        modality: list(&modality),
        area,
        task_types: list(&task_types),
        num_images,
        size_mb,
        license,
        tags: list(&tags),
        year,
    }
}

pub async fn dataset(read: &AnyPool, id: i64) -> Result<Option<DatasetRow>, sqlx::Error> {
    let row: Option<DatasetTuple> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE id = $1 AND retired = 0")))
            .bind(id)
            .fetch_optional(read)
            .await?;
    Ok(row.map(dataset_row))
}

/// Structured catalog filters; every value already checked against the allowed ones.
#[derive(Debug, Default, Clone)]
pub struct DatasetFilter {
    /// Only these datasets (the ones a free-text query matched in the catalog index).
    pub ids: Option<Vec<i64>>,
    /// Any of these modalities.
    pub modality: Vec<String>,
    /// Any of these areas.
    pub area: Vec<String>,
    /// Any of these task types.
    pub task_types: Vec<String>,
    /// Any of these tags.
    pub tags: Vec<String>,
}

/// How a list may be ordered: (query parameter value, SQL). Missing values sort last
/// either way, on both databases (PostgreSQL alone would put them first when descending).
pub const DATASET_ORDERINGS: [(&str, &str); 10] = [
    ("id", "id"),
    ("-id", "id DESC"),
    ("title", "title, id"),
    ("-title", "title DESC, id"),
    ("year", "year IS NULL, year, id"),
    ("-year", "year IS NULL, year DESC, id"),
    ("num_images", "num_images IS NULL, num_images, id"),
    ("-num_images", "num_images IS NULL, num_images DESC, id"),
    ("size_mb", "size_mb IS NULL, size_mb, id"),
    ("-size_mb", "size_mb IS NULL, size_mb DESC, id"),
];

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The `WHERE` clause of a filter and the text values it binds, in order; `None` when
/// nothing can match. Only fixed SQL fragments, integers we formatted and `$n`
/// placeholders are assembled; every text value is bound.
fn dataset_where(f: &DatasetFilter) -> Option<(String, Vec<String>)> {
    let mut clauses = vec!["retired = 0".to_string()];
    let mut binds: Vec<String> = Vec::new();
    let placeholder = |binds: &mut Vec<String>, value: String| {
        binds.push(value);
        format!("${}", binds.len())
    };
    if let Some(ids) = &f.ids {
        if ids.is_empty() {
            return None;
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        clauses.push(format!("id IN ({})", list.join(",")));
    }
    let mut any_of = |binds: &mut Vec<String>, column: &str, values: &[String]| {
        if values.is_empty() {
            return;
        }
        let ors: Vec<String> = values
            .iter()
            .map(|v| format!("{column} LIKE {} ESCAPE '\\'", placeholder(binds, format!("%\"{}\"%", like_escape(v)))))
            .collect();
        clauses.push(format!("({})", ors.join(" OR ")));
    };
    any_of(&mut binds, "modality", &f.modality);
    any_of(&mut binds, "task_types", &f.task_types);
    any_of(&mut binds, "tags", &f.tags);
    if !f.area.is_empty() {
        let list: Vec<String> = f.area.iter().map(|a| placeholder(&mut binds, a.clone())).collect();
        clauses.push(format!("area IN ({})", list.join(", ")));
    }
    Some((clauses.join(" AND "), binds))
}

/// Datasets matching the filter. `order_sql` must come from [`DATASET_ORDERINGS`].
pub async fn datasets(
    read: &AnyPool,
    f: &DatasetFilter,
    order_sql: &'static str,
    limit: i64,
    offset: i64,
) -> Result<Vec<DatasetRow>, sqlx::Error> {
    let Some((clause, binds)) = dataset_where(f) else { return Ok(Vec::new()) };
    let limit_p = format!("${}", binds.len() + 1);
    let offset_p = format!("${}", binds.len() + 2);
    let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE {clause} ORDER BY {order_sql} LIMIT {limit_p} OFFSET {offset_p}");
    let mut query = sqlx::query_as::<_, DatasetTuple>(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = query.bind(b);
    }
    let rows = query.bind(limit).bind(offset).fetch_all(read).await?;
    Ok(rows.into_iter().map(dataset_row).collect())
}

/// How many datasets match the filter (the list's `X-Total-Count`).
pub async fn count_datasets(read: &AnyPool, f: &DatasetFilter) -> Result<i64, sqlx::Error> {
    let Some((clause, binds)) = dataset_where(f) else { return Ok(0) };
    let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM datasets WHERE {clause}")));
    for b in binds {
        query = query.bind(b);
    }
    query.fetch_one(read).await
}

/// Every tag of the catalog's datasets with how many datasets carry it, by name.
pub async fn dataset_tags(read: &AnyPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let lists: Vec<String> = sqlx::query_scalar("SELECT tags FROM datasets WHERE retired = 0").fetch_all(read).await?;
    let mut counts = std::collections::BTreeMap::<String, i64>::new();
    for list in lists {
        for tag in serde_json::from_str::<Vec<String>>(&list).unwrap_or_default() {
            *counts.entry(tag).or_default() += 1;
        }
    }
    Ok(counts.into_iter().collect())
}
