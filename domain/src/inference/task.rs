//! Inference tasks: queued → in progress → done | failed, the lifecycle of a
//! [`Job`] whose starts are recorded as attempts. A DELETE before the end cancels the
//! task, after the end deletes it; either way it is gone.
//!
//! The job decides what a start, a result or a cancellation means (a second or late
//! result is a no-op); this aggregate words its decisions in the task's own events.

use serde::{Deserialize, Serialize};

use super::{InferenceResult, ModelId, TaskId, parse_sha256};
use crate::DomainError;
use crate::aggregate::{Aggregate, DomainEvent};
use crate::events::EventNames;
use crate::job::{Cancel, End, Job, JobAggregate, JobChange, JobStatus, Start, Starts};

pub fn stream_id(id: TaskId) -> String {
    format!("inference_task-{id}")
}

/// The image types a task accepts, with the file extension each gets.
pub const CONTENT_TYPES: [(&str, &str); 2] = [("image/jpeg", "jpeg"), ("image/png", "png")];
/// How many times a task may be started; a task that keeps killing its runner fails
/// instead of being retried forever.
pub const MAX_ATTEMPTS: u32 = 3;
const STARTS: Starts = Starts::Recorded { max_attempts: MAX_ATTEMPTS };
pub const MAX_REASON_CHARS: usize = 1_000;

/// The uploaded image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInput {
    pub blob_key: String,
    /// What the task list shows as `input_path`, e.g. `img_1.jpeg`.
    pub filename: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub size_bytes: i64,
    pub sha256: String,
}

impl TaskInput {
    /// The contract's name for a task's image: `img_{id}.jpeg` or `img_{id}.png`.
    pub fn filename_for(task_id: TaskId, content_type: &str) -> Result<String, DomainError> {
        let (_, ext) = CONTENT_TYPES
            .iter()
            .find(|(t, _)| *t == content_type)
            .ok_or_else(|| DomainError::invalid("content_type", "only JPEG and PNG images are accepted"))?;
        Ok(format!("img_{task_id}.{ext}"))
    }

    pub fn validate(mut self) -> Result<Self, DomainError> {
        if !CONTENT_TYPES.iter().any(|(t, _)| *t == self.content_type) {
            return Err(DomainError::invalid("content_type", "only JPEG and PNG images are accepted"));
        }
        if self.blob_key.trim().is_empty() || self.blob_key.chars().any(char::is_control) {
            return Err(DomainError::invalid("blob_key", "must not be empty"));
        }
        let filename = self.filename.trim();
        if filename.is_empty() || filename.chars().count() > 255 || filename.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
            return Err(DomainError::invalid("filename", "1-255 characters, no path separators"));
        }
        self.filename = filename.to_string();
        if self.width == 0 || self.height == 0 {
            return Err(DomainError::invalid("image", "the image has no pixels"));
        }
        if self.size_bytes <= 0 {
            return Err(DomainError::invalid("image", "the file is empty"));
        }
        self.sha256 = parse_sha256("sha256", &self.sha256)?;
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventNames)]
#[serde(tag = "type", content = "data")]
pub enum TaskEvent {
    InferenceTaskCreated {
        task_id: TaskId,
        owner_id: i64,
        detection_model_id: ModelId,
        classification_model_id: ModelId,
        input: TaskInput,
    },
    InferenceTaskStarted {
        task_id: TaskId,
        attempt: u32,
    },
    InferenceTaskCompleted {
        task_id: TaskId,
        result: InferenceResult,
        model_ms: f64,
    },
    InferenceTaskFailed {
        task_id: TaskId,
        reason: String,
    },
    /// Deleted before it finished.
    InferenceTaskCancelled {
        task_id: TaskId,
    },
    /// Deleted after it finished.
    InferenceTaskDeleted {
        task_id: TaskId,
    },
}

impl TaskEvent {
    pub fn task_id(&self) -> TaskId {
        match self {
            TaskEvent::InferenceTaskCreated { task_id, .. }
            | TaskEvent::InferenceTaskStarted { task_id, .. }
            | TaskEvent::InferenceTaskCompleted { task_id, .. }
            | TaskEvent::InferenceTaskFailed { task_id, .. }
            | TaskEvent::InferenceTaskCancelled { task_id }
            | TaskEvent::InferenceTaskDeleted { task_id } => *task_id,
        }
    }
}

impl DomainEvent for TaskEvent {}

#[derive(Debug)]
pub enum TaskCommand {
    /// Whether the models exist and have the right kinds is the application's check.
    Create {
        task_id: TaskId,
        owner_id: i64,
        detection_model_id: ModelId,
        classification_model_id: ModelId,
        input: TaskInput,
    },
    /// The runner took the task. Run the models only if the answer holds a
    /// `InferenceTaskStarted`: no events means there is nothing to run (finished or gone),
    /// and a `InferenceTaskFailed` means the task used up its attempts.
    Start,
    Complete {
        result: InferenceResult,
        model_ms: f64,
    },
    Fail {
        reason: String,
    },
    /// The user's DELETE.
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TaskStatus {
    #[serde(rename = "queued")]
    Queued,
    #[serde(rename = "in progress")]
    InProgress,
    #[serde(rename = "done")]
    Done,
    #[serde(rename = "failed")]
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::InProgress => "in progress",
            TaskStatus::Done => "done",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Failed)
    }
}

#[derive(Debug, Default)]
pub struct InferenceTask {
    id: Option<TaskId>,
    owner_id: i64,
    models: (ModelId, ModelId),
    input: Option<TaskInput>,
    job: Option<Job>,
    /// Deleted after it ended (a cancelled task is gone through its job).
    deleted: bool,
    result: Option<InferenceResult>,
    model_ms: Option<f64>,
    failure_reason: Option<String>,
}

impl InferenceTask {
    /// True once created, even after it is gone: the id stays taken.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn id(&self) -> Option<TaskId> {
        self.id
    }

    /// Cancelled or deleted: to its owner it no longer exists.
    pub fn is_gone(&self) -> bool {
        self.deleted || self.job.as_ref().is_some_and(|j| j.status() == JobStatus::Cancelled)
    }

    pub fn owner_id(&self) -> Option<i64> {
        self.id.map(|_| self.owner_id)
    }

    /// `None` before creation and once gone.
    pub fn status(&self) -> Option<TaskStatus> {
        if self.deleted {
            return None;
        }
        match self.job.as_ref()?.status() {
            JobStatus::Queued => Some(TaskStatus::Queued),
            JobStatus::Running => Some(TaskStatus::InProgress),
            JobStatus::Done => Some(TaskStatus::Done),
            JobStatus::Failed => Some(TaskStatus::Failed),
            JobStatus::Cancelled => None,
        }
    }

    /// Detection and classification model ids.
    pub fn models(&self) -> Option<(ModelId, ModelId)> {
        self.id.map(|_| self.models)
    }

    /// Still answers once the task is gone, so that clean-up can find the blob;
    /// readers serving the image must check [`Self::is_gone`].
    pub fn input(&self) -> Option<&TaskInput> {
        self.input.as_ref()
    }

    /// How many times the task was started.
    pub fn attempts(&self) -> u32 {
        self.job.as_ref().map_or(0, Job::attempts)
    }

    pub fn result(&self) -> Option<&InferenceResult> {
        if self.is_gone() { None } else { self.result.as_ref() }
    }

    /// Milliseconds the models took for the recorded result.
    pub fn model_ms(&self) -> Option<f64> {
        if self.is_gone() { None } else { self.model_ms }
    }

    pub fn failure_reason(&self) -> Option<&str> {
        if self.is_gone() { None } else { self.failure_reason.as_deref() }
    }

    /// The task's id and job, for the runner's commands; the job answers them, a gone
    /// task included (a late result for it is expected, not an error).
    fn job_of(&self) -> Result<(TaskId, &Job), DomainError> {
        self.id.zip(self.job.as_ref()).ok_or(DomainError::NotFound("task"))
    }
}

fn bounded_reason(reason: &str) -> String {
    // A failure must always be recordable, so an overlong reason is cut, not refused.
    let reason = reason.trim();
    let reason = if reason.is_empty() { "unknown error" } else { reason };
    reason.chars().take(MAX_REASON_CHARS).collect()
}

impl Aggregate for InferenceTask {
    type Command = TaskCommand;
    type Event = TaskEvent;
    const CATEGORY: &'static str = "inference_task";

    fn handle(&self, command: TaskCommand) -> Result<Vec<TaskEvent>, DomainError> {
        match command {
            TaskCommand::Create { task_id, owner_id, detection_model_id, classification_model_id, input } => {
                if self.exists() {
                    return Err(DomainError::AlreadyExists("task"));
                }
                Ok(vec![TaskEvent::InferenceTaskCreated {
                    task_id,
                    owner_id,
                    detection_model_id,
                    classification_model_id,
                    input: input.validate()?,
                }])
            }
            TaskCommand::Start => {
                let (task_id, job) = self.job_of()?;
                Ok(match job.start() {
                    Start::Run { attempt } => vec![TaskEvent::InferenceTaskStarted { task_id, attempt }],
                    Start::GiveUp { attempts } => {
                        vec![TaskEvent::InferenceTaskFailed { task_id, reason: format!("the task was interrupted {attempts} times") }]
                    }
                    Start::RunUnrecorded | Start::Nothing => vec![],
                })
            }
            TaskCommand::Complete { result, model_ms } => {
                let (task_id, job) = self.job_of()?;
                if job.succeed() == End::Ignore {
                    return Ok(vec![]);
                }
                result.validate()?;
                // f64 NaN would be stored as JSON null and break replay.
                if !(model_ms.is_finite() && model_ms >= 0.0) {
                    return Err(DomainError::invalid("model_ms", "must be a finite number of at least 0"));
                }
                Ok(vec![TaskEvent::InferenceTaskCompleted { task_id, result, model_ms }])
            }
            TaskCommand::Fail { reason } => {
                let (task_id, job) = self.job_of()?;
                Ok(match job.fail() {
                    End::Record => vec![TaskEvent::InferenceTaskFailed { task_id, reason: bounded_reason(&reason) }],
                    End::Ignore => vec![],
                })
            }
            TaskCommand::Delete => {
                let (task_id, job) = self.job_of()?;
                match job.cancel() {
                    _ if self.deleted => Err(DomainError::NotFound("task")),
                    Cancel::Cancel => Ok(vec![TaskEvent::InferenceTaskCancelled { task_id }]),
                    Cancel::Ended => Ok(vec![TaskEvent::InferenceTaskDeleted { task_id }]),
                    Cancel::Gone => Err(DomainError::NotFound("task")),
                }
            }
        }
    }

    fn apply(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::InferenceTaskCreated { task_id, owner_id, detection_model_id, classification_model_id, input } => {
                self.id = Some(*task_id);
                self.owner_id = *owner_id;
                self.models = (*detection_model_id, *classification_model_id);
                self.input = Some(input.clone());
                self.job = Some(Job::queued(STARTS));
            }
            TaskEvent::InferenceTaskCompleted { result, model_ms, .. } => {
                self.result = Some(result.clone());
                self.model_ms = Some(*model_ms);
            }
            TaskEvent::InferenceTaskFailed { reason, .. } => self.failure_reason = Some(reason.clone()),
            TaskEvent::InferenceTaskCancelled { .. } => self.result = None,
            TaskEvent::InferenceTaskDeleted { .. } => {
                self.deleted = true;
                self.result = None;
            }
            TaskEvent::InferenceTaskStarted { .. } => {}
        }
        if let (Some(job), Some(change)) = (self.job.as_mut(), event.job_change()) {
            job.apply(change);
        }
    }
}

impl TaskEvent {
    /// What the event does to the task's lifecycle.
    fn job_change(&self) -> Option<JobChange> {
        match self {
            TaskEvent::InferenceTaskStarted { attempt, .. } => Some(JobChange::Started { attempt: *attempt }),
            TaskEvent::InferenceTaskCompleted { .. } => Some(JobChange::Succeeded),
            TaskEvent::InferenceTaskFailed { .. } => Some(JobChange::Failed),
            TaskEvent::InferenceTaskCancelled { .. } => Some(JobChange::Cancelled),
            TaskEvent::InferenceTaskCreated { .. } | TaskEvent::InferenceTaskDeleted { .. } => None,
        }
    }
}

impl JobAggregate for InferenceTask {
    /// The result and the milliseconds the models took.
    type Output = (InferenceResult, f64);

    fn stream_id(id: i64) -> String {
        stream_id(id)
    }

    fn job(&self) -> Option<&Job> {
        self.job.as_ref()
    }

    fn start() -> TaskCommand {
        TaskCommand::Start
    }

    fn end(outcome: &Result<(InferenceResult, f64), String>) -> TaskCommand {
        match outcome {
            Ok((result, model_ms)) => TaskCommand::Complete { result: result.clone(), model_ms: *model_ms },
            Err(reason) => TaskCommand::Fail { reason: reason.clone() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::Primitive;
    use crate::testing::{Given, given};

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn input() -> TaskInput {
        TaskInput {
            blob_key: format!("blobs/{SHA}"),
            filename: TaskInput::filename_for(7, "image/jpeg").unwrap(),
            content_type: "image/jpeg".into(),
            width: 640,
            height: 480,
            size_bytes: 12_345,
            sha256: SHA.into(),
        }
    }

    fn result() -> InferenceResult {
        InferenceResult {
            image_class: "office".into(),
            primitives: vec![Primitive {
                primitive_class: "sphere".into(),
                x: 0.26,
                y: 0.3,
                width: 0.1,
                height: 0.2,
                rotation: 0.8,
                probability: 0.26,
            }],
        }
    }

    fn complete() -> TaskCommand {
        TaskCommand::Complete { result: result(), model_ms: 12.5 }
    }

    fn created() -> Given<InferenceTask> {
        let create = TaskCommand::Create { task_id: 7, owner_id: 42, detection_model_id: 1, classification_model_id: 3, input: input() };
        given::<InferenceTask>([]).when(create).and()
    }

    fn started() -> Given<InferenceTask> {
        created().when(TaskCommand::Start).and()
    }

    fn done() -> Given<InferenceTask> {
        started().when(complete()).and()
    }

    fn types(events: &[TaskEvent]) -> Vec<&'static str> {
        events.iter().map(EventNames::event_type).collect()
    }

    #[test]
    fn a_new_task_is_queued_for_its_owner() {
        let history = created();
        assert_eq!(types(history.history()), ["InferenceTaskCreated"]);
        let task = history.state();
        assert_eq!(task.id(), Some(7));
        assert_eq!(task.status(), Some(TaskStatus::Queued));
        assert_eq!(task.owner_id(), Some(42));
        assert_eq!(task.models(), Some((1, 3)));
        assert_eq!(task.input().map(|i| i.filename.as_str()), Some("img_7.jpeg"));
        assert_eq!((task.attempts(), task.result(), task.failure_reason()), (0, None, None));
        assert!(!task.is_gone());
    }

    #[test]
    fn a_task_id_is_taken_for_good() {
        let create = || TaskCommand::Create { task_id: 7, owner_id: 1, detection_model_id: 1, classification_model_id: 3, input: input() };
        assert_eq!(created().state().handle(create()), Err(DomainError::AlreadyExists("task")));
        let mut gone = created();
        gone.decide(TaskCommand::Delete).unwrap();
        assert_eq!(gone.state().handle(create()), Err(DomainError::AlreadyExists("task")));
    }

    #[test]
    fn input_filenames_follow_the_contract() {
        assert_eq!(TaskInput::filename_for(1, "image/jpeg"), Ok("img_1.jpeg".into()));
        assert_eq!(TaskInput::filename_for(12, "image/png"), Ok("img_12.png".into()));
        assert!(TaskInput::filename_for(1, "image/gif").is_err());
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let field = |input: TaskInput| match input.validate() {
            Err(DomainError::InvalidValue { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(TaskInput { content_type: "image/gif".into(), ..input() }), "content_type");
        assert_eq!(field(TaskInput { blob_key: "".into(), ..input() }), "blob_key");
        assert_eq!(field(TaskInput { filename: "../etc/passwd".into(), ..input() }), "filename");
        assert_eq!(field(TaskInput { width: 0, ..input() }), "image");
        assert_eq!(field(TaskInput { size_bytes: 0, ..input() }), "image");
        assert_eq!(field(TaskInput { sha256: "abc".into(), ..input() }), "sha256");
        let upper = TaskInput { sha256: SHA.to_uppercase(), filename: " img_7.jpeg ".into(), ..input() };
        assert_eq!(upper.validate(), Ok(input()), "normalised");
    }

    #[test]
    fn starting_a_queued_task_is_attempt_one() {
        let history = started();
        assert_eq!(history.history()[1], TaskEvent::InferenceTaskStarted { task_id: 7, attempt: 1 });
        let task = history.state();
        assert_eq!(task.status(), Some(TaskStatus::InProgress));
        assert_eq!(task.attempts(), 1);
    }

    #[test]
    fn starting_after_a_crash_is_the_next_attempt_until_the_attempts_run_out() {
        let mut history = started();
        assert_eq!(history.decide(TaskCommand::Start), Ok(vec![TaskEvent::InferenceTaskStarted { task_id: 7, attempt: 2 }]));
        assert_eq!(history.state().attempts(), 2);
        history.decide(TaskCommand::Start).unwrap();
        assert_eq!(history.state().attempts(), MAX_ATTEMPTS);
        assert_eq!(types(&history.decide(TaskCommand::Start).unwrap()), ["InferenceTaskFailed"]);
        let task = history.state();
        assert_eq!(task.status(), Some(TaskStatus::Failed));
        assert_eq!(task.failure_reason(), Some("the task was interrupted 3 times"));
        assert_eq!(history.decide(TaskCommand::Start), Ok(vec![]));
    }

    #[test]
    fn a_result_is_recorded_exactly_once() {
        let mut history = started();
        assert_eq!(types(&history.decide(complete()).unwrap()), ["InferenceTaskCompleted"]);
        let task = history.state();
        assert_eq!(task.status(), Some(TaskStatus::Done));
        assert_eq!(task.result(), Some(&result()));
        assert_eq!(task.model_ms(), Some(12.5));
        for late in [complete(), TaskCommand::Fail { reason: "late".into() }, TaskCommand::Start] {
            assert_eq!(history.decide(late), Ok(vec![]));
        }
        assert_eq!(types(history.history()).iter().filter(|t| **t == "InferenceTaskCompleted").count(), 1);
    }

    #[test]
    fn a_result_for_a_task_that_was_not_started_is_ignored() {
        assert_eq!(created().state().handle(complete()), Ok(vec![]));
    }

    #[test]
    fn results_that_cannot_be_stored_faithfully_are_refused() {
        let task = started().state();
        for model_ms in [f64::NAN, f64::INFINITY, -1.0] {
            assert!(matches!(
                task.handle(TaskCommand::Complete { result: result(), model_ms }),
                Err(DomainError::InvalidValue { field: "model_ms", .. })
            ));
        }
        let mut bad = result();
        bad.primitives[0].x = f32::NAN;
        assert!(task.handle(TaskCommand::Complete { result: bad, model_ms: 1.0 }).is_err());
    }

    #[test]
    fn queued_and_running_tasks_can_fail_once() {
        for mut history in [created(), started()] {
            let long = format!("  {}  ", "e".repeat(MAX_REASON_CHARS + 10));
            assert_eq!(types(&history.decide(TaskCommand::Fail { reason: long }).unwrap()), ["InferenceTaskFailed"]);
            let task = history.state();
            assert_eq!(task.status(), Some(TaskStatus::Failed));
            assert_eq!(task.failure_reason().map(|r| r.chars().count()), Some(MAX_REASON_CHARS));
            assert_eq!(history.decide(TaskCommand::Fail { reason: "again".into() }), Ok(vec![]));
            assert_eq!(history.decide(complete()), Ok(vec![]));
        }
        let mut history = created();
        history.decide(TaskCommand::Fail { reason: "   ".into() }).unwrap();
        assert_eq!(history.state().failure_reason(), Some("unknown error"));
    }

    #[test]
    fn deleting_an_unfinished_task_cancels_it_and_late_results_are_no_ops() {
        for mut history in [created(), started()] {
            assert_eq!(history.decide(TaskCommand::Delete), Ok(vec![TaskEvent::InferenceTaskCancelled { task_id: 7 }]));
            let task = history.state();
            assert!(task.is_gone());
            assert_eq!(task.status(), None);
            assert!(task.input().is_some(), "clean-up still finds the blob");
            for late in [complete(), TaskCommand::Fail { reason: "late".into() }, TaskCommand::Start] {
                assert_eq!(history.decide(late), Ok(vec![]));
            }
            assert_eq!(history.decide(TaskCommand::Delete), Err(DomainError::NotFound("task")));
        }
    }

    #[test]
    fn deleting_a_finished_task_deletes_it() {
        let mut failed = started();
        failed.decide(TaskCommand::Fail { reason: "bad image".into() }).unwrap();
        for mut history in [done(), failed] {
            assert_eq!(history.decide(TaskCommand::Delete), Ok(vec![TaskEvent::InferenceTaskDeleted { task_id: 7 }]));
            let task = history.state();
            assert!(task.is_gone());
            assert_eq!((task.status(), task.result(), task.failure_reason(), task.model_ms()), (None, None, None, None));
            assert_eq!(history.decide(TaskCommand::Delete), Err(DomainError::NotFound("task")));
            assert_eq!(history.decide(complete()), Ok(vec![]));
        }
    }

    #[test]
    fn commands_on_a_missing_task_are_not_found() {
        let none = InferenceTask::default();
        for command in [TaskCommand::Start, complete(), TaskCommand::Fail { reason: "x".into() }, TaskCommand::Delete] {
            assert_eq!(none.handle(command), Err(DomainError::NotFound("task")));
        }
        assert_eq!((none.status(), none.owner_id(), none.models()), (None, None, None));
    }

    #[test]
    fn events_and_statuses_use_the_stored_and_contract_words() {
        let history = done();
        assert_eq!(types(history.history()), ["InferenceTaskCreated", "InferenceTaskStarted", "InferenceTaskCompleted"]);
        for event in history.history() {
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json["type"], event.event_type());
            assert_eq!(&serde_json::from_value::<TaskEvent>(json).unwrap(), event);
        }
        let json = serde_json::to_value(&history.history()[2]).unwrap();
        assert_eq!(json["data"]["result"]["primitives"][0]["primitive_class"], "sphere");
        for (status, word) in [
            (TaskStatus::Queued, "queued"),
            (TaskStatus::InProgress, "in progress"),
            (TaskStatus::Done, "done"),
            (TaskStatus::Failed, "failed"),
        ] {
            assert_eq!(status.as_str(), word);
            assert_eq!(serde_json::to_value(status).unwrap(), word);
            assert_eq!(serde_json::from_value::<TaskStatus>(word.into()).unwrap(), status);
        }
        assert!(TaskStatus::Failed.is_finished() && !TaskStatus::InProgress.is_finished());
        assert_eq!(stream_id(7), "inference_task-7");
        assert_eq!(crate::inference::model::stream_id(1), "model-1");
    }
}
