//! `watch()`: subscribers are woken with the committed head, also for appends made by
//! another store instance (PostgreSQL: LISTEN/NOTIFY; SQLite: polling).

use std::time::Duration;

use medledger_application::ports::{EventStore, ExpectedVersion, Position};
use medledger_infrastructure::store::{Backend, Databases};
use medledger_tests::Kind;

use super::support::{Fixture, append_to, numbered};

conformance!(watch_reaches_the_new_head);
conformance!(watch_sees_appends_by_another_instance);
conformance!(watch_sees_an_append_made_right_after_opening);

const WAIT: Duration = Duration::from_secs(5);

/// Waits (bounded) until `store`'s watch reaches `position`; the value it reached.
async fn reaches(store: &dyn EventStore, position: Position, what: &str) -> Position {
    let mut rx = store.watch();
    let reached = match tokio::time::timeout(WAIT, rx.wait_for(|p| *p >= position)).await {
        Ok(Ok(p)) => Some(*p),
        Ok(Err(_)) => panic!("{what}: the watch closed"),
        Err(_) => None,
    };
    reached.unwrap_or_else(|| panic!("{what}: the watch stayed at {} for {WAIT:?}, the head is at {position}", *rx.borrow()))
}

async fn watch_reaches_the_new_head(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();
    let mut rx = store.watch();
    assert_eq!(*rx.borrow_and_update(), 0);

    let a = append_to(store, "s", ExpectedVersion::Any, vec![numbered(1)]).await.unwrap();
    tokio::time::timeout(WAIT, rx.changed()).await.expect("woken within 2 s").expect("watch open");
    assert_eq!(*rx.borrow_and_update(), a.last_position);

    let a = append_to(store, "t", ExpectedVersion::Any, vec![numbered(2), numbered(3), numbered(4)]).await.unwrap();
    assert_eq!(a.last_position, 4);
    assert_eq!(reaches(store, 4, "after a second append").await, 4, "the watch is the head, not beyond");

    // A retry writes nothing and does not move the head.
    let e = numbered(5);
    append_to(store, "u", ExpectedVersion::Any, vec![e.clone()]).await.unwrap();
    let retry = append_to(store, "u", ExpectedVersion::Any, vec![e]).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(reaches(store, 5, "after a retry").await, 5);
    assert_eq!(store.head().await.unwrap().position, 5);
}

async fn watch_sees_appends_by_another_instance(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let other = f.second_instance().await;
    // Both instances subscribed to notifications first: the window right after opening
    // is what `watch_sees_an_append_made_right_after_opening` is about.
    f.wait_for_listeners(2).await;
    let (mine, theirs) = (f.store(), &*other.store);

    for round in 0..3i64 {
        let a = append_to(theirs, "theirs", ExpectedVersion::Exact(round), vec![numbered(1)]).await.unwrap();
        assert_eq!(reaches(mine, a.last_position, "an append by the other instance").await, a.last_position);
        let a = append_to(mine, "mine", ExpectedVersion::Exact(2 * round), vec![numbered(2), numbered(3)]).await.unwrap();
        assert_eq!(reaches(theirs, a.last_position, "an append seen from the other instance").await, a.last_position);
    }
}

/// The first append by another process right after this instance opened must still
/// wake it: the window between reading the head at start and subscribing to change
/// notifications must not lose it.
async fn watch_sees_an_append_made_right_after_opening(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let writer = &*f.db.store;
    // The window is short: try it often on PostgreSQL; SQLite polls, so a few will do.
    let attempts = if matches!(f.backend, Backend::Postgres { .. }) { 20 } else { 3 };
    for attempt in 0..attempts {
        let fresh = Databases::open(&f.backend).await.expect("open another instance");
        let a = append_to(writer, "s", ExpectedVersion::Exact(attempt), vec![numbered(1)]).await.unwrap();
        let mut rx = fresh.store.watch();
        if tokio::time::timeout(WAIT, rx.wait_for(|p| *p >= a.last_position)).await.is_err() {
            // Tell a lost wake-up apart from a listener that never came up: does the
            // next append get through?
            let stale = *rx.borrow();
            let next = append_to(writer, "probe", ExpectedVersion::Any, vec![numbered(2)]).await.unwrap();
            let later = tokio::time::timeout(WAIT, rx.wait_for(|p| *p >= next.last_position)).await.is_ok();
            panic!(
                "attempt {attempt}: an instance opened just before another one appended position {} still watched {stale} \
                 after {WAIT:?}; {}",
                a.last_position,
                if later {
                    "the next append did wake it: the first wake-up was lost (notified before the listener subscribed, \
                     and the head read at start is not re-read after subscribing)"
                } else {
                    "the next append did not wake it either: the listener does not work"
                }
            );
        }
        assert_eq!(*rx.borrow(), a.last_position);
    }
}
