//! Contract 004 (inference, `inference/routes.rs`): tasks, results, models.

use medledger_domain::inference::{InferenceResult, ModelManifest, TaskStatus};
use schemars::JsonSchema;
use serde::Serialize;

use super::medagg::Binary;

/// A task just created (or deleted).
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskId {
    pub id: i64,
}

/// A task in the caller's list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskSummary {
    pub id: i64,
    #[schemars(with = "TaskStatus")]
    pub status: String,
    pub created_at: String,
    pub input_path: String,
    /// Only in an admin's list of every user's tasks (`?all=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskSummary>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskState {
    pub id: i64,
    #[schemars(with = "TaskStatus")]
    pub status: String,
}

/// A task's result: the model's answer once `done`, the string `"None"` before (as the
/// seed writes it), with the reason when it `failed`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskResult {
    pub id: i64,
    #[schemars(with = "TaskStatus")]
    pub status: String,
    pub result: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Outcome {
    Done(InferenceResult),
    NotYet(NotYet),
}

/// The seed's `"None"`.
#[derive(Debug, Serialize, JsonSchema)]
pub enum NotYet {
    None,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelRef {
    pub model_name: String,
    pub model_id: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelList {
    pub detection_models: Vec<ModelRef>,
    pub classification_models: Vec<ModelRef>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NewModel {
    pub model_id: i64,
}

/// The parts of a model registration (multipart/form-data).
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the form `inference::register` reads part by part
pub struct ModelUpload {
    /// The ONNX file (the part may also be called `file`).
    #[schemars(with = "Binary")]
    model: (),
    /// How to feed the model and read its output (JSON).
    manifest: ModelManifest,
}

/// The parts of a task created from a form (multipart/form-data): one image.
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the form `inference::create` reads
pub struct TaskUpload {
    /// The image, JPEG or PNG (the part may also be called `image`).
    #[schemars(with = "Binary")]
    file: (),
}

/// `POST /api/tasks`' query: the two models to run.
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the parameters `inference::create` reads
pub struct TaskParams {
    /// A detection model's `model_id` (`GET /api/models`).
    detection_model_id: i64,
    /// A classification model's `model_id`.
    classification_model_id: i64,
}

/// `GET /api/tasks`' query.
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the parameter `inference::list` reads
pub struct TaskListParams {
    /// Every user's tasks, each with `owner_id` (admins only; anyone else: 403).
    all: Option<bool>,
}
