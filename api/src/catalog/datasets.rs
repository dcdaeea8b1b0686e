//! The catalog list, detail and admin commands.
//!
//! The list's free-text `q` is a filter: every concept of the query must match (through
//! the catalog index: bilingual, stemmed, typo-tolerant). Without an explicit `ordering`
//! the matches come best first; with one, in that order.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use medledger_application::catalog::Catalog;
use medledger_domain::catalog::{AREAS, DatasetFields, MODALITIES, TASK_TYPES, code_id, tag_id};
use medledger_projections::catalog::index::CatalogIndex;
use medledger_projections::catalog::index::{SearchRequest, Semantics};
use medledger_projections::catalog::queries::{self, DATASET_ORDERINGS, DatasetFilter, DatasetRow};
use serde_json::{Value, json};

use crate::contracts::medagg::{CatalogReader, ListRequest, MAX_LIST_LIMIT, Res, TagRef, check_query_text, paged, resolve_tags};
use crate::error::{ApiError, Detail};
use crate::extract::{Admin, Ctx, JsonBody};
use crate::openapi::{Api, Op};
use crate::schemas::medagg as wire;
use crate::state::AppState;

pub fn routes(api: Api) -> Api {
    api.get(
        "/api/v1/datasets",
        list,
        paged(
            Op::user("000 catalog", "List datasets (q, modality, area, task_type, tags, ordering, limit/offset)")
                .query::<ListQuery>()
                .returns::<Vec<DatasetRow>>(),
        ),
    )
    .get("/api/v1/datasets/{id}", detail, Op::user("000 catalog", "A dataset").returns::<DatasetRow>())
    .get(
        "/api/v1/vocabulary",
        vocabulary,
        Op::user("000 catalog", "The modality, area, task type and tag values, each with the id a filter or body may use instead")
            .returns::<wire::Vocabulary>(),
    )
    .post(
        "/api/v1/admin/datasets",
        create,
        Op::admin("000 catalog admin", "Create a dataset (the slug is derived from the title when left out)")
            .status(201)
            .json::<DatasetFields>()
            .returns::<DatasetRow>()
            .error(409, "The slug is taken")
            .link("GetDataset", "get_api_v1_datasets_id", "id", "$response.body#/id")
            .link("UpdateDataset", "put_api_v1_admin_datasets_id", "id", "$response.body#/id")
            .link("RetireDataset", "delete_api_v1_admin_datasets_id", "id", "$response.body#/id")
            .link("ListItems", "get_api_v1_datasets_id_items", "id", "$response.body#/id")
            .link("AddItem", "post_api_v1_admin_datasets_id_items", "id", "$response.body#/id"),
    )
    .put(
        "/api/v1/admin/datasets/{id}",
        update,
        Op::admin("000 catalog admin", "Replace a dataset's fields")
            .json::<DatasetFields>()
            .returns::<DatasetRow>()
            .error(409, "The slug is taken"),
    )
    .delete("/api/v1/admin/datasets/{id}", retire, Op::admin("000 catalog admin", "Retire a dataset (history kept)").status(204))
}

pub fn dataset_json(d: &DatasetRow) -> Value {
    json!(d)
}

/// The list's query parameters, for the API document: the handler reads the query
/// string itself ([`ListRequest`]), so that a repeated key is a list.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct ListQuery {
    /// Free text: every concept must match (English or Russian, typo-tolerant).
    q: Option<String>,
    /// Modality codes or their ids (`GET /api/v1/vocabulary/`), repeated or comma-separated: any of them.
    modality: Option<Vec<String>>,
    /// Area codes or ids: any of them.
    area: Option<Vec<String>>,
    /// Task type codes or ids: any of them.
    task_type: Option<Vec<String>>,
    /// Tag names or ids: any of them.
    tags: Option<Vec<String>>,
    /// `id`, `title`, `year`, `num_images`, `size_mb`, each optionally with `-` (descending).
    ordering: Option<String>,
    /// 1 to 1000; default 1000 (the whole catalog up to that size).
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<i64>,
    #[schemars(range(min = 0, max = 2147483647))]
    offset: Option<i64>,
}

/// Most matches a free-text list query can order by a column (the index finds them, the
/// read model orders them); more is a 400 rather than a silently shortened list.
const MAX_TEXT_MATCHES: usize = 10_000;

async fn list(State(state): State<AppState>, _reader: CatalogReader, request: ListRequest) -> Res<(HeaderMap, Json<Vec<Value>>)> {
    let text = request.last("q").unwrap_or_default().to_string();
    check_query_text("q", &text)?;
    let filters = request.filters().parse(&state).await?;
    let ordering = request.last("ordering");
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
    let page = request.paging(MAX_LIST_LIMIT, MAX_LIST_LIMIT, (None, None))?;
    let mut filter = DatasetFilter {
        ids: None,
        modality: filters.modality.clone(),
        area: filters.area.clone(),
        task_types: filters.task_types.clone(),
        tags: filters.tags.clone(),
    };
    let answer = |rows: Vec<DatasetRow>, total: i64| {
        (request.headers("/api/v1/datasets/", page, total), Json(rows.iter().map(dataset_json).collect()))
    };
    if text.trim().is_empty() {
        let order = order_sql.unwrap_or("id");
        let (rows, total) = tokio::try_join!(
            queries::datasets(&state.dbs.read, &filter, order, page.limit, page.offset),
            queries::count_datasets(&state.dbs.read, &filter),
        )?;
        return Ok(answer(rows, total));
    }
    // Free text: the index finds (and ranks) the matches, filters included.
    let ranked_page = order_sql.is_none();
    let search = SearchRequest {
        text,
        filters,
        semantics: Semantics::AllConcepts,
        limit: if ranked_page { page.limit as usize } else { MAX_TEXT_MATCHES },
        offset: if ranked_page { page.offset as usize } else { 0 },
        facets: false,
    };
    let index = state.get::<Arc<CatalogIndex>>()?.clone();
    let found = tokio::task::spawn_blocking(move || index.search(&search)).await.map_err(|_| ApiError::internal())??;
    let total = i64::try_from(found.total).unwrap_or(i64::MAX);
    let rows = match order_sql {
        None => found.hits.into_iter().map(|h| h.dataset).collect(),
        Some(_) if found.total > MAX_TEXT_MATCHES => {
            return Err(ApiError::field(
                "ordering",
                format!(
                    "the query matches {} datasets; at most {MAX_TEXT_MATCHES} can be ordered by a field. \
                     Narrow the query, or leave out ordering to page through the matches best first.",
                    found.total
                ),
            ));
        }
        Some(order) => {
            filter.ids = Some(found.hits.iter().map(|h| h.id).collect());
            queries::datasets(&state.dbs.read, &filter, order, page.limit, page.offset).await?
        }
    };
    Ok(answer(rows, total))
}

/// The values `modality`, `area`, `task_type` and `tags` take, each with the id a client
/// may send instead (the seed's "code / ID").
async fn vocabulary(State(state): State<AppState>, _reader: CatalogReader) -> Res<Json<Value>> {
    let codes =
        |allowed: &[&str]| -> Vec<Value> { allowed.iter().map(|code| json!({ "id": code_id(allowed, code), "code": code })).collect() };
    let tags: Vec<Value> = queries::dataset_tags(&state.dbs.read)
        .await?
        .into_iter()
        .map(|(name, datasets)| json!({ "id": tag_id(&name), "name": name, "datasets": datasets }))
        .collect();
    Ok(Json(json!({
        "modality": codes(&MODALITIES),
        "area": codes(&AREAS),
        "task_type": codes(&TASK_TYPES),
        "tags": tags,
    })))
}

/// A create or update body as the domain reads it, its tags given by name (a JSON
/// string) or id (a JSON number) turned into names; codes and their ids the domain
/// reads itself.
async fn dataset_fields(state: &AppState, mut body: Value) -> Res<DatasetFields> {
    if let Some(tags) = body.as_object_mut().and_then(|o| o.get_mut("tags")) {
        let refs = match &*tags {
            Value::Array(values) => values.iter().map(tag_ref).collect::<Res<Vec<_>>>()?,
            Value::Null => Vec::new(),
            one => vec![tag_ref(one)?],
        };
        *tags = json!(resolve_tags(state, refs).await?);
    }
    serde_json::from_value(body).map_err(|e| {
        let message = e.to_string();
        match message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')) {
            Some((field, _)) => ApiError::field(field, "This field is required."),
            None => ApiError::bad_request(format!("Invalid request body - {message}")),
        }
    })
}

fn tag_ref(value: &Value) -> Res<TagRef> {
    match value {
        Value::String(s) => Ok(TagRef::Name(s.clone())),
        Value::Number(n) => n.as_i64().map(TagRef::Id).ok_or_else(|| ApiError::field("tags", format!("no tag has the id {n}"))),
        _ => Err(ApiError::field("tags", "a list of tag names (strings) or ids (numbers)")),
    }
}

/// What shows an admin's change to a dataset: the dataset's own endpoints and lists,
/// and the search, which must find it (or not) once the answer arrives.
const CATALOG_READS: &[&str] = &[medledger_projections::catalog::DATASETS, medledger_projections::catalog::CATALOG_INDEX];

fn parse_id(raw: &str) -> Res<i64> {
    raw.parse().map_err(|_| ApiError::not_found("Not found."))
}

async fn found(state: &AppState, id: i64) -> Res<DatasetRow> {
    queries::dataset(&state.dbs.read, id).await?.ok_or_else(|| ApiError::not_found("Not found."))
}

async fn detail(State(state): State<AppState>, _reader: CatalogReader, Path(id): Path<String>) -> Res<Json<Value>> {
    Ok(Json(dataset_json(&found(&state, parse_id(&id)?).await?)))
}

async fn create(
    State(state): State<AppState>,
    admin: Admin<Detail>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<Value, Detail>,
) -> Res<(StatusCode, Json<Value>)> {
    admin.still(&state)?;
    let fields = dataset_fields(&state, body).await?;
    let (id, position) = state.get::<Catalog>()?.create(fields, &ctx.with_actor(admin.0.user_id)).await?;
    state.caught_up_on(CATALOG_READS, position).await;
    Ok((StatusCode::CREATED, Json(dataset_json(&found(&state, id).await?))))
}

async fn update(
    State(state): State<AppState>,
    admin: Admin<Detail>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body, ..): JsonBody<Value, Detail>,
) -> Res<Json<Value>> {
    admin.still(&state)?;
    let fields = dataset_fields(&state, body).await?;
    let id = parse_id(&id)?;
    found(&state, id).await?;
    if let Some(p) = state.get::<Catalog>()?.update(id, fields, &ctx.with_actor(admin.0.user_id)).await? {
        state.caught_up_on(CATALOG_READS, p).await;
    }
    Ok(Json(dataset_json(&found(&state, id).await?)))
}

async fn retire(State(state): State<AppState>, admin: Admin<Detail>, Ctx(ctx): Ctx, Path(id): Path<String>) -> Res<StatusCode> {
    let id = parse_id(&id)?;
    found(&state, id).await?;
    if let Some(p) = state.get::<Catalog>()?.retire(id, &ctx.with_actor(admin.0.user_id)).await? {
        state.caught_up_on(CATALOG_READS, p).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
