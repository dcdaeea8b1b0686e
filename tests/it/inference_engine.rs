//! The ONNX Runtime adapter against the reference outputs that Python's onnxruntime
//! produced for the same models and images (tests/fixtures/inference/expected.json).

use medledger_application::ports::{ImageDecoder, InferenceEngine, ModelInput};
use medledger_domain::inference::{ModelManifest, decode_detections};
use medledger_infrastructure::onnx::{OnnxEngine, UploadedImages, find_library};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inference");
const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");

fn engine() -> (OnnxEngine, Vec<(i64, &'static str, ModelManifest)>) {
    let library = find_library(None).expect("ONNX Runtime: run scripts/fetch-onnxruntime.sh");
    let engine = OnnxEngine::new(&library, 1).unwrap();
    let mut models = Vec::new();
    for (id, name, file) in
        [(1, "primitives-grid-tiny", "primitives-grid-tiny"), (2, "primitives-large", "primitives-large"), (3, "scenes", "scenes")]
    {
        let manifest: ModelManifest =
            serde_json::from_str(&std::fs::read_to_string(format!("{MODELS}/manifests/{file}.json")).unwrap()).unwrap();
        let onnx = std::fs::read(format!("{MODELS}/{file}.onnx")).unwrap();
        engine.load(id, &manifest, &onnx).unwrap();
        models.push((id, name, manifest));
    }
    (engine, models)
}

#[test]
fn outputs_match_python_onnxruntime_on_the_fixture_images() {
    let (engine, models) = engine();
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/expected.json")).unwrap()).unwrap();
    let decoder = UploadedImages { max_side: 8192, max_pixels: 8192 * 8192 };
    let images: Vec<&Value> = expected["images"].as_array().unwrap().iter().filter(|i| i["exact"] == true).collect();
    let decoded: Vec<_> = images
        .iter()
        .map(|image| decoder.decode(&std::fs::read(format!("{FIXTURES}/{}", image["file"].as_str().unwrap())).unwrap()).unwrap().image)
        .collect();
    let mut compared = 0;
    for (id, name, manifest) in &models {
        let inputs: Vec<ModelInput> = decoded.iter().map(|d| engine.input(*id, d).unwrap()).collect();
        // All the images in one run, as queued tasks go, and each alone: the same outputs.
        let batch = engine.run(*id, &inputs.iter().collect::<Vec<_>>()).unwrap();
        let alone: Vec<Vec<f32>> = inputs.iter().map(|i| engine.run(*id, &[i]).unwrap().remove(0)).collect();
        assert_eq!(batch, alone, "{name}: a batch computes what single runs do");
        for (image, output) in images.iter().zip(&batch) {
            let reference = &image["models"][*name];
            if *name == "scenes" {
                for (got, want) in output.iter().zip(reference["probabilities"].as_array().unwrap()) {
                    assert!((f64::from(*got) - want.as_f64().unwrap()).abs() < 1e-4, "{}: {got} vs {want}", image["file"]);
                }
                continue;
            }
            let width = manifest.detection_row_len();
            for row in reference["top_rows"].as_array().unwrap() {
                let at = row["row"].as_u64().unwrap() as usize * width;
                for (k, want) in row["values"].as_array().unwrap().iter().enumerate() {
                    let got = f64::from(output[at + k]);
                    assert!((got - want.as_f64().unwrap()).abs() < 1e-4, "{} {name} row {at}: {got} vs {want}", image["file"]);
                }
            }
            // Decoding and NMS agree with the reference post-processing too.
            let post = &reference["postprocessed"];
            let ours = decode_detections(output, manifest, 0.25, 0.5, 50).unwrap();
            let theirs = post["detections"].as_array().unwrap();
            assert_eq!(ours.len(), theirs.len(), "{} {name}: {ours:?}", image["file"]);
            for (o, t) in ours.iter().zip(theirs) {
                assert_eq!(o.primitive_class, t["class_name"].as_str().unwrap());
                let left = t["cx"].as_f64().unwrap() - t["w"].as_f64().unwrap() / 2.0;
                assert!((f64::from(o.x) - left.max(0.0)).abs() < 1e-3, "{o:?} vs {t}");
                assert!((f64::from(o.probability) - t["score"].as_f64().unwrap()).abs() < 1e-3);
            }
            compared += 1;
        }
    }
    assert!(compared >= 12, "every exact fixture compared for both detectors");
}

/// A graph traced with its batch fixed at 1 (a GlobalAveragePool: each channel's mean)
/// still takes several images: one run each.
#[test]
fn a_model_fixed_at_one_image_runs_a_batch_one_by_one() {
    let (engine, models) = engine();
    let mut manifest = models[2].2.clone();
    manifest.classes = vec!["red".into(), "green".into(), "blue".into()];
    engine.load(8, &manifest, &std::fs::read(format!("{FIXTURES}/fixed-batch-mean.onnx")).unwrap()).unwrap();
    let plane = 128 * 128;
    let image = |r: f32, g: f32, b: f32| ModelInput {
        width: 128,
        height: 128,
        values: [r, g, b].iter().flat_map(|v| std::iter::repeat_n(*v, plane)).collect(),
    };
    let (first, second) = (image(0.25, 0.5, 1.0), image(1.0, 0.0, 0.5));
    assert_eq!(engine.run(8, &[&first, &second]).unwrap(), vec![vec![0.25, 0.5, 1.0], vec![1.0, 0.0, 0.5]]);
}

#[test]
fn a_manifest_that_does_not_fit_the_graph_is_refused() {
    let (engine, models) = engine();
    let onnx = std::fs::read(format!("{MODELS}/scenes.onnx")).unwrap();
    let mut wrong_size = models[2].2.clone();
    wrong_size.input.width = 64;
    assert!(engine.load(9, &wrong_size, &onnx).unwrap_err().0.contains("shape"));
    let mut wrong_name = models[2].2.clone();
    wrong_name.output.name = "logits".into();
    assert!(engine.load(9, &wrong_name, &onnx).unwrap_err().0.contains("logits"));
    assert!(engine.load(9, &models[2].2, b"not an onnx model").is_err());
    assert!(!engine.is_loaded(9));
}

#[test]
fn an_input_made_for_another_size_is_refused_not_run() {
    let (engine, _) = engine();
    let wrong = ModelInput { width: 64, height: 64, values: vec![0.0; 3 * 64 * 64] };
    assert!(engine.run(3, &[&wrong]).unwrap_err().0.contains("128x128"));
    let short = ModelInput { width: 128, height: 128, values: vec![0.0; 10] };
    assert!(engine.run(3, &[&short]).is_err());
    let fine = ModelInput { width: 128, height: 128, values: vec![0.0; 3 * 128 * 128] };
    assert!(engine.run(3, &[&fine, &wrong]).unwrap_err().0.contains("128x128"), "one wrong input refuses the batch");
    assert!(engine.input(42, &medledger_application::ports::RgbImage { width: 1, height: 1, pixels: vec![0; 3] }).is_err());
}

#[test]
fn uploads_are_checked_before_they_are_decoded() {
    let decoder = UploadedImages { max_side: 8192, max_pixels: 8192 * 8192 };
    let png = std::fs::read(format!("{FIXTURES}/fixture_1_office_1obj.png")).unwrap();
    let jpeg = std::fs::read(format!("{FIXTURES}/large_1_street_640x480.jpg")).unwrap();
    assert_eq!(decoder.decode(&png).unwrap().content_type, "image/png");
    let big = decoder.decode(&jpeg).unwrap();
    assert_eq!((big.content_type, big.image.width, big.image.height), ("image/jpeg", 640, 480));
    assert!(decoder.decode(&[]).unwrap_err().0.contains("empty"));
    assert!(decoder.decode(b"hello, not an image").unwrap_err().0.contains("not an image"));
    assert!(decoder.decode(&jpeg[..jpeg.len() / 2]).unwrap_err().0.contains("truncated"));
    assert!(decoder.decode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap_err().0.contains("GIF"));
    assert!(decoder.decode(&huge_png()).unwrap_err().0.contains("larger than"));
}

/// A PNG whose header claims 20000×20000 pixels (the data is not there: the header
/// alone must get it refused).
pub fn huge_png() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
