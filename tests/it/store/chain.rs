//! The hash chain over the stored history: an intact history verifies; the database
//! refuses rewrites; and a rewrite made past its protections is found, at the first
//! position that no longer holds.

use medledger_application::chain::{ChainBreak, HashInput, VerifyError, event_hash, verify_store};
use medledger_application::ports::{EventStore, ExpectedVersion, RecordedEvent};
use medledger_tests::Kind;
use uuid::Uuid;

use super::support::{Direct, Fixture, append_to, event, read_everything, verify};

conformance!(intact_history_verifies);
conformance!(database_refuses_rewrites);
conformance!(tamper_edited_payload);
conformance!(tamper_edited_payload_with_recomputed_hash);
conformance!(tamper_whitespace_only_edit);
conformance!(tamper_deleted_middle_event);
conformance!(tamper_forged_insert);
conformance!(tamper_swapped_events);
conformance!(tamper_deleted_stream_tail_at_global_tail);
conformance!(tamper_deleted_middle_stream);

/// 20 events over 3 streams:
///   1..=8   a b a b a b a b   (one append each)
///   9..=12  c c c c           (one append: all of stream c, in the middle)
///   13..=17 a b a b a
///   18..=20 b b b             (one append: the tail of b and of the history)
async fn build_history(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut versions = std::collections::HashMap::<&str, i64>::new();
    let mut put = async |stream: &'static str, count: usize| {
        let v = versions.entry(stream).or_insert(0);
        let events = (0..count).map(|k| event(format!("{{\"stream\":\"{stream}\",\"n\":{}}}", *v + 1 + k as i64))).collect();
        append_to(store, stream, ExpectedVersion::Exact(*v), events).await.expect("append");
        *v += count as i64;
    };
    for _ in 0..4 {
        put("a", 1).await;
        put("b", 1).await;
    }
    put("c", 4).await;
    for stream in ["a", "b", "a", "b", "a"] {
        put(stream, 1).await;
    }
    put("b", 3).await;
    let history = read_everything(store).await;
    let layout: String = history.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(layout, "ababababccccabababbb", "the layout the tamper cases rely on");
    history
}

async fn intact_history_verifies(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let history = build_history(f.store()).await;
    let head = f.store().head().await.unwrap();
    assert_eq!((head.position, head.hash), (20, history[19].hash));
    let report = verify(f.store()).await.expect("an intact history verifies");
    assert_eq!((report.events, report.head), (20, head));
    let production = verify_store(f.store(), |_| {}).await.expect("verify_store agrees");
    assert_eq!(production, report);
}

fn assert_refused(result: Result<u64, sqlx::Error>, what: &str, message: &str) {
    match result {
        Ok(rows) => panic!("{what} was allowed ({rows} rows)"),
        Err(e) => assert!(e.to_string().contains(message), "{what} failed, but not with '{message}': {e}"),
    }
}

async fn database_refuses_rewrites(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let history = build_history(f.store()).await;
    // Connected as the table owner / superuser, without switching anything off.
    let mut db = f.direct().await;
    let append_only = "the history is append-only";
    assert_refused(db.execute("UPDATE events SET payload = '{}' WHERE position = 7").await, "UPDATE events", append_only);
    assert_refused(db.execute("UPDATE events SET position = 99 WHERE position = 20").await, "moving an event", append_only);
    assert_refused(db.execute("DELETE FROM events WHERE position = 20").await, "DELETE one event", append_only);
    assert_refused(db.execute("DELETE FROM events").await, "DELETE every event", append_only);
    if matches!(db, Direct::Postgres(_)) {
        assert_refused(db.execute("TRUNCATE events").await, "TRUNCATE events", append_only);
    }
    assert_refused(db.execute("UPDATE chain_head SET position = 17").await, "moving the head back", "only moves forward");
    assert_refused(db.execute("DELETE FROM chain_head").await, "DELETE the head", "refused");

    assert_eq!(read_everything(f.store()).await, history, "nothing was rewritten");
    assert_eq!(verify(f.store()).await.expect("still verifies").events, 20);
}

/// Builds the history on a fresh store, runs `tamper`'s SQL past the protections
/// (each statement must change something), and returns where verification breaks,
/// after checking that the production `verify_store` finds the same break.
async fn tampered(kind: Kind, tamper: impl FnOnce(&Direct, &[RecordedEvent]) -> Vec<String>) -> Option<ChainBreak> {
    let f = Fixture::new(kind).await?;
    let history = build_history(f.store()).await;
    assert!(verify(f.store()).await.is_ok(), "the history verifies before tampering");
    let mut db = f.direct().await;
    db.bypass_protections().await;
    for sql in tamper(&db, &history) {
        let rows = db.execute(&sql).await.unwrap_or_else(|e| panic!("tampering with `{sql}`: {e}"));
        assert!(rows > 0, "`{sql}` changed nothing");
    }
    let broken = verify(f.store()).await.expect_err("the tampering goes unnoticed");
    match verify_store(f.store(), |_| {}).await {
        Err(VerifyError::Broken(b)) => assert_eq!(b, broken, "verify_store reports the same break"),
        other => panic!("verify_store does not report the break: {other:?}"),
    }
    Some(broken)
}

fn assert_break(broken: &ChainBreak, position: i64, reason: &str) {
    assert_eq!(broken.position, position, "reported break: {broken}");
    assert!(broken.reason.contains(reason), "reported break: {broken}; expected the reason to mention '{reason}'");
}

async fn tamper_edited_payload(kind: Kind) {
    let Some(broken) =
        tampered(kind, |_, _| vec!["UPDATE events SET payload = '{\"stream\":\"a\",\"n\":999}' WHERE position = 7".into()]).await
    else {
        return;
    };
    assert_break(&broken, 7, "edited");
}

/// A forger who edits an event and recomputes its hash: the edited event holds on
/// its own, but the next event's link to it does not.
async fn tamper_edited_payload_with_recomputed_hash(kind: Kind) {
    let Some(broken) = tampered(kind, |db, history| {
        let e = &history[6];
        let payload = "{\"stream\":\"a\",\"n\":999}";
        let hash = event_hash(&e.prev_hash, &HashInput { payload, ..HashInput::from(e) });
        vec![format!("UPDATE events SET payload = '{payload}', hash = {} WHERE position = 7", db.blob(&hash))]
    })
    .await
    else {
        return;
    };
    assert_break(&broken, 8, "previous-hash link");
}

/// The same JSON value with one more space: the hash covers the bytes, not the value.
async fn tamper_whitespace_only_edit(kind: Kind) {
    let Some(broken) = tampered(kind, |_, history| {
        assert_eq!(history[11].payload, "{\"stream\":\"c\",\"n\":4}");
        vec!["UPDATE events SET payload = '{\"stream\": \"c\",\"n\":4}' WHERE position = 12".into()]
    })
    .await
    else {
        return;
    };
    assert_break(&broken, 12, "edited");
}

/// Deleting position 10 leaves a gap: the verifier reports the first event after it
/// (11) and names the missing position (10) in the reason.
async fn tamper_deleted_middle_event(kind: Kind) {
    let Some(broken) = tampered(kind, |_, _| vec!["DELETE FROM events WHERE position = 10".into()]).await else { return };
    assert_break(&broken, 11, "expected position 10 after 9");
}

/// A forged event slipped in at position 10, with a correct link to 9 and a correct
/// hash of its own; the later events are moved up one to make room. The forgery holds
/// on its own, so the chain breaks at the first moved event, whose link no longer fits.
async fn tamper_forged_insert(kind: Kind) {
    let Some(broken) = tampered(kind, |db, history| {
        let ninth = &history[8];
        let forged = RecordedEvent {
            position: 10,
            stream_id: "forged".into(),
            version: 1,
            event_id: Uuid::new_v4(),
            event_type: "TestEvent".into(),
            schema_version: 1,
            payload: "{\"forged\":true}".into(),
            metadata: "{}".into(),
            recorded_at_us: ninth.recorded_at_us,
            prev_hash: ninth.hash,
            hash: [0; 32],
        };
        let hash = event_hash(&ninth.hash, &HashInput::from(&forged));
        vec![
            "UPDATE events SET position = -position WHERE position >= 10".into(),
            "UPDATE events SET position = 1 - position WHERE position < 0".into(),
            format!(
                "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, payload, metadata, \
                 recorded_at_us, prev_hash, hash) VALUES (10, 'forged', 1, '{}', 'TestEvent', 1, '{}', '{{}}', {}, {}, {})",
                forged.event_id,
                forged.payload,
                forged.recorded_at_us,
                db.blob(&forged.prev_hash),
                db.blob(&hash)
            ),
        ]
    })
    .await
    else {
        return;
    };
    assert_break(&broken, 11, "previous-hash link");
}

/// Positions 5 and 6 swapped (through an intermediate position, as they are the key).
async fn tamper_swapped_events(kind: Kind) {
    let Some(broken) = tampered(kind, |_, _| {
        vec![
            "UPDATE events SET position = -5 WHERE position = 5".into(),
            "UPDATE events SET position = 5 WHERE position = 6".into(),
            "UPDATE events SET position = 6 WHERE position = -5".into(),
        ]
    })
    .await
    else {
        return;
    };
    assert_break(&broken, 5, "previous-hash link");
}

/// The last three events of stream b are the last three of the history: what is left
/// is a valid chain, and only the sealed head shows that 18..=20 are gone.
async fn tamper_deleted_stream_tail_at_global_tail(kind: Kind) {
    let Some(broken) = tampered(kind, |_, history| {
        assert!(history[17..].iter().all(|e| e.stream_id == "b"));
        vec!["DELETE FROM events WHERE stream_id = 'b' AND version >= 7".into()]
    })
    .await
    else {
        return;
    };
    assert_break(&broken, 18, "sealed head");
}

/// All of stream c (positions 9..=12) deleted: the verifier reports the first event
/// after the gap (13) and names the missing position (9) in the reason.
async fn tamper_deleted_middle_stream(kind: Kind) {
    let Some(broken) = tampered(kind, |_, _| vec!["DELETE FROM events WHERE stream_id = 'c'".into()]).await else { return };
    assert_break(&broken, 13, "expected position 9 after 8");
}
