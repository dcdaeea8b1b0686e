//! Deciding a batch of appends, shared by every `EventStore` (PostgreSQL, SQLite, in
//! memory): expected versions, idempotent retries, positions and the hash chain. Pure,
//! so the adapters only do the IO.

use std::collections::HashMap;

use crate::chain::recorded_hash;
use crate::ports::{Appended, ChainHead, Position, RecordedEvent, StoreError, StreamWrite};
use uuid::Uuid;

/// An already-stored event, as far as a retry must match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub position: Position,
    pub stream_id: String,
    pub event_type: String,
    pub payload: String,
}

pub struct Plan {
    /// The events to insert, exactly as they will be stored.
    pub rows: Vec<RecordedEvent>,
    /// One result per request, in order.
    pub results: Vec<Result<Appended, StoreError>>,
    pub head: ChainHead,
}

/// What the adapter read inside its transaction, under the head lock.
pub struct Snapshot {
    pub head: ChainHead,
    /// Current version of every stream the batch touches (absent: 0).
    pub versions: HashMap<String, i64>,
    /// Already-stored events among the batch's event ids.
    pub existing: HashMap<Uuid, Existing>,
}

/// Plans `requests` in order. Each request (a set of stream writes) is all-or-nothing;
/// a refused request does not affect the others.
pub fn plan(mut snap: Snapshot, requests: &[Vec<StreamWrite>], recorded_at_us: i64) -> Plan {
    let mut rows: Vec<RecordedEvent> = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        let result = plan_one(&mut snap, request, recorded_at_us, &mut rows);
        results.push(result);
    }
    Plan { rows, results, head: snap.head }
}

fn plan_one(
    snap: &mut Snapshot,
    request: &[StreamWrite],
    recorded_at_us: i64,
    rows: &mut Vec<RecordedEvent>,
) -> Result<Appended, StoreError> {
    let ids: Vec<Uuid> = request.iter().flat_map(|w| w.events.iter().map(|e| e.event_id)).collect();
    if ids.is_empty() {
        return Err(StoreError::Empty);
    }
    let same = |w: &StreamWrite, e: &crate::ports::NewEvent| {
        snap.existing.get(&e.event_id).is_some_and(|x| x.stream_id == w.stream_id && x.event_type == e.event_type && x.payload == e.payload)
    };
    if let Some(e) = request.iter().flat_map(|w| w.events.iter().filter(|e| snap.existing.contains_key(&e.event_id) && !same(w, e))).next()
    {
        // The id is taken by another event: this is not a retry.
        return Err(StoreError::DuplicateEvent(e.event_id));
    }
    let known: Vec<Position> = ids.iter().filter_map(|id| snap.existing.get(id).map(|x| x.position)).collect();
    if known.len() == ids.len() {
        // A retry of a command that was already stored: report where it went.
        let (first, last) = (known.iter().min().copied(), known.iter().max().copied());
        return Ok(Appended { first_position: first.unwrap_or(0), last_position: last.unwrap_or(0), duplicate: true });
    }
    if let Some(id) = ids.iter().find(|id| snap.existing.contains_key(id)) {
        return Err(StoreError::DuplicateEvent(*id));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    if let Some(id) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(StoreError::DuplicateEvent(*id));
    }
    // Check every stream before writing any, so a refused request leaves no rows.
    let mut next_versions: HashMap<&str, i64> = HashMap::new();
    for w in request {
        let current =
            next_versions.get(w.stream_id.as_str()).copied().unwrap_or_else(|| snap.versions.get(&w.stream_id).copied().unwrap_or(0));
        if !w.expected.admits(current) {
            return Err(StoreError::Conflict { stream_id: w.stream_id.clone(), expected: w.expected, actual: current });
        }
        next_versions.insert(&w.stream_id, current + w.events.len() as i64);
    }
    let first_position = snap.head.position + 1;
    for w in request {
        let mut version = snap.versions.get(&w.stream_id).copied().unwrap_or(0);
        for e in &w.events {
            version += 1;
            let position = snap.head.position + 1;
            let mut row = RecordedEvent {
                position,
                stream_id: w.stream_id.clone(),
                version,
                event_id: e.event_id,
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                recorded_at_us,
                prev_hash: snap.head.hash,
                hash: [0; 32],
            };
            row.hash = recorded_hash(&row.prev_hash, &row);
            let hash = row.hash;
            rows.push(row);
            snap.existing.insert(
                e.event_id,
                Existing { position, stream_id: w.stream_id.clone(), event_type: e.event_type.clone(), payload: e.payload.clone() },
            );
            snap.head = ChainHead { position, hash };
        }
        snap.versions.insert(w.stream_id.clone(), version);
    }
    Ok(Appended { first_position, last_position: snap.head.position, duplicate: false })
}

/// Streams and event ids a batch touches, for the adapter's two look-ups.
pub fn keys(requests: &[Vec<StreamWrite>]) -> (Vec<String>, Vec<Uuid>) {
    let mut streams: Vec<String> = requests.iter().flatten().map(|w| w.stream_id.clone()).collect();
    streams.sort();
    streams.dedup();
    let ids = requests.iter().flatten().flat_map(|w| w.events.iter().map(|e| e.event_id)).collect();
    (streams, ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{ExpectedVersion, NewEvent};

    fn ev(n: u128) -> NewEvent {
        NewEvent { event_id: Uuid::from_u128(n), event_type: "T".into(), schema_version: 1, payload: "{}".into(), metadata: "{}".into() }
    }

    fn write(stream: &str, expected: ExpectedVersion, ids: &[u128]) -> StreamWrite {
        StreamWrite { stream_id: stream.into(), expected, events: ids.iter().map(|&n| ev(n)).collect() }
    }

    fn empty() -> Snapshot {
        Snapshot { head: ChainHead::GENESIS, versions: HashMap::new(), existing: HashMap::new() }
    }

    #[test]
    fn a_refused_request_in_a_batch_leaves_the_others_alone() {
        let requests = vec![
            vec![write("a", ExpectedVersion::NoStream, &[1])],
            vec![write("a", ExpectedVersion::NoStream, &[2])],
            vec![write("b", ExpectedVersion::Any, &[3]), write("a", ExpectedVersion::Exact(1), &[4])],
        ];
        let p = plan(empty(), &requests, 0);
        assert!(p.results[0].is_ok());
        assert!(matches!(p.results[1], Err(StoreError::Conflict { actual: 1, .. })));
        assert_eq!(p.results[2].as_ref().unwrap().last_position, 3);
        let versions: Vec<(String, i64)> = p.rows.iter().map(|r| (r.stream_id.clone(), r.version)).collect();
        assert_eq!(versions, [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]);
    }

    #[test]
    fn a_multi_stream_request_is_all_or_nothing() {
        let requests = vec![vec![write("x", ExpectedVersion::Any, &[1]), write("y", ExpectedVersion::Exact(5), &[2])]];
        let p = plan(empty(), &requests, 0);
        assert!(p.results[0].is_err());
        assert!(p.rows.is_empty());
        assert_eq!(p.head, ChainHead::GENESIS);
    }

    #[test]
    fn a_retried_request_reports_the_original_positions() {
        let requests = vec![vec![write("a", ExpectedVersion::NoStream, &[1, 2])], vec![write("a", ExpectedVersion::NoStream, &[1, 2])]];
        let p = plan(empty(), &requests, 0);
        assert_eq!(p.results[1], Ok(Appended { first_position: 1, last_position: 2, duplicate: true }));
        assert_eq!(p.rows.len(), 2);
    }

    #[test]
    fn partly_known_ids_are_refused() {
        let mut snap = empty();
        let stored = Existing { position: 1, stream_id: "a".into(), event_type: "T".into(), payload: "{}".into() };
        snap.existing.insert(Uuid::from_u128(1), stored);
        let p = plan(snap, &[vec![write("a", ExpectedVersion::Any, &[1, 2])]], 0);
        assert_eq!(p.results[0], Err(StoreError::DuplicateEvent(Uuid::from_u128(1))));
    }

    #[test]
    fn a_reused_id_on_another_stream_is_not_a_retry() {
        let mut snap = empty();
        let stored = Existing { position: 1, stream_id: "a".into(), event_type: "T".into(), payload: "{}".into() };
        snap.existing.insert(Uuid::from_u128(1), stored);
        let p = plan(snap, &[vec![write("b", ExpectedVersion::Any, &[1])]], 0);
        assert_eq!(p.results[0], Err(StoreError::DuplicateEvent(Uuid::from_u128(1))));
    }
}
