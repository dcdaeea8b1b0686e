//! Runs inference tasks. Tasks of one batch run concurrently (the engine serialises runs
//! of one model, and the appends of their starts and results share commits); the
//! runner's checkpoint moves past a batch only when every task in it has ended, so a
//! server killed mid-run starts those tasks again after a restart. The task aggregate
//! records one result per task however often it is run.

use async_trait::async_trait;
use futures::future::join_all;
use medledger_domain::EventTypes;
use medledger_domain::inference::task::{TaskEvent, TaskEventKind};

use crate::AppError;
use crate::codec::DecodedEvent;
use crate::inference::InferenceTasks;
use crate::metadata::Cause;
use crate::sagas::Saga;

pub struct InferenceSaga {
    tasks: InferenceTasks,
    batch: usize,
}

impl InferenceSaga {
    /// `batch`: how many tasks may be in flight at once.
    pub fn new(tasks: InferenceTasks, batch: usize) -> Self {
        Self { tasks, batch: batch.max(1) }
    }
}

#[async_trait]
impl Saga for InferenceSaga {
    fn name(&self) -> &'static str {
        "inference"
    }

    fn handles(&self) -> EventTypes {
        EventTypes::only([TaskEventKind::InferenceTaskCreated])
    }

    fn batch(&self) -> usize {
        self.batch
    }

    async fn handle(&self, event: &DecodedEvent) -> Result<(), AppError> {
        self.handle_batch(&[std::sync::Arc::new(event.clone())]).await
    }

    async fn handle_batch(&self, events: &[std::sync::Arc<DecodedEvent>]) -> Result<(), AppError> {
        let mut created = Vec::with_capacity(events.len());
        for event in events {
            if let Some(TaskEvent::InferenceTaskCreated { task_id, .. }) = event.to_domain::<TaskEvent>()? {
                created.push((task_id, Cause::of(event)));
            }
        }
        for result in join_all(created.into_iter().map(|(id, cause)| self.tasks.run(id, cause))).await {
            result?;
        }
        Ok(())
    }
}
