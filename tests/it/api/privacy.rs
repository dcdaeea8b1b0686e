//! Personal data is sealed under per-user keys: erasing a key shreds it while the
//! chain still verifies. Old event schemas upcast on read.

use medledger_application::chain::verify_store;
use medledger_application::ports::{ExpectedVersion, NewEvent, StreamWrite};
use medledger_domain::identity::user::{User, UserEvent};
use medledger_tests::Kind;
use medledger_tests::app::spawn_app;
use serde_json::json;

use super::expect;
use crate::on_both;

on_both!(personal_data_is_sealed_and_shreddable, personal_data_is_sealed_and_shreddable_);
async fn personal_data_is_sealed_and_shreddable_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let (uid, access, _) = app.register("secret.person@example.org").await;
    // What is stored is ciphertext: no email, no IP in the raw rows.
    // Every event the registration wrote, the email claim included.
    let raw = app.state.dbs.store.read_all(0, 1000).await.unwrap();
    assert!(raw.len() >= 3);
    for e in &raw {
        assert!(!e.payload.contains("secret.person"), "plaintext email stored: {}", e.payload);
        assert!(!e.metadata.contains("127.0.0.1"), "plaintext IP stored: {}", e.metadata);
    }
    app.state.ledger.codec().vault().erase(&format!("user-{uid}")).await.unwrap();
    let admin = app.admin().await;
    let text = app.ops(&admin).events(&format!("stream=user-{uid}")).await.text().await.unwrap();
    assert!(!text.contains("secret.person"), "{text}");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["metadata"]["client_ip"], "[erased]");
    let b = expect(app.ops(&admin).verify().await, 200).await;
    assert_eq!(b["valid"], true, "erasure keeps the chain valid");
    assert!(verify_store(&*app.state.dbs.store, |_| {}).await.is_ok());
    // Nothing personal is stored for an erased subject any more.
    let head = app.head().await;
    let b = expect(app.myo(&access).update_me(&json!({"firstName": "Again"})).await, 410).await;
    assert!(b["code"] == "erased", "{b}");
    assert_eq!(app.head().await, head);
}

#[tokio::test]
async fn a_v1_user_registered_event_upcasts_on_read() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let payload = json!({
        "user_id": 77, "roles": ["doctor"], "password_hash": "$argon2id$stub",
        "registered_at": "2025-01-01T00:00:00Z",
        "personal": {"email": "old@example.org", "full_name": "Grace Brewster Hopper"}
    });
    app.state
        .dbs
        .store
        .append(vec![StreamWrite {
            stream_id: "user-77".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type: "UserRegistered".into(),
                schema_version: 1,
                payload: payload.to_string(),
                metadata: "{}".into(),
            }],
        }])
        .await
        .unwrap();
    let recorded = app.state.dbs.store.read_stream("user-77").await.unwrap();
    let decoded = app.state.ledger.decode(recorded[0].clone()).await.unwrap();
    let Ok(Some(UserEvent::UserRegistered { personal, .. })) = decoded.to_domain::<UserEvent>() else { panic!("not upcast") };
    assert_eq!((personal.first_name.as_str(), personal.last_name.as_str()), ("Grace", "Brewster Hopper"));
    let (user, version) = app.state.ledger.load::<User>("user-77").await.unwrap();
    assert!(user.exists());
    assert_eq!(version, 1);
}
