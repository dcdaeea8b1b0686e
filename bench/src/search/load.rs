//! The latency mix and how it is sent: one request at a time (service time) and as an
//! open-loop load (fixed schedule, latency from the scheduled send to the full answer).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use serde_json::{Map, Value, json};

#[derive(Clone, Default)]
pub struct Filters {
    pub modality: Vec<String>,
    pub area: Option<String>,
    pub task_types: Vec<String>,
}

impl Filters {
    pub fn json(&self) -> Value {
        let mut f = Map::new();
        if !self.modality.is_empty() {
            f.insert("modality".into(), json!(self.modality));
        }
        if let Some(a) = &self.area {
            f.insert("area".into(), json!(a));
        }
        if !self.task_types.is_empty() {
            f.insert("task_type".into(), json!(self.task_types));
        }
        Value::Object(f)
    }
}

/// One request of the latency mix.
#[derive(Clone)]
pub enum Request {
    /// POST /api/v1/search/datasets/ (ranked: any concept may match), 20 results.
    Search { text: String, filters: Filters },
    /// GET /api/v1/datasets/?q=...&modality=... (every concept must match), 20 results.
    List { text: String, modality: Option<String> },
}

impl Request {
    pub fn describe(&self) -> String {
        match self {
            Request::Search { text, filters } => format!("search {text:?} {}", filters.json()),
            Request::List { text, modality } => format!("list {text:?} modality={modality:?}"),
        }
    }
}

/// Per judged query: three searches with different filters and one filtered list.
pub fn request_mix(queries: &[String]) -> Vec<Request> {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let filters = [
        Filters::default(),
        Filters { modality: v(&["CT"]), ..Default::default() },
        Filters { area: Some("chest".into()), ..Default::default() },
        Filters { task_types: v(&["segmentation"]), ..Default::default() },
        Filters { modality: v(&["MR"]), task_types: v(&["segmentation"]), ..Default::default() },
    ];
    let modalities = [None, Some("CT"), Some("MR"), Some("XR")];
    let mut mix = Vec::new();
    for (i, query) in queries.iter().enumerate() {
        for k in [0, 2, 4] {
            mix.push(Request::Search { text: query.clone(), filters: filters[(i + k) % filters.len()].clone() });
        }
        mix.push(Request::List { text: query.clone(), modality: modalities[i % modalities.len()].map(str::to_string) });
    }
    mix.shuffle(&mut StdRng::seed_from_u64(7));
    mix
}

pub struct Sample {
    pub list: bool,
    pub latency: Duration,
    pub error: Option<String>,
}

/// Sends `mix` round-robin at a fixed rate, each request on its own task whatever the
/// earlier ones do; latency runs from the scheduled send time to the full answer.
async fn open_loop<F>(rate: u64, seconds: u64, mix: &[Request], send: F) -> Vec<Sample>
where
    F: Fn(Request) -> Sent + Send + Sync + 'static,
{
    let send = Arc::new(send);
    let total = rate * seconds;
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(at).await;
        let request = mix[i as usize % mix.len()].clone();
        let list = matches!(request, Request::List { .. });
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let result = send(request).await;
            Sample { list, latency: at.elapsed(), error: result.err().map(|e| format!("{e:#}")) }
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(s) = t.await {
            samples.push(s);
        }
    }
    samples
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Markdown rows: all requests, then searches and lists apart.
pub fn latency_rows(engine: &str, samples: &[Sample]) -> String {
    let mut out = String::new();
    for (what, pick) in [("all", None), ("search (POST)", Some(false)), ("list ?q= (GET)", Some(true))] {
        let chosen: Vec<&Sample> = samples.iter().filter(|s| pick.is_none_or(|l| s.list == l)).collect();
        let mut lat: Vec<Duration> = chosen.iter().map(|s| s.latency).collect();
        lat.sort();
        let errors = chosen.iter().filter(|s| s.error.is_some()).count();
        let _ = writeln!(
            out,
            "| {engine} | {what} | {} | {} | {} | {} | {} | {errors} |",
            chosen.len(),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.9)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default()),
        );
    }
    if let Some(e) = samples.iter().find_map(|s| s.error.as_deref()) {
        eprintln!("  {engine}: first error: {e}");
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A request on its way: what an engine's sender returns.
pub type Sent = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Latencies of one engine on the mix.
pub struct Measured {
    /// Every request once, one at a time: service time, no queueing.
    pub one_at_a_time: Vec<Sample>,
    pub open_loop: Option<Vec<Sample>>,
    /// Load average (1/5/15 min) just before the open-loop run.
    pub load_before: String,
}

/// Optionally a warm-up pass over the mix (not measured), then a measured pass one request
/// at a time, then (if `open`) the open-loop load.
pub async fn measure<F>(name: &str, rate: u64, seconds: u64, mix: &[Request], send: F, warm_up: bool, open: bool) -> Measured
where
    F: Fn(Request) -> Sent + Send + Sync + 'static,
{
    if warm_up {
        for r in mix {
            let _ = send(r.clone()).await;
        }
    }
    let mut one_at_a_time = Vec::with_capacity(mix.len());
    for r in mix {
        let started = Instant::now();
        let result = send(r.clone()).await;
        let list = matches!(r, Request::List { .. });
        one_at_a_time.push(Sample { list, latency: started.elapsed(), error: result.err().map(|e| format!("{e:#}")) });
    }
    // The slowest requests, on stderr: where the time goes.
    let mut order: Vec<usize> = (0..mix.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(one_at_a_time[*i].latency));
    for &i in order.iter().take(8) {
        eprintln!("  {name}: slowest one at a time: {} ms {}", ms(one_at_a_time[i].latency), mix[i].describe());
    }
    let load_before = loadavg();
    let mut open_loop_samples = None;
    if open {
        eprintln!("  {name}: {} requests/s for {} s (load average before: {load_before})", rate, seconds);
        open_loop_samples = Some(open_loop(rate, seconds, mix, send).await);
    }
    Measured { one_at_a_time, open_loop: open_loop_samples, load_before }
}
