//! `read_recent`: what the appending process hands its own subscribers from memory must
//! be exactly what `read_all` reads from the database, or nothing.

use medledger_application::ports::ExpectedVersion;
use medledger_tests::Kind;

use super::support::{Fixture, append_to, numbered};

conformance!(recent_events_are_exactly_the_stored_ones);
conformance!(an_append_by_another_process_is_never_skipped);
conformance!(a_batch_beyond_one_statement_appends_and_retries);

async fn recent_events_are_exactly_the_stored_ones(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();
    assert_eq!(store.read_recent(0, 10), None, "nothing appended yet");
    for n in 1..=5 {
        append_to(store, &format!("s-{}", n % 2), ExpectedVersion::Any, vec![numbered(n)]).await.unwrap();
    }
    assert_eq!(store.read_recent(0, 100), Some(store.read_all(0, 100).await.unwrap()));
    assert_eq!(store.read_recent(2, 2), Some(store.read_all(2, 2).await.unwrap()));
    assert_eq!(store.read_recent(5, 10), None, "nothing after the head: ask the database");
}

async fn an_append_by_another_process_is_never_skipped(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let here = f.store();
    let other = f.second_instance().await;
    append_to(here, "a", ExpectedVersion::Any, vec![numbered(1)]).await.unwrap();
    append_to(&*other.store, "b", ExpectedVersion::Any, vec![numbered(2)]).await.unwrap();
    append_to(here, "a", ExpectedVersion::Any, vec![numbered(3)]).await.unwrap();
    // Position 2 is the other process's: from 1 on, memory has a gap, so it answers nothing.
    assert_eq!(here.read_recent(0, 10), None);
    assert_eq!(here.read_recent(1, 10), None);
    assert_eq!(here.read_recent(2, 10), Some(here.read_all(2, 10).await.unwrap()));
    assert_eq!(other.store.read_recent(2, 10), None, "the other process did not append position 3");
}

async fn a_batch_beyond_one_statement_appends_and_retries(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();
    // More event ids than SQLite binds in one statement.
    let events: Vec<_> = (1..=16_000).map(numbered).collect();
    let first = append_to(store, "bulk", ExpectedVersion::NoStream, events.clone()).await.unwrap();
    assert_eq!((first.first_position, first.last_position, first.duplicate), (1, 16_000, false));
    let retried = append_to(store, "bulk", ExpectedVersion::NoStream, events).await.unwrap();
    assert_eq!((retried.first_position, retried.last_position, retried.duplicate), (1, 16_000, true));
    assert_eq!(store.head().await.unwrap().position, 16_000);
    // Memory keeps only the newest events; older ones come from the database.
    assert_eq!(store.read_recent(0, 10), None);
    assert_eq!(store.read_recent(15_995, 10), Some(store.read_all(15_995, 10).await.unwrap()));
}
