//! The catalog list, detail and admin commands.
//!
//! The list's free-text `q` is a filter: every concept of the query must match (through
//! the catalog index: bilingual, stemmed, typo-tolerant). Without an explicit `ordering`
//! the matches come best first; with one, in that order.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use medledger_domain::catalog::DatasetFields;
use medledger_projections::catalog_index::{SearchRequest, Semantics};
use medledger_projections::queries::{self, DATASET_ORDERINGS, DatasetFilter, DatasetRow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{RawFilters, Res, check_query_text, comma_list};
use crate::error::{ApiError, Detail};
use crate::extract::{Admin, Auth, Ctx, JsonBody};
use crate::openapi::{Api, Op};
use crate::state::AppState;

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

const MAX_LIMIT: i64 = 1_000;
/// Most matches a free-text list query considers (then ordered and paged).
const MAX_TEXT_MATCHES: usize = 10_000;

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
    check_query_text("q", &text)?;
    let one = |v: Option<&str>| v.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).into_iter().collect();
    let filters = RawFilters {
        modality: comma_list(q.modality.as_deref()),
        area: one(q.area.as_deref()),
        task_types: comma_list(q.task_type.as_deref()),
        tags: comma_list(q.tags.as_deref()),
    }
    .parse()?;
    let ordering = q.ordering.as_deref().filter(|o| !o.is_empty());
    let order_sql = match ordering {
        None => None,
        Some(o) => match DATASET_ORDERINGS.iter().find(|(name, _)| *name == o) {
            Some((_, sql)) => Some(*sql),
            None => {
                let allowed: Vec<&str> = DATASET_ORDERINGS.iter().map(|(n, _)| *n).collect();
                return Err(ApiError::field("ordering", format!("unknown ordering '{o}'; allowed: {}", allowed.join(", "))));
            }
        },
    };
    let limit = number(q.limit.as_deref(), "limit", 100, MAX_LIMIT)?;
    let offset = number(q.offset.as_deref(), "offset", 0, i64::from(i32::MAX))?;
    let mut filter = DatasetFilter {
        ids: None,
        modality: filters.modality.clone(),
        area: filters.area.first().cloned(),
        task_types: filters.task_types.clone(),
        tags: filters.tags.clone(),
    };
    if text.trim().is_empty() {
        let rows = queries::datasets(&state.dbs.read, &filter, order_sql.unwrap_or("id"), limit, offset).await?;
        return Ok(Json(rows.iter().map(dataset_json).collect()));
    }
    // Free text: the index finds (and ranks) the matches, filters included.
    let ranked_page = order_sql.is_none();
    let request = SearchRequest {
        text,
        filters,
        semantics: Semantics::AllConcepts,
        limit: if ranked_page { limit as usize } else { MAX_TEXT_MATCHES },
        offset: if ranked_page { offset as usize } else { 0 },
        facets: false,
    };
    let index = state.catalog_index.clone();
    let found = tokio::task::spawn_blocking(move || index.search(&request)).await.map_err(|_| ApiError::internal())??;
    let rows = match order_sql {
        None => found.hits.into_iter().map(|h| h.dataset).collect(),
        Some(order) => {
            filter.ids = Some(found.hits.iter().map(|h| h.id).collect());
            queries::datasets(&state.dbs.read, &filter, order, limit, offset).await?
        }
    };
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
