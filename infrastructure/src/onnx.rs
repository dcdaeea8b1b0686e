//! ONNX Runtime (through `ort`, loaded at run time from a shared library) and image
//! decoding for inference tasks.
//!
//! `ort` is built with `load-dynamic`: `cargo build` needs no ONNX Runtime, and the
//! server finds `libonnxruntime.so` at start (see [`find_library`]). One session per
//! model, shared by every task; a session runs one call at a time, on one image or on a
//! batch of them when the graph takes one (ONNX Runtime's own intra-op threads
//! parallelise inside it).
//!
//! An admin may register a model, so a model is not trusted: its bytes are checked for
//! references to other files before the runtime parses them (`external_data`), every
//! session allocates from one capped arena and each run is stopped past its time limit
//! (`limits`), and what the runtime says when it refuses a model or fails a run goes to
//! the log, not to the client (`MODEL_NOT_LOADED`, `MODEL_NOT_RUN`).

mod external_data;
mod limits;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use image::{ImageFormat, ImageReader, Limits};
use medledger_application::ports::{
    CheckedImage, EngineError, ImageDecoder, ImageHeader, ImageRefused, InferenceEngine, ModelInput, RgbImage,
};
use medledger_application::ports::{MODEL_NOT_LOADED, MODEL_NOT_RUN};
use medledger_domain::inference::{InputSpec, ModelId, ModelManifest};
use ort::session::{RunOptions, Session};
use ort::value::{TensorRef, ValueType};

pub use external_data::{ModelBytesError, check_self_contained};
pub use limits::ModelLimits;
use limits::Watchdog;

/// The ONNX Runtime release `ort` 2.0.0-rc.15 is built against (`api-31`).
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

/// Where `scripts/fetch-onnxruntime.sh` puts the library, relative to the repository.
pub const VENDORED_LIBRARY: &str = "vendor/onnxruntime/libonnxruntime.so.1.31.1";

/// The library to load: the configured path, else `ORT_DYLIB_PATH`, else the vendored
/// copy found from the working directory or beside the executable (for
/// `target/{debug,release}/medledger` run from anywhere).
pub fn find_library(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = configured {
        return Some(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(path));
    }
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.into_iter().map(|root| root.join(VENDORED_LIBRARY)).find(|p| p.is_file())
}

/// The process-wide ONNX Runtime environment: the library can be loaded only once. The
/// memory cap is the environment's arena, so the first engine of a process sets it.
fn environment(library: &Path, max_memory_bytes: usize) -> Result<Arc<ort::environment::Environment>, String> {
    type Env = Result<(Arc<ort::environment::Environment>, usize), String>;
    static ENV: OnceLock<Env> = OnceLock::new();
    let (env, cap) = ENV
        .get_or_init(|| {
            let builder = ort::init_from(library).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?;
            let env = builder.with_name("medledger").build().map(Arc::new).map_err(|e| format!("ONNX Runtime environment: {e}"))?;
            limits::cap_cpu_memory(&env, max_memory_bytes)?;
            Ok((env, max_memory_bytes))
        })
        .clone()?;
    if cap != max_memory_bytes {
        tracing::warn!(requested = max_memory_bytes, in_force = cap, "ONNX Runtime's memory cap is set once per process; the first stays");
    }
    Ok(env)
}

struct LoadedModel {
    manifest: ModelManifest,
    runner: Mutex<Runner>,
    /// The graph's input and output take any batch size (not a batch fixed at 1).
    batches: bool,
}

/// A model's session, and the buffer a batch's inputs are laid out in. The buffer is
/// kept from run to run: a fresh megabyte each time cost the model thread page faults.
struct Runner {
    session: Session,
    batch: Vec<f32>,
}

pub struct OnnxEngine {
    env: Arc<ort::environment::Environment>,
    intra_threads: usize,
    models: RwLock<HashMap<ModelId, Arc<LoadedModel>>>,
    run_timeout: Duration,
    watchdog: Watchdog,
}

impl OnnxEngine {
    /// Loads ONNX Runtime from `library`, with the default limits; `intra_threads` is each
    /// session's intra-op thread count.
    pub fn new(library: &Path, intra_threads: usize) -> Result<Self, String> {
        Self::with_limits(library, intra_threads, ModelLimits::default())
    }

    /// `new`, with what a model may take.
    pub fn with_limits(library: &Path, intra_threads: usize, limits: ModelLimits) -> Result<Self, String> {
        Ok(Self {
            env: environment(library, limits.max_memory_bytes)?,
            intra_threads: intra_threads.max(1),
            models: RwLock::new(HashMap::new()),
            run_timeout: limits.run_timeout,
            watchdog: Watchdog::start(&limits.watchdog_thread)?,
        })
    }

    /// A session for `onnx`, whose bytes have been checked.
    fn session(&self, onnx: &[u8]) -> ort::Result<Session> {
        let mut builder = Session::builder(&self.env)?
            .with_intra_threads(self.intra_threads)?
            // The environment's capped arena (see `limits`), not an unbounded one each.
            .with_env_allocators()?
            // Never the ORT format: the check before the runtime reads protobuf only.
            .with_config_entry("session.load_model_format", "ONNX")?
            // Folding allocates outside the arena, up to 1 GB per node; left unfolded, a
            // graph's constants are computed in each run, inside the cap and the time limit.
            .with_disabled_optimizers("ConstantFolding")?;
        builder.commit_from_memory(onnx)
    }

    fn model(&self, id: ModelId) -> Result<Arc<LoadedModel>, String> {
        let models = self.models.read().map_err(|_| "model table poisoned".to_string())?;
        models.get(&id).cloned().ok_or_else(|| format!("model {id} is not loaded"))
    }
}

/// The manifest must describe the graph: one float input [1, 3, H, W] (or dynamic
/// dimensions) under the manifest's name, and an output under its name. Whether the
/// graph takes a batch of images: both its input's and its output's first dimension are
/// dynamic.
fn check_graph(session: &Session, manifest: &ModelManifest) -> Result<bool, String> {
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == manifest.input.name)
        .ok_or_else(|| format!("the model has no input named {:?}", manifest.input.name))?;
    if session.inputs().len() != 1 {
        return Err(format!("the model has {} inputs; exactly one image input is supported", session.inputs().len()));
    }
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err("the model's input is not a tensor".into());
    };
    if *ty != ort::value::TensorElementType::Float32 {
        return Err(format!("the model's input is {ty}, not float32"));
    }
    let expected = [1, 3, i64::from(manifest.input.height), i64::from(manifest.input.width)];
    let dims: Vec<i64> = shape.iter().copied().collect();
    let fits = dims.len() == 4 && dims.iter().zip(expected).all(|(d, e)| *d == e || *d < 0);
    if !fits {
        return Err(format!("the model's input shape is {dims:?}; the manifest says {expected:?}"));
    }
    let Some(output) = session.outputs().iter().find(|o| o.name() == manifest.output.name) else {
        let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        return Err(format!("the model has no output named {:?} (it has {names:?})", manifest.output.name));
    };
    let output_batches = matches!(output.dtype(), ValueType::Tensor { shape, .. } if shape.first().is_some_and(|d| *d < 0));
    Ok(dims[0] < 0 && output_batches)
}

/// NCHW float input: resized (bilinear) to the model's size, then
/// `(pixel × scale − mean) / std` per channel.
pub fn to_tensor(image: &RgbImage, spec: &InputSpec) -> Result<Vec<f32>, String> {
    let (w, h) = (spec.width, spec.height);
    let resized;
    let pixels: &[u8] = if image.width == w && image.height == h {
        &image.pixels
    } else {
        // A view, not a copy: at the pixel limit a copy would be tens of MB per task.
        let source = image::ImageBuffer::<image::Rgb<u8>, &[u8]>::from_raw(image.width, image.height, image.pixels.as_slice())
            .ok_or_else(|| "image buffer does not match its size".to_string())?;
        resized = image::imageops::resize(&source, w, h, image::imageops::FilterType::Triangle).into_raw();
        &resized
    };
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) * spec.scale - spec.mean[c]) / spec.std[c];
        }
    }
    Ok(out)
}

/// The port speaks in `EngineError`s; the adapter's own steps pass sentences along.
impl InferenceEngine for OnnxEngine {
    fn load(&self, model_id: ModelId, manifest: &ModelManifest, onnx: &[u8]) -> Result<(), EngineError> {
        self.try_load(model_id, manifest, onnx).map_err(EngineError)
    }

    fn is_loaded(&self, model_id: ModelId) -> bool {
        self.models.read().map(|m| m.contains_key(&model_id)).unwrap_or(false)
    }

    fn input(&self, model_id: ModelId, image: &RgbImage) -> Result<ModelInput, EngineError> {
        self.try_input(model_id, image).map_err(EngineError)
    }

    fn run(&self, model_id: ModelId, inputs: &[&ModelInput]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.try_run(model_id, inputs).map_err(EngineError)
    }
}

impl OnnxEngine {
    fn try_load(&self, model_id: ModelId, manifest: &ModelManifest, onnx: &[u8]) -> Result<(), String> {
        // Before the runtime sees a byte: it would read the files that external data names.
        check_self_contained(onnx).map_err(|refusal| {
            tracing::warn!(model_id, %refusal, "a model was refused before loading");
            refusal.to_string()
        })?;
        let session = self.session(onnx).map_err(|e| {
            tracing::warn!(model_id, error = %e, "ONNX Runtime could not load a model");
            MODEL_NOT_LOADED.to_string()
        })?;
        let batches = check_graph(&session, manifest)?;
        let loaded =
            Arc::new(LoadedModel { manifest: manifest.clone(), runner: Mutex::new(Runner { session, batch: Vec::new() }), batches });
        self.models.write().map_err(|_| "model table poisoned".to_string())?.insert(model_id, loaded);
        Ok(())
    }

    fn try_input(&self, model_id: ModelId, image: &RgbImage) -> Result<ModelInput, String> {
        let spec = &self.model(model_id)?.manifest.input;
        Ok(ModelInput { width: spec.width, height: spec.height, values: to_tensor(image, spec)? })
    }

    fn try_run(&self, model_id: ModelId, inputs: &[&ModelInput]) -> Result<Vec<Vec<f32>>, String> {
        let model = self.model(model_id)?;
        let spec = &model.manifest.input;
        let (w, h) = (spec.width as usize, spec.height as usize);
        for input in inputs {
            if (input.width, input.height) != (spec.width, spec.height) || input.values.len() != 3 * w * h {
                return Err(format!("model {model_id} takes a {w}x{h} input, not {}x{}", input.width, input.height));
            }
        }
        let mut runner = model.runner.lock().map_err(|_| "session poisoned".to_string())?;
        let Runner { session, batch } = &mut *runner;
        if model.batches && inputs.len() > 1 {
            batch.clear();
            for input in inputs {
                batch.extend_from_slice(&input.values);
            }
            return self.run_once(&model, session, model_id, [inputs.len(), 3, h, w], batch);
        }
        inputs.iter().map(|input| Ok(self.run_once(&model, session, model_id, [1, 3, h, w], &input.values)?.remove(0))).collect()
    }
}

impl OnnxEngine {
    /// One session run on the images laid out as `shape` (`[images, 3, height, width]`),
    /// stopped past the time limit; each image's output, flattened.
    fn run_once(
        &self,
        model: &LoadedModel,
        session: &mut Session,
        id: ModelId,
        shape: [usize; 4],
        values: &[f32],
    ) -> Result<Vec<Vec<f32>>, String> {
        let (name, images) = (&model.manifest.output.name, shape[0]);
        let failed = |what: &str, error: &dyn std::fmt::Display| {
            tracing::warn!(model_id = id, %error, "{what}");
            MODEL_NOT_RUN.to_string()
        };
        let tensor = TensorRef::from_array_view((shape, values)).map_err(|e| failed("a model's input tensor could not be made", &e))?;
        let options = Arc::new(RunOptions::new().map_err(|e| failed("a model run could not be prepared", &e))?);
        let watch = self.watchdog.watch(options.clone(), self.run_timeout);
        let outputs = session.run_with_options(ort::inputs![model.manifest.input.name.as_str() => tensor], &*options);
        let stopped = watch.finish();
        let outputs = outputs.map_err(|e| {
            if stopped {
                let limit_ms = self.run_timeout.as_millis() as u64;
                tracing::warn!(model_id = id, limit_ms, error = %e, "a model run passed its time limit and was stopped");
                MODEL_NOT_RUN.to_string()
            } else {
                failed("a model run failed", &e)
            }
        })?;
        let output = outputs.get(name.as_str()).ok_or_else(|| format!("model {id} gave no {name:?} output"))?;
        let (shape, values) = output.try_extract_tensor::<f32>().map_err(|e| failed("a model's output could not be read", &e))?;
        if shape.first().copied() != Some(images as i64) || values.is_empty() || values.len() % images != 0 {
            return Err(format!("model {id} gave an output {name:?} of shape {shape:?} for {images} image(s)"));
        }
        Ok(values.chunks_exact(values.len() / images).map(<[f32]>::to_vec).collect())
    }
}

/// JPEG and PNG uploads, held to a size read from the header before anything is
/// decoded.
pub struct UploadedImages {
    /// Most pixels on either side.
    pub max_side: u32,
    /// Most pixels in all, width × height (`MEDLEDGER_MAX_IMAGE_PIXELS`). One decode
    /// allocates at most [`MAX_BYTES_PER_PIXEL`] bytes per pixel for the decoder's output
    /// and 3 more for the RGB copy, so this bounds its memory.
    pub max_pixels: u64,
}

/// The widest pixel a decoder here produces: 16-bit RGBA (a PNG may carry one).
pub const MAX_BYTES_PER_PIXEL: u64 = 8;

impl UploadedImages {
    fn within_limits(&self, width: u32, height: u32) -> Result<(), String> {
        if width == 0 || height == 0 {
            return Err("the image's header gives it no size; is it damaged?".into());
        }
        if width > self.max_side || height > self.max_side {
            return Err(format!("the image is {width}x{height} pixels, larger than {0}x{0}; scale it down", self.max_side));
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(format!(
                "the image is {width}x{height} pixels ({:.1} megapixels), larger than the {} pixels ({:.1} megapixels) accepted; \
                 scale it down",
                pixels as f64 / 1e6,
                self.max_pixels,
                self.max_pixels as f64 / 1e6
            ));
        }
        Ok(())
    }

    /// What the decoder may allocate: its output at the pixel limit, in its widest form.
    fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL)
    }
}

/// The format of an upload, if it is one we take.
fn accepted_format(bytes: &[u8]) -> Result<(ImageFormat, &'static str), String> {
    if bytes.is_empty() {
        return Err("the request body is empty; send the image's bytes".into());
    }
    let format = image::guess_format(bytes).map_err(|_| "the body is not an image (JPEG or PNG expected)".to_string())?;
    match format {
        ImageFormat::Jpeg => Ok((format, "image/jpeg")),
        ImageFormat::Png => Ok((format, "image/png")),
        other => Err(format!(
            "{} images are not accepted; send a JPEG or PNG",
            other.extensions_str().first().unwrap_or(&"these").to_uppercase()
        )),
    }
}

impl ImageDecoder for UploadedImages {
    fn check(&self, bytes: &[u8]) -> Result<ImageHeader, ImageRefused> {
        self.header(bytes).map_err(ImageRefused)
    }

    fn decode(&self, bytes: &[u8]) -> Result<CheckedImage, ImageRefused> {
        self.decoded(bytes).map_err(ImageRefused)
    }
}

impl UploadedImages {
    fn header(&self, bytes: &[u8]) -> Result<ImageHeader, String> {
        let (format, content_type) = accepted_format(bytes)?;
        let size = if format == ImageFormat::Png { png_size(bytes) } else { jpeg_size(bytes) };
        let (width, height) = size.ok_or("the image's header cannot be read; is it truncated?")?;
        self.within_limits(width, height)?;
        Ok(ImageHeader { content_type, width, height })
    }

    fn decoded(&self, bytes: &[u8]) -> Result<CheckedImage, String> {
        let ImageHeader { content_type, .. } = self.header(bytes)?;
        let format = if content_type == "image/png" { ImageFormat::Png } else { ImageFormat::Jpeg };
        if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
            return Err("the JPEG ends before its image data does; is it truncated?".into());
        }
        let refused = |e: image::ImageError| match e {
            image::ImageError::Limits(_) => {
                format!("the image needs more memory to decode than {} pixels do; scale it down or save it as 8-bit RGB", self.max_pixels)
            }
            other => format!("the image cannot be decoded ({other}); is it truncated?"),
        };
        let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), format);
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_alloc());
        reader.limits(limits);
        let decoder = reader.into_decoder().map_err(refused)?;
        // The decoder's own reading of the header decides: `check` only refused early.
        let (width, height) = image::ImageDecoder::dimensions(&decoder);
        self.within_limits(width, height)?;
        if image::ImageDecoder::total_bytes(&decoder) > self.max_alloc() {
            return Err(refused(image::ImageError::Limits(image::error::LimitError::from_kind(
                image::error::LimitErrorKind::InsufficientMemory,
            ))));
        }
        let rgb = image::DynamicImage::from_decoder(decoder).map_err(refused)?.into_rgb8();
        Ok(CheckedImage { content_type, image: RgbImage { width: rgb.width(), height: rgb.height(), pixels: rgb.into_raw() } })
    }
}

/// Width and height from a PNG's header: IHDR must be the first chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.get(8..24)?;
    if ihdr[4..8] != *b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes([ihdr[at], ihdr[at + 1], ihdr[at + 2], ihdr[at + 3]]);
    Some((be(8), be(12)))
}

/// Width and height from a JPEG's frame header (SOFn), walking the segments before it.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let byte = |at: usize| bytes.get(at).copied();
    let be16 = |at: usize| Some(u16::from_be_bytes([byte(at)?, byte(at + 1)?]));
    let mut at = 2;
    loop {
        if byte(at)? != 0xFF {
            return None;
        }
        // Any number of 0xFF may pad before a marker.
        while byte(at + 1)? == 0xFF {
            at += 1;
        }
        let marker = byte(at + 1)?;
        at += 2;
        match marker {
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => continue,
            // Image or scan data before any frame header: not a JPEG we can size.
            0xD9 | 0xDA => return None,
            // SOF0–SOF15, except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                // Length (2), sample precision (1), height (2), width (2).
                return Some((u32::from(be16(at + 5)?), u32::from(be16(at + 3)?)));
            }
            _ => {}
        }
        let length = usize::from(be16(at)?);
        if length < 2 {
            return None;
        }
        at += length;
    }
}

/// The JPEG decoder pads a truncated scan with grey instead of failing, so completeness is
/// checked here: an end-of-image marker must follow the last start-of-scan. Scan data
/// stuffs every 0xFF byte, so the marker cannot occur inside it by accident.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let marker = |code: u8| bytes.windows(2).rposition(|w| w == [0xFF, code]);
    match (marker(0xDA), marker(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}
