//! Many concurrent writers in one process: optimistic read-modify-write loops lose no
//! update, and every caller is told the positions its events really hold.

use std::collections::HashSet;
use std::sync::Arc;

use medledger_application::ports::{EventStore, ExpectedVersion, StoreError};
use medledger_tests::Kind;
use uuid::Uuid;

use super::support::{Fixture, append_to, event, read_everything, stream_version, verify};

conformance!(concurrent_read_modify_write_loses_no_update);
conformance!(concurrent_appends_get_the_positions_they_were_told);

const TASKS: usize = 32;
const UPDATES_PER_TASK: usize = 4;

async fn concurrent_read_modify_write_loses_no_update(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let store: Arc<dyn EventStore> = f.db.store.clone();
    let stream = "counter";

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut conflicts = 0usize;
                for update in 0..UPDATES_PER_TASK {
                    let e = event(format!("{{\"task\":{task},\"update\":{update}}}"));
                    loop {
                        let read = stream_version(&*store, stream).await;
                        match append_to(&*store, stream, ExpectedVersion::Exact(read), vec![e.clone()]).await {
                            Ok(a) => {
                                assert!(!a.duplicate, "a first append reported as a retry");
                                mine.push((e.event_id, a.first_position));
                                break;
                            }
                            Err(StoreError::Conflict { actual, .. }) => {
                                assert!(actual > read, "conflict reports version {actual}, but {read} was read before");
                                conflicts += 1;
                                assert!(conflicts < 100_000, "task {task} cannot get an append in");
                            }
                            Err(other) => panic!("task {task}: unexpected error {other:?}"),
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let mut succeeded: Vec<(Uuid, i64)> = Vec::new();
    for t in tasks {
        succeeded.extend(t.await.expect("writer task"));
    }

    let total = TASKS * UPDATES_PER_TASK;
    assert_eq!(succeeded.len(), total);
    let events = store.read_stream(stream).await.unwrap();
    assert_eq!(events.len(), total, "the stream holds every successful append, no more");
    let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=total as i64).collect::<Vec<_>>(), "versions are gapless");
    let stored: HashSet<(Uuid, i64)> = events.iter().map(|e| (e.event_id, e.position)).collect();
    let told: HashSet<(Uuid, i64)> = succeeded.iter().copied().collect();
    assert_eq!(stored, told, "every successful append is stored where its writer was told");
    assert_eq!(store.head().await.unwrap().position, total as i64);
    assert!(verify(&*store).await.is_ok());
}

async fn concurrent_appends_get_the_positions_they_were_told(kind: Kind) {
    const WRITERS: usize = 16;
    const APPENDS: usize = 10;
    let Some(f) = Fixture::new(kind).await else { return };
    let store: Arc<dyn EventStore> = f.db.store.clone();

    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut told = Vec::new();
                for i in 0..APPENDS {
                    let events: Vec<_> = (0..=i % 3).map(|k| event(format!("{{\"w\":{w},\"i\":{i},\"k\":{k}}}"))).collect();
                    let stream = if i % 2 == 0 { format!("own-{w}") } else { "shared".to_string() };
                    let a = append_to(&*store, &stream, ExpectedVersion::Any, events.clone()).await.unwrap();
                    assert!(!a.duplicate);
                    assert_eq!(a.last_position - a.first_position + 1, events.len() as i64);
                    told.extend(events.iter().zip(a.first_position..).map(|(e, p)| (p, e.event_id, stream.clone())));
                }
                told
            })
        })
        .collect();
    let mut told = Vec::new();
    for t in tasks {
        told.extend(t.await.expect("writer task"));
    }
    told.sort();

    let all = read_everything(&*store).await;
    let stored: Vec<_> = all.iter().map(|e| (e.position, e.event_id, e.stream_id.clone())).collect();
    assert_eq!(stored, told, "the history is exactly what the writers were told, position by position");
    assert_eq!(all.first().unwrap().position, 1);
    assert!(all.windows(2).all(|w| w[1].position == w[0].position + 1), "positions are gapless");
    assert!(verify(&*store).await.is_ok());
}
