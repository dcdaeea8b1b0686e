//! Health, readiness, metrics, verification, documents, trailing slashes.

use medledger_tests::Kind;
use medledger_tests::app::spawn_app;
use serde_json::Value;

use super::expect;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    assert_eq!(expect(app.ops(None).healthz().await, 200).await["status"], "ok");
    assert_eq!(expect(app.ops(None).readyz().await, 200).await["status"], "ready");
    let h = expect(app.myo(None).health().await, 200).await;
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["services"]["database"], "up");
    assert!(h["last_check"].is_string());
    app.register("m@example.org").await;
    // Admins only on the main port (see hardening.rs for the separate address).
    let text = app.ops(&app.admin().await).metrics().await.text().await.unwrap();
    assert!(text.contains("medledger_http_requests_total"), "{text}");
    assert!(text.contains("medledger_projection_lag_events{projection=\"users\"}"), "{text}");
    assert!(text.contains("medledger_events_appended_total"), "{text}");
}

#[tokio::test]
async fn readiness_fails_while_the_store_is_unreachable() {
    let Some(app) = spawn_app(Kind::Postgres).await else { return };
    let url = app.config.database_url.clone().unwrap();
    let name = url.rsplit('/').next().unwrap().to_string();
    // Cut the server off its database.
    let mut admin = sqlx::PgConnection::connect(medledger_tests::ADMIN_URL).await.unwrap();
    use sqlx::Connection as _;
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"))).execute(&mut admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1").bind(&name).execute(&mut admin).await.unwrap();
    let r = app.ops(None).readyz().await;
    assert_eq!(r.status(), 503);
    assert_eq!(expect(app.ops(None).healthz().await, 200).await["status"], "ok");
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"))).execute(&mut admin).await.unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if app.ops(None).readyz().await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "readiness recovers with the database");
}

#[tokio::test]
async fn verify_endpoint_reports_the_sealed_head() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("v@example.org").await;
    let admin = app.admin().await;
    let b = expect(app.ops(&admin).verify().await, 200).await;
    assert_eq!(b["valid"], true);
    assert_eq!(b["events"].as_i64(), Some(app.head().await));
    assert!(b["digest"].as_str().unwrap().starts_with(&format!("{}:", app.head().await)));
    expect(app.ops(&app.login("v@example.org").await).verify().await, 403).await;
}

#[tokio::test]
async fn openapi_documents_every_route_and_docs_render_it() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let doc = expect(app.ops(None).openapi().await, 200).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/auth/login",
        "/api/v1/auth/login",
        "/auth/login",
        "/oauth/login",
        "/login",
        "/api/audit-logs",
        "/api/events",
        "/api/verify",
        "/openapi.json",
        "/docs",
    ] {
        assert!(paths.contains_key(p), "{p} undocumented");
    }
    // Every documented operation is routed (not the 404 fallback, not 405).
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "1").replace("{asset}", "swagger-ui.css");
            let r = app.client.request(method.to_uppercase().parse().unwrap(), app.url(&concrete)).send().await.unwrap();
            assert!(![404, 405].contains(&r.status().as_u16()) || concrete.contains("/1"), "{method} {path} → {}", r.status());
        }
    }
    let html = app.ops(None).docs().await.text().await.unwrap();
    assert!(html.contains("/openapi.json") && !html.contains("http://") && !html.contains("https://"), "docs load nothing remote");
}

#[tokio::test]
async fn paths_answer_with_and_without_trailing_slash() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, access, _) = app.register("slash@example.org").await;
    let a: Value = expect(app.myo(&access).me().await, 200).await;
    let b: Value = expect(app.get("/api/auth/user", Some(&access)).await, 200).await;
    assert_eq!(a, b);
    expect(app.get("/healthz/", None).await, 200).await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let r = app.ops(None).healthz().await;
    assert!(r.headers().get("x-request-id").is_some());
    let r = app.ops(None).healthz().header("x-request-id", "abc-123").await;
    assert_eq!(r.headers()["x-request-id"], "abc-123");
}

/// Appends a `DatasetCreated` without its `fields`: a type this code knows, in a shape
/// it cannot read (a schema that drifted without an upcaster). Returns its position.
pub async fn append_drifted_dataset(app: &medledger_tests::app::TestApp) -> i64 {
    use medledger_application::ports::{ExpectedVersion, NewEvent, StreamWrite};
    let drifted = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "DatasetCreated".into(),
        schema_version: 1,
        payload: r#"{"dataset_id": 999}"#.into(),
        metadata: "{}".into(),
    };
    let write = StreamWrite { stream_id: "dataset-999".into(), expected: ExpectedVersion::NoStream, events: vec![drifted] };
    app.state.dbs.store.append(vec![write]).await.unwrap().last_position
}

#[tokio::test]
async fn an_event_that_does_not_decode_stops_its_read_models_and_says_so() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("before@example.org").await;
    // Logged in before: an admin's login waits for every read model.
    let admin = app.admin().await;
    let position = append_drifted_dataset(&app).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let r = app.get("/readyz", None).await;
        // Each subscriber reaches the event on its own: wait until both that handle
        // datasets have.
        if r.status() == 503 {
            let body = r.json::<Value>().await.unwrap();
            let stuck = |name: &str| body["stuck"].as_array().is_some_and(|s| s.iter().any(|s| s["projection"] == name));
            if stuck("datasets") && stuck("catalog_index") {
                break body;
            }
        }
        assert!(std::time::Instant::now() < deadline, "readyz never noticed both stuck read models");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "unavailable", "{body}");
    let stuck = body["stuck"].as_array().expect("stuck");
    let datasets = stuck.iter().find(|s| s["projection"] == "datasets").unwrap_or_else(|| panic!("{body}"));
    assert_eq!(datasets["position"], position);
    assert_eq!(datasets["event_type"], "DatasetCreated");
    assert!(datasets["error"].as_str().unwrap().contains("fields"), "{body}");
    assert!(stuck.iter().any(|s| s["projection"] == "catalog_index"), "{body}");
    assert!(!stuck.iter().any(|s| s["projection"] == "users"), "users does not handle datasets: {body}");

    // Stopped right before it, never past it; the others are through.
    assert!(app.state.progress.wait_for_one("datasets", position - 1, std::time::Duration::from_secs(5)).await);
    assert!(!app.state.progress.wait_for_one("datasets", position, std::time::Duration::from_millis(1500)).await);
    // Read models that do not handle datasets go on past it.
    assert!(app.state.progress.wait_for_one("users", position, std::time::Duration::from_secs(5)).await);

    let h = app.get("/api/health/", None).await.json::<Value>().await.unwrap();
    assert_eq!(h["status"], "unhealthy", "{h}");
    assert_eq!(h["services"]["projections"], "down", "{h}");
    assert_eq!(h["services"]["database"], "up", "{h}");
    assert!(h["stuck"].as_array().unwrap().iter().any(|s| s["projection"] == "datasets" && s["position"] == position), "{h}");

    let text = app.get("/metrics", Some(&admin)).await.text().await.unwrap();
    assert!(text.contains("medledger_projection_decode_errors_total{projection=\"datasets\"} 1"), "{text}");

    // A replay stops there too, naming it.
    let read = &app.state.dbs.read;
    let err = medledger_projections::rebuild(
        std::sync::Arc::new(medledger_projections::catalog::DatasetsProjection),
        &*app.state.dbs.store,
        app.state.ledger.codec(),
        read,
        |_, _| {},
    )
    .await
    .expect_err("replay of a drifted event");
    let decode = err.decode_error().expect("a decode error");
    assert_eq!((decode.position, decode.event_type.as_str()), (position, "DatasetCreated"));
}
