//! Image bombs against the release server (issue 15, item 3): a flood of small files of
//! huge images, and what it does to the server's memory, its answers and the ordinary
//! tasks it serves meanwhile.
//!
//! Each configuration runs on a fresh server (embedded SQLite) and each wave of bombs on
//! a fresh one too: freed memory is not always handed back to the system, so a second
//! wave on the same process would start from a higher floor. The server's RSS
//! (`/proc/PID/status`, `VmRSS`) is sampled every 10 ms; growth is over the idle RSS
//! after warm-up. Ordinary clients create a task from a small image and wait for its
//! result, over and over, from before the bombs until after their last answer.
//!
//! A wave is `--bombs` senders at once, each sending again as soon as it is answered,
//! for `--flood-s` seconds (at least once each). The same binary runs three ways: the
//! baseline, with the limits set back to what they were before
//! (`MEDLEDGER_MAX_IMAGE_PIXELS=67108864`, i.e. 8192², `MEDLEDGER_IMAGE_DECODES=0`,
//! `MEDLEDGER_TASK_RATE_LIMIT=0`); the new limits without the per-user task limit, so
//! the pixel limit and the decode bound are seen on their own; and the new defaults.
//! The baseline's wave of 8192² bombs is smaller and sent once (`--baseline-bombs`): at
//! about 470 MB each, 50 would need some 23 GB.
//!
//! cargo build --release -p medledger-bench -p medledger-api && ./target/release/bench-bombs --help

#[allow(dead_code)]
#[path = "search/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "search/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::{Value, json};

use server::Server;

#[derive(Parser)]
struct Args {
    /// The release server binary.
    #[arg(long, default_value = "target/release/medledger")]
    medledger: PathBuf,
    /// The bomb: 261 KB of PNG that decodes to 8192×8192 RGBA.
    #[arg(long, default_value = "tests/fixtures/inference/bomb_8192x8192.png")]
    bomb: PathBuf,
    /// The image of the ordinary tasks.
    #[arg(long, default_value = "tests/fixtures/inference/fixture_1_office_1obj.png")]
    image: PathBuf,
    /// Bombs sent at once.
    #[arg(long, default_value_t = 50)]
    bombs: usize,
    /// Each sender sends again when answered, for this long (s; 0: once).
    #[arg(long, default_value_t = 5)]
    flood_s: u64,
    /// 8192² bombs sent at once, once, to the baseline (today's limits): each takes
    /// ~470 MB there.
    #[arg(long, default_value_t = 12)]
    baseline_bombs: usize,
    /// Users the bombs come from (round robin), so the per-user task limit is not what
    /// stops them.
    #[arg(long, default_value_t = 5)]
    bomb_users: usize,
    /// Side of the second wave's images: the largest the new default accepts.
    #[arg(long, default_value_t = 2048)]
    at_cap_side: u32,
    /// Clients creating ordinary tasks, each one at a time.
    #[arg(long, default_value_t = 2)]
    ordinary_clients: usize,
    /// Pause between an ordinary client's tasks, ms (keeps each user under the default
    /// task limit of 120 a minute).
    #[arg(long, default_value_t = 600)]
    ordinary_pause_ms: u64,
    /// Ordinary tasks run alone before the bombs, s.
    #[arg(long, default_value_t = 3)]
    quiet_s: u64,
    /// Only this configuration (`baseline`, `new-no-task-limit` or `new`).
    #[arg(long)]
    only: Option<String>,
    /// Keep the servers' data directories.
    #[arg(long)]
    keep: bool,
}

const PASSWORD: &str = "bench-bombs-password";
const QUERY: &str = "detection_model_id=1&classification_model_id=3";

/// A PNG of `side`×`side` transparent black RGBA pixels: a few KB that decode to
/// `4·side²` bytes.
fn zero_png(side: u32) -> anyhow::Result<Vec<u8>> {
    use image::ImageEncoder as _;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let pixels = vec![0u8; side as usize * side as usize * 4];
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::NoFilter).write_image(
        &pixels,
        side,
        side,
        image::ExtendedColorType::Rgba8,
    )?;
    Ok(out)
}

struct Setup {
    name: &'static str,
    env: Vec<(&'static str, String)>,
}

fn setups(args: &Args) -> Vec<Setup> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let all = vec![
        Setup {
            name: "baseline",
            env: vec![
                ("MEDLEDGER_MAX_IMAGE_PIXELS", (8192u64 * 8192).to_string()),
                ("MEDLEDGER_IMAGE_DECODES", "0".into()),
                ("MEDLEDGER_TASK_RATE_LIMIT", "0".into()),
            ],
        },
        Setup {
            name: "new-no-task-limit",
            env: vec![
                ("MEDLEDGER_MAX_IMAGE_PIXELS", (2048u64 * 2048).to_string()),
                ("MEDLEDGER_IMAGE_DECODES", cores.to_string()),
                ("MEDLEDGER_TASK_RATE_LIMIT", "0".into()),
            ],
        },
        Setup {
            name: "new",
            env: vec![
                ("MEDLEDGER_MAX_IMAGE_PIXELS", (2048u64 * 2048).to_string()),
                ("MEDLEDGER_IMAGE_DECODES", cores.to_string()),
                ("MEDLEDGER_TASK_RATE_LIMIT", "120".into()),
            ],
        },
    ];
    all.into_iter().filter(|s| args.only.as_deref().is_none_or(|o| o == s.name)).collect()
}

/// Samples the server's RSS every 10 ms until stopped: the highest, in kB.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let (stop, peak_kb) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak_kb.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self { stop, peak_kb, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak_kb.load(Ordering::Relaxed)
    }
}

/// A user of the 002 API, registered for the run: their access token.
async fn user(server: &Server, http: &reqwest::Client, email: &str) -> anyhow::Result<String> {
    let body: Value = http
        .post(format!("{}/api/auth/register/", server.base))
        .json(&json!({"email": email, "password": PASSWORD, "firstName": "Bench", "lastName": "Bombs"}))
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("register {email}"))?
        .json()
        .await?;
    Ok(body["access"].as_str().context("register answered no access token")?.to_string())
}

/// One ordinary task: the POST's status, and if it was created, the time to its result.
async fn ordinary_task(server: &Server, http: &reqwest::Client, token: &str, image: &[u8]) -> (u16, Option<Duration>) {
    let started = Instant::now();
    let posted = http.post(format!("{}/api/tasks?{QUERY}", server.base)).bearer_auth(token).body(image.to_vec()).send().await;
    let Ok(posted) = posted else { return (0, None) };
    let status = posted.status().as_u16();
    let Some(id) = posted.json::<Value>().await.ok().and_then(|b| b["id"].as_i64()) else { return (status, None) };
    let Ok(result) = http.get(format!("{}/api/tasks/{id}/result?wait=30", server.base)).bearer_auth(token).send().await else {
        return (status, None);
    };
    let done = result.json::<Value>().await.is_ok_and(|b| b["status"] == "done");
    (status, done.then(|| started.elapsed()))
}

/// What the ordinary clients saw: per task, when it was sent (from the run's start),
/// the POST's status and the time to its result (None: no result).
type Ordinary = Vec<(Duration, u16, Option<Duration>)>;

/// One wave of bombs at a fresh server.
struct Wave {
    senders: usize,
    flood: Duration,
    idle_mb: f64,
    peak_growth_mb: f64,
    after_mb: f64,
    /// Status → count (0: no answer).
    statuses: BTreeMap<u16, usize>,
    answer_ms: Vec<f64>,
    /// Ordinary tasks alone before the bombs, and those sent while bombs were in flight.
    quiet: Ordinary,
    during: Ordinary,
    /// ms from the first bomb sent to the last answered.
    wave_ms: f64,
}

/// What is sent in a wave: the file, by how many senders at once, for how long.
struct Attack<'a> {
    file: &'a [u8],
    senders: usize,
    flood: Duration,
}

async fn wave(args: &Args, setup: &Setup, attack: &Attack<'_>, image: &[u8], tag: &str) -> anyhow::Result<Wave> {
    let data = std::env::temp_dir().join(format!("medledger-bench-bombs-{}-{}-{tag}", std::process::id(), setup.name));
    std::fs::create_dir_all(&data)?;
    let result = wave_in(args, setup, attack, image, &data).await;
    if args.keep {
        eprintln!("  kept {}", data.display());
    } else {
        let _ = std::fs::remove_dir_all(&data);
    }
    result
}

async fn wave_in(args: &Args, setup: &Setup, attack: &Attack<'_>, image: &[u8], data: &std::path::Path) -> anyhow::Result<Wave> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
    let server = Arc::new(Server::start_with(&args.medledger, data, &http, &setup.env).await?);
    let pid = server.pid();
    let mut bombers = Vec::new();
    for i in 0..args.bomb_users.max(1) {
        bombers.push(user(&server, &http, &format!("bomber{i}@example.org")).await?);
    }
    let mut ordinary = Vec::new();
    for i in 0..args.ordinary_clients {
        ordinary.push(user(&server, &http, &format!("ordinary{i}@example.org")).await?);
    }
    // Warm-up: the models' first runs, the pools' first connections.
    for token in &ordinary {
        for _ in 0..3 {
            ordinary_task(&server, &http, token, image).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kb = {
        let mut samples = Vec::new();
        for _ in 0..50 {
            samples.extend(rss_kb(pid));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64
    };
    let sampler = Sampler::start(pid);

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = ordinary
        .iter()
        .map(|token| {
            let (server, http, token, image, stop) = (server.clone(), http.clone(), token.clone(), image.to_vec(), stop.clone());
            let pause = Duration::from_millis(args.ordinary_pause_ms);
            tokio::spawn(async move {
                let mut seen: Ordinary = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = start.elapsed();
                    let (status, done) = ordinary_task(&server, &http, &token, &image).await;
                    seen.push((sent, status, done));
                    tokio::time::sleep(pause).await;
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.quiet_s)).await;

    let fired = start.elapsed();
    let flood = attack.flood;
    let sends: Vec<_> = (0..attack.senders)
        .map(|i| {
            let (server, http, token) = (server.clone(), http.clone(), bombers[i % bombers.len()].clone());
            let bomb = bytes::Bytes::copy_from_slice(attack.file);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let began = Instant::now();
                loop {
                    let sent = Instant::now();
                    let r = http.post(format!("{}/api/tasks?{QUERY}", server.base)).bearer_auth(&token).body(bomb.clone()).send().await;
                    let status = match r {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let _ = r.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    answers.push((status, sent.elapsed()));
                    if began.elapsed() >= flood {
                        return answers;
                    }
                }
            })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    let mut answer_ms = Vec::new();
    for joined in futures::future::join_all(sends).await {
        for (status, took) in joined? {
            *statuses.entry(status).or_insert(0) += 1;
            answer_ms.push(took.as_secs_f64() * 1e3);
        }
    }
    let answered = start.elapsed();
    // The ordinary clients go on a little after the last answer: whatever the bombs
    // queued is still being worked off.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen: Ordinary = Vec::new();
    for c in futures::future::join_all(clients).await {
        seen.extend(c?);
    }
    let peak_kb = sampler.finish();
    let after_kb = rss_kb(pid).unwrap_or(0) as f64;
    let (quiet, during) = seen.into_iter().filter(|(sent, ..)| *sent <= answered).partition(|(sent, ..)| *sent < fired);
    answer_ms.sort_by(f64::total_cmp);
    Ok(Wave {
        senders: attack.senders,
        flood,
        idle_mb: idle_kb / 1024.0,
        peak_growth_mb: (peak_kb as f64 - idle_kb).max(0.0) / 1024.0,
        after_mb: after_kb / 1024.0,
        statuses,
        answer_ms,
        quiet,
        during,
        wave_ms: (answered - fired).as_secs_f64() * 1e3,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((p / 100.0) * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

fn histogram(statuses: &BTreeMap<u16, usize>) -> String {
    let parts: Vec<String> = statuses.iter().map(|(s, n)| if *s == 0 { format!("no answer ×{n}") } else { format!("{s} ×{n}") }).collect();
    parts.join(", ")
}

/// Ordinary tasks: done / sent, status codes, and p50 / max to the result, ms.
fn ordinary_summary(tasks: &Ordinary) -> String {
    let mut ms: Vec<f64> = tasks.iter().filter_map(|(_, _, d)| d.map(|d| d.as_secs_f64() * 1e3)).collect();
    ms.sort_by(f64::total_cmp);
    let mut statuses = BTreeMap::new();
    for (_, s, _) in tasks {
        *statuses.entry(*s).or_insert(0) += 1;
    }
    format!(
        "{} of {} done ({}); p50 {:.0} ms, max {:.0} ms",
        ms.len(),
        tasks.len(),
        histogram(&statuses),
        percentile(&ms, 50.0),
        ms.last().copied().unwrap_or(f64::NAN)
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.medledger.exists(), "{} not found: cargo build --release -p medledger-api", args.medledger.display());
    let bomb = std::fs::read(&args.bomb).with_context(|| format!("read {}", args.bomb.display()))?;
    let image = std::fs::read(&args.image).with_context(|| format!("read {}", args.image.display()))?;
    let at_cap = zero_png(args.at_cap_side)?;

    let mut rows: Vec<(String, Vec<(&'static str, Wave)>)> = Vec::new();
    let at_cap_label = format!("{0}×{0} images (at the new limit)", args.at_cap_side);
    let waves: [(&str, &str, &[u8]); 2] = [("8192×8192 bombs", "bombs", &bomb), (&at_cap_label, "at-cap", &at_cap)];
    for (kind, tag, file) in waves {
        let mut columns = Vec::new();
        for setup in setups(&args) {
            let baseline_bombs = setup.name == "baseline" && tag == "bombs";
            let attack = if baseline_bombs {
                Attack { file, senders: args.baseline_bombs, flood: Duration::ZERO }
            } else {
                Attack { file, senders: args.bombs, flood: Duration::from_secs(args.flood_s) }
            };
            eprintln!("{kind}, {}: {} senders for {:?} ({} bytes each)", setup.name, attack.senders, attack.flood, file.len());
            let w = wave(&args, &setup, &attack, &image, tag).await?;
            eprintln!("  peak RSS growth {:.0} MB; {}", w.peak_growth_mb, histogram(&w.statuses));
            columns.push((setup.name, w));
        }
        rows.push((format!("{kind}, {} bytes each", file.len()), columns));
    }

    println!("## Image bombs: results\n");
    for setup in setups(&args) {
        let env: Vec<String> = setup.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("- {}: `{}`", setup.name, env.join(" "));
    }
    println!(
        "- Bombs from {} users; {} ordinary clients ({}, one task at a time, {} ms apart), {} s alone first.\n",
        args.bomb_users,
        args.ordinary_clients,
        args.image.display(),
        args.ordinary_pause_ms,
        args.quiet_s
    );
    for (wave, columns) in &rows {
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        println!("| {wave} | {} |", names.join(" | "));
        println!("|---|{}", "---|".repeat(columns.len()));
        let line = |label: &str, f: &dyn Fn(&Wave) -> String| {
            let cells: Vec<String> = columns.iter().map(|(_, w)| f(w)).collect();
            println!("| {label} | {} |", cells.join(" | "));
        };
        line("senders at once, for", &|w| {
            if w.flood.is_zero() { format!("{}, once each", w.senders) } else { format!("{}, {} s", w.senders, w.flood.as_secs()) }
        });
        line("requests", &|w| w.answer_ms.len().to_string());
        line("answers", &|w| histogram(&w.statuses));
        line("**peak RSS growth** (idle RSS)", &|w| format!("**{:.0} MB** ({:.0} MB)", w.peak_growth_mb, w.idle_mb));
        line("RSS after", &|w| format!("{:.0} MB", w.after_mb));
        line("bomb answer p50 / max", &|w| {
            format!("{:.0} / {:.0} ms", percentile(&w.answer_ms, 50.0), w.answer_ms.last().copied().unwrap_or(f64::NAN))
        });
        line("first bomb sent → last answered", &|w| format!("{:.0} ms", w.wave_ms));
        line("ordinary tasks alone", &|w| ordinary_summary(&w.quiet));
        line("ordinary tasks sent during the bombs", &|w| ordinary_summary(&w.during));
        println!();
    }
    Ok(())
}
