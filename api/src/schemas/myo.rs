//! Contract 002 (MyoMetrics, `identity/accounts.rs`): users, tokens, pages, health.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

/// A user as 002 shows them. Admins (user management) also see `lastLogin` and
/// `isActive`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// One of 002's roles (`admin`, `doctor`, `technician`): the nearest to the roles held.
    pub role: String,
    /// Every role the user holds, across the contracts.
    pub roles: Vec<String>,
    pub clinic_name: String,
    pub date_joined: String,
    #[serde(flatten)]
    pub admin_view: Option<AdminView>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminView {
    pub last_login: Option<String>,
    pub is_active: bool,
}

/// Login and registration: SimpleJWT's pair and the user.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionTokens {
    pub access: String,
    pub refresh: String,
    pub user: User,
}

/// Refresh: the new pair (the refresh token rotates).
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
}

/// A confirmation sentence (logout, password change and reset).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Message {
    pub detail: String,
}

/// DRF's page-number pagination; `next` and `previous` are absolute URLs.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "PageOf{T}")]
pub struct Page<T> {
    pub count: i64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<T>,
}

/// `GET /api/health/` (200, or 503 when the database is down): each service `up`,
/// `down`, or `not_used` for services of the seed this server does not have.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    #[schemars(with = "HealthStatus")]
    pub status: &'static str,
    pub services: BTreeMap<String, String>,
    pub last_check: String,
    /// Only when a read model is stuck on an event it cannot decode (then
    /// `services.projections` is `down`): which, where, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stuck: Vec<medledger_projections::Stuck>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // describes the words `status` takes
enum HealthStatus {
    Healthy,
    Unhealthy,
}

/// `?page=`: a page number from 1, or `last`, as DRF reads it.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes what `myo::paging` reads from a string
pub enum PageParam {
    Number(#[schemars(range(min = 1))] u32),
    Last(LastPage),
}

#[derive(JsonSchema)]
#[allow(dead_code)]
pub enum LastPage {
    #[serde(rename = "last")]
    Last,
}

/// An audit entry's `resource_id`: a string or a number.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes what `myo::create_audit_entry` accepts
pub enum ResourceId {
    Text(String),
    Number(i64),
}
