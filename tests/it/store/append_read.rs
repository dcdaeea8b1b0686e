//! Appending and reading back: exact bytes, gapless positions, per-stream versions.

use medledger_application::chain::recorded_hash;
use medledger_application::ports::{Appended, ChainHead, ExpectedVersion, NewEvent};
use medledger_tests::Kind;

use super::support::{Fixture, append_to, event, now_us, numbered, read_everything, verify, write};

/// JSON text that a normalising store would change: unicode in several forms,
/// tabs, CR LF, non-breaking and zero-width characters, escapes kept as escapes,
/// duplicate keys, and trailing whitespace.
const ODD_PAYLOAD: &str = "{\"name\":\"Zoë Ångström – 医療 🩺\",  \"note\":\"tab\there\",\r\n \
    \"nbsp\":\"a\u{a0}b\", \"zwj\":\"👩\u{200d}⚕\u{fe0f}\", \"nfd\":\"e\u{301}\", \
    \"escaped\":\"\\u00e9\\n\\\"\", \"dup\":1,\"dup\":2 }\n\t  ";

conformance!(appends_and_reads_back);
conformance!(reopened_store_continues_the_history);

async fn appends_and_reads_back(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let store = f.store();

    assert_eq!(store.head().await.unwrap(), ChainHead::GENESIS);
    assert!(store.read_all(0, 10).await.unwrap().is_empty());
    assert!(store.read_stream("patient-1").await.unwrap().is_empty());

    let mut odd = event(ODD_PAYLOAD);
    odd.metadata = " {\"actor\": \"dr. Ødegård\",\t\"n\": 1.50} ".into();
    odd.event_type = "Tëst.Event/v1".into();
    odd.schema_version = 7;
    let e: Vec<NewEvent> = std::iter::once(odd).chain((2..=7).map(numbered)).collect();

    let before = now_us();
    let a1 = append_to(store, "patient-1", ExpectedVersion::NoStream, vec![e[0].clone(), e[1].clone()]).await.unwrap();
    let a2 = append_to(store, "patient-2", ExpectedVersion::NoStream, vec![e[2].clone()]).await.unwrap();
    let a3 = append_to(store, "patient-1", ExpectedVersion::Exact(2), vec![e[3].clone()]).await.unwrap();
    let a4 = store
        .append(vec![
            write("patient-2", ExpectedVersion::Exact(1), vec![e[4].clone()]),
            write("patient-3", ExpectedVersion::NoStream, vec![e[5].clone(), e[6].clone()]),
        ])
        .await
        .unwrap();
    let after = now_us();

    let appended = |first, last| Appended { first_position: first, last_position: last, duplicate: false };
    assert_eq!([a1, a2, a3, a4], [appended(1, 2), appended(3, 3), appended(4, 4), appended(5, 7)]);

    // (position, stream, version, the event appended there)
    let expected = [
        (1, "patient-1", 1, &e[0]),
        (2, "patient-1", 2, &e[1]),
        (3, "patient-2", 1, &e[2]),
        (4, "patient-1", 3, &e[3]),
        (5, "patient-2", 2, &e[4]),
        (6, "patient-3", 1, &e[5]),
        (7, "patient-3", 2, &e[6]),
    ];
    let all = store.read_all(0, 100).await.unwrap();
    assert_eq!(all.len(), expected.len());
    let mut prev_hash = [0u8; 32];
    for (got, (position, stream, version, sent)) in all.iter().zip(expected) {
        assert_eq!(got.position, position);
        assert_eq!(got.stream_id, stream, "stream at position {position}");
        assert_eq!(got.version, version, "version at position {position}");
        assert_eq!(got.event_id, sent.event_id, "event id at position {position}");
        assert_eq!(got.event_type, sent.event_type, "event type at position {position}");
        assert_eq!(got.schema_version, sent.schema_version, "schema version at position {position}");
        assert_eq!(got.payload.as_bytes(), sent.payload.as_bytes(), "payload bytes at position {position}");
        assert_eq!(got.metadata.as_bytes(), sent.metadata.as_bytes(), "metadata bytes at position {position}");
        assert!(
            (before..=after).contains(&got.recorded_at_us),
            "recorded_at_us {} of position {position} is outside the append window {before}..={after}",
            got.recorded_at_us
        );
        assert_eq!(got.prev_hash, prev_hash, "prev_hash of position {position} links to the previous event");
        assert_eq!(got.hash, recorded_hash(&prev_hash, got), "hash of position {position} covers its content");
        prev_hash = got.hash;
    }
    let last = all.last().unwrap();
    assert_eq!(store.head().await.unwrap(), ChainHead { position: 7, hash: last.hash });

    // Streams: their events in version order, identical to what read_all returned.
    for (stream, positions) in [("patient-1", vec![1, 2, 4]), ("patient-2", vec![3, 5]), ("patient-3", vec![6, 7])] {
        let events = store.read_stream(stream).await.unwrap();
        let want: Vec<_> = positions.iter().map(|p| all[*p as usize - 1].clone()).collect();
        assert_eq!(events, want, "read_stream({stream})");
        let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=positions.len() as i64).collect::<Vec<_>>(), "versions of {stream} start at 1");
    }
    assert!(store.read_stream("patient-4").await.unwrap().is_empty());

    // Paging: strictly after the checkpoint, at most `limit`.
    let page = |from: usize, to: usize| all[from - 1..to].to_vec();
    assert_eq!(store.read_all(2, 3).await.unwrap(), page(3, 5));
    assert_eq!(store.read_all(0, 1).await.unwrap(), page(1, 1));
    assert_eq!(store.read_all(6, 10).await.unwrap(), page(7, 7));
    assert!(store.read_all(7, 10).await.unwrap().is_empty());
    assert_eq!(read_everything(store).await, all);

    assert_eq!(verify(store).await.expect("the chain verifies").events, 7);
}

async fn reopened_store_continues_the_history(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    for n in 1..=3 {
        append_to(f.store(), "s", ExpectedVersion::Any, vec![numbered(n)]).await.unwrap();
    }
    let before = read_everything(f.store()).await;
    let head = f.store().head().await.unwrap();

    let second = f.second_instance().await;
    let store = &*second.store;
    assert_eq!(read_everything(store).await, before, "a new instance reads the same history");
    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(*store.watch().borrow(), 3, "a new instance's watch starts at the head");

    let e = numbered(4);
    let a = append_to(store, "s", ExpectedVersion::Exact(3), vec![e.clone()]).await.unwrap();
    assert_eq!((a.first_position, a.last_position, a.duplicate), (4, 4, false));
    let fourth = &read_everything(f.store()).await[3];
    assert_eq!((fourth.event_id, fourth.version, fourth.prev_hash), (e.event_id, 4, head.hash));
    assert_eq!(verify(f.store()).await.expect("the chain verifies across instances").events, 4);
}
