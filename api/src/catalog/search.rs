//! `POST /api/v1/search/datasets/`: ranked search with structured filters.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use medledger_projections::catalog::index::CatalogIndex;
use medledger_projections::catalog::index::{SearchHits, SearchRequest, Semantics};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::contracts::medagg::{CatalogReader, ListRequest, RawFilters, Res, TagRef, check_query_text};
use crate::error::{ApiError, Detail};
use crate::extract::JsonBody;
use crate::openapi::{Api, Op};
use crate::schemas::medagg as wire;
use crate::state::AppState;

pub fn routes(api: Api) -> Api {
    api.post(
        "/api/v1/search/datasets",
        search,
        Op::user(
            "000 catalog",
            "Ranked search: query_text (English or Russian) + filters → [{dataset, relevance_score}]; \
             with \"facets\": true (or ?facets=true) → {count, results, facets}",
        )
        .query::<SearchParams>()
        .json::<SearchBody>()
        .returns::<wire::SearchAnswer>()
        .returns_header::<i64>("X-Total-Count", "How many datasets match in all")
        .returns_header::<String>("Link", "RFC 8288: the next and previous pages"),
    )
}

/// A code or name (a JSON string), or an id (a JSON number): the seed allows both.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum CodeOrId {
    Code(String),
    Id(i64),
}

/// One value or a list: the seed sends `"area": "chest"` and `"modality": ["CT"]`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum OneOrMany {
    One(CodeOrId),
    Many(Vec<CodeOrId>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<CodeOrId> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Codes, ids written as their numbers (the domain reads both).
fn codes(v: Option<OneOrMany>) -> Vec<String> {
    let code = |c: CodeOrId| match c {
        CodeOrId::Code(s) => s,
        CodeOrId::Id(id) => id.to_string(),
    };
    v.map(OneOrMany::into_vec).unwrap_or_default().into_iter().map(code).collect()
}

fn tags(v: Option<OneOrMany>) -> Vec<TagRef> {
    let tag = |c: CodeOrId| match c {
        CodeOrId::Code(name) => TagRef::Name(name),
        CodeOrId::Id(id) => TagRef::Id(id),
    };
    v.map(OneOrMany::into_vec).unwrap_or_default().into_iter().map(tag).collect()
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SearchFilters")]
struct Filters {
    modality: Option<OneOrMany>,
    area: Option<OneOrMany>,
    #[serde(alias = "task_types")]
    task_type: Option<OneOrMany>,
    tags: Option<OneOrMany>,
}

#[derive(Deserialize, JsonSchema)]
struct SearchBody {
    #[serde(default)]
    query_text: String,
    #[serde(default)]
    filters: Option<Filters>,
    #[schemars(range(min = 1, max = 100))]
    limit: Option<i64>,
    #[schemars(range(min = 0, max = 2147483647))]
    offset: Option<i64>,
    #[serde(default)]
    facets: bool,
}

/// The search's query parameters, for the API document (read by [`ListRequest`]).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct SearchParams {
    /// `true` (or `1`): answer `{count, results, facets}`.
    facets: Option<String>,
    /// As in the body (1 to 100, default 20); the query string's wins, so a client
    /// following `Link` sends the same body again.
    #[schemars(range(min = 1, max = 100))]
    limit: Option<i64>,
    #[schemars(range(min = 0, max = 2147483647))]
    offset: Option<i64>,
}

/// A ranked search answers a page of its best hits (`X-Total-Count` and `Link` say how
/// many more there are): past the first pages come datasets that match one concept of
/// several, and each page's cost grows with its size.
const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

async fn search(
    State(state): State<AppState>,
    _reader: CatalogReader,
    request: ListRequest,
    JsonBody(body, ..): JsonBody<SearchBody, Detail>,
) -> Res<(HeaderMap, Json<Value>)> {
    check_query_text("query_text", &body.query_text)?;
    let f = body.filters.unwrap_or_default();
    let filters = RawFilters { modality: codes(f.modality), area: codes(f.area), task_types: codes(f.task_type), tags: tags(f.tags) }
        .parse(&state)
        .await?;
    let no_filters = filters.modality.is_empty() && filters.area.is_empty() && filters.task_types.is_empty() && filters.tags.is_empty();
    if body.query_text.trim().is_empty() && no_filters {
        return Err(ApiError::field("query_text", "give a query_text, filters, or both"));
    }
    let page = request.paging(DEFAULT_LIMIT, MAX_LIMIT, (body.limit, body.offset))?;
    let with_facets = body.facets || matches!(request.last("facets"), Some("true" | "1"));
    let search = SearchRequest {
        text: body.query_text,
        filters,
        semantics: Semantics::Ranked,
        limit: page.limit as usize,
        offset: page.offset as usize,
        facets: with_facets,
    };
    let index = state.get::<Arc<CatalogIndex>>()?.clone();
    let SearchHits { hits, total, facets } =
        tokio::task::spawn_blocking(move || index.search(&search)).await.map_err(|_| ApiError::internal())??;
    let headers = request.headers("/api/v1/search/datasets/", page, i64::try_from(total).unwrap_or(i64::MAX));
    let results: Vec<wire::SearchResult> =
        hits.into_iter().map(|hit| wire::SearchResult { dataset: hit.dataset, relevance_score: hit.relevance }).collect();
    let answer = match facets {
        Some(faceted) => wire::SearchAnswer::Faceted(wire::FacetedSearch { count: faceted.total, results, facets: faceted.counts }),
        None => wire::SearchAnswer::Results(results),
    };
    Ok((headers, Json(json!(answer))))
}
