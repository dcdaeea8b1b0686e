//! Contract 004: inference tasks and models, with the seed's exact paths and messages
//! (FastAPI style: `{"detail": ...}`, "Not authenticated").

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Multipart, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_application::AppError;
use medledger_application::identity::Caller;
use medledger_application::inference::InferenceError;
use medledger_application::inference::InferenceTasks;
use medledger_application::inference::{ModelSummary, NewTask};
use medledger_domain::DomainError;
use medledger_domain::inference::{ModelKind, ModelManifest};
use medledger_projections::inference as queries;
use medledger_projections::inference::TaskWatch;
use serde_json::{Value, json};

use crate::error::{ApiError, Detail};
use crate::extract::{self, Ctx, FastApiError, FormEncoding, Invalid, Refusal};
use crate::openapi::{self, Api, Op};
use crate::schemas::errors::{Unprocessable, ValidationError};
use crate::schemas::inference as wire;
use crate::state::AppState;

type Res<T> = Result<T, ApiError<Detail>>;

/// Largest task image accepted (the decoder also caps the pixel size).
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Room for a multipart form's boundaries, part headers and small text fields around
/// the image: the image itself is still held to `MAX_IMAGE_BYTES`.
const MULTIPART_ALLOWANCE: usize = 64 * 1024;
/// The names an image's part may have in a multipart form: FastAPI's `file: UploadFile`,
/// and `image`, which browser and mobile clients use as often.
const IMAGE_PARTS: [&str; 2] = ["file", "image"];
/// Largest model file an admin may register.
pub const MAX_MODEL_BYTES: usize = 64 * 1024 * 1024;

pub fn routes(api: Api) -> Api {
    api.post(
        "/api/tasks",
        create,
        Op::user(
            "004 inference",
            "Create a task: the image as the body, or as the one file (part `file` or `image`) of a multipart form; \
             detection_model_id, classification_model_id",
        )
        .body_limit(MAX_IMAGE_BYTES + MULTIPART_ALLOWANCE)
        .query::<wire::TaskParams>()
        .body("image/jpeg", openapi::binary)
        .body("image/png", openapi::binary)
        .body("application/octet-stream", openapi::binary)
        .multipart::<wire::TaskUpload>()
        .returns::<wire::TaskId>()
        .link("Status", "get_api_tasks_id_status", "id", "$response.body#/id")
        .link("Result", "get_api_tasks_id_result", "id", "$response.body#/id")
        .link("Input", "get_api_tasks_id_input", "id", "$response.body#/id")
        .link("Delete", "delete_api_tasks_id", "id", "$response.body#/id")
        .answers::<Unprocessable>(422, "A multipart form without its image (FastAPI's list)")
        .error(429, "Too many tasks created in the last minute; see Retry-After"),
    )
    .get(
        "/api/tasks",
        list,
        Op::user("004 inference", "The caller's tasks; ?all=true: every user's (admins only, each with owner_id)")
            .query::<wire::TaskListParams>()
            .returns::<wire::TaskList>()
            .error(403, "all=true from someone who is not an admin")
            .answers::<ValidationError>(422, "all is not a boolean (FastAPI's list)"),
    )
    .get("/api/tasks/{id}/status", status, Op::user("004 inference", "A task's status").returns::<wire::TaskState>())
    .get(
        "/api/tasks/{id}/input",
        input,
        Op::user("004 inference", "A task's input image")
            .returns_as("image/jpeg", openapi::binary)
            .returns_as("image/png", openapi::binary),
    )
    .get(
        "/api/tasks/{id}/result",
        result,
        Op::user("004 inference", "A task's result (\"None\" until done); ?wait=SECONDS (at most 30) holds the answer until the task ends")
            .query::<Wait>()
            .returns::<wire::TaskResult>(),
    )
    .get(
        "/tasks/{id}/result",
        result,
        Op::user("004 inference", "Alias of /api/tasks/{id}/result, as the seed writes it").query::<Wait>().returns::<wire::TaskResult>(),
    )
    .delete("/api/tasks/{id}", delete, Op::user("004 inference", "Cancel a queued task or delete a finished one").returns::<wire::TaskId>())
    .get("/api/models", models, Op::user("004 inference", "Detection and classification models").returns::<wire::ModelList>())
    .post(
        "/api/models",
        register,
        Op::admin("004 inference", "Register an ONNX model (multipart: model file, manifest JSON)")
            .status(201)
            .body_limit(MAX_MODEL_BYTES + 64 * 1024)
            .multipart::<wire::ModelUpload>()
            .part_type("manifest", "application/json")
            .returns::<wire::NewModel>(),
    )
}

fn bad(detail: impl Into<String>) -> ApiError<Detail> {
    ApiError::bad_request(detail)
}

/// The caller, with FastAPI's message when the token is missing or not valid.
pub struct TaskUser {
    id: i64,
    admin: bool,
    caller: Caller,
}

impl TaskUser {
    /// Judges the caller again after a body that may have taken long to arrive; `admin`:
    /// they must still be one.
    fn still(&self, state: &AppState, admin: bool) -> Res<()> {
        match state.accounts.access().recheck(&self.caller) {
            Ok(now) if admin && !now.is_admin() => Err(ApiError::forbidden()),
            Ok(_) => Ok(()),
            Err(_) => Err(ApiError::unauthorized("Not authenticated")),
        }
    }
}

impl FromRequestParts<AppState> for TaskUser {
    type Rejection = ApiError<Detail>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Judged on the caller's current session, activation and roles; FastAPI's one
        // message for every refusal but a server that is still catching up.
        match crate::extract::bearer_caller(parts, state).await {
            Ok(caller) => Ok(Self { id: caller.user_id, admin: caller.is_admin(), caller }),
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

/// The contract's message for a wrong model id, listing every model.
fn model_choice_message(models: &[ModelSummary]) -> String {
    let list: Vec<String> = models.iter().map(|m| format!("({}, '{}', '{}')", m.id, m.name, m.kind.as_str())).collect();
    format!("Model id was not correct. Choose from (id, name, type) [{}].", list.join(", "))
}

/// 429 once `user` has created their allowance of tasks this minute.
fn within_task_allowance(state: &AppState, user: &TaskUser) -> Res<()> {
    let Err(retry_after) = state.get::<super::TaskLimiter>()?.0.check(&user.id.to_string()) else { return Ok(()) };
    let limit = state.get::<super::TaskLimiter>()?.0.per_window();
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        format!("Too many tasks: at most {limit} a minute may be created. Try again in {retry_after} seconds."),
    );
    e.retry_after = Some(retry_after);
    Err(e)
}

/// The image of `POST /api/tasks`.
struct Upload {
    bytes: Bytes,
    /// The file's name (or its part's), when it came in a form: errors name it.
    filename: Option<String>,
}

fn image_too_large() -> ApiError<Detail> {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The image is larger than the {} MiB accepted.", MAX_IMAGE_BYTES / (1024 * 1024)),
    )
}

/// The image of `POST /api/tasks`: the body itself, as the seed sends it, or the one
/// file of a `multipart/form-data` body (FastAPI's `file: UploadFile`, a browser's
/// `FormData`). A form is read part by part as it arrives: only the image's part is
/// kept, and never past `MAX_IMAGE_BYTES`; the route's limit bounds the rest. Text
/// fields are ignored, as FastAPI ignores fields it does not declare.
async fn uploaded_image(req: Request, state: &AppState) -> Result<Upload, FastApiError> {
    if FormEncoding::of(req.headers()) != Some(FormEncoding::Multipart) {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => image_too_large(),
            status => ApiError::new(status, "invalid", format!("Could not read the request body: {rejection}")),
        })?;
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(image_too_large().into());
        }
        return Ok(Upload { bytes, filename: None });
    }
    let mut form = extract::multipart::<Detail>(req, state).await?;
    let mut image: Option<Upload> = None;
    let mut first_file: Option<String> = None;
    while let Some(mut part) = extract::next_part::<Detail>(&mut form).await? {
        let name = part.name().unwrap_or_default().to_string();
        let is_image = IMAGE_PARTS.contains(&name.as_str());
        if !is_image && part.file_name().is_none() {
            continue;
        }
        // A second file is refused before it is read: which one the client meant cannot
        // be told (FastAPI would silently take the last).
        if let Some(first) = &first_file {
            let msg = format!("Value error, send one image: the form has a second file (part \"{name}\" after \"{first}\")");
            return Err(Invalid::new("value_error", "body", "file", msg, Value::Null).into());
        }
        first_file = Some(name);
        if !is_image {
            // A lone file under another name is FastAPI's missing `file`.
            continue;
        }
        // A browser sends `filename=""` for a file input left empty.
        let filename = match part.file_name().filter(|f| !f.is_empty()) {
            Some(f) => f.chars().take(255).collect(),
            None => format!("part \"{}\"", first_file.as_deref().unwrap_or_default()),
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = extract::next_chunk::<Detail>(&mut part).await? {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(image_too_large().into());
            }
            bytes.extend_from_slice(&chunk);
        }
        image = Some(Upload { bytes: bytes.into(), filename: Some(filename) });
    }
    image.ok_or_else(|| Invalid::missing("body", "file").into())
}

async fn create(
    State(state): State<AppState>,
    user: TaskUser,
    Ctx(ctx): Ctx,
    Query(params): Query<std::collections::HashMap<String, String>>,
    req: Request,
) -> Result<Json<Value>, FastApiError> {
    let mut ids = [0; 2];
    for (id, name) in ids.iter_mut().zip(["detection_model_id", "classification_model_id"]) {
        let Some(raw) = params.get(name) else {
            return Err(bad(format!("{name} is required. {}", model_choice(&state).await?)).into());
        };
        *id = match raw.trim().parse() {
            Ok(id) => id,
            Err(_) => return Err(bad(model_choice(&state).await?).into()),
        };
    }
    let [detection_model_id, classification_model_id] = ids;
    let Upload { bytes: body, filename } = uploaded_image(req, &state).await?;
    // Only once the body is read (its size and read time are bounded): a 429 sent while
    // the client is still sending reaches it as a reset connection, not as an answer.
    within_task_allowance(&state, &user)?;
    // Errors about the image name the file when it came with a name.
    let about_file = |message: String| match &filename {
        Some(f) => bad(format!("{f}: {message}")),
        None => bad(message),
    };
    if body.is_empty() {
        return Err(match &filename {
            Some(_) => about_file("the file is empty: send a JPEG or PNG image.".to_string()),
            None => bad("The request body is empty: send the image (JPEG or PNG) as the body."),
        }
        .into());
    }
    let task = NewTask { owner_id: user.id, detection_model_id, classification_model_id };
    let submitted = state.get::<InferenceTasks>()?.submit(task, &body, &ctx.with_actor(user.id)).await;
    let (id, position) = match submitted {
        Ok(done) => done,
        Err(AppError::Inference(InferenceError::NoSuchModel)) => return Err(bad(model_choice(&state).await?).into()),
        Err(AppError::Domain(DomainError::InvalidValue { message, .. })) => return Err(about_file(message).into()),
        Err(other) => return Err(other.into()),
    };
    // The client's next request reads the task list; other read models follow on their own.
    state.caught_up_on(&[medledger_projections::inference::INFERENCE_TASKS], position).await;
    Ok(Json(json!(wire::TaskId { id })))
}

/// A query flag as pydantic reads a `bool` (FastAPI's `all: bool = False`).
fn query_bool(params: &std::collections::HashMap<String, String>, name: &str) -> Result<bool, FastApiError> {
    let Some(raw) = params.get(name) else { return Ok(false) };
    match raw.to_ascii_lowercase().as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
        _ => {
            Err(Invalid::new("bool_parsing", "query", name, "Input should be a valid boolean, unable to interpret input", json!(raw))
                .into())
        }
    }
}

/// The caller's tasks, as the seed lists them. `?all=true` lists every user's, each
/// with its `owner_id`: for admins, who may open any task by id; anyone else asking
/// is refused (403), rather than answered with their own tasks as if those were all.
async fn list(
    State(state): State<AppState>,
    user: TaskUser,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, FastApiError> {
    let all = query_bool(&params, "all")?;
    if all && !user.admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "permission_denied", "Only admins may list every user's tasks (all=true).").into());
    }
    let rows = queries::tasks(&state.dbs.read, (!all).then_some(user.id)).await.map_err(ApiError::<Detail>::from)?;
    let tasks = rows
        .into_iter()
        .map(|t| wire::TaskSummary {
            id: t.id,
            status: t.status,
            created_at: t.created_at,
            input_path: t.input_path,
            owner_id: all.then_some(t.owner_id),
        })
        .collect();
    Ok(Json(json!(wire::TaskList { tasks })))
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
    Ok(Json(json!(wire::TaskState { id: row.id, status: row.status })))
}

/// `?wait=SECONDS`: an addition to the contract (clients that do not send it see no
/// change) so that a client need not poll for a result.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Wait {
    /// Seconds to hold the answer until the task ends (at most 30).
    #[schemars(with = "Option<f64>", range(min = 0))]
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
            let changes = state.get::<TaskWatch>()?.watch(task_id(&raw)?);
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
        (Some(r), "done") => wire::Outcome::Done(serde_json::from_str(r).map_err(|e| {
            tracing::error!(task = row.id, error = %e, "a stored task result does not read back");
            ApiError::<Detail>::internal()
        })?),
        _ => wire::Outcome::NotYet(wire::NotYet::None),
    };
    Ok(Json(json!(wire::TaskResult { id: row.id, status: row.status, result, reason: row.failure_reason })))
}

async fn input(State(state): State<AppState>, user: TaskUser, Path(raw): Path<String>) -> Res<Response> {
    let row = visible(&state, &user, &raw).await?;
    let task = state.get::<InferenceTasks>()?.visible(row.id, user.id, user.admin).await.map_err(|_| not_found(&raw))?;
    let (bytes, content_type) = state.get::<InferenceTasks>()?.input(&task).await.map_err(|_| not_found(&raw))?;
    let disposition = format!("inline; filename=\"{}\"", row.input_path);
    Ok(([(header::CONTENT_TYPE, content_type), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response())
}

async fn delete(State(state): State<AppState>, user: TaskUser, Ctx(ctx): Ctx, Path(raw): Path<String>) -> Res<Json<Value>> {
    let row = visible(&state, &user, &raw).await?;
    let position =
        state.get::<InferenceTasks>()?.delete(row.id, user.id, user.admin, &ctx.with_actor(user.id)).await.map_err(|e| match e {
            AppError::NotFound(_) => not_found(&raw),
            other => other.into(),
        })?;
    if let Some(p) = position {
        state.caught_up_on(&[medledger_projections::inference::INFERENCE_TASKS], p).await;
    }
    Ok(Json(json!(wire::TaskId { id: row.id })))
}

async fn models(State(state): State<AppState>, _user: TaskUser) -> Res<Json<Value>> {
    let models = all_models(&state).await?;
    let of = |kind: ModelKind| -> Vec<wire::ModelRef> {
        models.iter().filter(|m| m.kind == kind).map(|m| wire::ModelRef { model_name: m.name.clone(), model_id: m.id }).collect()
    };
    Ok(Json(json!(wire::ModelList { detection_models: of(ModelKind::Detection), classification_models: of(ModelKind::Classification) })))
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
    user.still(&state, true)?;
    let registered = state.get::<InferenceTasks>()?.register_model(manifest, onnx, &ctx.with_actor(user.id)).await;
    let (id, position) = match registered {
        Ok(done) => done,
        // The engine's sentence alone (see `InferenceEngine`): nothing of the runtime's.
        Err(AppError::Inference(InferenceError::ModelRefused(reason))) => return Err(bad(reason.0)),
        Err(other) => return Err(other.into()),
    };
    state.caught_up_on(&[medledger_projections::inference::INFERENCE_MODELS], position).await;
    Ok((StatusCode::CREATED, Json(json!(wire::NewModel { model_id: id }))))
}
