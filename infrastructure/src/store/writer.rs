//! Group commit: one task per process drains whatever appends are waiting and commits
//! them in one transaction. Each caller is answered only after that commit, so
//! per-command durability holds while many commands share one fsync.

use std::sync::Arc;

use async_trait::async_trait;
use medledger_application::ports::{Appended, ChainHead, Position, StoreError, StreamWrite};
use tokio::sync::{mpsc, oneshot, watch};

/// Upper bound of events per transaction: large enough to amortise the commit, small
/// enough to keep the head lock short for writers in other processes.
const MAX_BATCH_EVENTS: usize = 2_000;
const QUEUE_DEPTH: usize = 4_096;
const LINGER_YIELDS: usize = 4;

type Reply = oneshot::Sender<Result<Appended, StoreError>>;

#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// Plans and commits `requests` in one transaction; per-request results plus the
    /// new head. An `Err` means nothing was committed.
    async fn commit(&self, requests: &[Vec<StreamWrite>]) -> Result<(Vec<Result<Appended, StoreError>>, ChainHead), StoreError>;
}

pub(crate) struct GroupCommitWriter {
    queue: mpsc::Sender<(Vec<StreamWrite>, Reply)>,
}

impl GroupCommitWriter {
    pub fn spawn(backend: Arc<dyn Backend>, committed: Arc<watch::Sender<Position>>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(backend, rx, committed));
        Self { queue }
    }

    pub async fn append(&self, writes: Vec<StreamWrite>) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((writes, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }
}

pub(crate) fn advance(watch: &watch::Sender<Position>, position: Position) {
    watch.send_if_modified(|current| {
        if position > *current {
            *current = position;
            true
        } else {
            false
        }
    });
}

async fn run(
    backend: Arc<dyn Backend>,
    mut rx: mpsc::Receiver<(Vec<StreamWrite>, Reply)>,
    committed: Arc<watch::Sender<Position>>,
) {
    // One batch in flight at a time: batches serialise on the head lock anyway, and
    // a second one in flight only splits the waiting callers into smaller batches
    // (measured: lower throughput and higher latency, see BENCHMARKS.md).
    while let Some(first) = rx.recv().await {
        // The callers answered by the last batch are waking up and appending again;
        // let them reach the queue so they ride this batch instead of the next one.
        for _ in 0..LINGER_YIELDS {
            tokio::task::yield_now().await;
        }
        let mut events = count(&first.0);
        let mut requests = vec![first.0];
        let mut replies = vec![first.1];
        while events < MAX_BATCH_EVENTS {
            let Ok((writes, reply)) = rx.try_recv() else { break };
            events += count(&writes);
            requests.push(writes);
            replies.push(reply);
        }
        commit_batch(&*backend, &committed, requests, replies).await;
    }
}

async fn commit_batch(
    backend: &dyn Backend,
    committed: &watch::Sender<Position>,
    requests: Vec<Vec<StreamWrite>>,
    replies: Vec<Reply>,
) {
    match backend.commit(&requests).await {
        Ok((results, head)) => {
            advance(committed, head.position);
            record_appended(&results);
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(_) if requests.len() > 1 => {
            // Something in the batch made the transaction fail: commit each request
            // on its own so one bad request cannot fail its neighbours.
            for (request, reply) in requests.into_iter().zip(replies) {
                let result = match backend.commit(std::slice::from_ref(&request)).await {
                    Ok((mut results, head)) => {
                        advance(committed, head.position);
                        record_appended(&results);
                        results.pop().unwrap_or(Err(StoreError::Empty))
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn record_appended(results: &[Result<Appended, StoreError>]) {
    let events: i64 = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|a| !a.duplicate)
        .map(|a| a.last_position - a.first_position + 1)
        .sum();
    metrics::counter!("medledger_events_appended_total").increment(events as u64);
    metrics::counter!("medledger_append_batches_total").increment(1);
}

fn count(writes: &[StreamWrite]) -> usize {
    writes.iter().map(|w| w.events.len()).sum::<usize>().max(1)
}
