//! Issue 15, item 2: what an admin-registered ONNX model may do. It may not read files
//! (external data is refused before ONNX Runtime sees the bytes), the runtime's own
//! messages (paths, internals) do not reach clients, and a run that takes too long or
//! allocates too much fails its task, not the server. The hostile models come from
//! `models/make_safety_fixtures.py`.

use std::time::{Duration, Instant};

use medledger_tests::Kind;
use medledger_tests::app::{TestApp, spawn_app, spawn_with, test_config};
use serde_json::{Value, json};

use super::expect;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inference");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// The built-in scene classifier's manifest under another name: every fixture model takes
/// `image` [1, 3, 128, 128] and gives `probabilities` for its four classes.
fn manifest(name: &str) -> Value {
    let mut manifest: Value = serde_json::from_str(include_str!("../../../models/manifests/scenes.json")).unwrap();
    manifest["name"] = json!(name);
    manifest
}

async fn register(app: &TestApp, admin: &str, name: &str, model: Vec<u8>) -> reqwest::Response {
    let boundary = "medledger-safety-boundary";
    let mut body = Vec::new();
    body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{}\r\n", manifest(name)).as_bytes());
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m.onnx\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend(model);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    app.inference(admin).register_model(&format!("multipart/form-data; boundary={boundary}"), body).await
}

/// Registers a fixture model that the server accepts; its id.
async fn registered(app: &TestApp, admin: &str, file: &str) -> i64 {
    let created = expect(register(app, admin, file, fixture(file)).await, 201).await;
    created["model_id"].as_i64().unwrap()
}

async fn submit(app: &TestApp, token: &str, classifier: i64) -> i64 {
    let r = app.inference(token).create_task(1, classifier, Some("image/png"), fixture("fixture_1_office_1obj.png")).await;
    expect(r, 200).await["id"].as_i64().unwrap()
}

async fn settled(app: &TestApp, token: &str, id: i64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = expect(app.inference(token).result(id, "wait=1").await, 200).await;
        if r["status"] == "done" || r["status"] == "failed" {
            return r;
        }
        assert!(Instant::now() < deadline, "task {id} still {} after {within:?}", r["status"]);
    }
}

/// Nothing in a message a client gets may describe the server: no path, no runtime text.
fn assert_says_nothing_about_the_server(text: &str) {
    let cwd = std::env::current_dir().unwrap();
    for needle in [cwd.to_str().unwrap(), "secret.key", "expected.json", "onnxruntime", "/", "\\"] {
        assert!(!text.contains(needle), "{needle:?} in {text:?}");
    }
}

async fn model_ids(app: &TestApp, token: &str) -> Value {
    expect(app.inference(token).models().await, 200).await
}

/// The review's exploit: a bias stored as external data at `data/secret.key` made ONNX
/// Runtime read the server's secret, and the winning class gave its bytes away. The
/// second model points at a file that is there (relative to the tests' working
/// directory), which the old server loaded and registered.
async fn a_model_with_external_data_is_refused_before_anything_reads_it(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let admin = app.admin().await;
    let before = model_ids(&app, &admin).await;
    for file in ["safety-external-data-readable.onnx", "safety-external-data.onnx"] {
        let refused = expect(register(&app, &admin, file, fixture(file)).await, 400).await;
        let detail = refused["detail"].as_str().unwrap();
        assert!(detail.contains("external data"), "{file}: {refused}");
        assert_says_nothing_about_the_server(detail);
    }
    assert_eq!(model_ids(&app, &admin).await, before, "nothing was registered");
    assert!(!app.data_dir().join("blobs/models/4.onnx").exists(), "nothing was stored");
}
crate::on_both!(
    a_model_with_external_data_is_refused_before_anything_reads_it_,
    a_model_with_external_data_is_refused_before_anything_reads_it
);

/// ONNX Runtime's messages name its source files, the model's nodes and, for external
/// data, the server's absolute paths: clients get a sentence of ours, the log the rest.
#[tokio::test]
async fn a_model_the_runtime_refuses_gets_a_generic_answer() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let (_, doctor, _) = app.register("doctor@example.org").await;

    let refused = expect(register(&app, &admin, "unknown-op", fixture("safety-unknown-op.onnx")).await, 400).await;
    assert_eq!(refused, json!({"detail": "The model could not be loaded."}));

    // One that loads but fails in every run: its task fails, with as little said.
    let model = registered(&app, &admin, "safety-fails-when-run.onnx").await;
    let failed = settled(&app, &doctor, submit(&app, &doctor, model).await, Duration::from_secs(60)).await;
    assert_eq!((failed["status"].as_str(), failed["reason"].as_str()), (Some("failed"), Some("The model could not be run.")), "{failed}");
    assert_says_nothing_about_the_server(&failed.to_string());
}

/// A run past `model_run_timeout` is stopped: its task fails and the model thread goes on
/// to the next task (the old server ran the 10 million products to their end).
#[tokio::test]
async fn a_run_that_takes_too_long_fails_its_task_and_others_are_served() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.contexts.inference.model_run_timeout = Duration::from_millis(300);
    let app = spawn_with(config, Kind::Sqlite).await;
    let admin = app.admin().await;
    let (_, doctor, _) = app.register("doctor@example.org").await;
    let slow = registered(&app, &admin, "safety-runs-long.onnx").await;

    let started = Instant::now();
    let hostile = submit(&app, &doctor, slow).await;
    let ordinary = submit(&app, &doctor, 3).await;
    let failed = settled(&app, &doctor, hostile, Duration::from_secs(30)).await;
    assert_eq!((failed["status"].as_str(), failed["reason"].as_str()), (Some("failed"), Some("The model could not be run.")), "{failed}");
    let done = settled(&app, &doctor, ordinary, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "done", "{done}");
    assert!(started.elapsed() < Duration::from_secs(20), "stopped near its limit, not run out: {:?}", started.elapsed());
    // The model stays registered and keeps being stopped; the server keeps serving.
    let again = settled(&app, &doctor, submit(&app, &doctor, slow).await, Duration::from_secs(30)).await;
    assert_eq!(again["status"], "failed");
    assert_eq!(settled(&app, &doctor, submit(&app, &doctor, 3).await, Duration::from_secs(30)).await["status"], "done");
}

/// A run whose tensors exceed `model_max_memory_mb` (1.6 GB of floats here, against the
/// default 1024 MB) fails its task instead of taking the memory (the old server did).
#[tokio::test]
async fn a_run_that_allocates_too_much_fails_its_task() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    assert!(app.config.contexts.inference.model_max_memory_mb < 1600, "the fixture needs more than the cap");
    let admin = app.admin().await;
    let (_, doctor, _) = app.register("doctor@example.org").await;
    let greedy = registered(&app, &admin, "safety-allocates-too-much.onnx").await;
    let failed = settled(&app, &doctor, submit(&app, &doctor, greedy).await, Duration::from_secs(60)).await;
    assert_eq!((failed["status"].as_str(), failed["reason"].as_str()), (Some("failed"), Some("The model could not be run.")), "{failed}");
    assert_eq!(settled(&app, &doctor, submit(&app, &doctor, 3).await, Duration::from_secs(30)).await["status"], "done");
}
