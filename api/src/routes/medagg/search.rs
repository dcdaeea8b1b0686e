//! `POST /api/v1/search/datasets/`: ranked search with structured filters.

use axum::Json;
use axum::extract::{Query, State};
use medledger_projections::catalog_index::{SearchHits, SearchRequest, Semantics};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{RawFilters, Res, check_query_text};
use crate::error::{ApiError, Detail};
use crate::extract::{Auth, JsonBody};
use crate::openapi::{Api, Op};
use crate::state::AppState;

pub fn routes(api: Api) -> Api {
    api.post(
        "/api/v1/search/datasets",
        search,
        Op::user(
            "000 catalog",
            "Ranked search: query_text (English or Russian) + filters → [{dataset, relevance_score}]; \
             with \"facets\": true (or ?facets=true) → {count, results, facets}",
        ),
    )
}

/// One value or a list: the seed sends `"area": "chest"` and `"modality": ["CT"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Filters {
    modality: Option<OneOrMany>,
    area: Option<OneOrMany>,
    #[serde(alias = "task_types")]
    task_type: Option<OneOrMany>,
    tags: Option<OneOrMany>,
}

#[derive(Deserialize)]
struct SearchBody {
    #[serde(default)]
    query_text: String,
    #[serde(default)]
    filters: Option<Filters>,
    limit: Option<i64>,
    offset: Option<i64>,
    #[serde(default)]
    facets: bool,
}

#[derive(Deserialize)]
struct SearchParams {
    facets: Option<String>,
}

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;
const MAX_OFFSET: i64 = 10_000;

fn bounded(value: Option<i64>, field: &str, default: i64, max: i64) -> Res<usize> {
    let v = value.unwrap_or(default);
    if !(0..=max).contains(&v) {
        return Err(ApiError::field(field, format!("must be from 0 to {max}")));
    }
    Ok(v as usize)
}

async fn search(
    State(state): State<AppState>,
    _auth: Auth<Detail>,
    Query(params): Query<SearchParams>,
    JsonBody(body, ..): JsonBody<SearchBody, Detail>,
) -> Res<Json<Value>> {
    check_query_text("query_text", &body.query_text)?;
    let f = body.filters.unwrap_or_default();
    let take = |v: Option<OneOrMany>| v.map(OneOrMany::into_vec).unwrap_or_default();
    let filters =
        RawFilters { modality: take(f.modality), area: take(f.area), task_types: take(f.task_type), tags: take(f.tags) }.parse()?;
    let no_filters = filters.modality.is_empty() && filters.area.is_empty() && filters.task_types.is_empty() && filters.tags.is_empty();
    if body.query_text.trim().is_empty() && no_filters {
        return Err(ApiError::field("query_text", "give a query_text, filters, or both"));
    }
    let with_facets = body.facets || matches!(params.facets.as_deref(), Some("true" | "1"));
    let request = SearchRequest {
        text: body.query_text,
        filters,
        semantics: Semantics::Ranked,
        limit: bounded(body.limit, "limit", DEFAULT_LIMIT, MAX_LIMIT)?,
        offset: bounded(body.offset, "offset", 0, MAX_OFFSET)?,
        facets: with_facets,
    };
    let index = state.catalog_index.clone();
    let SearchHits { hits, facets } =
        tokio::task::spawn_blocking(move || index.search(&request)).await.map_err(|_| ApiError::internal())??;
    let results: Vec<Value> = hits.iter().map(|hit| json!({ "dataset": hit.dataset, "relevance_score": hit.relevance })).collect();
    if let Some(faceted) = facets {
        return Ok(Json(json!({ "count": faceted.total, "results": results, "facets": faceted.counts })));
    }
    Ok(Json(Value::Array(results)))
}
