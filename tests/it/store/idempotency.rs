//! Idempotent retries: the same event ids again are answered with the original
//! positions and write nothing; partly known ids are refused.

use medledger_application::ports::{Appended, ExpectedVersion, StoreError};
use medledger_tests::Kind;

use super::support::{Fixture, append_to, numbered, read_everything, write};

conformance!(retried_append_returns_the_original_positions);
conformance!(partly_known_event_ids_are_refused);

fn duplicate(first: i64, last: i64) -> Appended {
    Appended { first_position: first, last_position: last, duplicate: true }
}

async fn retried_append_returns_the_original_positions(kind: Kind) {
    use ExpectedVersion::{Any, Exact, NoStream};
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();

    let order = vec![write("order-1", NoStream, vec![numbered(1), numbered(2)])];
    let first = store.append(order.clone()).await.unwrap();
    assert_eq!(first, Appended { first_position: 1, last_position: 2, duplicate: false });
    append_to(store, "order-2", Any, vec![numbered(3)]).await.unwrap();
    let multi = vec![write("order-3", NoStream, vec![numbered(4)]), write("order-1", Exact(2), vec![numbered(5), numbered(6)])];
    assert_eq!(store.append(multi.clone()).await.unwrap().last_position, 6);
    append_to(store, "order-2", Any, vec![numbered(7)]).await.unwrap();
    let history = read_everything(store).await;
    assert_eq!(history.len(), 7);

    // Retries: even though their expected versions are stale by now, they are answered
    // with where the events went, and nothing is written.
    for _ in 0..2 {
        assert_eq!(store.append(order.clone()).await, Ok(duplicate(1, 2)));
        assert_eq!(store.append(multi.clone()).await, Ok(duplicate(4, 6)));
    }
    // The same events in one request but a different split over writes: still a retry.
    let regrouped =
        vec![write("order-1", NoStream, vec![order[0].events[1].clone()]), write("order-1", Any, vec![order[0].events[0].clone()])];
    assert_eq!(store.append(regrouped).await, Ok(duplicate(1, 2)));

    assert_eq!(read_everything(store).await, history, "a retry must not write anything");
    assert_eq!(store.head().await.unwrap().position, 7);
    assert_eq!(store.read_stream("order-1").await.unwrap().len(), 4);

    // And the store goes on from where it was.
    let a = append_to(store, "order-1", Exact(4), vec![numbered(8)]).await.unwrap();
    assert_eq!((a.first_position, a.last_position, a.duplicate), (8, 8, false));
}

async fn partly_known_event_ids_are_refused(kind: Kind) {
    use ExpectedVersion::Any;
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();
    let known = numbered(1);
    append_to(store, "s", Any, vec![known.clone()]).await.unwrap();
    let history = read_everything(store).await;

    // A known id next to a new one, in the same write and across writes.
    let new = numbered(2);
    assert_eq!(append_to(store, "s", Any, vec![new.clone(), known.clone()]).await, Err(StoreError::DuplicateEvent(known.event_id)));
    assert_eq!(
        store.append(vec![write("t", Any, vec![new.clone()]), write("s", Any, vec![known.clone()])]).await,
        Err(StoreError::DuplicateEvent(known.event_id))
    );
    // The same new id twice in one request.
    let twice = numbered(3);
    assert_eq!(
        store.append(vec![write("t", Any, vec![twice.clone()]), write("u", Any, vec![twice.clone()])]).await,
        Err(StoreError::DuplicateEvent(twice.event_id))
    );
    assert_eq!(read_everything(store).await, history, "a refused append must not write anything");
    assert!(store.read_stream("t").await.unwrap().is_empty());

    // The new events were not stored: appending them now is not a retry.
    let a = append_to(store, "t", Any, vec![new.clone(), twice.clone()]).await.unwrap();
    assert_eq!((a.first_position, a.last_position, a.duplicate), (2, 3, false));
}

conformance!(reused_event_id_with_other_content_is_refused);

/// `StoreError::DuplicateEvent` is documented as "already stored with different
/// content or stream": an id reused for something else is not a retry.
async fn reused_event_id_with_other_content_is_refused(kind: Kind) {
    use ExpectedVersion::Any;
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();
    let original = numbered(1);
    append_to(store, "s", Any, vec![original.clone()]).await.unwrap();
    let history = read_everything(store).await;

    let mut other_payload = original.clone();
    other_payload.payload = "{\"n\":2}".into();
    assert_eq!(
        append_to(store, "s", Any, vec![other_payload]).await,
        Err(StoreError::DuplicateEvent(original.event_id)),
        "same id, different payload"
    );
    assert_eq!(
        append_to(store, "elsewhere", Any, vec![original.clone()]).await,
        Err(StoreError::DuplicateEvent(original.event_id)),
        "same id, different stream"
    );
    assert_eq!(read_everything(store).await, history);
}
