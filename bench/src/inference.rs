//! Inference task benchmark behind BENCHMARKS.md (issue 4): what the service adds to the
//! models' own run time, and how close 32 clients get to the models' own throughput.
//!
//! The baseline is a plain ONNX Runtime loop in this process: the same model files, the
//! same intra-op thread count, the same image already turned into the input tensor, and
//! nothing but `Session::run` in the timed loop (detector, then scene classifier, as a
//! task runs them), one image per run. The server runs tasks that queued up together in
//! one run per model, so the same loop in runs of `--batch` images is reported beside it.
//! The service is the release server on an empty SQLite store.
//!
//! cargo build --release -p medledger-bench -p medledger-api && ./target/release/bench-inference --help

#[allow(dead_code)]
#[path = "search/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "search/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use medledger_application::ports::ImageDecoder as _;
use medledger_domain::inference::ModelManifest;
use medledger_infrastructure::onnx::{UploadedImages, find_library, to_tensor};
use ort::session::Session;
use ort::value::TensorRef;
use serde_json::Value;

use server::{Server, ThreadTimes};

#[derive(Parser)]
struct Args {
    /// The release server binary.
    #[arg(long, default_value = "target/release/medledger")]
    medledger: PathBuf,
    /// Detection model id (1 tiny grid, 2 large).
    #[arg(long, default_value_t = 2)]
    detector: i64,
    /// Scene classification model id.
    #[arg(long, default_value_t = 3)]
    classifier: i64,
    /// The image every task sends.
    #[arg(long, default_value = "tests/fixtures/inference/fixture_4_nature_4obj.png")]
    image: PathBuf,
    /// Intra-op threads, for the plain loop and the server alike.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Most tasks per model run in the server (`MEDLEDGER_INFERENCE_BATCH`), and the
    /// images per run of the second, batched plain loop.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed runs of the plain loop (after 50 warm-up runs).
    #[arg(long, default_value_t = 1000)]
    plain_runs: usize,
    /// Images through the plain loop just before and just after each throughput run (and
    /// through the batched one just after).
    #[arg(long, default_value_t = 300)]
    adjacent_runs: usize,
    /// Tasks sent one at a time (after 20 warm-up tasks).
    #[arg(long, default_value_t = 300)]
    sequential: usize,
    /// How often a waiting client asks for its result, in ms, when one task runs at a time.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// Concurrent clients for the throughput run.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Tasks each client submits in the throughput run.
    #[arg(long, default_value_t = 40)]
    per_client: usize,
    /// How often each of the concurrent clients asks for its result, in ms.
    #[arg(long, default_value_t = 20)]
    client_poll_ms: u64,
    /// Keep the server's data directory (its log and event store) for a closer look.
    #[arg(long)]
    keep: bool,
}

/// The committed model files and manifests, by the id the server gives them.
fn model_files(id: i64) -> anyhow::Result<(&'static str, &'static str)> {
    Ok(match id {
        1 => ("models/primitives-grid-tiny.onnx", "models/manifests/primitives-grid-tiny.json"),
        2 => ("models/primitives-large.onnx", "models/manifests/primitives-large.json"),
        3 => ("models/scenes.onnx", "models/manifests/scenes.json"),
        other => bail!("no built-in model {other}"),
    })
}

struct PlainModel {
    session: Session,
    input_name: String,
    shape: [usize; 4],
    tensor: Vec<f32>,
}

impl PlainModel {
    fn run(&mut self) -> anyhow::Result<()> {
        let tensor = TensorRef::from_array_view((self.shape, self.tensor.as_slice()))?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor])?;
        anyhow::ensure!(outputs.len() > 0, "no outputs");
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

struct Plain {
    /// Detector + classifier per image, ms.
    per_image: Vec<f64>,
    detector: Vec<f64>,
    classifier: Vec<f64>,
}

/// The plain ONNX Runtime loop's two sessions, warmed up.
struct PlainLoop {
    detector: PlainModel,
    classifier: PlainModel,
    batch: usize,
}

/// The plain ONNX Runtime loop: detector then classifier on the prepared tensors, in runs
/// of `batch` copies of the image.
fn plain_loop(args: &Args, env: &ort::environment::Environment, image: &[u8], batch: usize) -> anyhow::Result<PlainLoop> {
    let decoded = UploadedImages { max_side: 8192, max_pixels: 8192 * 8192 }.decode(image).map_err(anyhow::Error::msg)?.image;
    let load = |id: i64| -> anyhow::Result<PlainModel> {
        let (onnx, manifest) = model_files(id)?;
        let manifest: ModelManifest = serde_json::from_str(&std::fs::read_to_string(manifest)?)?;
        let onnx = std::fs::read(onnx)?;
        let session = Session::builder(env)?
            .with_intra_threads(args.threads)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .commit_from_memory(&onnx)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let spec = &manifest.input;
        Ok(PlainModel {
            session,
            input_name: spec.name.clone(),
            shape: [batch, 3, spec.height as usize, spec.width as usize],
            tensor: to_tensor(&decoded, spec).map_err(anyhow::Error::msg)?.repeat(batch),
        })
    };
    let mut plain = PlainLoop { detector: load(args.detector)?, classifier: load(args.classifier)?, batch };
    plain.measure(50)?;
    Ok(plain)
}

impl PlainLoop {
    /// `images` images, in runs of the loop's batch; times are per image.
    fn measure(&mut self, images: usize) -> anyhow::Result<Plain> {
        let mut plain = Plain { per_image: Vec::new(), detector: Vec::new(), classifier: Vec::new() };
        let per_image_ms = |d: Duration| d.as_secs_f64() * 1e3 / self.batch as f64;
        for _ in 0..images.div_ceil(self.batch) {
            let started = Instant::now();
            self.detector.run()?;
            let between = Instant::now();
            self.classifier.run()?;
            let ended = Instant::now();
            plain.detector.push(per_image_ms(between - started));
            plain.classifier.push(per_image_ms(ended - between));
            plain.per_image.push(per_image_ms(ended - started));
        }
        Ok(plain)
    }
}

impl Plain {
    fn images_per_s(&self) -> f64 {
        1e3 * self.per_image.len() as f64 / self.per_image.iter().sum::<f64>()
    }
}

/// One task as the client saw it: its id, when it was sent (wall clock, to set against
/// the events' timestamps), when the POST answered, and when the result was seen.
struct Timed {
    id: i64,
    sent_us: i64,
    posted: Duration,
    done: Duration,
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// How a client learns that its result is there.
#[derive(Clone, Copy)]
enum Ask {
    /// GET the result every so often, as the contract's clients do.
    Poll(Duration),
    /// GET the result with `?wait=30`: the server answers when the task has ended.
    Wait,
}

impl Ask {
    fn describe(self) -> String {
        match self {
            Ask::Poll(every) => format!("polling every {} ms", every.as_millis()),
            Ask::Wait => "one `?wait=30` request".to_string(),
        }
    }
}

/// POSTs the image and waits until the result is there.
async fn one_task(server: &Server, http: &reqwest::Client, query: &str, image: &[u8], ask: Ask) -> anyhow::Result<Timed> {
    let sent_us = now_us();
    let started = Instant::now();
    let created: Value = http
        .post(format!("{}/api/tasks?{query}", server.base))
        .bearer_auth(&server.token)
        .body(image.to_vec())
        .send()
        .await?
        .error_for_status()
        .context("create task")?
        .json()
        .await?;
    let id = created["id"].as_i64().context("task id")?;
    let posted = started.elapsed();
    let url = match ask {
        Ask::Poll(_) => format!("{}/api/tasks/{id}/result", server.base),
        Ask::Wait => format!("{}/api/tasks/{id}/result?wait=30", server.base),
    };
    loop {
        let result: Value = http.get(&url).bearer_auth(&server.token).send().await?.json().await?;
        match result["status"].as_str() {
            Some("done") => return Ok(Timed { id, sent_us, posted, done: started.elapsed() }),
            Some("failed") => bail!("task {id} failed: {result}"),
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("task {id} not done after 120 s: {result}");
        }
        if let Ask::Poll(every) = ask {
            tokio::time::sleep(every).await;
        }
    }
}

/// `n` tasks one after another (after 20 unmeasured ones).
async fn one_at_a_time(
    server: &Server,
    http: &reqwest::Client,
    query: &str,
    image: &[u8],
    ask: Ask,
    n: usize,
) -> anyhow::Result<Vec<Timed>> {
    for _ in 0..20 {
        one_task(server, http, query, image, ask).await?;
    }
    let mut timed = Vec::with_capacity(n);
    for _ in 0..n {
        timed.push(one_task(server, http, query, image, ask).await?);
    }
    Ok(timed)
}

/// What a throughput run measured: tasks/s, seconds, and CPU ms per task of the
/// server's model threads, of the rest of the server, and of the clients.
struct Throughput {
    per_s: f64,
    seconds: f64,
    model_cpu_ms: f64,
    server_cpu_ms: f64,
    client_cpu_ms: f64,
    /// The model thread's wall time during the run, in %: running, runnable but
    /// waiting for a CPU, and idle (no task to run). Unlike tasks/s, this hardly
    /// depends on how fast the machine happens to be at the moment.
    model_time: (f64, f64, f64),
}

/// The server's model threads, by the name it gives them.
const MODEL_THREADS: &str = "inference-";

/// What the kernel has counted so far: CPU ms of the server's model threads, of its
/// other threads and of this process (the clients), and the model threads' ns running
/// and waiting for a CPU.
struct Counts {
    model_cpu_ms: f64,
    server_cpu_ms: f64,
    client_cpu_ms: f64,
    model_running_ns: f64,
    model_waiting_ns: f64,
}

fn counts(server: &Server) -> anyhow::Result<Counts> {
    let (model, rest): (Vec<ThreadTimes>, Vec<ThreadTimes>) =
        server::thread_times(server.pid())?.into_iter().partition(|t| t.name.starts_with(MODEL_THREADS));
    let sum = |threads: &[ThreadTimes], of: fn(&ThreadTimes) -> f64| threads.iter().map(of).sum::<f64>();
    Ok(Counts {
        model_cpu_ms: sum(&model, |t| t.cpu_ms),
        server_cpu_ms: sum(&rest, |t| t.cpu_ms),
        client_cpu_ms: sum(&server::thread_times(std::process::id())?, |t| t.cpu_ms),
        model_running_ns: sum(&model, |t| t.running_ns),
        model_waiting_ns: sum(&model, |t| t.waiting_ns),
    })
}

/// `clients` concurrent clients, each sending `per_client` tasks one after another:
/// tasks finished per second.
async fn concurrent(
    server: &Arc<Server>,
    http: &reqwest::Client,
    query: &str,
    image: &[u8],
    ask: Ask,
    clients: usize,
    per_client: usize,
) -> anyhow::Result<Throughput> {
    let before = counts(server)?;
    let started = Instant::now();
    let clients = (0..clients).map(|_| {
        let (server, http, query, image) = (server.clone(), http.clone(), query.to_string(), image.to_vec());
        tokio::spawn(async move {
            for _ in 0..per_client {
                one_task(&server, &http, &query, &image, ask).await?;
            }
            anyhow::Ok(())
        })
    });
    let n = clients.len() * per_client;
    for joined in futures::future::join_all(clients).await {
        joined??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = counts(server)?;
    let wall_ns = seconds * 1e9;
    let (running, waiting) = (after.model_running_ns - before.model_running_ns, after.model_waiting_ns - before.model_waiting_ns);
    let model_time = (100.0 * running / wall_ns, 100.0 * waiting / wall_ns, 100.0 * (wall_ns - running - waiting).max(0.0) / wall_ns);
    let per_task = |after: f64, before: f64| (after - before) / n as f64;
    Ok(Throughput {
        per_s: n as f64 / seconds,
        seconds,
        model_cpu_ms: per_task(after.model_cpu_ms, before.model_cpu_ms),
        server_cpu_ms: per_task(after.server_cpu_ms, before.server_cpu_ms),
        client_cpu_ms: per_task(after.client_cpu_ms, before.client_cpu_ms),
        model_time,
    })
}

/// Where a sequential task's time went, from the client's clock and the events' own
/// timestamps (same machine, same clock).
async fn stages(data: &Path, timed: &[Timed]) -> anyhow::Result<Vec<(&'static str, Vec<f64>)>> {
    use sqlx::Connection as _;
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", data.join("events.db").display())).await?;
    let mut out: Vec<(&'static str, Vec<f64>)> = vec![
        ("  stage: sent → created (POST handler)", vec![]),
        ("  stage: created → POST answered (task list)", vec![]),
        ("  stage: created → started (the run begins)", vec![]),
        ("  stage: started → completed (models, append)", vec![]),
        ("  stage: completed → client sees it", vec![]),
    ];
    for t in timed {
        let events: Vec<(String, i64)> = sqlx::query_as("SELECT event_type, recorded_at_us FROM events WHERE stream_id = $1")
            .bind(format!("inference_task-{}", t.id))
            .fetch_all(&mut db)
            .await?;
        let at = |ty: &str| events.iter().find(|(e, _)| e == ty).map(|(_, us)| *us as f64 / 1e3);
        let (Some(created), Some(started), Some(completed)) =
            (at("InferenceTaskCreated"), at("InferenceTaskStarted"), at("InferenceTaskCompleted"))
        else {
            bail!("task {} lacks events: {events:?}", t.id)
        };
        let sent = t.sent_us as f64 / 1e3;
        let answered = sent + t.posted.as_secs_f64() * 1e3;
        let seen = sent + t.done.as_secs_f64() * 1e3;
        for (slot, v) in out.iter_mut().zip([created - sent, answered - created, started - created, completed - started, seen - completed])
        {
            slot.1.push(v);
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.medledger.exists(), "{} not found: cargo build --release -p medledger-api", args.medledger.display());
    let image = std::fs::read(&args.image).with_context(|| format!("read {}", args.image.display()))?;

    eprintln!("plain ONNX Runtime loop: {} runs", args.plain_runs);
    let library = find_library(None).context("no ONNX Runtime library: run scripts/fetch-onnxruntime.sh")?;
    let env = ort::init_from(&library)?.with_name("bench-inference").build()?;
    let mut single = plain_loop(&args, &env, &image, 1)?;
    let plain = single.measure(args.plain_runs)?;
    let plain_images_per_s = plain.images_per_s();
    // The server runs queued tasks in batches: the same loop in runs of that many images is
    // the baseline a batching service is measured against too.
    let mut batched = plain_loop(&args, &env, &image, args.batch)?;

    let data = std::env::temp_dir().join(format!("medledger-bench-inference-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let result = service(&args, &data, &image, [&mut single, &mut batched], &plain, plain_images_per_s).await;
    if args.keep {
        eprintln!("kept {}", data.display());
    } else {
        let _ = std::fs::remove_dir_all(&data);
    }
    result
}

async fn service(
    args: &Args,
    data: &Path,
    image: &[u8],
    [plain_loop, batched]: [&mut PlainLoop; 2],
    plain: &Plain,
    plain_images_per_s: f64,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let env = [("MEDLEDGER_INFERENCE_THREADS", args.threads.to_string()), ("MEDLEDGER_INFERENCE_BATCH", args.batch.to_string())];
    let server = Arc::new(Server::start_with(&args.medledger, data, &http, &env).await?);
    let query = format!("detection_model_id={}&classification_model_id={}", args.detector, args.classifier);

    let asks = [Ask::Poll(Duration::from_millis(args.poll_ms)), Ask::Wait];
    let mut sequential = Vec::new();
    for ask in asks {
        eprintln!("one task at a time, {}: {} tasks", ask.describe(), args.sequential);
        let timed = one_at_a_time(&server, &http, &query, image, ask, args.sequential).await?;
        let e2e = sorted(timed.iter().map(|t| t.done.as_secs_f64() * 1e3).collect());
        sequential.push((ask, e2e, stages(data, &timed).await?));
    }
    let mut throughput = Vec::new();
    for ask in [Ask::Poll(Duration::from_millis(args.client_poll_ms)), Ask::Wait] {
        eprintln!("{} clients, {}: {} tasks", args.clients, ask.describe(), args.clients * args.per_client);
        // The machine's speed drifts: the plain loop runs again just before and just
        // after, and the run is set against the mean of those two.
        let before = plain_loop.measure(args.adjacent_runs)?.images_per_s();
        let run = concurrent(&server, &http, &query, image, ask, args.clients, args.per_client).await?;
        let after = plain_loop.measure(args.adjacent_runs)?.images_per_s();
        let batched_after = batched.measure(args.adjacent_runs)?.images_per_s();
        throughput.push((ask, run, (before, after), batched_after));
    }

    let (per_image, detector, classifier) =
        (sorted(plain.per_image.clone()), sorted(plain.detector.clone()), sorted(plain.classifier.clone()));
    let row = |name: &str, v: &[f64]| {
        println!("| {name} | {:.2} | {:.2} | {:.2} |", percentile(v, 50.0), percentile(v, 90.0), percentile(v, 99.0));
    };
    println!("## Inference tasks: results\n");
    println!(
        "Models {} + {}, {} intra-op thread(s), image {} ({} bytes).\n",
        args.detector,
        args.classifier,
        args.threads,
        args.image.display(),
        image.len()
    );
    println!("| one image, ms | p50 | p90 | p99 |");
    println!("|---|---|---|---|");
    row("plain loop: detector", &detector);
    row("plain loop: classifier", &classifier);
    row("plain loop: both", &per_image);
    for (ask, e2e, stages) in &sequential {
        row(&format!("task: POST → result, {}", ask.describe()), e2e);
        for (name, values) in stages {
            row(name, &sorted(values.clone()));
        }
    }
    println!();
    for (ask, e2e, _) in &sequential {
        let overhead = percentile(e2e, 50.0) - percentile(&per_image, 50.0);
        println!("- Overhead at p50, {}: **{overhead:.2} ms** (target ≤ 10 ms).", ask.describe());
    }
    println!("- Plain loop: {plain_images_per_s:.1} images/s.");
    for (ask, t, (before, after), batched_after) in &throughput {
        let beside = (before + after) / 2.0;
        println!(
            "- {} clients × {} tasks, {}: {:.1} tasks/s ({:.1} s), **{:.0}%** of the plain loop run just before and after \
             ({before:.1} and {after:.1} images/s; target ≥ 90%), {:.0}% of the first plain loop, {:.0}% of the plain loop \
             in runs of {} images just after ({batched_after:.1} images/s). CPU per task: model thread {:.2} ms, rest of the server {:.2} ms, clients {:.2} ms. \
             Model thread: running {:.1}%, waiting for a CPU {:.1}%, idle {:.1}% of the run.",
            args.clients,
            args.per_client,
            ask.describe(),
            t.per_s,
            t.seconds,
            100.0 * t.per_s / beside,
            100.0 * t.per_s / plain_images_per_s,
            100.0 * t.per_s / batched_after,
            args.batch,
            t.model_cpu_ms,
            t.server_cpu_ms,
            t.client_cpu_ms,
            t.model_time.0,
            t.model_time.1,
            t.model_time.2,
        );
    }
    Ok(())
}
