//! Dataset items: admins upload files (multipart), anyone signed in lists them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use medledger_application::blobs::one_chunk;
use medledger_application::collections::Collections;
use medledger_projections::collections::queries::{self, ItemRow};
use serde_json::{Value, json};

use crate::contracts::medagg::{CatalogReader, ListRequest, Res, paged};
use crate::error::{ApiError, Detail};
use crate::extract::{Admin, Ctx};
use crate::openapi::{Api, Op};
use crate::schemas::medagg as wire;
use crate::state::AppState;

/// Largest single uploaded item.
pub const MAX_ITEM_BYTES: usize = 256 * 1024 * 1024;

pub fn routes(api: Api) -> Api {
    api.post(
        "/api/v1/admin/datasets/{id}/items",
        upload,
        Op::admin("000 catalog admin", "Attach a file to a dataset (multipart: file, labels, caption, identifiers)")
            .status(201)
            .body_limit(MAX_ITEM_BYTES + 64 * 1024)
            .multipart::<wire::ItemUpload>()
            .returns::<wire::NewItem>(),
    )
    .get(
        "/api/v1/datasets/{id}/items",
        list,
        paged(Op::user("000 catalog", "A dataset's items").query::<Page>().returns::<Vec<ItemRow>>()),
    )
}

fn bad(message: impl Into<String>) -> ApiError<Detail> {
    ApiError::bad_request(message)
}

async fn upload(
    State(state): State<AppState>,
    admin: Admin<Detail>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    mut form: Multipart,
) -> Res<(StatusCode, Json<Value>)> {
    let dataset_id: i64 = id.parse().map_err(|_| ApiError::not_found("Not found."))?;
    let mut file: Option<(String, String, bytes::Bytes)> = None;
    let mut labels = Vec::new();
    let mut caption = String::new();
    let mut identifiers = BTreeMap::new();
    while let Some(field) = form.next_field().await.map_err(|e| bad(format!("malformed multipart body: {e}")))? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let filename = field.file_name().map(str::to_string).ok_or_else(|| bad("the file part needs a filename"))?;
                let content_type = field.content_type().unwrap_or("application/octet-stream").to_string();
                let bytes = field.bytes().await.map_err(|e| bad(format!("could not read the file: {e}")))?;
                if bytes.is_empty() {
                    return Err(bad("the file is empty"));
                }
                file = Some((filename, content_type, bytes));
            }
            "labels" => {
                let text = field.text().await.map_err(|e| bad(e.to_string()))?;
                labels.extend(text.split(',').map(str::to_string));
            }
            "caption" => caption = field.text().await.map_err(|e| bad(e.to_string()))?,
            "identifiers" => {
                let text = field.text().await.map_err(|e| bad(e.to_string()))?;
                identifiers = serde_json::from_str(&text).map_err(|_| ApiError::field("identifiers", "a JSON object of strings"))?;
            }
            other => return Err(bad(format!("unknown form field '{other}'; expected file, labels, caption, identifiers"))),
        }
    }
    let (filename, content_type, bytes) = file.ok_or_else(|| ApiError::field("file", "a file part is required"))?;
    admin.still(&state)?;
    let (item, position) = state
        .get::<Collections>()?
        .add_item(
            dataset_id,
            &filename,
            &content_type,
            one_chunk(bytes),
            MAX_ITEM_BYTES as u64,
            (labels, caption, identifiers),
            &ctx.with_actor(admin.0.user_id),
        )
        .await?;
    // The item list shows it at once; no other read model holds items.
    state.caught_up_on(&[medledger_projections::collections::DATASET_ITEMS], position).await;
    Ok((
        StatusCode::CREATED,
        Json(json!(wire::NewItem {
            id: item.item_id,
            dataset_id,
            filename: item.filename,
            content_type: item.content_type,
            size_bytes: item.size_bytes,
            sha256: item.sha256,
            labels: item.labels,
            caption: item.caption,
            identifiers: item.identifiers,
        })),
    ))
}

/// The list's paging parameters, for the API document (read by [`ListRequest`]).
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct Page {
    /// 1 to 1000; default 1000.
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<i64>,
    #[schemars(range(min = 0, max = 2147483647))]
    offset: Option<i64>,
}

/// The list's largest page, and its default (`X-Total-Count` and `Link` say the rest).
const MAX_LIMIT: i64 = 1_000;

async fn list(
    State(state): State<AppState>,
    _reader: CatalogReader,
    Path(id): Path<String>,
    request: ListRequest,
) -> Res<(HeaderMap, Json<Value>)> {
    let dataset_id: i64 = id.parse().map_err(|_| ApiError::not_found("Not found."))?;
    medledger_projections::catalog::dataset(&state.dbs.read, dataset_id).await?.ok_or_else(|| ApiError::not_found("Not found."))?;
    let page = request.paging(MAX_LIMIT, MAX_LIMIT, (None, None))?;
    let (items, total) = tokio::try_join!(
        queries::dataset_items(&state.dbs.read, dataset_id, page.limit, page.offset),
        queries::count_dataset_items(&state.dbs.read, dataset_id),
    )?;
    let headers = request.headers(&format!("/api/v1/datasets/{dataset_id}/items/"), page, total);
    Ok((headers, Json(json!(items))))
}
