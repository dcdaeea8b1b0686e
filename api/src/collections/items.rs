//! Dataset items: admins upload files (multipart), anyone signed in lists them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::multipart::Field;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt as _;
use medledger_application::collections::{Collections, StagedItem};
use medledger_projections::collections::queries::{self, ItemRow};
use serde_json::{Value, json};

use crate::contracts::medagg::{CatalogReader, ListRequest, MAX_LIST_LIMIT, Page, Res, paged};
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
    let collections = state.get::<Collections>()?;
    let mut staged: Option<StagedItem> = None;
    let read = read_form(&mut form, collections, dataset_id, &mut staged).await;
    let (metadata, staged) = match (read, staged) {
        (Ok(metadata), Some(staged)) => (metadata, staged),
        (Ok(_), None) => return Err(ApiError::field("file", "a file part is required")),
        (Err(e), staged) => {
            if let Some(staged) = staged {
                collections.discard_item(staged).await;
            }
            return Err(e);
        }
    };
    if let Err(e) = admin.still(&state) {
        collections.discard_item(staged).await;
        return Err(e);
    }
    let (item, position) = collections.record_item(staged, metadata, &ctx.with_actor(admin.0.user_id)).await?;
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

type ItemMetadata = (Vec<String>, String, BTreeMap<String, String>);

/// Reads the form's parts in any order. The file streams into the blob store as it
/// arrives (`staged`), never held whole; the other parts are small text.
async fn read_form(form: &mut Multipart, collections: &Collections, dataset_id: i64, staged: &mut Option<StagedItem>) -> Res<ItemMetadata> {
    let (mut labels, mut caption, mut identifiers) = (Vec::new(), String::new(), BTreeMap::new());
    while let Some(field) = form.next_field().await.map_err(|e| bad(format!("malformed multipart body: {e}")))? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                if staged.is_some() {
                    return Err(bad("one file per upload"));
                }
                *staged = Some(stage(collections, dataset_id, field).await?);
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
    Ok((labels, caption, identifiers))
}

/// Streams one file part into the store: the part is pumped chunk by chunk into a
/// bounded channel that the store's write reads, both in this task.
async fn stage(collections: &Collections, dataset_id: i64, mut field: Field<'_>) -> Res<StagedItem> {
    let filename = field.file_name().map(str::to_string).ok_or_else(|| bad("the file part needs a filename"))?;
    let content_type = field.content_type().unwrap_or("application/octet-stream").to_string();
    let (chunks, inbox) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let body = futures::stream::unfold(inbox, |mut inbox| async move { inbox.recv().await.map(|chunk| (chunk, inbox)) }).boxed();
    let pump = async move {
        let mut empty = true;
        loop {
            let next = match field.chunk().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => break,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            empty &= next.as_ref().is_ok_and(bytes::Bytes::is_empty);
            let failed = next.is_err();
            // A closed channel: the store's write stopped, and says why.
            if chunks.send(next).await.is_err() || failed {
                break;
            }
        }
        empty
    };
    let (empty, staged) = tokio::join!(pump, collections.stage_item(dataset_id, &filename, &content_type, body, MAX_ITEM_BYTES as u64));
    let staged = staged?;
    if empty {
        collections.discard_item(staged).await;
        return Err(bad("the file is empty"));
    }
    Ok(staged)
}

async fn list(
    State(state): State<AppState>,
    _reader: CatalogReader,
    Path(id): Path<String>,
    request: ListRequest,
) -> Res<(HeaderMap, Json<Value>)> {
    let dataset_id: i64 = id.parse().map_err(|_| ApiError::not_found("Not found."))?;
    medledger_projections::catalog::dataset(&state.dbs.read, dataset_id).await?.ok_or_else(|| ApiError::not_found("Not found."))?;
    let page = request.paging(MAX_LIST_LIMIT, MAX_LIST_LIMIT, (None, None))?;
    let (items, total) = tokio::try_join!(
        queries::dataset_items(&state.dbs.read, dataset_id, page.limit, page.offset),
        queries::count_dataset_items(&state.dbs.read, dataset_id),
    )?;
    let headers = request.headers(&format!("/api/v1/datasets/{dataset_id}/items/"), page, total);
    Ok((headers, Json(json!(items))))
}
