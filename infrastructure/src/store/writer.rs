//! Group commit: one task per process drains whatever appends are waiting and commits
//! them in one transaction. Each caller is answered only after that commit, so
//! per-command durability holds while many commands share one fsync.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use medledger_application::ports::{Appended, ChainHead, Position, RecordedEvent, StoreError, StreamWrite};
use tokio::sync::{mpsc, oneshot, watch};

/// Upper bound of events per transaction: large enough to amortise the commit, small
/// enough to keep the head lock short for writers in other processes.
const MAX_BATCH_EVENTS: usize = 2_000;
const QUEUE_DEPTH: usize = 4_096;
const LINGER_YIELDS: usize = 4;
/// Events this process committed last, kept for its own subscribers (see [`Recent`]).
const RECENT_EVENTS: usize = 4_096;

type Reply = oneshot::Sender<Result<Appended, StoreError>>;

/// What one transaction committed.
pub(crate) struct Committed {
    /// One result per request, in order.
    pub results: Vec<Result<Appended, StoreError>>,
    pub head: ChainHead,
    /// The rows inserted, exactly as stored.
    pub rows: Vec<RecordedEvent>,
}

#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// Plans and commits `requests` in one transaction. An `Err` means nothing was
    /// committed.
    async fn commit(&self, requests: &[Vec<StreamWrite>]) -> Result<Committed, StoreError>;
}

/// The events this process committed last, in position order with no gap: the
/// subscribers of this process take them from here instead of reading back what was
/// just written. A batch that does not follow on (another process appended in
/// between) starts the run afresh, so whatever this returns is exactly the history.
#[derive(Default)]
pub(crate) struct Recent(Mutex<VecDeque<RecordedEvent>>);

impl Recent {
    fn remember(&self, rows: Vec<RecordedEvent>) {
        let Some(first) = rows.first().map(|r| r.position) else { return };
        let mut recent = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.back().is_some_and(|last| last.position + 1 != first) {
            recent.clear();
        }
        recent.extend(rows);
        let excess = recent.len().saturating_sub(RECENT_EVENTS);
        recent.drain(..excess);
    }

    /// Up to `limit` events after `after`, when the run holds the very next one.
    pub fn after(&self, after: Position, limit: usize) -> Option<Vec<RecordedEvent>> {
        let recent = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let first = recent.front()?.position;
        if after + 1 < first || recent.back()?.position <= after {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        Some(recent.iter().skip(skip).take(limit).cloned().collect())
    }
}

pub(crate) struct GroupCommitWriter {
    queue: mpsc::Sender<(Vec<StreamWrite>, Reply)>,
    recent: Arc<Recent>,
}

impl GroupCommitWriter {
    pub fn spawn(backend: Arc<dyn Backend>, committed: Arc<watch::Sender<Position>>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let recent = Arc::new(Recent::default());
        tokio::spawn(run(backend, rx, committed, recent.clone()));
        Self { queue, recent }
    }

    pub fn recent(&self, after: Position, limit: usize) -> Option<Vec<RecordedEvent>> {
        self.recent.after(after, limit)
    }

    pub async fn append(&self, writes: Vec<StreamWrite>) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((writes, reply)).await.map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
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
    recent: Arc<Recent>,
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
        commit_batch(&*backend, &committed, &recent, requests, replies).await;
    }
}

/// Makes a commit known: first to `recent`, then to the watch, so that a subscriber
/// woken by the watch finds the rows in `recent`.
fn publish(committed: &watch::Sender<Position>, recent: &Recent, done: Committed) -> Vec<Result<Appended, StoreError>> {
    recent.remember(done.rows);
    advance(committed, done.head.position);
    record_appended(&done.results);
    done.results
}

async fn commit_batch(
    backend: &dyn Backend,
    committed: &watch::Sender<Position>,
    recent: &Recent,
    requests: Vec<Vec<StreamWrite>>,
    replies: Vec<Reply>,
) {
    match backend.commit(&requests).await {
        Ok(done) => {
            for (reply, result) in replies.into_iter().zip(publish(committed, recent, done)) {
                let _ = reply.send(result);
            }
        }
        Err(_) if requests.len() > 1 => {
            // Something in the batch made the transaction fail: commit each request
            // on its own so one bad request cannot fail its neighbours.
            for (request, reply) in requests.into_iter().zip(replies) {
                let result = match backend.commit(std::slice::from_ref(&request)).await {
                    Ok(done) => publish(committed, recent, done).pop().unwrap_or(Err(StoreError::Empty)),
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
    let events: i64 =
        results.iter().filter_map(|r| r.as_ref().ok()).filter(|a| !a.duplicate).map(|a| a.last_position - a.first_position + 1).sum();
    metrics::counter!("medledger_events_appended_total").increment(events as u64);
    metrics::counter!("medledger_append_batches_total").increment(1);
}

fn count(writes: &[StreamWrite]) -> usize {
    writes.iter().map(|w| w.events.len()).sum::<usize>().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn rows(positions: std::ops::RangeInclusive<Position>) -> Vec<RecordedEvent> {
        positions
            .map(|position| RecordedEvent {
                position,
                stream_id: "s".into(),
                version: position,
                event_id: Uuid::from_u128(position as u128),
                event_type: "T".into(),
                schema_version: 1,
                payload: "{}".into(),
                metadata: "{}".into(),
                recorded_at_us: 0,
                prev_hash: [0; 32],
                hash: [0; 32],
            })
            .collect()
    }

    fn positions(events: Option<Vec<RecordedEvent>>) -> Option<Vec<Position>> {
        events.map(|e| e.iter().map(|r| r.position).collect())
    }

    #[test]
    fn answers_only_from_the_next_position_on() {
        let recent = Recent::default();
        recent.remember(rows(5..=7));
        recent.remember(rows(8..=8));
        assert_eq!(positions(recent.after(4, 10)), Some(vec![5, 6, 7, 8]));
        assert_eq!(positions(recent.after(6, 1)), Some(vec![7]));
        assert_eq!(recent.after(3, 10).map(|e| e.len()), None, "position 4 is not held");
        assert_eq!(recent.after(8, 10).map(|e| e.len()), None, "nothing newer is known here");
    }

    #[test]
    fn a_gap_starts_afresh() {
        let recent = Recent::default();
        recent.remember(rows(1..=3));
        recent.remember(rows(6..=6));
        assert_eq!(positions(recent.after(0, 10)), None);
        assert_eq!(positions(recent.after(5, 10)), Some(vec![6]));
    }

    #[test]
    fn keeps_only_the_newest() {
        let recent = Recent::default();
        let n = RECENT_EVENTS as Position;
        recent.remember(rows(1..=n + 10));
        assert_eq!(positions(recent.after(0, 1)), None);
        assert_eq!(positions(recent.after(10, 1)), Some(vec![11]));
    }
}
