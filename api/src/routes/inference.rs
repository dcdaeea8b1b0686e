//! Contract 004: inference tasks and models, with the seed's exact paths and messages
//! (FastAPI style: `{"detail": ...}`, "Not authenticated").

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Multipart, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_application::AppError;
use medledger_application::inference::{ModelSummary, NewTask, model_choice_message};
use medledger_domain::DomainError;
use medledger_domain::inference::{ModelKind, ModelManifest};
use medledger_projections::inference as queries;
use serde_json::{Value, json};

use crate::error::{ApiError, Detail};
use crate::extract::{Ctx, Refusal};
use crate::openapi::{Api, Op};
use crate::state::AppState;

type Res<T> = Result<T, ApiError<Detail>>;

/// Largest task image accepted (the decoder also caps the pixel size).
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Largest model file an admin may register.
pub const MAX_MODEL_BYTES: usize = 64 * 1024 * 1024;

pub fn routes(api: Api) -> Api {
    api.post(
        "/api/tasks",
        create,
        Op::user("004 inference", "Create a task: the image as the body; detection_model_id, classification_model_id")
            .body_limit(MAX_IMAGE_BYTES),
    )
    .get("/api/tasks", list, Op::user("004 inference", "The caller's tasks"))
    .get("/api/tasks/{id}/status", status, Op::user("004 inference", "A task's status"))
    .get("/api/tasks/{id}/input", input, Op::user("004 inference", "A task's input image"))
    .get(
        "/api/tasks/{id}/result",
        result,
        Op::user("004 inference", "A task's result (\"None\" until done); ?wait=SECONDS (at most 30) holds the answer until the task ends"),
    )
    .get("/tasks/{id}/result", result, Op::user("004 inference", "Alias of /api/tasks/{id}/result, as the seed writes it"))
    .delete("/api/tasks/{id}", delete, Op::user("004 inference", "Cancel a queued task or delete a finished one"))
    .get("/api/models", models, Op::user("004 inference", "Detection and classification models"))
    .post(
        "/api/models",
        register,
        Op::admin("004 inference", "Register an ONNX model (multipart: model file, manifest JSON)")
            .status(201)
            .body_limit(MAX_MODEL_BYTES + 64 * 1024),
    )
}

fn bad(detail: impl Into<String>) -> ApiError<Detail> {
    ApiError::bad_request(detail)
}

/// The caller, with FastAPI's message when the token is missing or not valid.
pub struct TaskUser {
    id: i64,
    admin: bool,
}

impl FromRequestParts<AppState> for TaskUser {
    type Rejection = ApiError<Detail>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Judged on the caller's current session, activation and roles; FastAPI's one
        // message for every refusal but a server that is still catching up.
        match crate::extract::bearer_caller(parts, state).await {
            Ok(caller) => Ok(Self { id: caller.user_id, admin: caller.is_admin() }),
            Err(Refusal::Behind) => Err(Refusal::Behind.into()),
            Err(_) => Err(ApiError::unauthorized("Not authenticated")),
        }
    }
}

fn not_found(raw: &str) -> ApiError<Detail> {
    ApiError::not_found(format!("Task with id {raw} does not exist."))
}

/// Task ids are integers; anything else cannot name a task.
fn task_id(raw: &str) -> Res<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| not_found(raw))
}

async fn all_models(state: &AppState) -> Res<Vec<ModelSummary>> {
    let rows = queries::models(&state.dbs.read).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, name, kind)| {
            let kind = match kind.as_str() {
                "detection_model" => ModelKind::Detection,
                "classification_model" => ModelKind::Classification,
                _ => return None,
            };
            Some(ModelSummary { id, name, kind })
        })
        .collect())
}

/// The contract's sentence for a missing, malformed or wrong model id: it lists every
/// model (read only then: a good request does not need the list).
async fn model_choice(state: &AppState) -> Res<String> {
    Ok(model_choice_message(&all_models(state).await?))
}

/// The caller of `POST /api/tasks`, within their allowance of task creations. An
/// extractor, so that a caller over it is answered before the body is read.
struct Creator(TaskUser);

impl FromRequestParts<AppState> for Creator {
    type Rejection = ApiError<Detail>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = TaskUser::from_request_parts(parts, state).await?;
        if let Err(retry_after) = state.task_limiter.check(&user.id.to_string()) {
            let limit = state.task_limiter.per_window();
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!("Too many tasks: at most {limit} a minute may be created. Try again in {retry_after} seconds."),
            );
            e.retry_after = Some(retry_after);
            return Err(e);
        }
        Ok(Self(user))
    }
}

async fn create(
    State(state): State<AppState>,
    Creator(user): Creator,
    Ctx(ctx): Ctx,
    Query(params): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Res<Json<Value>> {
    let mut ids = [0; 2];
    for (id, name) in ids.iter_mut().zip(["detection_model_id", "classification_model_id"]) {
        let Some(raw) = params.get(name) else {
            return Err(bad(format!("{name} is required. {}", model_choice(&state).await?)));
        };
        *id = match raw.trim().parse() {
            Ok(id) => id,
            Err(_) => return Err(bad(model_choice(&state).await?)),
        };
    }
    let [detection_model_id, classification_model_id] = ids;
    if body.is_empty() {
        return Err(bad("The request body is empty: send the image (JPEG or PNG) as the body."));
    }
    let task = NewTask { owner_id: user.id, detection_model_id, classification_model_id };
    let submitted = state.inference.submit(task, &body, &ctx.with_actor(user.id)).await;
    let (id, position) = match submitted {
        Ok(done) => done,
        Err(AppError::Domain(DomainError::InvalidValue { field: "model_id", .. })) => return Err(bad(model_choice(&state).await?)),
        Err(AppError::Domain(DomainError::InvalidValue { message, .. })) => return Err(bad(message)),
        Err(other) => return Err(other.into()),
    };
    // The client's next request reads the task list; other read models follow on their own.
    state.caught_up_on(queries::TASKS_PROJECTION, position).await;
    Ok(Json(json!({ "id": id })))
}

async fn list(State(state): State<AppState>, user: TaskUser) -> Res<Json<Value>> {
    let rows = queries::tasks(&state.dbs.read, Some(user.id)).await?;
    let tasks: Vec<Value> =
        rows.iter().map(|t| json!({"id": t.id, "status": t.status, "created_at": t.created_at, "input_path": t.input_path})).collect();
    Ok(Json(json!({ "tasks": tasks })))
}

/// The task's row if the caller may see it; anyone else's task is "does not exist".
async fn visible(state: &AppState, user: &TaskUser, raw: &str) -> Res<queries::TaskRow> {
    let id = task_id(raw)?;
    match queries::task(&state.dbs.read, id).await? {
        Some(row) if row.owner_id == user.id || user.admin => Ok(row),
        _ => Err(not_found(raw)),
    }
}

async fn status(State(state): State<AppState>, user: TaskUser, Path(raw): Path<String>) -> Res<Json<Value>> {
    let row = visible(&state, &user, &raw).await?;
    Ok(Json(json!({"id": row.id, "status": row.status})))
}

/// `?wait=SECONDS`: an addition to the contract (clients that do not send it see no
/// change) so that a client need not poll for a result.
#[derive(serde::Deserialize)]
struct Wait {
    wait: Option<String>,
}

/// Longest `?wait=` honoured.
const MAX_WAIT_SECONDS: f64 = 30.0;

fn is_final(status: &str) -> bool {
    matches!(status, "done" | "failed")
}

async fn result(State(state): State<AppState>, user: TaskUser, Path(raw): Path<String>, Query(wait): Query<Wait>) -> Res<Json<Value>> {
    let wait = match wait.wait.as_deref() {
        None => None,
        Some(text) => {
            let seconds = text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| bad(format!("wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS}")))?;
            Some(std::time::Duration::from_secs_f64(seconds.min(MAX_WAIT_SECONDS)))
        }
    };
    let row = match wait {
        None => visible(&state, &user, &raw).await?,
        Some(wait) => {
            let deadline = tokio::time::Instant::now() + wait;
            let changes = state.task_watch.watch(task_id(&raw)?);
            loop {
                // Registered before the read: a change committed in between still wakes it.
                let changed = changes.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let row = visible(&state, &user, &raw).await?;
                if is_final(&row.status) || tokio::time::timeout_at(deadline, changed).await.is_err() {
                    break row;
                }
            }
        }
    };
    let result = match (&row.result, row.status.as_str()) {
        (Some(r), "done") => serde_json::from_str(r).unwrap_or(Value::Null),
        _ => json!("None"),
    };
    let mut body = json!({"id": row.id, "status": row.status, "result": result});
    if let Some(reason) = &row.failure_reason {
        body["reason"] = json!(reason);
    }
    Ok(Json(body))
}

async fn input(State(state): State<AppState>, user: TaskUser, Path(raw): Path<String>) -> Res<Response> {
    let row = visible(&state, &user, &raw).await?;
    let task = state.inference.visible(row.id, user.id, user.admin).await.map_err(|_| not_found(&raw))?;
    let (bytes, content_type) = state.inference.input(&task).await.map_err(|_| not_found(&raw))?;
    let disposition = format!("inline; filename=\"{}\"", row.input_path);
    Ok(([(header::CONTENT_TYPE, content_type), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response())
}

async fn delete(State(state): State<AppState>, user: TaskUser, Ctx(ctx): Ctx, Path(raw): Path<String>) -> Res<Json<Value>> {
    let row = visible(&state, &user, &raw).await?;
    let position = state.inference.delete(row.id, user.id, user.admin, &ctx.with_actor(user.id)).await.map_err(|e| match e {
        medledger_application::AppError::NotFound(_) => not_found(&raw),
        other => other.into(),
    })?;
    if let Some(p) = position {
        state.caught_up(p).await;
    }
    Ok(Json(json!({"id": row.id})))
}

async fn models(State(state): State<AppState>, _user: TaskUser) -> Res<Json<Value>> {
    let models = all_models(&state).await?;
    let of = |kind: ModelKind| -> Vec<Value> {
        models.iter().filter(|m| m.kind == kind).map(|m| json!({"model_name": m.name, "model_id": m.id})).collect()
    };
    Ok(Json(json!({"detection_models": of(ModelKind::Detection), "classification_models": of(ModelKind::Classification)})))
}

async fn register(State(state): State<AppState>, user: TaskUser, Ctx(ctx): Ctx, mut form: Multipart) -> Res<(StatusCode, Json<Value>)> {
    if !user.admin {
        return Err(ApiError::forbidden());
    }
    let mut onnx: Option<Vec<u8>> = None;
    let mut manifest: Option<ModelManifest> = None;
    while let Some(field) = form.next_field().await.map_err(|e| bad(format!("malformed multipart body: {e}")))? {
        match field.name().unwrap_or_default() {
            "model" | "file" => onnx = Some(field.bytes().await.map_err(|e| bad(format!("could not read the model: {e}")))?.to_vec()),
            "manifest" => {
                let text = field.text().await.map_err(|e| bad(format!("could not read the manifest: {e}")))?;
                manifest = Some(serde_json::from_str(&text).map_err(|e| bad(format!("manifest: {e}")))?);
            }
            other => return Err(bad(format!("unknown part {other:?}: send `model` (the .onnx file) and `manifest` (JSON)"))),
        }
    }
    let onnx = onnx.filter(|b| !b.is_empty()).ok_or_else(|| bad("the `model` part (the .onnx file) is missing or empty"))?;
    let manifest = manifest.ok_or_else(|| bad("the `manifest` part is missing"))?;
    let registered = state.inference.register_model(manifest, onnx, &ctx.with_actor(user.id)).await;
    let (id, position) = match registered {
        Ok(done) => done,
        // The engine's sentence alone (see `InferenceEngine`): nothing of the runtime's.
        Err(AppError::Domain(DomainError::InvalidValue { field: "file", message })) => return Err(bad(message)),
        Err(other) => return Err(other.into()),
    };
    state.caught_up(position).await;
    Ok((StatusCode::CREATED, Json(json!({"model_id": id}))))
}
