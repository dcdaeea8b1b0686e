//! The `inference_models` and `inference_tasks` read models (contract 004).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use medledger_application::codec::DecodedEvent;
use medledger_domain::EventTypes;
use medledger_domain::inference::model::ModelEvent;
use medledger_domain::inference::task::{TaskEvent, TaskStatus};
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::{Projection, ProjectionError, timestamp};

/// Inference's read models, the task list telling `tasks` which tasks changed.
pub fn read_models(tasks: TaskWatch) -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(InferenceModelsProjection), Arc::new(InferenceTasksProjection::new(tasks))]
}

pub struct InferenceModelsProjection;

#[async_trait]
impl Projection for InferenceModelsProjection {
    fn name(&self) -> &'static str {
        INFERENCE_MODELS
    }

    fn handles(&self) -> EventTypes {
        EventTypes::of::<ModelEvent>()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["inference_models"]
    }

    async fn apply(&self, tx: &mut AnyConnection, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let Some(ModelEvent::ModelRegistered { model_id, manifest, builtin, .. }) = event.to_domain::<ModelEvent>()? else { return Ok(()) };
        sqlx::query(
            "INSERT INTO inference_models (id, name, kind, builtin, manifest, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(model_id)
        .bind(manifest.name.clone())
        .bind(manifest.kind.as_str())
        .bind(i64::from(builtin))
        .bind(serde_json::to_string(&manifest).unwrap_or_default())
        .bind(timestamp(event.recorded.recorded_at()))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// The read models' names, as the runner's progress knows them (`Progress::caught_up_on`).
pub const INFERENCE_MODELS: &str = "inference_models";
pub const INFERENCE_TASKS: &str = "inference_tasks";

/// Which tasks ended, for requests waiting on one task (`?wait=`): each wakes when its
/// own task's row shows the end, not on every page of the task list.
#[derive(Clone, Default)]
pub struct TaskWatch(Arc<Mutex<HashMap<i64, Weak<Notify>>>>);

impl TaskWatch {
    /// Notified after each commit that ends task `id` (or deletes it). Create the `notified()`
    /// future before reading the row, so a change between the read and the wait counts.
    pub fn watch(&self, id: i64) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(notify) = map.get(&id).and_then(Weak::upgrade) {
            return notify;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        map.insert(id, Arc::downgrade(&notify));
        notify
    }

    fn changed(&self, id: i64) {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match map.get(&id).and_then(Weak::upgrade) {
            Some(notify) => notify.notify_waiters(),
            None => {
                map.remove(&id);
            }
        }
    }
}

pub struct InferenceTasksProjection {
    watch: TaskWatch,
}

impl InferenceTasksProjection {
    pub fn new(watch: TaskWatch) -> Self {
        Self { watch }
    }
}

#[async_trait]
impl Projection for InferenceTasksProjection {
    /// Waiters want the end of a task, so only events that end one wake them.
    fn committed(&self, events: &[Arc<DecodedEvent>]) {
        for event in events {
            // Applied a moment ago, so it decodes (from the event's cache).
            match event.to_domain::<TaskEvent>() {
                Ok(None | Some(TaskEvent::InferenceTaskCreated { .. } | TaskEvent::InferenceTaskStarted { .. })) | Err(_) => {}
                Ok(Some(ended)) => self.watch.changed(ended.task_id()),
            }
        }
    }

    fn name(&self) -> &'static str {
        INFERENCE_TASKS
    }

    fn handles(&self) -> EventTypes {
        EventTypes::of::<TaskEvent>()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["inference_tasks"]
    }

    async fn apply(&self, tx: &mut AnyConnection, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let Some(e) = event.to_domain::<TaskEvent>()? else { return Ok(()) };
        let at = timestamp(event.recorded.recorded_at());
        let query = match e {
            TaskEvent::InferenceTaskCreated { task_id, owner_id, detection_model_id, classification_model_id, input } => sqlx::query(
                "INSERT INTO inference_tasks (id, owner_id, status, detection_model_id, classification_model_id, input_path, \
                 attempts, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(task_id)
            .bind(owner_id)
            .bind(TaskStatus::Queued.as_str())
            .bind(detection_model_id)
            .bind(classification_model_id)
            .bind(input.filename)
            .bind(at.clone()),
            TaskEvent::InferenceTaskStarted { task_id, attempt } => {
                sqlx::query("UPDATE inference_tasks SET status = $2, attempts = $3, updated_at = $4 WHERE id = $1")
                    .bind(task_id)
                    .bind(TaskStatus::InProgress.as_str())
                    .bind(i64::from(attempt))
                    .bind(at.clone())
            }
            TaskEvent::InferenceTaskCompleted { task_id, result, .. } => {
                sqlx::query("UPDATE inference_tasks SET status = $2, result = $3, updated_at = $4 WHERE id = $1")
                    .bind(task_id)
                    .bind(TaskStatus::Done.as_str())
                    .bind(serde_json::to_string(&result).unwrap_or_default())
                    .bind(at.clone())
            }
            TaskEvent::InferenceTaskFailed { task_id, reason } => {
                sqlx::query("UPDATE inference_tasks SET status = $2, failure_reason = $3, updated_at = $4 WHERE id = $1")
                    .bind(task_id)
                    .bind(TaskStatus::Failed.as_str())
                    .bind(reason)
                    .bind(at.clone())
            }
            // Gone for its owner; the history keeps the events.
            TaskEvent::InferenceTaskCancelled { task_id } | TaskEvent::InferenceTaskDeleted { task_id } => {
                sqlx::query("DELETE FROM inference_tasks WHERE id = $1").bind(task_id)
            }
        };
        query.execute(&mut *tx).await?;
        Ok(())
    }
}

/// A task as its owner lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: i64,
    pub owner_id: i64,
    pub status: String,
    pub input_path: String,
    pub created_at: String,
    pub result: Option<String>,
    pub failure_reason: Option<String>,
}

type TaskTuple = (i64, i64, String, String, String, Option<String>, Option<String>);
const TASK_COLUMNS: &str = "id, owner_id, status, input_path, created_at, result, failure_reason";

fn task_row((id, owner_id, status, input_path, created_at, result, failure_reason): TaskTuple) -> TaskRow {
    TaskRow { id, owner_id, status, input_path, created_at, result, failure_reason }
}

/// The owner's tasks, oldest first (every task for an admin: `owner` None).
pub async fn tasks(pool: &sqlx::AnyPool, owner: Option<i64>) -> Result<Vec<TaskRow>, sqlx::Error> {
    let rows: Vec<TaskTuple> = match owner {
        Some(o) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TASK_COLUMNS} FROM inference_tasks WHERE owner_id = $1 ORDER BY id")))
                .bind(o)
                .fetch_all(pool)
                .await?
        }
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TASK_COLUMNS} FROM inference_tasks ORDER BY id"))).fetch_all(pool).await?
        }
    };
    Ok(rows.into_iter().map(task_row).collect())
}

pub async fn task(pool: &sqlx::AnyPool, id: i64) -> Result<Option<TaskRow>, sqlx::Error> {
    let row: Option<TaskTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TASK_COLUMNS} FROM inference_tasks WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(task_row))
}

/// Every model, by id.
pub async fn models(pool: &sqlx::AnyPool) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, kind FROM inference_models ORDER BY id").fetch_all(pool).await
}

/// How many tasks wait for a model and how many are running.
pub async fn task_backlog(pool: &sqlx::AnyPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'in progress' THEN 1 ELSE 0 END), 0) \
         FROM inference_tasks WHERE status IN ('queued', 'in progress')",
    )
    .fetch_one(pool)
    .await
}
