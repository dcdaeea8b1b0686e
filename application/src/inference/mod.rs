//! Inference tasks (contract 004): a user uploads an image and picks a detection and a
//! scene-classification model; the inference saga runs both and records the result.
//!
//! Models are aggregates too (`model-{id}`): the built-in ones are registered at start
//! (idempotently), admins register more at run time. Their ONNX bytes live in the blob
//! store; each process loads a model's session the first time it needs it.

mod error;
pub mod model_threads;
mod saga;

pub use error::InferenceError;
pub use saga::InferenceSaga;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bytes::Bytes;
use medledger_domain::inference::model::{self, Model, ModelCommand};
use medledger_domain::inference::task::{self, InferenceTask, TaskCommand, TaskInput};
use medledger_domain::inference::{InferenceResult, ModelId, ModelKind, ModelManifest, TaskId, decode_detections, top_class};
use medledger_domain::{Aggregate, DomainError};
use sha2::Digest as _;

use crate::blobs::{one_chunk, read_to_vec};
use crate::inference::model_threads::{ModelInputs, ModelThreads};
use crate::jobs::{JobKind, JobRunner, Outcome, ProgressReport};
use crate::ledger::Ledger;
use crate::metadata::{Cause, CommandContext};
use crate::ports::{
    BlobStore, BlobWrite, ByteRange, EngineError, ExpectedVersion, IdGenerator, ImageDecoder, ImageHeader, InferenceEngine,
    MODEL_NOT_LOADED, Position, RgbImage,
};
use crate::{AppError, Internal};

/// Detections below this score are dropped; overlapping boxes of one class above this
/// IoU are merged (greedy NMS); at most this many primitives per image.
const SCORE_THRESHOLD: f32 = 0.25;
const NMS_IOU: f32 = 0.5;
const MAX_PRIMITIVES: usize = 50;

/// Why tasks fail and models cannot be registered on a server without ONNX Runtime.
pub const ENGINE_UNAVAILABLE: &str = "Models cannot be run on this server at the moment.";

/// A model that ships with the server (ids 1, 2, 3 as the contract lists them).
pub struct BuiltinModel {
    pub id: ModelId,
    pub manifest_json: &'static str,
    pub onnx: &'static [u8],
}

/// Why a task cannot be created with the given model ids: the contract's 400 lists
/// every model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    pub id: ModelId,
    pub name: String,
    pub kind: ModelKind,
}

#[derive(Clone)]
pub struct InferenceTasks {
    ledger: Ledger,
    ids: Arc<dyn IdGenerator>,
    blobs: Arc<dyn BlobStore>,
    images: Arc<dyn ImageDecoder>,
    /// Err when ONNX Runtime could not be loaded: tasks then fail with `ENGINE_UNAVAILABLE`
    /// (the reason names the server's paths: the caller logs it, at start).
    engine: Result<Arc<dyn InferenceEngine>, String>,
    manifests: Arc<RwLock<HashMap<ModelId, ModelManifest>>>,
    /// Where the models run.
    model_threads: ModelThreads,
    /// Claims, runs and records tasks. `submit` hands a task straight to the models,
    /// with the image it has just decoded and the aggregate it has just recorded: no
    /// wait for the saga to read the new event, no second read of the stream, blob and
    /// image. The saga stays the guarantee: it still sees every `InferenceTaskCreated`,
    /// waits for such a run to end, and runs the task itself only when that run did not
    /// record an outcome (or never existed: another process, a restart, no room here).
    runner: JobRunner<InferenceTask>,
    /// Turns to decode an image (None: unbounded). A decode is where a task's memory
    /// goes (up to the decoder's pixel limit, several bytes a pixel), so this bounds what
    /// uploads can make the server hold at once; it is sized to the cores, which is all
    /// the decodes that can make progress together anyway.
    decodes: Option<Arc<Semaphore>>,
}

fn blob_key_for_model(id: ModelId) -> String {
    format!("models/{id}.onnx")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

impl InferenceTasks {
    pub fn new(
        ledger: Ledger,
        ids: Arc<dyn IdGenerator>,
        blobs: Arc<dyn BlobStore>,
        images: Arc<dyn ImageDecoder>,
        engine: Result<Arc<dyn InferenceEngine>, String>,
        model_threads: ModelThreads,
        in_flight: usize,
    ) -> Self {
        Self {
            runner: JobRunner::new(ledger.clone()).dispatching(in_flight),
            ledger,
            ids,
            blobs,
            images,
            engine: engine.map_err(|_| ENGINE_UNAVAILABLE.to_string()),
            manifests: Arc::default(),
            model_threads,
            decodes: Some(Arc::new(Semaphore::new(default_concurrent_decodes()))),
        }
    }

    /// At most `n` images decoded at once; 0 lifts the bound.
    pub fn with_concurrent_decodes(mut self, n: usize) -> Self {
        self.decodes = (n > 0).then(|| Arc::new(Semaphore::new(n)));
        self
    }

    /// Whether models can run here (ONNX Runtime was loaded).
    pub fn engine_available(&self) -> bool {
        self.engine.is_ok()
    }

    /// A turn to decode. Whoever waits for one holds only the upload as it came (its size
    /// capped by the route); the pixels are allocated under the permit.
    async fn decode_turn(&self) -> Result<Option<OwnedSemaphorePermit>, tokio::sync::AcquireError> {
        match &self.decodes {
            None => Ok(None),
            Some(turns) => turns.clone().acquire_owned().await.map(Some),
        }
    }

    /// Registers the built-in models (nothing is appended when they already are) and
    /// loads their sessions, so the first task does not pay for it.
    pub async fn register_builtins(&self, builtins: &[BuiltinModel]) -> Result<(), AppError> {
        for b in builtins {
            let manifest: ModelManifest =
                serde_json::from_str(b.manifest_json).map_err(|source| Internal::BuiltinManifest { model_id: b.id, source })?;
            let key = blob_key_for_model(b.id);
            let sha256 = sha256_hex(b.onnx);
            let (existing, _) = self.ledger.load::<Model>(&model::stream_id(b.id)).await?;
            if existing.sha256() != sha256 || self.blobs.open(&key, ByteRange::Full).await?.is_none() {
                self.blobs.put_stream(&key, one_chunk(Bytes::from_static(b.onnx)), BlobWrite::UNHASHED).await?;
            }
            let command = || ModelCommand::Register {
                model_id: b.id,
                manifest: manifest.clone(),
                blob_key: key.clone(),
                sha256: sha256.clone(),
                builtin: true,
            };
            self.ledger.execute::<Model>(&model::stream_id(b.id), &CommandContext::system(), |m| m.handle(command())).await?;
            if let Ok(engine) = &self.engine {
                let id = b.id;
                load_off_runtime(engine, id, manifest.clone().validate()?, b.onnx)
                    .await?
                    .map_err(|source| Internal::ModelNotLoaded { model_id: id, source })?;
            }
            self.remember(b.id, manifest);
        }
        Ok(())
    }

    /// An admin's model: the manifest and the graph must agree (checked by loading it).
    pub async fn register_model(
        &self,
        manifest: ModelManifest,
        onnx: Vec<u8>,
        ctx: &CommandContext,
    ) -> Result<(ModelId, Position), AppError> {
        let manifest = manifest.validate()?;
        let engine = self.engine.clone().map_err(|e| AppError::Domain(DomainError::invalid("model", e)))?;
        // Loaded under a scratch id first: a model that does not load is refused before
        // anything is recorded. The engine's refusals are fit for the admin to read.
        load_off_runtime(&engine, ModelId::MIN, manifest.clone(), onnx.clone()).await?.map_err(|reason| {
            tracing::info!(model = %manifest.name, %reason, "a model sent for registration was refused");
            InferenceError::ModelRefused(reason)
        })?;
        // Ids are shared with the built-in models: skip any already taken.
        let model_id = loop {
            let id = self.ids.next_id("model").await?;
            if !self.ledger.load::<Model>(&model::stream_id(id)).await?.0.exists() {
                break id;
            }
        };
        let key = blob_key_for_model(model_id);
        self.blobs.put_stream(&key, one_chunk(onnx.clone()), BlobWrite::UNHASHED).await?;
        let command =
            ModelCommand::Register { model_id, manifest: manifest.clone(), blob_key: key, sha256: sha256_hex(&onnx), builtin: false };
        let events = Model::default().handle(command)?;
        let part = self.ledger.prepare(&model::stream_id(model_id), ExpectedVersion::NoStream, &events, ctx).await?;
        let appended = self.ledger.commit(vec![part]).await?;
        load_off_runtime(&engine, model_id, manifest.clone(), onnx)
            .await?
            .map_err(|source| Internal::ModelNotLoaded { model_id, source })?;
        self.remember(model_id, manifest);
        Ok((model_id, appended.last_position))
    }

    /// A model's manifest, loading the model (this process has not seen it yet: another
    /// server registered it) from its stream and blob.
    async fn manifest(&self, id: ModelId) -> Result<Option<ModelManifest>, AppError> {
        if let Some(m) = self.manifests.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(Some(m));
        }
        let (model, _) = self.ledger.load::<Model>(&model::stream_id(id)).await?;
        let Some(manifest) = model.manifest().cloned() else { return Ok(None) };
        if let Ok(engine) = &self.engine {
            let onnx = read_to_vec(&*self.blobs, model.blob_key()).await?.ok_or(Internal::ModelFileMissing { model_id: id })?;
            load_off_runtime(engine, id, manifest.clone(), onnx)
                .await?
                .map_err(|source| Internal::ModelNotLoaded { model_id: id, source })?;
        }
        self.remember(id, manifest.clone());
        Ok(Some(manifest))
    }

    fn remember(&self, id: ModelId, manifest: ModelManifest) {
        if let Ok(mut m) = self.manifests.write() {
            m.insert(id, manifest);
        }
    }

    /// Records a task for `owner` and leaves it to the saga. A model id that names no
    /// model of the right kind is `InvalidValue` on `model_id`.
    pub async fn create(&self, task: NewTask, bytes: &[u8], ctx: &CommandContext) -> Result<(TaskId, Position), AppError> {
        self.record(task, bytes, ctx, false).await
    }

    /// `create`, and the task goes to the models at once when there is room (see
    /// [`JobRunner::dispatch`]); the POST of contract 004.
    pub async fn submit(&self, task: NewTask, bytes: &[u8], ctx: &CommandContext) -> Result<(TaskId, Position), AppError> {
        self.record(task, bytes, ctx, true).await
    }

    async fn model_of_kind(&self, id: ModelId, kind: ModelKind) -> Result<Option<ModelManifest>, AppError> {
        Ok(self.manifest(id).await?.filter(|m| m.kind == kind))
    }

    /// A task's two models with their manifests; the error says which one is gone.
    async fn task_models(&self, models: Option<(ModelId, ModelId)>) -> Result<TaskModels, String> {
        let (detector, classifier) = models.ok_or("the task has no models")?;
        // What went wrong (a store error, a model's file) is for the log: the task's owner
        // reads its reason.
        let not_loaded = |model_id: ModelId| {
            move |error: AppError| {
                tracing::warn!(model_id, %error, "a task's model could not be loaded");
                MODEL_NOT_LOADED.to_string()
            }
        };
        let detection = self.manifest(detector).await.map_err(not_loaded(detector))?.ok_or("the detection model is gone")?;
        let scene = self.manifest(classifier).await.map_err(not_loaded(classifier))?.ok_or("the classification model is gone")?;
        Ok(TaskModels { detector, classifier, detection, scene })
    }

    async fn record(&self, new: NewTask, bytes: &[u8], ctx: &CommandContext, dispatch: bool) -> Result<(TaskId, Position), AppError> {
        let NewTask { owner_id, detection_model_id, classification_model_id } = new;
        let (Some(detection), Some(scene)) = (
            self.model_of_kind(detection_model_id, ModelKind::Detection).await?,
            self.model_of_kind(classification_model_id, ModelKind::Classification).await?,
        ) else {
            return Err(InferenceError::NoSuchModel.into());
        };
        let models = TaskModels { detector: detection_model_id, classifier: classification_model_id, detection, scene };
        // The header first: an image over the limits (a bomb: a small file of a huge
        // image) is refused before it waits for a turn to decode.
        self.images.check(bytes).map_err(|reason| DomainError::invalid("image", reason.0))?;
        // A run from here needs the models' inputs: made in the same trip to the
        // blocking pool as the decode.
        let for_run = dispatch.then(|| (self.engine.clone(), models.clone()));
        let turn = self.decode_turn().await?;
        let (images, owned) = (self.images.clone(), bytes.to_vec());
        let (header, inputs) = tokio::task::spawn_blocking(move || {
            // The turn ends with the decode, not with the request: a client that hangs up
            // does not stop a decode under way.
            let _turn = turn;
            let checked = images.decode(&owned).map_err(|refused| refused.0)?;
            let inputs = for_run.map(|(engine, models)| models.inputs(&engine?, &checked.image));
            // Only the size leaves: the pixels are freed within the turn.
            let header = ImageHeader { content_type: checked.content_type, width: checked.image.width, height: checked.image.height };
            Ok::<_, String>((header, inputs))
        })
        .await?
        .map_err(|reason| DomainError::invalid("image", reason))?;
        let task_id = self.ids.next_id("inference_task").await?;
        let filename = TaskInput::filename_for(task_id, header.content_type)?;
        // A directory per thousand tasks: creating one per task cost more than the file.
        let key = format!("inference/{}/{filename}", task_id / 1000);
        // The bytes first: an event never points at a blob that is not there.
        self.blobs.put_stream(&key, one_chunk(bytes.to_vec()), BlobWrite::UNHASHED).await?;
        let input = TaskInput {
            blob_key: key,
            filename,
            content_type: header.content_type.to_string(),
            width: header.width,
            height: header.height,
            size_bytes: bytes.len() as i64,
            sha256: sha256_hex(bytes),
        };
        let events = InferenceTask::default().handle(TaskCommand::Create {
            task_id,
            owner_id,
            detection_model_id,
            classification_model_id,
            input,
        })?;
        let dispatch = if inputs.is_some() { self.runner.dispatch(task_id) } else { None };
        let part = self.ledger.prepare(&task::stream_id(task_id), ExpectedVersion::NoStream, &events, ctx).await?;
        let cause = part.event_ids().next().map(|created| Cause::new(created, ctx.metadata.correlation_id));
        let appended = self.ledger.commit(vec![part]).await?;
        if let (Some(dispatch), Some(inputs), Some(cause)) = (dispatch, inputs, cause) {
            let (this, known) = (self.clone(), (InferenceTask::from_events(&events), events.len() as i64));
            let work = async move { this.infer(&models, inputs).await };
            self.runner.run_dispatched(dispatch, known, work, CommandContext::caused_by(cause));
        }
        Ok((task_id, appended.last_position))
    }

    /// The task if `user` may see it (its owner; admins see all), else NotFound.
    pub async fn visible(&self, task_id: TaskId, user_id: i64, admin: bool) -> Result<InferenceTask, AppError> {
        let (task, _) = self.ledger.load::<InferenceTask>(&task::stream_id(task_id)).await?;
        match task.owner_id() {
            Some(owner) if !task.is_gone() && (owner == user_id || admin) => Ok(task),
            _ => Err(AppError::NotFound("task")),
        }
    }

    /// The task's image bytes and content type.
    pub async fn input(&self, task: &InferenceTask) -> Result<(Vec<u8>, String), AppError> {
        let input = task.input().ok_or(AppError::NotFound("task"))?;
        let bytes = read_to_vec(&*self.blobs, &input.blob_key).await?.ok_or(AppError::NotFound("task"))?;
        Ok((bytes, input.content_type.clone()))
    }

    /// DELETE: cancels a task not finished yet, deletes a finished one; the image goes.
    pub async fn delete(&self, task_id: TaskId, user_id: i64, admin: bool, ctx: &CommandContext) -> Result<Option<Position>, AppError> {
        let task = self.visible(task_id, user_id, admin).await?;
        let (_, position) = self.ledger.execute::<InferenceTask>(&task::stream_id(task_id), ctx, |t| t.handle(TaskCommand::Delete)).await?;
        if let Some(input) = task.input() {
            self.blobs.delete(&input.blob_key).await?;
        }
        Ok(position)
    }

    /// Runs one task to its end, exactly once as far as the history can tell (see
    /// [`JobRunner::run`]). `cause`: the task's `InferenceTaskCreated`, which its start
    /// and result record as their cause.
    pub async fn run(&self, task_id: TaskId, cause: Cause) -> Result<(), AppError> {
        self.runner.run(self, task_id, &CommandContext::caused_by(cause)).await
    }

    /// The models' inputs from the task's stored image.
    async fn stored_inputs(&self, task: &InferenceTask, models: &TaskModels) -> Result<ModelInputs, String> {
        let input = task.input().ok_or("the task has no input")?;
        // The turn before the read: the bytes of tasks waiting to decode stay on disk.
        let turn = self.decode_turn().await.map_err(|e| format!("image decoder: {e}"))?;
        let bytes = read_to_vec(&*self.blobs, &input.blob_key).await.map_err(|e| e.to_string())?.ok_or("the input image is gone")?;
        let (images, engine, models) = (self.images.clone(), self.engine.clone()?, models.clone());
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            models.inputs(&engine, &images.decode(&bytes).map_err(|refused| refused.0)?.image)
        })
        .await
        .map_err(|e| format!("image decoder: {e}"))?
    }

    /// Runs the detector and then the classifier; only the sessions' runs take the model
    /// threads, the one resource every task queues for.
    async fn infer(&self, models: &TaskModels, inputs: Result<ModelInputs, String>) -> Result<(InferenceResult, f64), String> {
        let outputs = self
            .model_threads
            .run(self.engine.clone()?, models.detector, models.classifier, inputs?)
            .await
            .ok_or("the model threads stopped")??;
        let primitives = decode_detections(&outputs.detections, &models.detection, SCORE_THRESHOLD, NMS_IOU, MAX_PRIMITIVES)
            .map_err(|e| e.to_string())?;
        let (image_class, _) = top_class(&outputs.probabilities, &models.scene.classes).map_err(|e| e.to_string())?;
        Ok((InferenceResult { image_class, primitives }, outputs.model_ms))
    }
}

/// A task's detector and scene classifier, with their manifests.
#[derive(Clone)]
struct TaskModels {
    detector: ModelId,
    classifier: ModelId,
    detection: ModelManifest,
    scene: ModelManifest,
}

impl TaskModels {
    /// The image as both models take it: one tensor when their inputs agree.
    fn inputs(&self, engine: &Arc<dyn InferenceEngine>, image: &RgbImage) -> Result<ModelInputs, String> {
        let detection = engine.input(self.detector, image).map_err(|e| e.0)?;
        let classification = if self.detection.input.same_tensor_as(&self.scene.input) {
            None
        } else {
            Some(engine.input(self.classifier, image).map_err(|e| e.0)?)
        };
        Ok(ModelInputs { detection, classification })
    }
}

/// Images decoded at once unless configured: one per core.
pub fn default_concurrent_decodes() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// What a user asks for: their image through these two models.
pub struct NewTask {
    pub owner_id: i64,
    pub detection_model_id: ModelId,
    pub classification_model_id: ModelId,
}

/// A task's run: its models on its stored image.
#[async_trait]
impl JobKind for InferenceTasks {
    type Job = InferenceTask;

    async fn perform(&self, _: TaskId, task: &InferenceTask, _: &ProgressReport) -> Result<Outcome<(InferenceResult, f64)>, AppError> {
        Ok(match self.task_models(task.models()).await {
            Ok(models) => {
                let inputs = self.stored_inputs(task, &models).await;
                self.infer(&models, inputs).await
            }
            Err(reason) => Err(reason),
        })
    }
}

/// Loads a model into the engine on the blocking pool (it parses and optimises the
/// graph). The outer error is the worker's; the inner one is the engine refusing it.
async fn load_off_runtime(
    engine: &Arc<dyn InferenceEngine>,
    id: ModelId,
    manifest: ModelManifest,
    onnx: impl AsRef<[u8]> + Send + 'static,
) -> Result<Result<(), EngineError>, AppError> {
    let engine = engine.clone();
    Ok(tokio::task::spawn_blocking(move || engine.load(id, &manifest, onnx.as_ref())).await?)
}
