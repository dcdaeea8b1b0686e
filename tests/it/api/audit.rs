//! The audit log and the auditor's raw event stream.

use medledger_tests::Kind;
use medledger_tests::app::spawn_app;
use serde_json::{Value, json};

use super::expect;
use crate::on_both;

on_both!(posted_entries_and_history_appear_in_the_audit_log, posted_entries_and_history_appear_in_the_audit_log_);
async fn posted_entries_and_history_appear_in_the_audit_log_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let (uid, access, _) = app.register("lab@example.org").await;
    let entry = json!({"action": "upload_created", "resource_type": "upload", "resource_id": "upload_001",
                       "details": {"filename": "cardiac_scan.jpg", "file_size": 2048576}});
    let r = app.myo(&access).create_audit_log(&entry).header("user-agent", "Mozilla/5.0 test").await;
    let b = expect(r, 201).await;
    assert_eq!(b["user_id"], uid);
    assert_eq!(b["action"], "upload_created");
    assert_eq!(b["resource_id"], "upload_001");
    assert_eq!(b["ip_address"], "127.0.0.1");
    assert_eq!(b["user_agent"], "Mozilla/5.0 test");
    assert_eq!(b["details"]["file_size"], 2048576);
    assert!(b["id"].is_i64() && b["timestamp"].is_string());

    expect(app.myo(&access).audit_logs("").await, 403).await;
    let admin = app.admin().await;
    let all = expect(app.myo(&admin).audit_logs("").await, 200).await;
    let actions: Vec<&str> = all["results"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    for a in ["upload_created", "user_registered", "user_logged_in", "session_started"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    // Details never carry password hashes or sealed personal data.
    assert!(!all.to_string().contains("argon2"), "password hash leaked into the audit log");
    let mine = expect(app.myo(&admin).audit_logs(&format!("user_id={uid}&resource_type=upload")).await, 200).await;
    assert_eq!(mine["count"], 1);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let dated = expect(app.myo(&admin).audit_logs(&format!("start_date={today}&end_date={today}&action=upload_created")).await, 200).await;
    assert_eq!(dated["count"], 1);
    let past = expect(app.myo(&admin).audit_logs("end_date=2001-01-01").await, 200).await;
    assert_eq!(past["count"], 0);
    let b = expect(app.myo(&admin).audit_logs("start_date=yesterday").await, 400).await;
    assert!(b["field_errors"]["start_date"].is_array());
    expect(app.myo(&admin).audit_logs("page=0").await, 400).await;
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
}

on_both!(events_stream_the_history_in_order_with_filters, events_stream_the_history_in_order_with_filters_);
async fn events_stream_the_history_in_order_with_filters_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let (uid, access, _) = app.register("aud@example.org").await;
    expect(app.ops(&access).events("").await, 403).await;
    let admin = app.admin().await;
    let r = app.ops(&admin).events("").await;
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let lines = ndjson(&r.text().await.unwrap());
    let positions: Vec<i64> = lines.iter().map(|l| l["position"].as_i64().unwrap()).collect();
    assert_eq!(positions, (1..=app.head().await).collect::<Vec<_>>());
    for l in &lines {
        for k in ["position", "stream", "version", "type", "recorded_at", "payload", "metadata", "hash"] {
            assert!(!l[k].is_null(), "{k} missing in {l}");
        }
    }
    let registered = lines.iter().find(|l| l["type"] == "UserRegistered" && l["payload"]["user_id"] == uid).unwrap();
    assert_eq!(registered["payload"]["personal"]["email"], "aud@example.org", "admins see personal data opened");
    assert_eq!(registered["metadata"]["client_ip"], "127.0.0.1");
    assert_ne!(registered["payload"]["password_hash"].as_str().map(|h| h.starts_with("$argon2")), Some(true));

    let stream = format!("user-{uid}");
    let only = ndjson(&app.ops(&admin).events(&format!("stream={stream}")).await.text().await.unwrap());
    assert!(!only.is_empty() && only.iter().all(|l| l["stream"] == stream.as_str()));
    let typed = ndjson(&app.ops(&admin).events("type=SessionStarted&from=3").await.text().await.unwrap());
    assert!(typed.iter().all(|l| l["type"] == "SessionStarted" && l["position"].as_i64().unwrap() > 3));
    let none = ndjson(&app.ops(&admin).events("until=2001-01-01").await.text().await.unwrap());
    assert!(none.is_empty());
    expect(app.ops(&admin).events("from=-1").await, 400).await;
    expect(app.ops(&admin).events("until=soon").await, 400).await;
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, access, _) = app.register("idem@example.org").await;
    let entry = json!({"action": "export", "resource_type": "report", "resource_id": "r1"});
    let send = |body: Value| app.myo(&access).create_audit_log(&body).header("idempotency-key", "k-1");
    let first = send(entry.clone()).await;
    assert_eq!(first.status(), 201);
    let first_body = first.text().await.unwrap();
    let head = app.head().await;
    let again = send(entry.clone()).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(app.head().await, head, "a retried command appends nothing");
    let other = send(json!({"action": "other", "resource_type": "report"})).await;
    assert_eq!(other.status(), 422);
}
