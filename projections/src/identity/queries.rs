//! Read-side queries of users and the audit log.

use serde::Serialize;
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
