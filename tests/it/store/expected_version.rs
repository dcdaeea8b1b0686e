//! Optimistic concurrency: expected versions, all-or-nothing multi-stream appends.

use medledger_application::ports::{EventStore, ExpectedVersion, RecordedEvent, StoreError};
use medledger_tests::Kind;

use super::support::{Fixture, append_to, numbered, read_everything, stream_version, write};

conformance!(expected_versions_are_enforced);
conformance!(multi_stream_append_is_atomic);
conformance!(empty_appends_are_refused);

fn conflict(stream: &str, expected: ExpectedVersion, actual: i64) -> StoreError {
    StoreError::Conflict { stream_id: stream.to_string(), expected, actual }
}

/// Asserts that nothing changed since `before` (the whole history) was read.
async fn assert_unchanged(store: &dyn EventStore, before: &[RecordedEvent], what: &str) {
    let head = store.head().await.unwrap();
    assert_eq!(head.position, before.last().map_or(0, |e| e.position), "{what}: the head moved");
    assert_eq!(head.hash, before.last().map_or([0; 32], |e| e.hash), "{what}: the head hash changed");
    assert_eq!(read_everything(store).await, before, "{what}: the history changed");
}

async fn expected_versions_are_enforced(kind: Kind) {
    use ExpectedVersion::{Any, Exact, NoStream};
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();

    assert!(append_to(store, "s", NoStream, vec![numbered(1)]).await.is_ok());
    let history = read_everything(store).await;

    // Refused: NoStream on an existing stream, stale and future Exact versions.
    let refused_event = numbered(2);
    for (expected, what) in [(NoStream, "NoStream"), (Exact(0), "Exact(0)"), (Exact(2), "Exact(2)"), (Exact(-1), "Exact(-1)")] {
        let got = append_to(store, "s", expected, vec![refused_event.clone()]).await;
        assert_eq!(got, Err(conflict("s", expected, 1)), "{what} on a stream at version 1");
        assert_unchanged(store, &history, what).await;
    }

    // Accepted: the exact current version.
    let a = append_to(store, "s", Exact(1), vec![numbered(3), numbered(4)]).await.unwrap();
    assert_eq!((a.first_position, a.last_position), (2, 3));
    assert_eq!(stream_version(store, "s").await, 3);

    // The version it was at before is stale now.
    let history = read_everything(store).await;
    assert_eq!(append_to(store, "s", Exact(1), vec![numbered(5)]).await, Err(conflict("s", Exact(1), 3)));
    assert_unchanged(store, &history, "stale Exact(1)").await;

    // Any: on an existing stream and on a new one.
    assert_eq!(append_to(store, "s", Any, vec![numbered(6)]).await.unwrap().last_position, 4);
    assert_eq!(append_to(store, "t", Any, vec![numbered(7)]).await.unwrap().last_position, 5);
    // NoStream and Exact(0) on new streams.
    assert_eq!(append_to(store, "u", NoStream, vec![numbered(8)]).await.unwrap().last_position, 6);
    assert_eq!(append_to(store, "v", Exact(0), vec![numbered(9)]).await.unwrap().last_position, 7);
    // ... and Exact on a stream that does not exist yet is a conflict at version 0.
    let history = read_everything(store).await;
    assert_eq!(append_to(store, "w", Exact(1), vec![numbered(10)]).await, Err(conflict("w", Exact(1), 0)));
    assert_unchanged(store, &history, "Exact(1) on a new stream").await;
    assert!(store.read_stream("w").await.unwrap().is_empty());

    assert_eq!(stream_version(store, "s").await, 4);
    for stream in ["t", "u", "v"] {
        assert_eq!(stream_version(store, stream).await, 1, "stream {stream}");
    }

    // The refused event was never stored: appending it now is a first append, not a retry.
    let a = append_to(store, "s", Exact(4), vec![refused_event.clone()]).await.unwrap();
    assert!(!a.duplicate, "an event refused for a conflict must not have been stored");
    assert_eq!((a.first_position, a.last_position), (8, 8));
    let stored = store.read_stream("s").await.unwrap();
    assert_eq!(stored.last().unwrap().event_id, refused_event.event_id);
    assert_eq!(stored.last().unwrap().version, 5);
}

async fn multi_stream_append_is_atomic(kind: Kind) {
    use ExpectedVersion::{Any, Exact, NoStream};
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();
    append_to(store, "x", NoStream, vec![numbered(1)]).await.unwrap();
    append_to(store, "y", NoStream, vec![numbered(2)]).await.unwrap();
    let history = read_everything(store).await;

    // The last write conflicts: the first must not land.
    let got = store.append(vec![write("x", Any, vec![numbered(3), numbered(4)]), write("y", Exact(5), vec![numbered(5)])]).await;
    assert_eq!(got, Err(conflict("y", Exact(5), 1)));
    assert_unchanged(store, &history, "conflict on the second write").await;

    // The first write conflicts: the second must not land.
    let got = store.append(vec![write("x", NoStream, vec![numbered(6)]), write("y", Exact(1), vec![numbered(7)])]).await;
    assert_eq!(got, Err(conflict("x", NoStream, 1)));
    assert_unchanged(store, &history, "conflict on the first write").await;

    // A new stream and an existing one before the conflicting write: neither lands.
    let got = store
        .append(vec![
            write("z", NoStream, vec![numbered(8)]),
            write("x", Exact(1), vec![numbered(9)]),
            write("y", NoStream, vec![numbered(10)]),
        ])
        .await;
    assert_eq!(got, Err(conflict("y", NoStream, 1)));
    assert_unchanged(store, &history, "conflict on the third write").await;
    assert!(store.read_stream("z").await.unwrap().is_empty(), "stream z must not exist");
    assert_eq!(stream_version(store, "x").await, 1);
    assert_eq!(stream_version(store, "y").await, 1);

    // When every write is admitted, all land, in request order, on contiguous positions.
    let (x1, x2, y1, z1) = (numbered(11), numbered(12), numbered(13), numbered(14));
    let a = store
        .append(vec![
            write("x", Exact(1), vec![x1.clone(), x2.clone()]),
            write("y", Exact(1), vec![y1.clone()]),
            write("z", NoStream, vec![z1.clone()]),
        ])
        .await
        .unwrap();
    assert_eq!((a.first_position, a.last_position, a.duplicate), (3, 6, false));
    let landed: Vec<_> =
        store.read_all(2, 10).await.unwrap().into_iter().map(|e| (e.position, e.stream_id, e.version, e.event_id)).collect();
    assert_eq!(
        landed,
        [
            (3, "x".to_string(), 2, x1.event_id),
            (4, "x".to_string(), 3, x2.event_id),
            (5, "y".to_string(), 2, y1.event_id),
            (6, "z".to_string(), 1, z1.event_id),
        ]
    );
}

async fn empty_appends_are_refused(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();
    append_to(store, "s", ExpectedVersion::Any, vec![numbered(1)]).await.unwrap();
    let history = read_everything(store).await;
    assert_eq!(store.append(vec![]).await, Err(StoreError::Empty));
    assert_eq!(append_to(store, "s", ExpectedVersion::Any, vec![]).await, Err(StoreError::Empty));
    assert_eq!(
        store.append(vec![write("s", ExpectedVersion::Exact(1), vec![]), write("t", ExpectedVersion::Any, vec![])]).await,
        Err(StoreError::Empty)
    );
    assert_unchanged(store, &history, "empty appends").await;
}
