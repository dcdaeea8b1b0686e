//! Read-side queries the API serves straight from the read models.

use medledger_domain::catalog::DatasetFields;
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub username: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub clinic_name: String,
    pub roles: Vec<String>,
    pub primary_role: String,
    pub is_active: bool,
    pub date_joined: String,
    pub last_login: Option<String>,
}

type UserTuple = (i64, String, Option<String>, String, String, String, String, String, i64, String, Option<String>);

const USER_COLUMNS: &str =
    "id, email, username, first_name, last_name, clinic_name, roles, primary_role, is_active, date_joined, last_login";

fn user_row(t: UserTuple) -> UserRow {
    let (id, email, username, first_name, last_name, clinic_name, roles, primary_role, is_active, date_joined, last_login) = t;
    UserRow {
        id,
        email,
        username,
        first_name,
        last_name,
        clinic_name,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        primary_role,
        is_active: is_active != 0,
        date_joined,
        last_login,
    }
}

pub async fn user(read: &AnyPool, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
    let row: Option<UserTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
        .bind(id)
        .fetch_optional(read)
        .await?;
    Ok(row.map(user_row))
}

#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    pub search: Option<String>,
    pub role: Option<String>,
}

/// Users matching the filter, newest id last, with the total count.
pub async fn users(read: &AnyPool, f: &UserFilter, limit: i64, offset: i64) -> Result<(i64, Vec<UserRow>), sqlx::Error> {
    // Every value is bound; only the fixed clause text is assembled.
    let clause = "WHERE ($1 = '' OR LOWER(email) LIKE $2 ESCAPE '\\' OR LOWER(first_name) LIKE $2 ESCAPE '\\' \
                  OR LOWER(last_name) LIKE $2 ESCAPE '\\') \
                  AND ($3 = '' OR roles LIKE $4)";
    let search = f.search.clone().unwrap_or_default().to_lowercase();
    let pattern = format!("%{}%", search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let role = f.role.clone().unwrap_or_default();
    let role_pattern = format!("%\"{role}\"%");
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM users {clause}")))
        .bind(&search)
        .bind(&pattern)
        .bind(&role)
        .bind(&role_pattern)
        .fetch_one(read)
        .await?;
    let rows: Vec<UserTuple> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users {clause} ORDER BY id LIMIT $5 OFFSET $6")))
            .bind(&search)
            .bind(&pattern)
            .bind(&role)
            .bind(&role_pattern)
            .bind(limit)
            .bind(offset)
            .fetch_all(read)
            .await?;
    Ok((count, rows.into_iter().map(user_row).collect()))
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
#[schemars(rename = "AuditEntry")]
pub struct AuditRow {
    pub id: i64,
    pub user_id: Option<i64>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub timestamp: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub user_id: Option<i64>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    /// Inclusive, `YYYY-MM-DD`.
    pub start_date: Option<String>,
    /// Inclusive, `YYYY-MM-DD`.
    pub end_date: Option<String>,
}

type AuditTuple = (i64, Option<i64>, String, String, String, String, Option<String>, Option<String>, String);

pub async fn audit_log(read: &AnyPool, f: &AuditFilter, limit: i64, offset: i64) -> Result<(i64, Vec<AuditRow>), sqlx::Error> {
    let clause = "WHERE ($1 = 0 OR user_id = $2) AND ($3 = '' OR action = $3) AND ($4 = '' OR resource_type = $4) \
                  AND ($5 = '' OR timestamp >= $5) AND ($6 = '' OR timestamp < $6)";
    let start = f.start_date.clone().unwrap_or_default();
    // end_date is inclusive: compare against the start of the next day.
    let end = f
        .end_date
        .as_deref()
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.succ_opt())
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let has_user = f.user_id.is_some() as i64;
    let user = f.user_id.unwrap_or(0);
    let action = f.action.clone().unwrap_or_default();
    let resource_type = f.resource_type.clone().unwrap_or_default();
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM audit_log {clause}")))
        .bind(has_user)
        .bind(user)
        .bind(&action)
        .bind(&resource_type)
        .bind(&start)
        .bind(&end)
        .fetch_one(read)
        .await?;
    let rows: Vec<AuditTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, user_id, action, resource_type, resource_id, timestamp, ip_address, user_agent, details \
         FROM audit_log {clause} ORDER BY id DESC LIMIT $7 OFFSET $8"
    )))
    .bind(has_user)
    .bind(user)
    .bind(&action)
    .bind(&resource_type)
    .bind(&start)
    .bind(&end)
    .bind(limit)
    .bind(offset)
    .fetch_all(read)
    .await?;
    Ok((count, rows.into_iter().map(audit_row).collect()))
}

fn audit_row(t: AuditTuple) -> AuditRow {
    let (id, user_id, action, resource_type, resource_id, timestamp, ip_address, user_agent, details) = t;
    AuditRow {
        id,
        user_id,
        action,
        resource_type,
        resource_id,
        timestamp,
        ip_address,
        user_agent,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
    }
}

pub async fn audit_entry(read: &AnyPool, id: i64) -> Result<Option<AuditRow>, sqlx::Error> {
    let row: Option<AuditTuple> = sqlx::query_as(
        "SELECT id, user_id, action, resource_type, resource_id, timestamp, ip_address, user_agent, details \
         FROM audit_log WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(read)
    .await?;
    Ok(row.map(audit_row))
}

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
