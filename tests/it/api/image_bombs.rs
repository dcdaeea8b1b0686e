//! Issue 15, item 3: image bombs and floods of tasks. A small file of a huge image is
//! refused from its header before anything is decoded or queued; the pixel limit is a
//! setting; one user cannot create tasks without bound.

use std::time::{Duration, Instant};

use medledger_application::ports::ImageDecoder as _;
use medledger_infrastructure::onnx::UploadedImages;
use medledger_tests::Kind;
use medledger_tests::app::{TestApp, spawn_with, test_config};
use serde_json::json;

use super::expect;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inference");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// The bomb of the security review: 261 KB of PNG that decodes to 8192×8192 RGBA
/// (268 MB, and 201 MB more as RGB). Made with zlib at level 9 over rows of zero bytes
/// (filter 0, transparent black); see the fixture's IHDR below.
fn bomb() -> Vec<u8> {
    let png = fixture("bomb_8192x8192.png");
    assert!(png.len() < 300 * 1024, "a small file");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!((&png[16..20], &png[20..24], png[24], png[25]), (&8192u32.to_be_bytes()[..], &8192u32.to_be_bytes()[..], 8, 6));
    png
}

async fn submit(app: &TestApp, token: &str, body: Vec<u8>) -> reqwest::Response {
    // Detection model 1 and classification model 3: both good.
    app.inference(token).create_task(1, 3, None, body).await
}

async fn settled(app: &TestApp, token: &str, id: i64) -> serde_json::Value {
    let r = expect(app.inference(token).result(id, "wait=30").await, 200).await;
    assert_eq!(r["status"], "done", "{r}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_bomb_is_refused_from_its_header_and_nothing_is_queued() {
    let Some(config) = test_config(Kind::Sqlite).await else { return };
    let app = spawn_with(config, Kind::Sqlite).await;
    let (_, token, _) = app.register("doctor@example.org").await;
    let head = app.head().await;

    let started = Instant::now();
    let r = expect(submit(&app, &token, bomb()).await, 400).await;
    // Today's decode of it takes seconds and half a gigabyte; the header takes nothing.
    assert!(started.elapsed() < Duration::from_secs(2), "refused in {:?}", started.elapsed());
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("8192x8192") && detail.contains("larger than the 4194304 pixels"), "{detail}");

    assert_eq!(app.head().await, head, "nothing was recorded");
    assert_eq!(expect(app.inference(&token).tasks("").await, 200).await, json!({"tasks": []}));
    assert!(!app.data_dir().join("blobs/inference").exists(), "nothing was stored");

    // Meanwhile an ordinary image is served as before.
    let id = expect(submit(&app, &token, fixture("fixture_1_office_1obj.png")).await, 200).await["id"].as_i64().unwrap();
    settled(&app, &token, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pixel_limit_is_a_setting_and_holds_exactly() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.contexts.inference.max_image_pixels = 400 * 300;
    let app = spawn_with(config, Kind::Sqlite).await;
    let (_, token, _) = app.register("doctor@example.org").await;

    let at_the_limit = expect(submit(&app, &token, fixture("large_2_kitchen_400x300.jpg")).await, 200).await;
    settled(&app, &token, at_the_limit["id"].as_i64().unwrap()).await;
    let r = expect(submit(&app, &token, fixture("large_1_street_640x480.jpg")).await, 400).await;
    assert_eq!(
        r,
        json!({"detail": "the image is 640x480 pixels (0.3 megapixels), larger than the 120000 pixels (0.1 megapixels) accepted; \
                          scale it down"})
    );
    assert_eq!(expect(app.inference(&token).tasks("").await, 200).await["tasks"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_creation_is_rate_limited_per_user() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.contexts.inference.task_rate_limit = 3;
    let app = spawn_with(config, Kind::Sqlite).await;
    let (_, flooder, _) = app.register("flooder@example.org").await;
    let (_, other, _) = app.register("other@example.org").await;
    let png = fixture("fixture_2_street_2obj.png");

    for _ in 0..3 {
        let id = expect(submit(&app, &flooder, png.clone()).await, 200).await["id"].as_i64().unwrap();
        settled(&app, &flooder, id).await;
    }
    let head = app.head().await;
    let refused = submit(&app, &flooder, png.clone()).await;
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let r = expect(refused, 429).await;
    assert_eq!(r, json!({"detail": format!("Too many tasks: at most 3 a minute may be created. Try again in {retry_after} seconds.")}));
    // Refused before anything else: even a bomb is not looked at, and nothing is recorded.
    expect(submit(&app, &flooder, bomb()).await, 429).await;
    assert_eq!(app.head().await, head);

    // Another user has an allowance of their own.
    let id = expect(submit(&app, &other, png).await, 200).await["id"].as_i64().unwrap();
    settled(&app, &other, id).await;
    assert_eq!(expect(app.inference(&flooder).tasks("").await, 200).await["tasks"].as_array().unwrap().len(), 3);
}

/// The header readers that refuse early agree with the decoder on every fixture, and the
/// decoder keeps to the same limits on its own.
#[test]
fn the_header_says_what_the_decoder_finds() {
    let decoder = UploadedImages { max_side: 8192, max_pixels: 2048 * 2048 };
    for name in ["fixture_1_office_1obj.png", "fixture_4_nature_4obj.png", "large_1_street_640x480.jpg", "large_2_kitchen_400x300.jpg"] {
        let bytes = fixture(name);
        let header = decoder.check(&bytes).unwrap();
        let decoded = decoder.decode(&bytes).unwrap();
        assert_eq!((header.content_type, header.width, header.height), (decoded.content_type, decoded.image.width, decoded.image.height));
    }
    let started = Instant::now();
    assert!(decoder.check(&bomb()).unwrap_err().0.contains("larger than"));
    assert!(decoder.decode(&bomb()).unwrap_err().0.contains("larger than"));
    assert!(started.elapsed() < Duration::from_secs(1), "neither decodes it: {:?}", started.elapsed());
    let side_only = UploadedImages { max_side: 8192, max_pixels: 8192 * 8192 };
    assert!(side_only.check(&bomb()).is_ok(), "the old limit let it through");
}
