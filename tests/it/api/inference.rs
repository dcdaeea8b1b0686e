//! Contract 004: inference tasks with the real ONNX models, end to end through HTTP.

use std::time::{Duration, Instant};

use medledger_application::inference::NewTask;
use medledger_application::metadata::CommandContext;
use medledger_domain::inference::task::{self, TaskCommand};
use medledger_tests::Kind;
use medledger_tests::app::{TestApp, spawn_app, spawn_with, test_config};
use serde_json::{Value, json};

use super::expect;
use crate::inference_engine::huge_png;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inference");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

async fn submit(app: &TestApp, token: &str, query: &str, body: Vec<u8>) -> reqwest::Response {
    app.inference(token).create_task_with_query(query, Some("image/jpeg"), body).await
}

async fn result_when_settled(app: &TestApp, token: &str, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = expect(app.inference(token).result(id, "").await, 200).await;
        if r["status"] == "done" || r["status"] == "failed" {
            return r;
        }
        assert_eq!(r["result"], "None", "no result while {}", r["status"]);
        assert!(Instant::now() < deadline, "task {id} still {} after 60 s", r["status"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn tasks_run_with_the_real_models(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let (_, token, _) = app.register("doctor@example.org").await;

    let models = expect(app.inference(&token).models().await, 200).await;
    let ids = |k: &str| models[k].as_array().unwrap().iter().map(|m| m["model_id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids("detection_models"), [1, 2]);
    assert_eq!(ids("classification_models"), [3]);
    assert_eq!(models["classification_models"][0]["model_name"], "scenes-cnn");

    let expected: Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/expected.json")).unwrap()).unwrap();
    let image = &expected["images"][3];
    let file = image["file"].as_str().unwrap();
    let bytes = fixture(file);
    let created = expect(submit(&app, &token, "detection_model_id=2&classification_model_id=3", bytes.clone()).await, 200).await;
    let id = created["id"].as_i64().unwrap();

    let done = result_when_settled(&app, &token, id).await;
    assert_eq!(done["status"], "done", "{done}");
    // Run once, from the POST: the saga waited for that run instead of starting another.
    let events = app.state.dbs.store.read_stream(&task::stream_id(id)).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["InferenceTaskCreated", "InferenceTaskStarted", "InferenceTaskCompleted"]);
    assert_eq!(done["result"]["image_class"], image["ground_truth"]["scene"]);
    let reference = image["models"]["primitives-large"]["postprocessed"]["detections"].as_array().unwrap();
    let primitives = done["result"]["primitives"].as_array().unwrap();
    assert_eq!(primitives.len(), reference.len(), "{done}");
    for (p, r) in primitives.iter().zip(reference) {
        assert_eq!(p["primitive_class"], r["class_name"]);
        for key in ["x", "y", "width", "height", "rotation", "probability"] {
            let v = p[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        assert!((p["width"].as_f64().unwrap() - r["w"].as_f64().unwrap()).abs() < 0.05, "{p} vs {r}");
    }
    // The alias without /api, the status, the list and the input image.
    assert_eq!(expect(app.inference(&token).result_without_api_prefix(id).await, 200).await, done);
    assert_eq!(expect(app.inference(&token).status(id).await, 200).await, json!({"id": id, "status": "done"}));
    let list = expect(app.inference(&token).tasks("").await, 200).await;
    let row = &list["tasks"][0];
    assert_eq!(
        (row["id"].as_i64(), row["status"].as_str(), row["input_path"].as_str()),
        (Some(id), Some("done"), Some(format!("img_{id}.png").as_str()))
    );
    assert!(row["created_at"].as_str().unwrap().starts_with("20"));
    let input = app.inference(&token).input(id).await;
    assert_eq!(input.headers()["content-type"], "image/png");
    assert_eq!(input.bytes().await.unwrap().to_vec(), bytes);

    // A JPEG of another size is resized for the models.
    let jpeg =
        expect(submit(&app, &token, "detection_model_id=1&classification_model_id=3", fixture("large_2_kitchen_400x300.jpg")).await, 200)
            .await;
    let r = result_when_settled(&app, &token, jpeg["id"].as_i64().unwrap()).await;
    assert_eq!(r["result"]["image_class"], "kitchen", "{r}");

    // Delete: the task is gone for its owner, and its image with it.
    let stored = app.data_dir().join(format!("blobs/inference/{}/img_{id}.png", id / 1000));
    assert!(stored.exists(), "the image is kept at {}", stored.display());
    assert_eq!(expect(app.inference(&token).delete_task(id).await, 200).await, json!({"id": id}));
    let gone = expect(app.inference(&token).status(id).await, 404).await;
    assert_eq!(gone, json!({"detail": format!("Task with id {id} does not exist.")}));
    assert!(!stored.exists());
}
crate::on_both!(tasks_run_with_the_real_models_, tasks_run_with_the_real_models);

/// Tasks that arrive together may share a run of each model (decision #52): each still
/// gets its own image's result.
#[tokio::test]
async fn tasks_sent_together_each_get_their_own_images_result() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, token, _) = app.register("doctor@example.org").await;
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/expected.json")).unwrap()).unwrap();
    let images: Vec<&Value> = expected["images"].as_array().unwrap().iter().filter(|i| i["exact"] == true).collect();
    let (app, token) = (&app, &token);
    let sent = futures::future::join_all(images.iter().cycle().take(3 * images.len()).map(|image| async move {
        let bytes = fixture(image["file"].as_str().unwrap());
        let created = expect(submit(app, token, "detection_model_id=2&classification_model_id=3", bytes).await, 200).await;
        let id = created["id"].as_i64().unwrap();
        (image, expect(app.inference(token).result(id, "wait=30").await, 200).await)
    }))
    .await;
    for (image, result) in sent {
        assert_eq!(result["status"], "done", "{result}");
        assert_eq!(result["result"]["image_class"], image["ground_truth"]["scene"], "{}", image["file"]);
        let reference = image["models"]["primitives-large"]["postprocessed"]["detections"].as_array().unwrap();
        let classes: Vec<&Value> = result["result"]["primitives"].as_array().unwrap().iter().map(|p| &p["primitive_class"]).collect();
        let want: Vec<&Value> = reference.iter().map(|r| &r["class_name"]).collect();
        assert_eq!(classes, want, "{}", image["file"]);
    }
}

#[tokio::test]
async fn a_client_can_wait_for_the_result_in_one_request() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, token, _) = app.register("doctor@example.org").await;
    let created =
        expect(submit(&app, &token, "detection_model_id=2&classification_model_id=3", fixture("fixture_3_kitchen_3obj.png")).await, 200)
            .await;
    let id = created["id"].as_i64().unwrap();
    let started = Instant::now();
    let r = expect(app.inference(&token).result(id, "wait=30").await, 200).await;
    assert_eq!(r["status"], "done", "one request answers once the task has ended: {r}");
    assert_eq!(r["result"]["image_class"], "kitchen");
    assert!(started.elapsed() < Duration::from_secs(30));
    // A task that has ended answers at once, and a bad wait is the contract's 400.
    assert_eq!(expect(app.inference(&token).result(id, "wait=30").await, 200).await, r);
    for bad in ["-1", "soon", "NaN"] {
        let e = expect(app.inference(&token).result(id, &format!("wait={bad}")).await, 400).await;
        assert!(e["detail"].as_str().unwrap().contains("wait must be"), "{bad}: {e}");
    }
    // Someone else waits for nothing: 404 at once.
    let (_, other, _) = app.register("other@example.org").await;
    expect(app.inference(&other).result(id, "wait=30").await, 404).await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_nothing_is_queued() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, token, _) = app.register("doctor@example.org").await;
    let png = fixture("fixture_1_office_1obj.png");
    let jpeg = fixture("large_1_street_640x480.jpg");
    let good = "detection_model_id=1&classification_model_id=3";
    let choose = "Model id was not correct. Choose from (id, name, type) [(1, 'primitives-grid-tiny', 'detection_model'), \
                  (2, 'primitives-large', 'detection_model'), (3, 'scenes-cnn', 'classification_model')].";
    for (query, body, needle) in [
        (good, vec![], "empty"),
        (good, b"just some text".to_vec(), "not an image"),
        (good, jpeg[..jpeg.len() / 2].to_vec(), "truncated"),
        (good, huge_png(), "larger than"),
        (good, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(), "GIF"),
        ("detection_model_id=3&classification_model_id=3", png.clone(), choose),
        ("detection_model_id=1&classification_model_id=1", png.clone(), choose),
        ("detection_model_id=99&classification_model_id=3", png.clone(), choose),
        ("detection_model_id=one&classification_model_id=3", png.clone(), choose),
        ("classification_model_id=3", png.clone(), "detection_model_id is required"),
    ] {
        let r = expect(submit(&app, &token, query, body).await, 400).await;
        assert!(r["detail"].as_str().unwrap().contains(needle), "{query}: {r}");
    }
    assert_eq!(expect(app.inference(&token).tasks("").await, 200).await, json!({"tasks": []}));

    // Without a token: FastAPI's message on every endpoint.
    let anonymous = app.inference(None);
    for (what, call) in [
        ("tasks", anonymous.tasks("")),
        ("models", anonymous.models()),
        ("status of 1", anonymous.status(1)),
        ("result of 1", anonymous.result(1, "")),
        ("result of 1 without /api", anonymous.result_without_api_prefix(1)),
    ] {
        assert_eq!(expect(call.await, 401).await, json!({"detail": "Not authenticated"}), "{what}");
    }
}

#[tokio::test]
async fn someone_elses_task_does_not_exist_for_you() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, owner, _) = app.register("owner@example.org").await;
    let (_, other, _) = app.register("other@example.org").await;
    let created =
        expect(submit(&app, &owner, "detection_model_id=1&classification_model_id=3", fixture("fixture_2_street_2obj.png")).await, 200)
            .await;
    let id = created["id"].as_i64().unwrap();
    let missing = json!({"detail": format!("Task with id {id} does not exist.")});
    let others = app.inference(&other);
    for (what, call) in [
        ("status", others.status(id)),
        ("input", others.input(id)),
        ("result", others.result(id, "")),
        ("result without /api", others.result_without_api_prefix(id)),
    ] {
        assert_eq!(expect(call.await, 404).await, missing, "{what}");
    }
    let delete = others.delete_task(id).await;
    assert_eq!(expect(delete, 404).await, missing);
    assert_eq!(expect(app.inference(&other).tasks("").await, 200).await, json!({"tasks": []}));
    // An id that is no number: the raw path.
    let odd = expect(app.get("/api/tasks/abc/status", Some(&owner)).await, 404).await;
    assert_eq!(odd, json!({"detail": "Task with id abc does not exist."}));
    // The owner still has it.
    let r = result_when_settled(&app, &owner, id).await;
    assert_eq!(r["status"], "done");
}

/// A server killed while a task was in progress (started, no result) finishes it after
/// restart, and the history holds exactly one result for it.
#[tokio::test]
async fn a_task_interrupted_by_a_crash_ends_exactly_once() {
    let Some(config) = test_config(Kind::Sqlite).await else { return };
    let app = spawn_with(config.clone(), Kind::Sqlite).await;
    let (owner, token, _) = app.register("doctor@example.org").await;
    let config = app.stop().await;

    // Recorded with no saga running, then "started" by a runner that died.
    let core = medledger_api::core(&config).await.unwrap();
    core.get::<medledger_application::inference::InferenceTasks>()
        .unwrap()
        .register_builtins(&medledger_api::builtin_models::builtins())
        .await
        .unwrap();
    let ctx = CommandContext::system();
    let task = NewTask { owner_id: owner, detection_model_id: 1, classification_model_id: 3 };
    let (id, _) = core
        .get::<medledger_application::inference::InferenceTasks>()
        .unwrap()
        .create(task, &fixture("fixture_4_nature_4obj.png"), &ctx)
        .await
        .unwrap();
    core.ledger
        .execute::<medledger_domain::inference::task::InferenceTask>(&task::stream_id(id), &ctx, |t| {
            medledger_domain::Aggregate::handle(t, TaskCommand::Start)
        })
        .await
        .unwrap();
    drop(core);

    let app = spawn_with(config, Kind::Sqlite).await;
    // The read models catch up with what was recorded while the server was down.
    assert!(app.state.progress.wait_for(app.head().await, Duration::from_secs(10)).await);
    let r = result_when_settled(&app, &token, id).await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["result"]["image_class"], "nature");
    let events = app.state.dbs.store.read_stream(&task::stream_id(id)).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["InferenceTaskCreated", "InferenceTaskStarted", "InferenceTaskStarted", "InferenceTaskCompleted"]);

    // Running it again (a redelivered event) records nothing more.
    let cause = medledger_application::metadata::Cause::new(events[0].event_id, None);
    app.state.get::<medledger_application::inference::InferenceTasks>().unwrap().run(id, cause).await.unwrap();
    assert_eq!(app.state.dbs.store.read_stream(&task::stream_id(id)).await.unwrap().len(), 4);
}

#[tokio::test]
async fn admins_register_models_that_fit_their_manifest() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let (_, doctor, _) = app.register("doctor@example.org").await;
    let onnx = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/scenes.onnx")).unwrap();
    let mut manifest: Value = serde_json::from_str(include_str!("../../../models/manifests/scenes.json")).unwrap();
    manifest["name"] = json!("scenes-v2");
    let register = |token: String, manifest: Value, model: Vec<u8>| {
        let boundary = "medledger-test-boundary";
        let mut body = Vec::new();
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{manifest}\r\n").as_bytes());
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m.onnx\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend(model);
        body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
        app.inference(token.as_str()).register_model(&format!("multipart/form-data; boundary={boundary}"), body)
    };
    assert_eq!(register(doctor.clone(), manifest.clone(), onnx.clone()).await.status(), 403);
    let mut wrong = manifest.clone();
    wrong["input"]["width"] = json!(64);
    let r = expect(register(admin.clone(), wrong, onnx.clone()).await, 400).await;
    assert!(r["detail"].as_str().unwrap().contains("shape"), "{r}");
    let mut no_classes = manifest.clone();
    no_classes["classes"] = json!([]);
    expect(register(admin.clone(), no_classes, onnx.clone()).await, 400).await;
    expect(register(admin.clone(), manifest.clone(), b"not onnx".to_vec()).await, 400).await;

    let created = expect(register(admin.clone(), manifest, onnx).await, 201).await;
    let id = created["model_id"].as_i64().unwrap();
    assert_eq!(id, 4, "ids continue after the built-in models");
    let models = expect(app.inference(&doctor).models().await, 200).await;
    assert_eq!(models["classification_models"][1], json!({"model_name": "scenes-v2", "model_id": 4}));
    let task =
        expect(submit(&app, &doctor, "detection_model_id=1&classification_model_id=4", fixture("fixture_1_office_1obj.png")).await, 200)
            .await;
    let r = result_when_settled(&app, &doctor, task["id"].as_i64().unwrap()).await;
    assert_eq!(r["result"]["image_class"], "office");
}

/// From the auditor's event list, a request's event leads to what the saga did because
/// of it: the task's start and result name the `InferenceTaskCreated` as their cause and
/// carry the request's correlation id.
#[tokio::test]
async fn the_events_list_leads_from_a_request_to_its_side_effects() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, token, _) = app.register("chain@example.org").await;
    let request_id = uuid::Uuid::new_v4();
    let r = app
        .client
        .post(app.url("/api/tasks?detection_model_id=1&classification_model_id=3"))
        .bearer_auth(&token)
        .header("content-type", "image/png")
        .header("x-request-id", request_id.to_string())
        .body(fixture("fixture_2_street_2obj.png"))
        .send()
        .await
        .unwrap();
    let id = expect(r, 200).await["id"].as_i64().unwrap();
    result_when_settled(&app, &token, id).await;

    let admin = app.admin().await;
    let text = app.get(&format!("/api/events?stream={}", task::stream_id(id)), Some(&admin)).await.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let [created, effects @ ..] = lines.as_slice() else { panic!("{text}") };
    assert_eq!(created["type"], "InferenceTaskCreated");
    assert_eq!(created["metadata"]["correlation_id"], request_id.to_string(), "the request begins the chain");
    assert!(created["metadata"].get("causation_id").is_none(), "{created}");
    assert!(effects.len() >= 2, "started and ended: {text}");
    for e in effects {
        assert_eq!(e["metadata"]["causation_id"], created["event_id"], "{e}");
        assert_eq!(e["metadata"]["correlation_id"], request_id.to_string(), "{e}");
    }
}
