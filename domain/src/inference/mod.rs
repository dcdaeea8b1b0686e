//! Inference tasks (contract 004): a user uploads an image, a detection model finds
//! primitives in it and a classification model names the scene.
//!
//! This module holds what is pure about that: the model manifest, the result shape,
//! the post-processing of raw model outputs, and the two aggregates ([`model::Model`],
//! [`task::InferenceTask`]). Running the models is the application's business.

use serde::{Deserialize, Serialize};

use crate::DomainError;

pub mod model;
pub mod task;

pub use model::{Model, ModelCommand, ModelEvent};
pub use task::{InferenceTask, TaskCommand, TaskEvent, TaskInput, TaskStatus};

/// Inference's event enums.
pub const EVENTS: &[crate::events::EventEnum] =
    &[crate::events::EventEnum::of::<ModelEvent>("ModelEvent"), crate::events::EventEnum::of::<TaskEvent>("TaskEvent")];

pub type TaskId = i64;
pub type ModelId = i64;

/// What a model is for; the strings are the contract's `type` words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ModelKind {
    #[serde(rename = "detection_model")]
    Detection,
    #[serde(rename = "classification_model")]
    Classification,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Detection => "detection_model",
            ModelKind::Classification => "classification_model",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Channels {
    #[serde(rename = "RGB")]
    Rgb,
}

/// How the image becomes the input tensor: resize to `width`×`height`, NCHW,
/// `(pixel × scale − mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InputSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub channels: Channels,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputSpec {
    /// Whether both specs turn an image into the same tensor (the graph input's name
    /// aside), so one tensor can feed both models.
    pub fn same_tensor_as(&self, other: &InputSpec) -> bool {
        InputSpec { name: other.name.clone(), ..self.clone() } == *other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// `[N × (6 + classes)]` rows: cx, cy, w, h, rotation, objectness, class probabilities.
    CxcywhRotationObjectnessClasses,
    /// One probability per class.
    Probabilities,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::CxcywhRotationObjectnessClasses => "cxcywh_rotation_objectness_classes",
            OutputFormat::Probabilities => "probabilities",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutputSpec {
    pub name: String,
    pub format: OutputFormat,
}

/// The JSON that travels with an ONNX file and says how to feed it and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelManifest {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ModelKind,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub classes: Vec<String>,
}

pub const MAX_MODEL_NAME_CHARS: usize = 64;
pub const MAX_TENSOR_NAME_CHARS: usize = 128;
pub const MAX_CLASSES: usize = 1_000;
pub const MAX_CLASS_CHARS: usize = 64;
pub const MIN_INPUT_SIDE: u32 = 8;
pub const MAX_INPUT_SIDE: u32 = 2_048;

impl ModelManifest {
    /// Checks a manifest before a model is registered, so that inference never meets
    /// a shape or a normalisation it cannot use (a zero `std` would divide by zero).
    pub fn validate(mut self) -> Result<Self, DomainError> {
        self.name = self.name.trim().to_string();
        let name_chars = self.name.chars().count();
        if name_chars == 0
            || name_chars > MAX_MODEL_NAME_CHARS
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c))
        {
            return Err(DomainError::invalid(
                "name",
                format!("1-{MAX_MODEL_NAME_CHARS} characters: letters, digits, spaces, '.', '_' and '-'"),
            ));
        }
        tensor_name("input.name", &self.input.name)?;
        tensor_name("output.name", &self.output.name)?;
        for (field, side) in [("input.width", self.input.width), ("input.height", self.input.height)] {
            if !(MIN_INPUT_SIDE..=MAX_INPUT_SIDE).contains(&side) {
                return Err(DomainError::invalid(field, format!("must be from {MIN_INPUT_SIDE} to {MAX_INPUT_SIDE}")));
            }
        }
        if !(self.input.scale.is_finite() && self.input.scale > 0.0) {
            return Err(DomainError::invalid("input.scale", "must be a finite number above 0"));
        }
        if !self.input.mean.iter().all(|m| m.is_finite()) {
            return Err(DomainError::invalid("input.mean", "must be three finite numbers"));
        }
        if !self.input.std.iter().all(|s| s.is_finite() && *s != 0.0) {
            return Err(DomainError::invalid("input.std", "must be three finite numbers other than 0"));
        }
        let expected = match self.kind {
            ModelKind::Detection => OutputFormat::CxcywhRotationObjectnessClasses,
            ModelKind::Classification => OutputFormat::Probabilities,
        };
        if self.output.format != expected {
            return Err(DomainError::invalid("output.format", format!("a {} needs the format {}", self.kind.as_str(), expected.as_str())));
        }
        if self.classes.is_empty() || self.classes.len() > MAX_CLASSES {
            return Err(DomainError::invalid("classes", format!("1 to {MAX_CLASSES} classes")));
        }
        let mut classes: Vec<String> = Vec::with_capacity(self.classes.len());
        for class in &self.classes {
            let class = class.trim();
            if class.is_empty() || class.chars().count() > MAX_CLASS_CHARS || class.chars().any(char::is_control) {
                return Err(DomainError::invalid("classes", format!("each class is 1-{MAX_CLASS_CHARS} characters")));
            }
            if classes.iter().any(|c| c == class) {
                return Err(DomainError::invalid("classes", format!("'{class}' is listed twice")));
            }
            classes.push(class.to_string());
        }
        self.classes = classes;
        Ok(self)
    }

    /// The length of one detection row, `6 + classes`; meaningful for detectors only.
    pub fn detection_row_len(&self) -> usize {
        6 + self.classes.len()
    }
}

fn tensor_name(field: &'static str, name: &str) -> Result<(), DomainError> {
    // Not trimmed: it must match the graph's tensor name byte for byte.
    if name.trim().is_empty() || name.chars().count() > MAX_TENSOR_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(DomainError::invalid(field, format!("1-{MAX_TENSOR_NAME_CHARS} characters")));
    }
    Ok(())
}

/// A lower-case hex SHA-256, as the blob store names content.
pub(crate) fn parse_sha256(field: &'static str, raw: &str) -> Result<String, DomainError> {
    let value = raw.trim().to_ascii_lowercase();
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DomainError::invalid(field, "must be 64 hexadecimal characters"));
    }
    Ok(value)
}

/// A task's answer, in the contract's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InferenceResult {
    pub image_class: String,
    pub primitives: Vec<Primitive>,
}

/// One detected primitive. Every number is in [0, 1].
///
/// `x`, `y` are the box's **top-left corner** and `width`, `height` its size, all as
/// fractions of the image's width and height; the box lies inside the image. The
/// contract does not say which point `x`, `y` is: models output centres and
/// [`decode_detections`] converts them. `rotation` is the model's normalised angle and
/// `probability` is objectness × the class's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Primitive {
    pub primitive_class: String,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub rotation: f32,
    pub probability: f32,
}

impl InferenceResult {
    /// Non-finite numbers serialise to JSON `null` and would make the event unreadable
    /// on replay, so a result is checked before it is recorded.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.image_class.trim().is_empty() {
            return Err(DomainError::invalid("image_class", "must not be empty"));
        }
        for p in &self.primitives {
            if p.primitive_class.trim().is_empty() {
                return Err(DomainError::invalid("primitive_class", "must not be empty"));
            }
            if ![p.x, p.y, p.width, p.height, p.rotation, p.probability].iter().all(|v| (0.0..=1.0).contains(v)) {
                return Err(DomainError::invalid("primitives", "every number must be in [0, 1]"));
            }
        }
        Ok(())
    }
}

/// Intersection over union of two boxes given by their top-left corner and size.
pub fn iou(a: &Primitive, b: &Primitive) -> f32 {
    let corners = |p: &Primitive| {
        let (x, y, w, h) = (p.x as f64, p.y as f64, p.width as f64, p.height as f64);
        [x, y, x + w, y + h]
    };
    iou_xyxy(corners(a), corners(b)) as f32
}

/// The reference (`models/common.py`) computes in f64 and floors the union at 1e-12.
fn iou_xyxy(a: [f64; 4], b: [f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter).max(1e-12)
}

/// Turns a detector's flat `[N × (6 + C)]` output into primitives.
///
/// Follows `models/common.py::postprocess`, which produced the fixtures' expected
/// detections: score = objectness × max class probability (first class on ties);
/// keep score ≥ `score_threshold`; class-wise greedy NMS on the model's own boxes
/// (a box is dropped when its IoU with a better one of its class exceeds
/// `iou_threshold`); order by score, then class, then row; keep `max_detections`.
/// Boxes are clamped into the image only afterwards, so NMS sees what the model said.
/// Rows holding a non-finite number are skipped: one bad anchor must not sink a result.
pub fn decode_detections(
    rows: &[f32],
    manifest: &ModelManifest,
    score_threshold: f32,
    iou_threshold: f32,
    max_detections: usize,
) -> Result<Vec<Primitive>, DomainError> {
    if manifest.output.format != OutputFormat::CxcywhRotationObjectnessClasses {
        return Err(DomainError::invalid("output.format", "not a detection model"));
    }
    if !score_threshold.is_finite() || !iou_threshold.is_finite() {
        return Err(DomainError::invalid("threshold", "thresholds must be finite"));
    }
    let row_len = manifest.detection_row_len();
    if !rows.len().is_multiple_of(row_len) {
        return Err(DomainError::invalid("output", format!("{} values do not split into rows of {row_len}", rows.len())));
    }

    struct Candidate {
        row: usize,
        class: usize,
        score: f64,
        xyxy: [f64; 4],
        rotation: f64,
    }
    let mut candidates: Vec<Candidate> = rows
        .chunks_exact(row_len)
        .enumerate()
        .filter(|(_, r)| r.iter().all(|v| v.is_finite()))
        .filter_map(|(row, r)| {
            let probs = &r[6..];
            let (class, best) =
                probs.iter().enumerate().fold((0, f64::NEG_INFINITY), |acc, (i, &p)| if p as f64 > acc.1 { (i, p as f64) } else { acc });
            let score = r[5] as f64 * best;
            if score < score_threshold as f64 {
                return None;
            }
            let (cx, cy) = (r[0] as f64, r[1] as f64);
            let (w, h) = ((r[2] as f64).max(0.0), (r[3] as f64).max(0.0));
            let xyxy = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
            Some(Candidate { row, class, score, xyxy, rotation: r[4] as f64 })
        })
        .collect();
    // Score, then class, then row: the reference's order, and deterministic on ties.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.class.cmp(&b.class)).then(a.row.cmp(&b.row)));

    let iou_threshold = iou_threshold as f64;
    let mut kept: Vec<&Candidate> = Vec::new();
    for c in &candidates {
        if kept.len() == max_detections {
            break;
        }
        // Anything kept earlier scored at least as high, so this is greedy NMS per class.
        if kept.iter().any(|k| k.class == c.class && iou_xyxy(k.xyxy, c.xyxy) > iou_threshold) {
            continue;
        }
        kept.push(c);
    }

    Ok(kept
        .into_iter()
        .map(|c| {
            let clamp = |v: f64| v.clamp(0.0, 1.0) as f32;
            let [x0, y0, x1, y1] = c.xyxy.map(clamp);
            Primitive {
                primitive_class: manifest.classes[c.class].clone(),
                x: x0,
                y: y0,
                width: x1 - x0,
                height: y1 - y0,
                rotation: clamp(c.rotation),
                probability: clamp(c.score),
            }
        })
        .collect())
}

/// The most probable class of a classifier's output (first on ties; non-finite values ignored).
pub fn top_class(probabilities: &[f32], classes: &[String]) -> Result<(String, f32), DomainError> {
    if probabilities.len() != classes.len() {
        return Err(DomainError::invalid("output", format!("{} probabilities for {} classes", probabilities.len(), classes.len())));
    }
    probabilities
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_finite())
        .fold(None, |best: Option<(usize, f32)>, (i, &p)| match best {
            Some((_, b)) if b >= p => best,
            _ => Some((i, p)),
        })
        .map(|(i, p)| (classes[i].clone(), p))
        .ok_or_else(|| DomainError::invalid("output", "no usable probability"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"name": "primitives-grid-tiny", "type": "detection_model", "input": {"name": "image", "width": 128, "height": 128, "channels": "RGB", "scale": 0.00392156862745098, "mean": [0,0,0], "std": [1,1,1]}, "output": {"name": "detections", "format": "cxcywh_rotation_objectness_classes"}, "classes": ["sphere","cube","cylinder","cone","pyramid"]}"#;

    pub(super) fn detector() -> ModelManifest {
        serde_json::from_str(EXAMPLE).unwrap()
    }

    pub(super) fn classifier() -> ModelManifest {
        ModelManifest {
            name: "scenes-cnn".into(),
            kind: ModelKind::Classification,
            output: OutputSpec { name: "probabilities".into(), format: OutputFormat::Probabilities },
            classes: ["office", "street", "kitchen", "nature"].map(String::from).to_vec(),
            ..detector()
        }
    }

    fn field_of(result: Result<ModelManifest, DomainError>) -> &'static str {
        match result {
            Err(DomainError::InvalidValue { field, .. }) => field,
            other => panic!("expected an invalid value, got {other:?}"),
        }
    }

    #[test]
    fn one_tensor_feeds_models_whose_input_differs_only_in_name() {
        let (a, mut b) = (detector().input, classifier().input);
        b.name = "pixels".into();
        assert!(a.same_tensor_as(&b));
        b.std = [0.5, 0.5, 0.5];
        assert!(!a.same_tensor_as(&b));
        let mut c = detector().input;
        c.width = 64;
        assert!(!a.same_tensor_as(&c));
    }

    #[test]
    fn the_example_manifest_parses_and_validates() {
        let m = detector().validate().unwrap();
        assert_eq!(m.kind, ModelKind::Detection);
        assert_eq!(m.input.channels, Channels::Rgb);
        assert_eq!((m.input.width, m.input.height), (128, 128));
        assert_eq!(m.output.format, OutputFormat::CxcywhRotationObjectnessClasses);
        assert_eq!(m.detection_row_len(), 11);
        assert!(classifier().validate().is_ok());
    }

    #[test]
    fn a_manifest_round_trips_through_json_with_the_contract_words() {
        let json = serde_json::to_value(classifier()).unwrap();
        assert_eq!(json["type"], "classification_model");
        assert_eq!(json["output"]["format"], "probabilities");
        assert_eq!(json["input"]["channels"], "RGB");
        assert_eq!(serde_json::from_value::<ModelManifest>(json).unwrap(), classifier());
        assert_eq!(ModelKind::Detection.as_str(), "detection_model");
        assert_eq!(ModelKind::Classification.as_str(), "classification_model");
    }

    #[test]
    fn unknown_channels_and_formats_do_not_parse() {
        assert!(serde_json::from_str::<ModelManifest>(&EXAMPLE.replace("\"RGB\"", "\"BGR\"")).is_err());
        assert!(serde_json::from_str::<ModelManifest>(&EXAMPLE.replace("cxcywh_rotation", "xyxy_rotation")).is_err());
        assert!(serde_json::from_str::<ModelManifest>(&EXAMPLE.replace("detection_model", "segmentation_model")).is_err());
    }

    #[test]
    fn names_and_classes_are_trimmed() {
        let mut m = detector();
        m.name = "  primitives v2 ".into();
        m.classes[0] = " sphere ".into();
        let m = m.validate().unwrap();
        assert_eq!(m.name, "primitives v2");
        assert_eq!(m.classes[0], "sphere");
    }

    #[test]
    fn every_bad_field_is_named() {
        type Edit = fn(&mut ModelManifest);
        let cases: [(Edit, &str); 22] = [
            (|m| m.name = "   ".into(), "name"),
            (|m| m.name = "x".repeat(65), "name"),
            (|m| m.name = "yolo/../../etc".into(), "name"),
            (|m| m.input.name = "".into(), "input.name"),
            (|m| m.input.name = "i".repeat(129), "input.name"),
            (|m| m.output.name = " ".into(), "output.name"),
            (|m| m.input.width = 7, "input.width"),
            (|m| m.input.width = 2049, "input.width"),
            (|m| m.input.height = 0, "input.height"),
            (|m| m.input.scale = 0.0, "input.scale"),
            (|m| m.input.scale = -1.0, "input.scale"),
            (|m| m.input.scale = f32::NAN, "input.scale"),
            (|m| m.input.mean[1] = f32::INFINITY, "input.mean"),
            (|m| m.input.std[2] = 0.0, "input.std"),
            (|m| m.input.std[0] = f32::NAN, "input.std"),
            (|m| m.output.format = OutputFormat::Probabilities, "output.format"),
            (|m| m.kind = ModelKind::Classification, "output.format"),
            (|m| m.classes.clear(), "classes"),
            (|m| m.classes = vec!["c".into(); 1001], "classes"),
            (|m| m.classes[2] = "  ".into(), "classes"),
            (|m| m.classes[2] = "c".repeat(65), "classes"),
            (|m| m.classes[2] = " cube".into(), "classes"),
        ];
        for (edit, field) in cases {
            let mut m = detector();
            edit(&mut m);
            assert_eq!(field_of(m.validate()), field);
        }
        assert_eq!(detector().validate().map(|m| m.input.width), Ok(128), "the edits worked on copies");
    }

    #[test]
    fn the_boundaries_are_inclusive() {
        let mut m = detector();
        (m.input.width, m.input.height) = (8, 2048);
        m.name = "n".repeat(64);
        m.classes = (0..1000).map(|i| format!("c{i}")).collect();
        assert!(m.validate().is_ok());
    }

    /// One detector row for the 5-class example manifest.
    fn row([cx, cy, w, h]: [f32; 4], rotation: f32, objectness: f32, class: usize, p: f32) -> Vec<f32> {
        let mut r = vec![cx, cy, w, h, rotation, objectness, 0.0, 0.0, 0.0, 0.0, 0.0];
        r[6 + class] = p;
        r
    }

    fn decode(rows: &[Vec<f32>], score: f32, iou: f32, max: usize) -> Vec<Primitive> {
        decode_detections(&rows.concat(), &detector(), score, iou, max).unwrap()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn detections_below_the_threshold_are_dropped_and_the_score_is_objectness_times_class() {
        let rows = [row([0.5, 0.5, 0.2, 0.2], 0.3, 0.5, 1, 0.5), row([0.2, 0.2, 0.1, 0.1], 0.0, 0.9, 0, 0.2)];
        let out = decode(&rows, 0.25, 0.5, 100);
        assert_eq!(out.len(), 1, "0.9 × 0.2 = 0.18 < 0.25");
        assert_eq!(out[0].primitive_class, "cube");
        assert!(close(out[0].probability, 0.25), "exactly at the threshold is kept");
        assert!(close(out[0].rotation, 0.3));
        assert_eq!(decode(&rows, 0.1, 0.5, 100).len(), 2);
    }

    #[test]
    fn the_class_is_the_most_probable_one_and_ties_go_to_the_first() {
        let mut r = row([0.5, 0.5, 0.2, 0.2], 0.0, 1.0, 4, 0.6);
        r[6 + 2] = 0.7;
        assert_eq!(decode(&[r.clone()], 0.1, 0.5, 10)[0].primitive_class, "cylinder");
        r[6 + 1] = 0.7;
        assert_eq!(decode(&[r], 0.1, 0.5, 10)[0].primitive_class, "cube");
    }

    #[test]
    fn centres_become_top_left_corners() {
        let out = decode(&[row([0.5, 0.4, 0.2, 0.1], 0.8, 1.0, 0, 1.0)], 0.5, 0.5, 10);
        let p = &out[0];
        assert!(close(p.x, 0.4) && close(p.y, 0.35) && close(p.width, 0.2) && close(p.height, 0.1), "{p:?}");
    }

    #[test]
    fn boxes_and_rotation_are_clamped_into_the_unit_square() {
        let rows = [
            row([0.05, 0.95, 0.3, 0.2], 1.4, 1.0, 0, 1.0), // crosses the left and bottom edges
            row([1.5, -0.5, 0.2, 0.2], -0.2, 1.0, 1, 1.0), // wholly outside
            row([0.5, 0.5, 3.0, -0.1], 0.5, 1.0, 2, 1.0),  // larger than the image, negative height
        ];
        let out = decode(&rows, 0.5, 0.5, 10);
        assert_eq!(out.len(), 3);
        for p in &out {
            for v in [p.x, p.y, p.width, p.height, p.rotation, p.probability] {
                assert!((0.0..=1.0).contains(&v), "{p:?}");
            }
            assert!(p.x + p.width <= 1.0 + 1e-6 && p.y + p.height <= 1.0 + 1e-6, "{p:?}");
        }
        let edge = out.iter().find(|p| p.primitive_class == "sphere").unwrap();
        assert!(close(edge.x, 0.0) && close(edge.width, 0.2) && close(edge.y, 0.85) && close(edge.height, 0.15));
        assert!(close(edge.rotation, 1.0));
        let outside = out.iter().find(|p| p.primitive_class == "cube").unwrap();
        assert!(close(outside.width, 0.0) && close(outside.height, 0.0) && close(outside.rotation, 0.0));
        let big = out.iter().find(|p| p.primitive_class == "cylinder").unwrap();
        assert!(close(big.x, 0.0) && close(big.width, 1.0) && close(big.height, 0.0));
        assert!(InferenceResult { image_class: "office".into(), primitives: out }.validate().is_ok());
    }

    #[test]
    fn nms_suppresses_overlapping_boxes_of_one_class_only() {
        let rows = [
            row([0.50, 0.50, 0.2, 0.2], 0.0, 1.0, 0, 0.8),
            row([0.51, 0.50, 0.2, 0.2], 0.0, 1.0, 0, 0.9), // same class, IoU ≈ 0.9: the better one wins
            row([0.50, 0.51, 0.2, 0.2], 0.0, 1.0, 1, 0.7), // another class on the same spot: kept
            row([0.10, 0.10, 0.1, 0.1], 0.0, 1.0, 0, 0.6), // same class, far away: kept
        ];
        let out = decode(&rows, 0.1, 0.5, 100);
        let summary: Vec<(&str, f32)> = out.iter().map(|p| (p.primitive_class.as_str(), p.probability)).collect();
        assert_eq!(summary, [("sphere", 0.9), ("cube", 0.7), ("sphere", 0.6)]);
        assert!(close(out[0].x, 0.41), "the survivor is the better-scoring row");
        assert_eq!(decode(&rows, 0.1, 0.95, 100).len(), 4, "IoU below a high threshold suppresses nothing");
    }

    #[test]
    fn nms_drops_only_above_the_iou_threshold() {
        let rows = [row([0.5, 0.5, 0.2, 0.2], 0.0, 1.0, 0, 0.9), row([0.5, 0.5, 0.2, 0.2], 0.0, 1.0, 0, 0.8)];
        assert_eq!(decode(&rows, 0.1, 0.5, 10).len(), 1, "identical boxes: IoU 1");
        assert_eq!(decode(&rows, 0.1, 1.0, 10).len(), 2, "IoU 1 is not above 1");
    }

    #[test]
    fn at_most_max_detections_best_first_and_ties_by_row() {
        let rows: Vec<Vec<f32>> = (0..6).map(|i| row([0.1 + 0.15 * i as f32, 0.5, 0.1, 0.1], 0.0, 1.0, 0, 0.5)).collect();
        let out = decode(&rows, 0.1, 0.5, 3);
        assert_eq!(out.len(), 3);
        let xs: Vec<f32> = out.iter().map(|p| p.x).collect();
        assert!(close(xs[0], 0.05) && close(xs[1], 0.2) && close(xs[2], 0.35), "rows 0, 1, 2 in order: {xs:?}");
        assert!(decode(&rows, 0.1, 0.5, 0).is_empty());
        assert_eq!(decode(&rows, 0.1, 0.5, 100), decode(&rows, 0.1, 0.5, 100), "deterministic");
    }

    #[test]
    fn rows_with_non_finite_numbers_are_skipped() {
        let rows = [
            row([f32::NAN, 0.5, 0.2, 0.2], 0.0, 1.0, 0, 1.0),
            row([0.5, 0.5, 0.2, 0.2], 0.0, f32::NAN, 1, 1.0),
            row([0.5, 0.5, 0.2, 0.2], 0.0, 1.0, 2, f32::INFINITY),
            row([0.5, 0.5, 0.2, 0.2], 0.0, 1.0, 3, 0.9),
        ];
        let out = decode(&rows, 0.1, 0.5, 10);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].primitive_class, "cone");
    }

    #[test]
    fn malformed_outputs_are_errors() {
        let flat = row([0.5, 0.5, 0.2, 0.2], 0.0, 1.0, 0, 1.0);
        assert!(decode_detections(&flat[..10], &detector(), 0.1, 0.5, 10).is_err(), "not a whole row");
        assert!(decode_detections(&[], &detector(), 0.1, 0.5, 10).unwrap().is_empty(), "no rows, no detections");
        assert!(decode_detections(&flat, &classifier(), 0.1, 0.5, 10).is_err(), "not a detector");
        assert!(decode_detections(&flat, &detector(), f32::NAN, 0.5, 10).is_err());
        assert!(decode_detections(&flat, &detector(), 0.1, f32::NAN, 10).is_err());
    }

    fn boxed(x: f32, y: f32, width: f32, height: f32) -> Primitive {
        Primitive { primitive_class: "cube".into(), x, y, width, height, rotation: 0.0, probability: 1.0 }
    }

    #[test]
    fn iou_of_boxes() {
        assert!(close(iou(&boxed(0.0, 0.0, 0.5, 0.5), &boxed(0.0, 0.0, 0.5, 0.5)), 1.0));
        assert!(close(iou(&boxed(0.0, 0.0, 0.2, 0.2), &boxed(0.5, 0.5, 0.2, 0.2)), 0.0));
        assert!(close(iou(&boxed(0.0, 0.0, 0.2, 0.2), &boxed(0.2, 0.0, 0.2, 0.2)), 0.0), "touching edges");
        assert!(close(iou(&boxed(0.0, 0.0, 0.4, 0.2), &boxed(0.2, 0.0, 0.4, 0.2)), 1.0 / 3.0));
        assert!(close(iou(&boxed(0.0, 0.0, 0.4, 0.4), &boxed(0.1, 0.1, 0.2, 0.2)), 0.25), "contained");
        assert_eq!(iou(&boxed(0.3, 0.3, 0.0, 0.0), &boxed(0.3, 0.3, 0.0, 0.0)), 0.0, "empty boxes do not divide by 0");
    }

    #[test]
    fn top_class_picks_the_most_probable() {
        let classes = classifier().classes;
        assert_eq!(top_class(&[0.1, 0.6, 0.2, 0.1], &classes), Ok(("street".into(), 0.6)));
        assert_eq!(top_class(&[0.4, 0.1, 0.4, 0.1], &classes).unwrap().0, "office", "first on ties");
        assert_eq!(top_class(&[f32::NAN, 0.1, f32::NAN, 0.2], &classes).unwrap().0, "nature", "NaN ignored");
        assert!(top_class(&[f32::NAN; 4], &classes).is_err());
        assert!(top_class(&[0.5, 0.5], &classes).is_err(), "length mismatch");
        assert!(top_class(&[], &[]).is_err());
    }

    #[test]
    fn results_use_the_contract_shape() {
        let result = InferenceResult {
            image_class: "office".into(),
            primitives: vec![Primitive {
                primitive_class: "sphere".into(),
                x: 0.25,
                y: 0.5,
                width: 0.125,
                height: 0.25,
                rotation: 0.75,
                probability: 0.5,
            }],
        };
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"image_class": "office", "primitives": [{"primitive_class": "sphere", "x": 0.25,
                "y": 0.5, "width": 0.125, "height": 0.25, "rotation": 0.75, "probability": 0.5}]})
        );
        assert_eq!(serde_json::from_value::<InferenceResult>(json).unwrap(), result);
    }

    #[test]
    fn results_with_numbers_that_json_cannot_hold_are_refused() {
        let ok = InferenceResult { image_class: "office".into(), primitives: vec![boxed(0.1, 0.1, 0.2, 0.2)] };
        assert!(ok.validate().is_ok());
        for bad in [boxed(f32::NAN, 0.1, 0.2, 0.2), boxed(0.1, 0.1, f32::INFINITY, 0.2), boxed(0.1, -0.1, 0.2, 0.2)] {
            assert!(InferenceResult { primitives: vec![bad], ..ok.clone() }.validate().is_err());
        }
        assert!(InferenceResult { image_class: " ".into(), ..ok.clone() }.validate().is_err());
    }

    #[test]
    fn sha256_is_normalised() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_sha256("sha256", &hex), Ok("ab".repeat(32)));
        assert!(parse_sha256("sha256", "abc").is_err());
        assert!(parse_sha256("sha256", &"zz".repeat(32)).is_err());
    }
}
