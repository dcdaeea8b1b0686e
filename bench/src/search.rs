//! Catalog search benchmarks behind BENCHMARKS.md (issue 3):
//!
//! 1. ranking quality on the real catalog (judged queries, recall@10 and nDCG@10) of the
//!    release server's search against PostgreSQL full-text search over the same text;
//! 2. at 100,000 datasets (the real catalog expanded): import time, catalog index rebuild
//!    time, search latency under an open-loop load, the same load on PostgreSQL FTS with
//!    a GIN index, and the server's RSS.
//!
//! cargo build --release -p medledger-bench -p medledger-api && ./target/release/bench-search --help

// A binary's root looks for modules beside it: these live in search/.
#[path = "search/catalog.rs"]
mod catalog;
#[path = "search/fts.rs"]
mod fts;
#[path = "search/load.rs"]
mod load;
#[path = "search/probe.rs"]
mod probe;
#[path = "search/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::PgPool;

use catalog::{expand, read_catalog, write_catalog};
use load::{Filters, latency_rows, measure, request_mix};
use server::{Server, prepare};

#[derive(Parser)]
struct Args {
    /// The release server binary.
    #[arg(long, default_value = "target/release/medledger")]
    medledger: PathBuf,
    /// The real catalog (JSONL).
    #[arg(long, default_value = "tests/fixtures/datasets.jsonl")]
    catalog: PathBuf,
    /// Judged queries: [{lang, query, relevant: [slug...]}].
    #[arg(long, default_value = "tests/fixtures/judged_queries.json")]
    judged: PathBuf,
    /// Server to create the scratch FTS database (medledger_bench_fts) on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    admin_url: String,
    /// Catalog size for the latency run.
    #[arg(long, default_value_t = 100_000)]
    datasets: usize,
    /// Length of each open-loop load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Requests per second of the open-loop loads.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    #[arg(long)]
    skip_latency: bool,
    #[arg(long)]
    skip_quality: bool,
    /// Keep the temporary directory (data dirs, generated catalog, server logs).
    #[arg(long)]
    keep: bool,
    /// Only time the search engine in-process on this catalog index directory (no HTTP).
    #[arg(long)]
    probe_index: Option<PathBuf>,
    /// Reuse this data directory of an earlier `--keep` run (its import), instead of importing again.
    #[arg(long)]
    reuse_data: Option<PathBuf>,
    /// Measure medledger only (no PostgreSQL baseline): for quick runs while tuning.
    #[arg(long)]
    medledger_only: bool,
    /// Passes over the mix for --probe-index.
    #[arg(long, default_value_t = 5)]
    probe_passes: usize,
}

#[derive(Deserialize)]
struct Judged {
    lang: String,
    query: String,
    relevant: Vec<String>,
}

const K: usize = 10;

fn recall_at_k(ranked: &[String], relevant: &[String]) -> f64 {
    let found = ranked.iter().take(K).filter(|s| relevant.contains(s)).count();
    found as f64 / relevant.len().max(1) as f64
}

/// Binary relevance; the ideal ranking puts min(K, |relevant|) relevant datasets first.
fn ndcg_at_k(ranked: &[String], relevant: &[String]) -> f64 {
    let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
    // fold from +0.0: an empty f64 sum is -0.0, which would print as "-0.00".
    let dcg = ranked.iter().take(K).enumerate().filter(|(_, s)| relevant.contains(s)).fold(0.0, |a, (i, _)| a + gain(i));
    let ideal = (0..relevant.len().min(K)).fold(0.0, |a, i| a + gain(i));
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

/// Mean recall@K and nDCG@K per language ("en", "ru") and over all queries.
fn scores(judged: &[Judged], rankings: &[Vec<String>]) -> BTreeMap<&'static str, (f64, f64)> {
    let mut out = BTreeMap::new();
    for lang in ["en", "ru", "all"] {
        let picked: Vec<(&Judged, &Vec<String>)> = judged.iter().zip(rankings).filter(|(j, _)| lang == "all" || j.lang == lang).collect();
        let n = picked.len().max(1) as f64;
        let recall = picked.iter().map(|(j, r)| recall_at_k(r, &j.relevant)).sum::<f64>() / n;
        let ndcg = picked.iter().map(|(j, r)| ndcg_at_k(r, &j.relevant)).sum::<f64>() / n;
        out.insert(lang, (recall, ndcg));
    }
    out
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn quality(
    args: &Args,
    work: &Path,
    http: &reqwest::Client,
    pg: &PgPool,
    judged: &[Judged],
    report: &mut String,
) -> anyhow::Result<()> {
    let real = read_catalog(&args.catalog)?;
    eprintln!("quality: {} datasets, {} judged queries", real.len(), judged.len());
    let data = work.join("quality");
    prepare(&args.medledger, &data, &args.catalog, true)?;
    let server = Server::start(&args.medledger, &data, http).await?;
    let mut engines: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    let mut ranked = Vec::new();
    for j in judged {
        ranked.push(server.search(http, &json!({"query_text": j.query, "limit": K})).await?);
    }
    engines.push(("medledger search (POST, ranked)".into(), ranked));
    let mut listed = Vec::new();
    for j in judged {
        listed.push(server.list(http, &[("q", j.query.as_str()), ("limit", "10")]).await?);
    }
    engines.push(("medledger list ?q= (all concepts)".into(), listed));
    drop(server);

    fts::load(pg, &real.iter().map(fts::doc_of).collect::<Vec<_>>()).await?;
    for (name, vector, tsquery) in fts::VARIANTS {
        let sql = fts::sql(vector, tsquery, K);
        let mut ranked = Vec::new();
        for j in judged {
            ranked.push(fts::query(pg, &sql, &j.query, &Filters::default()).await?);
        }
        engines.push((format!("PostgreSQL FTS, {name}"), ranked));
    }

    let _ = writeln!(report, "### Quality: {} judged queries on the real catalog ({} datasets)\n", judged.len(), real.len());
    let n = |l: &str| judged.iter().filter(|j| j.lang == l).count();
    let _ = writeln!(
        report,
        "| engine | en recall@10 | en nDCG@10 | ru recall@10 | ru nDCG@10 | all recall@10 | all nDCG@10 |\n|---|---|---|---|---|---|---|"
    );
    for (name, rankings) in &engines {
        let s = scores(judged, rankings);
        let _ = writeln!(
            report,
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s["en"].0, s["en"].1, s["ru"].0, s["ru"].1, s["all"].0, s["all"].1
        );
    }
    let _ = writeln!(report, "\n({} English, {} Russian queries.)\n", n("en"), n("ru"));
    // Per query, on stderr: where each engine stands (nDCG@10).
    eprintln!("per-query nDCG@10: medledger search | medledger list | best PostgreSQL variant");
    for (i, j) in judged.iter().enumerate() {
        let nd = |e: usize| ndcg_at_k(&engines[e].1[i], &j.relevant);
        let best_pg = (2..engines.len()).map(nd).fold(0.0, f64::max);
        eprintln!("  {:.2} | {:.2} | {:.2}  [{}] {}", nd(0), nd(1), best_pg, j.lang, j.query);
    }
    Ok(())
}

async fn latency(
    args: &Args,
    work: &Path,
    http: &reqwest::Client,
    pg: &PgPool,
    judged: &[Judged],
    report: &mut String,
) -> anyhow::Result<()> {
    let real = read_catalog(&args.catalog)?;
    let big = expand(&real, args.datasets);
    let file = work.join(format!("catalog-{}.jsonl", big.len()));
    write_catalog(&file, &big)?;
    eprintln!("latency: {} datasets in {}", big.len(), file.display());
    let data = args.reuse_data.clone().unwrap_or_else(|| work.join("latency"));
    let prepared = prepare(&args.medledger, &data, &file, args.reuse_data.is_none())?;
    let index_bytes = dir_size(&data.join("catalog-index"));
    let mix = request_mix(&judged.iter().map(|j| j.query.clone()).collect::<Vec<_>>());

    let server = Arc::new(Server::start(&args.medledger, &data, http).await?);
    let rss_idle = server.rss_kb()?;
    let (ready, caught_up) = (server.ready, server.caught_up);
    let medledger = measure("medledger", args.rate, args.seconds, &mix, server::sender(&server, http), true, true).await;
    let rss_after = server.rss_kb()?;
    drop(server);

    let baseline = if args.medledger_only { None } else { Some(postgres_baseline(args, pg, &big, &mix).await?) };

    let _ = writeln!(report, "### At {} datasets\n", big.len());
    let _ = writeln!(report, "| step | result |\n|---|---|");
    let _ = writeln!(
        report,
        "| `medledger catalog import` (embedded SQLite) | {:.1} s ({}) |",
        prepared.import.as_secs_f64(),
        prepared.import_out
    );
    let _ = writeln!(
        report,
        "| `medledger replay --projection catalog_index` (process wall time) | {:.1} s (`{}`) |",
        prepared.index.as_secs_f64(),
        prepared.index_out
    );
    let _ = writeln!(report, "| catalog index on disk | {:.1} MB |", index_bytes as f64 / 1e6);
    let _ = writeln!(
        report,
        "| `medledger serve`: start to ready / then the other read models caught up (users, audit log, datasets, sagas) | {:.2} s / {:.1} s |",
        ready.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "| server RSS: caught up, before load / after load | {:.1} MB / {:.1} MB |",
        rss_idle as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    if let Some(b) = &baseline {
        let _ = writeln!(
            report,
            "| PostgreSQL: load rows / build GIN index + ANALYZE | {:.1} s / {:.1} s |",
            b.load.as_secs_f64(),
            b.index.as_secs_f64()
        );
    }
    report.push('\n');
    let header = "| engine | requests | n | p50 | p90 | p99 | max | errors |\n|---|---|---|---|---|---|---|---|";
    let _ = writeln!(report, "One at a time: each of the {} distinct requests once, after a warm-up pass (ms):\n\n{header}", mix.len());
    report.push_str(&latency_rows("medledger (HTTP)", &medledger.one_at_a_time));
    if let Some(b) = &baseline {
        report.push_str(&latency_rows("PostgreSQL FTS, AND (SQL)", &b.and.one_at_a_time));
        report.push_str(&latency_rows("PostgreSQL FTS, OR searches (SQL)", &b.or.one_at_a_time));
    }
    let _ = writeln!(
        report,
        "\nOpen loop: {} requests/s for {} s, the mix round-robin (ms, from the scheduled send to the full answer):\n\n{header}",
        args.rate, args.seconds
    );
    let pg_and = baseline.as_ref().map(|b| &b.and);
    for (name, m) in [("medledger (HTTP)", Some(&medledger)), ("PostgreSQL FTS, AND (SQL)", pg_and)] {
        if let Some(samples) = m.and_then(|m| m.open_loop.as_ref()) {
            report.push_str(&latency_rows(name, samples));
        }
    }
    let _ = writeln!(
        report,
        "\nLoad average (1/5/15 min) before each open-loop run: medledger {}; PostgreSQL {}.\n",
        medledger.load_before,
        pg_and.map_or("not measured", |m| m.load_before.as_str())
    );
    Ok(())
}

/// The same mix against PostgreSQL full-text search over the same documents.
struct Baseline {
    load: Duration,
    index: Duration,
    and: load::Measured,
    or: load::Measured,
}

async fn postgres_baseline(args: &Args, pg: &PgPool, big: &[Map<String, Value>], mix: &[load::Request]) -> anyhow::Result<Baseline> {
    eprintln!("  PostgreSQL: load {} docs, GIN index", big.len());
    let started = Instant::now();
    fts::load(pg, &big.iter().map(fts::doc_of).collect::<Vec<_>>()).await?;
    let pg_load = started.elapsed();
    let started = Instant::now();
    // Apart: VACUUM refuses to run in a multi-statement string (an implicit transaction).
    sqlx::raw_sql("CREATE INDEX docs_both ON docs USING gin (doc_both)").execute(pg).await?;
    sqlx::raw_sql("VACUUM ANALYZE docs").execute(pg).await?;
    let pg_index = started.elapsed();
    // AND everywhere: PostgreSQL's better-ranking formulation on the judged queries.
    let pg_and = measure("PostgreSQL, AND", args.rate, args.seconds, mix, fts::sender(pg, fts::BOTH_AND, fts::BOTH_AND), true, true).await;
    // Searches as OR (any word, like medledger's ranked search): every match is ranked,
    // far too slow for the open-loop rate; one at a time only.
    eprintln!("  PostgreSQL, OR searches: one at a time");
    let pg_or = measure("PostgreSQL, OR", args.rate, args.seconds, mix, fts::sender(pg, fts::BOTH_OR, fts::BOTH_AND), false, false).await;
    Ok(Baseline { load: pg_load, index: pg_index, and: pg_and, or: pg_or })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let judged_file = std::fs::read_to_string(&args.judged).with_context(|| format!("read {}", args.judged.display()))?;
    let judged: Vec<Judged> = serde_json::from_str(&judged_file).context("judged queries")?;
    if let Some(dir) = &args.probe_index {
        let mix = request_mix(&judged.iter().map(|j| j.query.clone()).collect::<Vec<_>>());
        return probe::run(dir, &mix, args.probe_passes);
    }
    anyhow::ensure!(args.medledger.exists(), "{} not found: cargo build --release -p medledger-api", args.medledger.display());
    anyhow::ensure!(args.rate > 0 && args.seconds > 0, "--rate and --seconds must be positive");
    let work = std::env::temp_dir().join(format!("medledger-bench-search-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let pg = fts::database(&args.admin_url).await?;

    let mut report = String::from("## Catalog search: results\n\n");
    let result = async {
        if !args.skip_quality {
            quality(&args, &work, &http, &pg, &judged, &mut report).await?;
        }
        if !args.skip_latency {
            latency(&args, &work, &http, &pg, &judged, &mut report).await?;
        }
        anyhow::Ok(())
    }
    .await;
    pg.close().await;
    if args.keep {
        eprintln!("kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    // What was measured before a failure is still worth seeing.
    print!("{report}");
    result?;
    Ok(())
}
