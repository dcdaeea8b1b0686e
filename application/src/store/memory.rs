//! An `EventStore` in memory, for given/when/then tests of use cases without a
//! database. It keeps the port's promises as the SQL adapters do, through the same
//! planning (`plan`): gapless global positions, expected versions, all-or-nothing
//! multi-stream appends, idempotent retries by event id, and the hash chain.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use super::plan::{self, Existing, Snapshot};
use crate::ports::{Appended, ChainHead, EventStore, Position, RecordedEvent, StoreError, StreamWrite};

#[derive(Default)]
struct Stored {
    /// Every event, in position order: position `n` is `events[n - 1]`.
    events: Vec<RecordedEvent>,
    versions: HashMap<String, i64>,
    by_id: HashMap<uuid::Uuid, Existing>,
    head: Option<ChainHead>,
}

pub struct InMemoryEventStore {
    stored: Mutex<Stored>,
    head: watch::Sender<Position>,
}

impl Default for InMemoryEventStore {
    fn default() -> Self {
        Self { stored: Mutex::default(), head: watch::channel(0).0 }
    }
}

impl InMemoryEventStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn stored(&self) -> std::sync::MutexGuard<'_, Stored> {
        // A panic mid-append changes nothing before the plan is complete: the data is whole.
        self.stored.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl EventStore for InMemoryEventStore {
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Appended, StoreError> {
        let requests = [writes];
        let (streams, ids) = plan::keys(&requests);
        let mut stored = self.stored();
        let snapshot = Snapshot {
            head: stored.head.unwrap_or(ChainHead::GENESIS),
            versions: streams.iter().filter_map(|s| stored.versions.get(s).map(|v| (s.clone(), *v))).collect(),
            existing: ids.iter().filter_map(|id| stored.by_id.get(id).map(|e| (*id, e.clone()))).collect(),
        };
        let now_us = chrono::Utc::now().timestamp_micros();
        let planned = plan::plan(snapshot, &requests, now_us);
        let result = planned.results.into_iter().next().unwrap_or(Err(StoreError::Empty))?;
        for row in planned.rows {
            stored.versions.insert(row.stream_id.clone(), row.version);
            let existing = Existing {
                position: row.position,
                stream_id: row.stream_id.clone(),
                event_type: row.event_type.clone(),
                payload: row.payload.clone(),
            };
            stored.by_id.insert(row.event_id, existing);
            stored.events.push(row);
        }
        stored.head = Some(planned.head);
        let head = planned.head.position;
        drop(stored);
        self.head.send_if_modified(|p| std::mem::replace(p, head) != head);
        Ok(result)
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.stored().events.iter().filter(|e| e.stream_id == stream_id).cloned().collect())
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = usize::try_from(after.max(0)).unwrap_or(usize::MAX);
        Ok(self.stored().events.iter().skip(from).take(limit).cloned().collect())
    }

    async fn head(&self) -> Result<ChainHead, StoreError> {
        Ok(self.stored().head.unwrap_or(ChainHead::GENESIS))
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::chain::verify_store;
    use crate::ports::{ExpectedVersion, NewEvent};

    fn event(n: u128) -> NewEvent {
        NewEvent {
            event_id: Uuid::from_u128(n),
            event_type: "T".into(),
            schema_version: 1,
            payload: format!("{{\"n\":{n}}}"),
            metadata: "{}".into(),
        }
    }

    fn write(stream: &str, expected: ExpectedVersion, ids: &[u128]) -> Vec<StreamWrite> {
        vec![StreamWrite { stream_id: stream.into(), expected, events: ids.iter().map(|&n| event(n)).collect() }]
    }

    #[tokio::test]
    async fn positions_versions_retries_and_the_chain_hold() {
        let store = InMemoryEventStore::new();
        assert_eq!(store.append(write("a-1", ExpectedVersion::NoStream, &[1, 2])).await.unwrap().last_position, 2);
        let refused = store.append(write("a-1", ExpectedVersion::NoStream, &[3])).await;
        assert!(matches!(refused, Err(StoreError::Conflict { actual: 2, .. })), "{refused:?}");
        let retried = store.append(write("a-1", ExpectedVersion::NoStream, &[1, 2])).await.unwrap();
        assert_eq!((retried.first_position, retried.last_position, retried.duplicate), (1, 2, true));
        store.append(write("b-1", ExpectedVersion::Any, &[4])).await.unwrap();
        store.append(write("a-1", ExpectedVersion::Exact(2), &[5])).await.unwrap();
        let all = store.read_all(0, 100).await.unwrap();
        assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2, 3, 4], "gapless: a refused append takes no position");
        assert_eq!(store.read_all(2, 1).await.unwrap()[0].position, 3);
        assert_eq!(store.read_stream("a-1").await.unwrap().iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(*store.watch().borrow(), 4);
        assert!(verify_store(&store, |_| {}).await.is_ok());
    }
}
