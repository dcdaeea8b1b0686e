//! Collection archive benchmark behind BENCHMARKS.md (issue 3): how fast the collection
//! saga writes a ZIP of 1 GB of dataset items, against `zip -0 -r` over the same files in
//! the same run, and how much the server's memory grows while it builds.
//!
//! cargo build --release -p medledger-bench -p medledger-api && ./target/release/bench-zip --help

#[allow(dead_code)]
#[path = "search/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "search/server.rs"]
mod server;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore as _, SeedableRng as _};
use serde_json::{Value, json};

use server::{Server, run_cli};

#[derive(Parser)]
struct Args {
    /// The release server binary.
    #[arg(long, default_value = "target/release/medledger")]
    medledger: PathBuf,
    /// The real catalog (JSONL); its first dataset receives the items.
    #[arg(long, default_value = "tests/fixtures/datasets.jsonl")]
    catalog: PathBuf,
    /// Total size of the items, in MiB.
    #[arg(long, default_value_t = 1024)]
    mebibytes: u64,
    /// How many item files share that size (sizes vary from 0.25x to 1.75x the mean).
    #[arg(long, default_value_t = 200)]
    files: u64,
    /// Builds of the same collection request (each a new collection).
    #[arg(long, default_value_t = 3)]
    builds: usize,
    /// Keep the temporary directory.
    #[arg(long)]
    keep: bool,
}

/// Incompressible item files (like compressed images), deterministic from a seed.
fn write_items(dir: &Path, mebibytes: u64, files: u64) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut rng = StdRng::seed_from_u64(11);
    let mean = mebibytes * 1024 * 1024 / files.max(1);
    let mut written = 0u64;
    let mut chunk = vec![0u8; 1024 * 1024];
    for i in 0..files {
        let size =
            if i + 1 == files { (mebibytes * 1024 * 1024).saturating_sub(written) } else { rng.random_range(mean / 4..=mean * 7 / 4) };
        let sub = dir.join(format!("series-{:02}", i % 10));
        std::fs::create_dir_all(&sub)?;
        let mut file = std::io::BufWriter::new(std::fs::File::create(sub.join(format!("image-{i:04}.bin")))?);
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            rng.fill_bytes(&mut chunk[..n]);
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.flush()?;
        written += size;
    }
    Ok(written)
}

/// `zip -0 -r` of the items into a fresh file: its wall time.
fn zip_baseline(items: &Path, out: &Path) -> anyhow::Result<Duration> {
    let _ = std::fs::remove_file(out);
    let started = Instant::now();
    let status =
        Command::new("zip").args(["-0", "-r", "-q"]).arg(out).arg(".").current_dir(items).status().context("run zip (apt install zip)")?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "zip failed: {status}");
    Ok(elapsed)
}

struct Build {
    elapsed: Duration,
    archive_size: u64,
    rss_before_kb: u64,
    rss_peak_kb: u64,
}

/// One collection from POST to `ready`, sampling the server's RSS every 5 ms.
async fn build(server: &Server, http: &reqwest::Client) -> anyhow::Result<Build> {
    let rss_before_kb = server.rss_kb()?;
    let started = Instant::now();
    let created: Value = http
        .post(format!("{}/api/v1/collections/", server.base))
        .bearer_auth(&server.token)
        .json(&json!({"query_text": "", "dataset_ids": [1], "limit_per_dataset": 100000}))
        .send()
        .await?
        .error_for_status()
        .context("create collection")?
        .json()
        .await?;
    let id = created["id"].as_i64().context("collection id")?;
    let mut rss_peak_kb = rss_before_kb;
    let mut last_poll = Instant::now();
    loop {
        rss_peak_kb = rss_peak_kb.max(server.rss_kb()?);
        if last_poll.elapsed() >= Duration::from_millis(20) {
            last_poll = Instant::now();
            let detail: Value =
                http.get(format!("{}/api/v1/collections/{id}/", server.base)).bearer_auth(&server.token).send().await?.json().await?;
            match detail["status"].as_str() {
                Some("ready") => {
                    let elapsed = started.elapsed();
                    let archive_size = detail["archive_size"].as_u64().context("archive_size")?;
                    return Ok(Build { elapsed, archive_size, rss_before_kb, rss_peak_kb });
                }
                Some("pending") => {}
                other => bail!("collection {id} ended {other:?}: {detail}"),
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("collection {id} not ready after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.medledger.exists(), "{} not found: cargo build --release -p medledger-api", args.medledger.display());
    let work = std::env::temp_dir().join(format!("medledger-bench-zip-{}", std::process::id()));
    let result = run(&args, &work).await;
    if args.keep {
        eprintln!("kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

async fn run(args: &Args, work: &Path) -> anyhow::Result<()> {
    let items = work.join("items");
    let data = work.join("data");
    std::fs::create_dir_all(&data)?;
    eprintln!("writing {} MiB of items in {} files under {}", args.mebibytes, args.files, items.display());
    let bytes = write_items(&items, args.mebibytes, args.files)?;

    let first = std::fs::read_to_string(&args.catalog)?.lines().next().context("empty catalog")?.to_string();
    let one = work.join("one.jsonl");
    std::fs::write(&one, format!("{first}\n"))?;
    run_cli(&args.medledger, &data, &["catalog", "import", one.to_str().context("path")?])?;
    eprintln!("medledger catalog items (copies the items into the blob store)");
    let (import, _) = run_cli(&args.medledger, &data, &["catalog", "items", "--dataset", "1", items.to_str().context("path")?])?;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let server = Server::start(&args.medledger, &data, &http).await?;
    let baseline_zip = work.join("baseline.zip");
    let mut zips = Vec::new();
    let mut builds = Vec::new();
    // Alternate so both see the same page-cache and disk conditions.
    for round in 0..args.builds {
        let z = zip_baseline(&items, &baseline_zip)?;
        eprintln!("round {round}: zip -0 -r {:.2} s", z.as_secs_f64());
        zips.push(z);
        let b = build(&server, &http).await?;
        eprintln!(
            "round {round}: medledger {:.2} s, archive {} bytes, RSS {} -> peak {} kB",
            b.elapsed.as_secs_f64(),
            b.archive_size,
            b.rss_before_kb,
            b.rss_peak_kb
        );
        builds.push(b);
    }
    let archive = data.join("blobs/collections");
    let check = Command::new("sh").arg("-c").arg(format!("unzip -tq \"$(ls {}/*.zip | head -1)\"", archive.display())).output()?;
    let verdict = String::from_utf8_lossy(&check.stdout).trim().to_string();

    println!("## Collection archive: results\n");
    println!(
        "{} item files, {:.1} MB ({} MiB), random bytes; `medledger catalog items` took {:.1} s.\n",
        args.files,
        bytes as f64 / 1e6,
        args.mebibytes,
        import.as_secs_f64()
    );
    println!("| round | `zip -0 -r` | medledger POST → ready | throughput zip / medledger | ratio | RSS before → peak (growth) |");
    println!("|---|---|---|---|---|---|");
    for (i, (z, b)) in zips.iter().zip(&builds).enumerate() {
        println!(
            "| {} | {:.2} s | {:.2} s | {:.0} / {:.0} MB/s | {:.0}% | {:.1} → {:.1} MB (+{:.1} MB) |",
            i + 1,
            z.as_secs_f64(),
            b.elapsed.as_secs_f64(),
            mb_per_s(bytes, *z),
            mb_per_s(b.archive_size, b.elapsed),
            100.0 * mb_per_s(b.archive_size, b.elapsed) / mb_per_s(bytes, *z),
            b.rss_before_kb as f64 / 1024.0,
            b.rss_peak_kb as f64 / 1024.0,
            b.rss_peak_kb.saturating_sub(b.rss_before_kb) as f64 / 1024.0
        );
    }
    println!("\n`unzip -tq` on the first archive: {verdict}");
    Ok(())
}
