//! Contract 000 (MedAgg): the dataset catalog. Mounted at `/api/v1`.
//!
//! Free-text `q` is expanded through the bilingual vocabulary (Russian or English words →
//! the English terms the catalog uses) and matched in titles, descriptions, tags and
//! codes. Ranked search over a tantivy index is issue 3's next step.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use medledger_domain::catalog::{DatasetFields, parse_area, parse_modality, parse_task_type};
use medledger_projections::queries::{self, DATASET_ORDERINGS, DatasetFilter, DatasetRow};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Detail};
use crate::extract::{Admin, Auth, Ctx, JsonBody};
use crate::openapi::{Api, Op};
use crate::state::AppState;

type Res<T> = ApiResult<T, Detail>;

pub fn routes(api: Api) -> Api {
    api.get("/api/v1/datasets", list, Op::user("000 catalog", "List datasets (q, modality, area, task_type, tags, ordering, limit/offset)"))
        .get("/api/v1/datasets/{id}", detail, Op::user("000 catalog", "A dataset"))
        .post("/api/v1/admin/datasets", create, Op::admin("000 catalog admin", "Create a dataset").status(201))
        .put("/api/v1/admin/datasets/{id}", update, Op::admin("000 catalog admin", "Replace a dataset's fields"))
        .delete("/api/v1/admin/datasets/{id}", retire, Op::admin("000 catalog admin", "Retire a dataset (history kept)").status(204))
}

pub fn dataset_json(d: &DatasetRow) -> Value {
    json!(d)
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    modality: Option<String>,
    area: Option<String>,
    task_type: Option<String>,
    tags: Option<String>,
    ordering: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

const MAX_QUERY_CHARS: usize = 1_000;
const MAX_LIMIT: i64 = 1_000;

fn comma_list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn number(raw: Option<&str>, field: &str, default: i64, max: i64) -> Res<i64> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=max).contains(n))
            .ok_or_else(|| ApiError::field(field, format!("must be a whole number from 0 to {max}"))),
    }
}

async fn list(State(state): State<AppState>, _auth: Auth<Detail>, Query(q): Query<ListQuery>) -> Res<Json<Vec<Value>>> {
    let text = q.q.unwrap_or_default();
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::field("q", format!("at most {MAX_QUERY_CHARS} characters")));
    }
    let parse_all = |raw: Option<&str>, parse: fn(&str) -> Result<String, medledger_domain::DomainError>| {
        comma_list(raw).iter().map(|v| parse(v)).collect::<Result<Vec<_>, _>>()
    };
    let filter = DatasetFilter {
        words: medledger_domain::vocabulary::expand(&text).into_iter().take(20).collect(),
        modality: parse_all(q.modality.as_deref(), parse_modality)?,
        area: q.area.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(parse_area).transpose()?,
        task_types: parse_all(q.task_type.as_deref(), parse_task_type)?,
        tags: comma_list(q.tags.as_deref()).into_iter().map(|t| t.to_lowercase()).collect(),
    };
    let ordering = q.ordering.as_deref().unwrap_or("id");
    let Some((_, order_sql)) = DATASET_ORDERINGS.iter().find(|(name, _)| *name == ordering) else {
        let allowed: Vec<&str> = DATASET_ORDERINGS.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::field("ordering", format!("unknown ordering '{ordering}'; allowed: {}", allowed.join(", "))));
    };
    let limit = number(q.limit.as_deref(), "limit", 100, MAX_LIMIT)?;
    let offset = number(q.offset.as_deref(), "offset", 0, i64::from(i32::MAX))?;
    let rows = queries::datasets(&state.dbs.read, &filter, order_sql, limit, offset).await?;
    Ok(Json(rows.iter().map(dataset_json).collect()))
}

fn parse_id(raw: &str) -> Res<i64> {
    raw.parse().map_err(|_| ApiError::not_found("Not found."))
}

async fn found(state: &AppState, id: i64) -> Res<DatasetRow> {
    queries::dataset(&state.dbs.read, id).await?.ok_or_else(|| ApiError::not_found("Not found."))
}

async fn detail(State(state): State<AppState>, _auth: Auth<Detail>, Path(id): Path<String>) -> Res<Json<Value>> {
    Ok(Json(dataset_json(&found(&state, parse_id(&id)?).await?)))
}

async fn create(
    State(state): State<AppState>,
    admin: Admin<Detail>,
    Ctx(ctx): Ctx,
    JsonBody(fields, ..): JsonBody<DatasetFields, Detail>,
) -> Res<(StatusCode, Json<Value>)> {
    let (id, position) = state.catalog.create(fields, &ctx.with_actor(admin.0.user_id)).await?;
    state.caught_up(position).await;
    Ok((StatusCode::CREATED, Json(dataset_json(&found(&state, id).await?))))
}

async fn update(
    State(state): State<AppState>,
    admin: Admin<Detail>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(fields, ..): JsonBody<DatasetFields, Detail>,
) -> Res<Json<Value>> {
    let id = parse_id(&id)?;
    found(&state, id).await?;
    if let Some(p) = state.catalog.update(id, fields, &ctx.with_actor(admin.0.user_id)).await? {
        state.caught_up(p).await;
    }
    Ok(Json(dataset_json(&found(&state, id).await?)))
}

async fn retire(State(state): State<AppState>, admin: Admin<Detail>, Ctx(ctx): Ctx, Path(id): Path<String>) -> Res<StatusCode> {
    let id = parse_id(&id)?;
    found(&state, id).await?;
    if let Some(p) = state.catalog.retire(id, &ctx.with_actor(admin.0.user_id)).await? {
        state.caught_up(p).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
