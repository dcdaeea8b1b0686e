//! Inference over HTTP (contract 004): tasks and models.

mod routes;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use medledger_application::inference::model_threads::ModelThreads;
use medledger_application::inference::{InferenceSaga, InferenceTasks};
use medledger_application::ports::InferenceEngine;
use medledger_infrastructure::onnx::{self, OnnxEngine, UploadedImages};
use medledger_projections::inference::TaskWatch;

use crate::config::Config;
use crate::module::{Module, Wiring};
use crate::ratelimit::RateLimiter;

pub use settings::Settings;

pub const MODULE: Module = Module {
    events: medledger_domain::inference::EVENTS,
    wire,
    routes: routes::routes,
    read_models: |contexts| {
        // The task list wakes the requests waiting on a task; replay builds it without them.
        let watch = contexts.get::<TaskWatch>().cloned().unwrap_or_default();
        medledger_projections::inference::read_models(watch)
    },
    sagas: |w| Ok(vec![Arc::new(InferenceSaga::new(w.get::<InferenceTasks>()?.clone(), w.config.contexts.inference.queue))]),
    start: |state| {
        Box::pin(async move {
            let builtins = crate::builtin_models::builtins();
            state.get::<InferenceTasks>()?.register_builtins(&builtins).await.map_err(|e| anyhow::anyhow!("built-in models: {e}"))
        })
    },
    ..Module::named("inference")
};

/// `POST /api/tasks` per user (each creation costs an upload, a decode and a run).
pub struct TaskLimiter(pub RateLimiter);

/// The model threads' name: they are `{MODEL_THREADS}-0`, `-1`, … (`serve` keeps
/// them at the process's priority by this name).
pub const MODEL_THREADS: &str = "inference";

/// What a model may take (issue 15). The watchdog is named like the model threads, so
/// `serve` leaves it at their priority: it must get a CPU while a model hogs them.
fn model_limits(config: &Config) -> onnx::ModelLimits {
    onnx::ModelLimits {
        max_memory_bytes: config.contexts.inference.model_max_memory_mb.saturating_mul(1024 * 1024),
        run_timeout: config.contexts.inference.model_run_timeout,
        watchdog_thread: format!("{MODEL_THREADS}-watchdog"),
    }
}

fn wire(w: &mut Wiring) -> anyhow::Result<()> {
    let config = w.config;
    let engine = match onnx::find_library(config.contexts.inference.onnxruntime.as_deref()) {
        Some(library) => OnnxEngine::with_limits(&library, config.contexts.inference.threads, model_limits(config))
            .map(|e| Arc::new(e) as Arc<dyn InferenceEngine>),
        None => Err("ONNX Runtime not found: run scripts/fetch-onnxruntime.sh or set MEDLEDGER_ONNXRUNTIME".to_string()),
    };
    if let Err(e) = &engine {
        tracing::warn!(error = %e, "inference tasks will fail until ONNX Runtime is available");
    }
    let images = Arc::new(UploadedImages {
        max_side: crate::builtin_models::MAX_IMAGE_SIDE,
        max_pixels: config.contexts.inference.max_image_pixels,
    });
    let model_threads = ModelThreads::new(
        MODEL_THREADS,
        config.contexts.inference.workers,
        config.contexts.inference.queue,
        config.contexts.inference.batch,
    )?;
    let core = w.core;
    let tasks = InferenceTasks::new(
        core.ledger.clone(),
        core.ids.clone(),
        core.blobs.clone(),
        images,
        engine,
        model_threads,
        config.contexts.inference.queue,
    )
    .with_concurrent_decodes(config.contexts.inference.image_decodes);
    w.provide(tasks);
    w.provide(TaskWatch::default());
    w.provide(TaskLimiter(RateLimiter::new(config.contexts.inference.task_rate_limit, Duration::from_secs(60))));
    Ok(())
}
