//! Dedicated threads for model runs. ONNX Runtime runs fastest on a thread that runs the
//! same sessions again and again (warm caches, no lock hand-offs); tokio's blocking pool
//! would spread the runs of 32 queued tasks over 32 threads queueing on one session.
//!
//! Tasks that queued up while a run was under way go through the models together, one
//! session run per model for up to `max_batch` images (decision #52): on the machine this
//! was measured on, a run of eight cost 13–15% less per image than eight runs of one. Nothing waits for a batch
//! to fill, so a task that arrives alone runs alone, at once.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use medledger_domain::inference::ModelId;
use tokio::sync::oneshot;

use crate::ports::{InferenceEngine, ModelInput};

/// What a task's models run on; no classification input when the detection input
/// serves both.
pub struct ModelInputs {
    pub detection: ModelInput,
    pub classification: Option<ModelInput>,
}

/// A task's two model outputs, and its share of the runs' wall time.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutputs {
    pub detections: Vec<f32>,
    pub probabilities: Vec<f32>,
    pub model_ms: f64,
}

/// One task's models and inputs, waiting for a model thread.
struct Job {
    engine: Arc<dyn InferenceEngine>,
    detector: ModelId,
    classifier: ModelId,
    inputs: ModelInputs,
    reply: oneshot::Sender<Result<ModelOutputs, String>>,
}

impl Job {
    /// Jobs that can share one run per model.
    fn batches_with(&self, other: &Job) -> bool {
        Arc::ptr_eq(&self.engine, &other.engine)
            && (self.detector, self.classifier) == (other.detector, other.classifier)
            && self.inputs.classification.is_some() == other.inputs.classification.is_some()
    }

    fn classification(&self) -> &ModelInput {
        self.inputs.classification.as_ref().unwrap_or(&self.inputs.detection)
    }
}

/// A fixed set of model threads taking jobs from one bounded queue.
#[derive(Clone)]
pub struct ModelThreads {
    queue: mpsc::SyncSender<Job>,
}

impl ModelThreads {
    /// `threads` threads named `{name}-{i}`, at most `queue` tasks waiting, at most
    /// `max_batch` images per run.
    pub fn new(name: &str, threads: usize, queue: usize, max_batch: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                while let Some(jobs) = next_jobs(&rx, max_batch.max(1)) {
                    for batch in by_models(jobs) {
                        run_batch(batch);
                    }
                }
            })?;
        }
        Ok(Self { queue: tx })
    }

    /// Runs the detector and then the classifier on `inputs` on a model thread; waits
    /// (without blocking the runtime) for a place in the queue and for the outputs.
    /// `None` if the threads are gone.
    pub async fn run(
        &self,
        engine: Arc<dyn InferenceEngine>,
        detector: ModelId,
        classifier: ModelId,
        inputs: ModelInputs,
    ) -> Option<Result<ModelOutputs, String>> {
        let (reply, answer) = oneshot::channel();
        let job = Job { engine, detector, classifier, inputs, reply };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                // Waiting for room blocks the sender: do that off the runtime.
                let queue = self.queue.clone();
                tokio::task::spawn_blocking(move || queue.send(job)).await.ok()?.ok()?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return None,
        }
        answer.await.ok()
    }
}

/// The next job, waiting for one, and whatever else is already queued, up to `max`.
/// `None` once the queue is closed. The lock is held only while taking jobs.
fn next_jobs(rx: &Mutex<mpsc::Receiver<Job>>, max: usize) -> Option<Vec<Job>> {
    let rx = rx.lock().ok()?;
    let mut jobs = vec![rx.recv().ok()?];
    while jobs.len() < max
        && let Ok(job) = rx.try_recv()
    {
        jobs.push(job);
    }
    Some(jobs)
}

/// Jobs grouped by the runs they can share, in order of arrival.
fn by_models(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut batches: Vec<Vec<Job>> = Vec::new();
    for job in jobs {
        match batches.iter_mut().find(|b| b[0].batches_with(&job)) {
            Some(batch) => batch.push(job),
            None => batches.push(vec![job]),
        }
    }
    batches
}

/// Runs a batch and answers each job. When a batch fails, its jobs run again one by one,
/// so that an image the models refuse fails only its own task.
fn run_batch(jobs: Vec<Job>) {
    match outputs(&jobs) {
        Ok(outputs) => {
            for (job, outputs) in jobs.into_iter().zip(outputs) {
                let _ = job.reply.send(Ok(outputs));
            }
        }
        Err(reason) if jobs.len() == 1 => {
            for job in jobs {
                let _ = job.reply.send(Err(reason.clone()));
            }
        }
        Err(_) => jobs.into_iter().for_each(|job| run_batch(vec![job])),
    }
}

/// Each job's outputs from one run of each model, with its share of the runs' time.
fn outputs(jobs: &[Job]) -> Result<Vec<ModelOutputs>, String> {
    let started = Instant::now();
    let first = &jobs[0];
    let detection: Vec<&ModelInput> = jobs.iter().map(|j| &j.inputs.detection).collect();
    let classification: Vec<&ModelInput> = jobs.iter().map(Job::classification).collect();
    let detections = first.engine.run(first.detector, &detection).map_err(|e| e.0)?;
    let probabilities = first.engine.run(first.classifier, &classification).map_err(|e| e.0)?;
    if detections.len() != jobs.len() || probabilities.len() != jobs.len() {
        return Err(format!("the models answered {} and {} of {} images", detections.len(), probabilities.len(), jobs.len()));
    }
    let model_ms = started.elapsed().as_secs_f64() * 1000.0 / jobs.len() as f64;
    Ok(detections
        .into_iter()
        .zip(probabilities)
        .map(|(detections, probabilities)| ModelOutputs { detections, probabilities, model_ms })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::ports::{EngineError, RgbImage};
    use medledger_domain::inference::ModelManifest;

    /// Sums each input times the model id; remembers the batch sizes it was given;
    /// refuses an input whose first value is negative, as a model refuses an input it
    /// cannot take. Runs wait until the test opens the gate.
    #[derive(Default)]
    struct SummingEngine {
        runs_begun: AtomicUsize,
        open: AtomicBool,
        batches: Mutex<Vec<(ModelId, usize)>>,
    }

    impl InferenceEngine for SummingEngine {
        fn load(&self, _: ModelId, _: &ModelManifest, _: &[u8]) -> Result<(), EngineError> {
            Ok(())
        }
        fn is_loaded(&self, _: ModelId) -> bool {
            true
        }
        fn input(&self, _: ModelId, _: &RgbImage) -> Result<ModelInput, EngineError> {
            Err(EngineError("not used".into()))
        }
        fn run(&self, model_id: ModelId, inputs: &[&ModelInput]) -> Result<Vec<Vec<f32>>, EngineError> {
            self.runs_begun.fetch_add(1, Ordering::SeqCst);
            while !self.open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.batches.lock().unwrap().push((model_id, inputs.len()));
            if inputs.iter().any(|i| i.values[0] < 0.0) {
                return Err(EngineError("refused".into()));
            }
            Ok(inputs.iter().map(|i| vec![i.values.iter().sum::<f32>() * model_id as f32]).collect())
        }
    }

    /// Submits one task per value; the first is taken by the model thread and held at
    /// the closed gate while the others queue behind it. Each task's outcome, in order.
    async fn run_behind_a_held_run(engine: &Arc<SummingEngine>, values: &[f32]) -> Vec<Result<ModelOutputs, String>> {
        let threads = ModelThreads::new("test-model", 1, 16, 8).unwrap();
        let submit = |value: f32| {
            let (threads, engine) = (threads.clone(), engine.clone());
            let inputs = ModelInputs { detection: ModelInput { width: 1, height: 1, values: vec![value, 1.0, 1.0] }, classification: None };
            tokio::spawn(async move { threads.run(engine, 1, 3, inputs).await.unwrap() })
        };
        let mut tasks = vec![submit(values[0])];
        while engine.runs_begun.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tasks.extend(values[1..].iter().map(|v| submit(*v)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        engine.open.store(true, Ordering::SeqCst);
        futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect()
    }

    #[tokio::test]
    async fn tasks_queued_behind_a_run_share_the_next_one() {
        let engine = Arc::new(SummingEngine::default());
        let values: Vec<f32> = (1..=11).map(|v| v as f32).collect();
        let outcomes = run_behind_a_held_run(&engine, &values).await;
        for (value, outcome) in values.iter().zip(outcomes) {
            let outcome = outcome.unwrap();
            assert_eq!(outcome.detections, vec![value + 2.0], "each task gets its own image's output");
            assert_eq!(outcome.probabilities, vec![3.0 * (value + 2.0)]);
        }
        let detector_runs: Vec<usize> = engine.batches.lock().unwrap().iter().filter(|(m, _)| *m == 1).map(|(_, n)| *n).collect();
        assert_eq!(detector_runs, vec![1, 8, 2], "one alone, then the queue in runs of at most eight");
    }

    #[tokio::test]
    async fn an_image_the_model_refuses_fails_only_its_own_task() {
        let engine = Arc::new(SummingEngine::default());
        let outcomes = run_behind_a_held_run(&engine, &[1.0, 2.0, -1.0, 4.0]).await;
        let detections: Vec<Result<Vec<f32>, String>> = outcomes.into_iter().map(|o| o.map(|o| o.detections)).collect();
        assert_eq!(detections, vec![Ok(vec![3.0]), Ok(vec![4.0]), Err("refused".to_string()), Ok(vec![6.0])]);
    }
}
