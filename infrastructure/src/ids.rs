//! Integer ids from the `id_sequences` table, gap-free: concurrent requests for one
//! sequence share one write. A burst of task submissions would otherwise queue a
//! synchronous commit per id on the event database's single write lock, between the
//! event appends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use medledger_application::ports::{IdGenerator, StoreError};
use sqlx::AnyPool;
use tokio::sync::oneshot;

use crate::store::unavailable;

type Reply = oneshot::Sender<Result<i64, StoreError>>;

/// Requests for one sequence that arrived while a write for it was under way.
#[derive(Default)]
struct Sequence {
    waiting: Vec<Reply>,
    writing: bool,
}

#[derive(Clone)]
pub struct SqlIdGenerator {
    pool: AnyPool,
    sequences: Arc<Mutex<HashMap<String, Sequence>>>,
}

impl SqlIdGenerator {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool, sequences: Arc::default() }
    }

    fn sequences(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sequence>> {
        self.sequences.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands out ids to everyone waiting on `name`, one write per round, until nobody
    /// is. Runs as its own task: a caller that goes away must not strand the others.
    async fn write_rounds(self, name: String) {
        loop {
            let waiting = {
                let mut sequences = self.sequences();
                let Some(sequence) = sequences.get_mut(&name) else { return };
                if sequence.waiting.is_empty() {
                    sequence.writing = false;
                    return;
                }
                std::mem::take(&mut sequence.waiting)
            };
            let count = waiting.len() as i64;
            let last: Result<i64, StoreError> = sqlx::query_scalar(
                "INSERT INTO id_sequences (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = id_sequences.value + $2 RETURNING value",
            )
            .bind(&name)
            .bind(count)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable);
            for (i, reply) in waiting.into_iter().enumerate() {
                let _ = reply.send(last.clone().map(|last| last - count + 1 + i as i64));
            }
        }
    }
}

#[async_trait]
impl IdGenerator for SqlIdGenerator {
    async fn next_id(&self, sequence: &str) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start_writing = {
            let mut sequences = self.sequences();
            let entry = sequences.entry(sequence.to_string()).or_default();
            entry.waiting.push(reply);
            !std::mem::replace(&mut entry.writing, true)
        };
        if start_writing {
            tokio::spawn(self.clone().write_rounds(sequence.to_string()));
        }
        answer.await.map_err(|_| StoreError::Unavailable("the id writer stopped".into()))?
    }
}
