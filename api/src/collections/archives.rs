//! User collections: request, list, detail, download; the admin's view of every request.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use medledger_application::AppError;
use medledger_application::collections::Collections;
use medledger_domain::collections::collection::CollectionRequest;
use medledger_projections::collections::queries::{self, CollectionRow};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::blob_response;
use crate::contracts::medagg::{ListRequest, MAX_LIST_LIMIT, Page, Res, paged};
use crate::error::{ApiError, Detail};
use crate::extract::{Admin, Auth, Ctx, JsonBody};
use crate::openapi::{Api, Op};
use crate::schemas::medagg as wire;
use crate::state::AppState;

pub fn routes(api: Api) -> Api {
    api.post(
        "/api/v1/collections",
        create,
        Op::user("000 collections", "Request a collection (a ZIP of matching items)")
            .status(201)
            .json::<CreateBody>()
            .returns::<wire::NewCollection>()
            .error(429, "Too many collections pending or ready")
            .link("GetCollection", "get_api_v1_collections_id", "id", "$response.body#/id")
            .link("Download", "get_api_v1_collections_id_download", "id", "$response.body#/id"),
    )
    .get(
        "/api/v1/collections",
        list,
        paged(Op::user("000 collections", "The caller's collections, newest first").query::<Page>().returns::<Vec<wire::Collection>>()),
    )
    .get(
        "/api/v1/collections/{id}",
        detail,
        Op::user("000 collections", "A collection: status, progress, archive size, download link").returns::<wire::Collection>(),
    )
    .get(
        "/api/v1/collections/{id}/download",
        download,
        Op::user("000 collections", "The ZIP (Range requests supported); 409 while pending or failed, 410 once expired")
            .returns_as("application/zip", crate::openapi::binary)
            .answers_as(206, "A byte range of the ZIP", "application/zip", crate::openapi::binary)
            .error(409, "Still being built, or the build failed")
            .error(410, "Expired")
            .answers_as(416, "The range is outside the archive", "application/zip", crate::openapi::binary),
    )
    .get(
        "/api/v1/admin/requests",
        requests,
        paged(
            Op::admin("000 catalog admin", "Every user's collections with owner and status")
                .query::<Page>()
                .returns::<Vec<wire::CollectionRequestView>>(),
        ),
    )
}

#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "CollectionRequest")]
struct CreateBody {
    #[serde(default)]
    query_text: String,
    dataset_ids: Vec<i64>,
    limit_per_dataset: i64,
}

fn not_found() -> ApiError<Detail> {
    ApiError::not_found("Not found.")
}

/// Past its time to live even if the sweeper has not recorded it yet.
fn effectively_expired(c: &CollectionRow) -> bool {
    c.status == "expired" || (c.status == "ready" && c.expires_at.as_deref().is_some_and(|e| e <= now().as_str()))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn collection_of(state: &AppState, c: &CollectionRow) -> wire::Collection {
    let expired = effectively_expired(c);
    let status = if expired { "expired" } else { c.status.as_str() };
    let ready = status == "ready";
    let progress = match status {
        "ready" => Some(100),
        "pending" => Some(state.get::<Collections>().map_or(0, |collections| collections.progress.get(c.id).unwrap_or(0))),
        _ => None,
    };
    wire::Collection {
        id: c.id,
        query_text: c.query_text.clone(),
        dataset_ids: c.dataset_ids.clone(),
        limit_per_dataset: c.limit_per_dataset,
        status: status.to_string(),
        progress,
        created_at: c.created_at.clone(),
        archive_size: if ready { c.archive_size } else { None },
        items_count: c.items,
        download_url: ready.then(|| format!("/api/v1/collections/{}/download/", c.id)),
        expires_at: c.expires_at.clone(),
        failure_reason: c.failure_reason.clone(),
    }
}

fn collection_json(state: &AppState, c: &CollectionRow) -> Value {
    json!(collection_of(state, c))
}

/// The collection if the caller may see it; anyone else gets the same 404 as for a
/// collection that does not exist.
async fn visible(state: &AppState, auth: &Auth<Detail>, raw_id: &str) -> Res<CollectionRow> {
    let id: i64 = raw_id.parse().map_err(|_| not_found())?;
    let c = queries::collection(&state.dbs.read, id).await?.ok_or_else(not_found)?;
    if c.owner_id != auth.user_id() && !auth.is_admin() {
        return Err(not_found());
    }
    Ok(c)
}

async fn create(
    State(state): State<AppState>,
    auth: Auth<Detail>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<CreateBody, Detail>,
) -> Res<(StatusCode, Json<Value>)> {
    auth.still(&state)?;
    let request = CollectionRequest {
        owner_id: auth.user_id(),
        query_text: body.query_text,
        dataset_ids: body.dataset_ids,
        limit_per_dataset: body.limit_per_dataset,
    };
    // The count and the request it admits are one step per user (in this process), so
    // a burst of parallel requests cannot all pass a count taken before any of them.
    let _turn = UserTurn::take(auth.user_id()).await;
    let live = live_collections(&state, auth.user_id()).await?;
    let most = state.config.contexts.collections.per_user;
    if live >= most {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!(
                "You have {live} collections pending or ready; at most {most} may be kept at once. \
                 Request another when one has expired."
            ),
        ));
    }
    let (id, position) = state.get::<Collections>()?.request(request, &ctx.with_actor(auth.user_id())).await?;
    state.caught_up_on(&[medledger_projections::collections::COLLECTIONS], position).await;
    let c = queries::collection(&state.dbs.read, id).await?.ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(json!(wire::NewCollection { id, status: c.status, created_at: c.created_at }))))
}

/// Collections of `owner` that hold or will hold an archive: pending, or ready and not
/// past their time to live (failed ones have none; expired ones are deleted).
async fn live_collections(state: &AppState, owner: i64) -> Res<usize> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM collections WHERE owner_id = $1 AND (status = 'pending' OR (status = 'ready' AND expires_at > $2))",
    )
    .bind(owner)
    .bind(now())
    .fetch_one(&state.dbs.read)
    .await?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

type UserLocks = std::sync::Mutex<std::collections::HashMap<i64, Arc<tokio::sync::Mutex<()>>>>;

fn user_locks() -> &'static UserLocks {
    static LOCKS: std::sync::OnceLock<UserLocks> = std::sync::OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

/// One user's turn at requesting a collection; the next request of the same user waits.
struct UserTurn {
    user: i64,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl UserTurn {
    async fn take(user: i64) -> Self {
        let lock = user_locks().lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(user).or_default().clone();
        let guard = Some(lock.clone().lock_owned().await);
        Self { user, lock, guard }
    }
}

impl Drop for UserTurn {
    /// Forgets the user's lock once nobody else holds or waits for it, so the map stays
    /// as small as the number of users requesting right now.
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = user_locks().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Ours and the map's only.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.user);
        }
    }
}

async fn list(State(state): State<AppState>, auth: Auth<Detail>, request: ListRequest) -> Res<(HeaderMap, Json<Vec<Value>>)> {
    let page = request.paging(MAX_LIST_LIMIT, MAX_LIST_LIMIT, (None, None))?;
    let owner = Some(auth.user_id());
    let (rows, total) = tokio::try_join!(
        queries::collections(&state.dbs.read, owner, page.limit, page.offset),
        queries::count_collections(&state.dbs.read, owner),
    )?;
    let headers = request.headers("/api/v1/collections/", page, total);
    Ok((headers, Json(rows.iter().map(|c| collection_json(&state, c)).collect())))
}

async fn detail(State(state): State<AppState>, auth: Auth<Detail>, Path(id): Path<String>) -> Res<Json<Value>> {
    let c = visible(&state, &auth, &id).await?;
    Ok(Json(collection_json(&state, &c)))
}

async fn requests(State(state): State<AppState>, _admin: Admin<Detail>, request: ListRequest) -> Res<(HeaderMap, Json<Vec<Value>>)> {
    let page = request.paging(MAX_LIST_LIMIT, MAX_LIST_LIMIT, (None, None))?;
    let (rows, total) = tokio::try_join!(
        queries::collections(&state.dbs.read, None, page.limit, page.offset),
        queries::count_collections(&state.dbs.read, None),
    )?;
    let headers = request.headers("/api/v1/admin/requests/", page, total);
    Ok((
        headers,
        Json(
            rows.iter()
                .map(|c| {
                    let owner = wire::Owner { id: c.owner_id, email: c.owner_email.clone() };
                    json!(wire::CollectionRequestView { collection: collection_of(&state, c), owner })
                })
                .collect(),
        ),
    ))
}

async fn download(State(state): State<AppState>, auth: Auth<Detail>, Path(id): Path<String>, request: Request) -> Res<Response> {
    let c = visible(&state, &auth, &id).await?;
    if effectively_expired(&c) {
        return Err(ApiError::new(StatusCode::GONE, "expired", "This collection has expired; request it again."));
    }
    match c.status.as_str() {
        "ready" => {}
        "failed" => {
            let why = c.failure_reason.as_deref().unwrap_or("unknown reason");
            return Err(ApiError::new(StatusCode::CONFLICT, "failed", format!("This collection could not be built: {why}")));
        }
        _ => return Err(ApiError::new(StatusCode::CONFLICT, "pending", "This collection is still being built.")),
    }
    let key = c.archive_key.as_deref().ok_or_else(ApiError::internal)?;
    let Some(mut response) =
        blob_response::serve(&**state.get::<Collections>()?.blobs(), key, request.headers()).await.map_err(AppError::from)?
    else {
        tracing::error!(collection = c.id, "ready collection without its archive");
        return Err(ApiError::new(StatusCode::GONE, "expired", "This collection's archive is no longer available."));
    };
    let disposition = format!("attachment; filename=\"collection-{}.zip\"", c.id);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    Ok(response)
}
