//! Inference's settings: the engine, its threads and queue, what a task and a model may take.

use std::path::PathBuf;

use crate::config::parse;
use clap::Args;

/// 2048×2048: sixteen times the side the built-in models take (128×128), so nothing a
/// model can see is lost, and one decode stays within 2048² × (8 + 3) bytes ≈ 46 MB.
pub const DEFAULT_MAX_IMAGE_PIXELS: u32 = 2048 * 2048;

/// A person creates a task and waits for its result; a script sending a folder at
/// this pace stays far below what the server runs (hundreds of tasks a second), and a
/// flood from one account is cut off within a minute.
pub const DEFAULT_TASK_RATE_LIMIT: u32 = 120;

/// The built-in models need a few MB each and run in about 3 ms an image: these
/// bounds are for models that try more (decision in docs/decisions.md, issue 15).
pub const DEFAULT_MODEL_MAX_MEMORY_MB: u32 = 1024;
pub const DEFAULT_MODEL_RUN_TIMEOUT_MS: &str = "5000";

/// Inference's settings: the engine, its threads and queue, what a task and a model may take.
#[derive(Args, Debug, Clone)]
#[group(skip)]
pub struct Settings {
    /// Inference tasks a user may create per minute; 0 turns the limit off.
    #[arg(long, env = "MEDLEDGER_TASK_RATE_LIMIT", global = true, default_value_t = DEFAULT_TASK_RATE_LIMIT)]
    pub task_rate_limit: u32,
    /// The largest task image, width × height, checked in its header before it is
    /// decoded (0 counts as 1).
    #[arg(long, env = "MEDLEDGER_MAX_IMAGE_PIXELS", global = true, value_parser = parse::pixels, default_value_t = u64::from(DEFAULT_MAX_IMAGE_PIXELS))]
    pub max_image_pixels: u64,
    /// Task images decoded at once (default: one per core); 0 lifts the bound.
    #[arg(long, env = "MEDLEDGER_IMAGE_DECODES", global = true, default_value_t = medledger_application::inference::default_concurrent_decodes())]
    pub image_decodes: usize,
    /// ONNX Runtime's shared library; unset: `ORT_DYLIB_PATH`, then where
    /// `scripts/fetch-onnxruntime.sh` puts it.
    #[arg(long, env = "MEDLEDGER_ONNXRUNTIME", global = true)]
    pub onnxruntime: Option<PathBuf>,
    /// Intra-op threads of each model session (0 counts as 1).
    #[arg(long = "inference-threads", env = "MEDLEDGER_INFERENCE_THREADS", global = true, value_parser = parse::at_least_one, default_value = "1")]
    pub threads: usize,
    /// Inference tasks in flight at once (0 counts as 1).
    #[arg(long = "inference-queue", env = "MEDLEDGER_INFERENCE_QUEUE", global = true, value_parser = parse::at_least_one, default_value = "32")]
    pub queue: usize,
    /// Threads that run models (0 counts as 1).
    #[arg(long = "inference-workers", env = "MEDLEDGER_INFERENCE_WORKERS", global = true, value_parser = parse::at_least_one, default_value = "1")]
    pub workers: usize,
    /// At most this many queued tasks share one run of a model (1: every task runs
    /// alone; 0 counts as 1).
    #[arg(long = "inference-batch", env = "MEDLEDGER_INFERENCE_BATCH", global = true, value_parser = parse::at_least_one, default_value = "8")]
    pub batch: usize,
    /// The most memory ONNX Runtime may allocate for all the models of this process
    /// together (their weights and the tensors of the runs under way); a run that would
    /// need more fails its task. Process-wide: the first engine of a process sets it.
    #[arg(long, env = "MEDLEDGER_MODEL_MAX_MEMORY_MB", global = true, value_parser = parse::at_least_one, default_value_t = DEFAULT_MODEL_MAX_MEMORY_MB as usize)]
    pub model_max_memory_mb: usize,
    /// The longest one model run may take, in milliseconds, before it is stopped and its
    /// task fails.
    #[arg(long = "model-run-timeout-ms", env = "MEDLEDGER_MODEL_RUN_TIMEOUT_MS", global = true, value_parser = parse::millis, default_value = DEFAULT_MODEL_RUN_TIMEOUT_MS)]
    pub model_run_timeout: std::time::Duration,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, FromArgMatches as _, Parser};

    use super::*;

    #[derive(Parser)]
    struct Line {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let command = Line::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.try_get_matches_from(["medledger"]).expect("the defaults parse");
        let s = Line::from_arg_matches(&matches).expect("the defaults parse").settings;
        assert_eq!(s.model_run_timeout, std::time::Duration::from_secs(5));
        assert_eq!(s.model_max_memory_mb, DEFAULT_MODEL_MAX_MEMORY_MB as usize);
        assert_eq!((s.threads, s.queue, s.workers, s.batch), (1, 32, 1, 8));
    }
}
