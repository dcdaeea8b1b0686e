//! Catalog search benchmarks behind BENCHMARKS.md (issue 3):
//!
//! 1. ranking quality on the real catalog (judged queries, recall@10 and nDCG@10) of the
//!    release server's search against PostgreSQL full-text search over the same text;
//! 2. at 100,000 datasets (the real catalog expanded): import time, catalog index rebuild
//!    time, search latency under an open-loop load, the same load on PostgreSQL FTS with
//!    a GIN index, and the server's RSS.
//!
//! cargo build --release -p medledger-bench -p medledger-api && ./target/release/bench-search --help

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{Rng as _, SeedableRng as _};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::{Connection as _, PgPool};

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
}

#[derive(Deserialize)]
struct Judged {
    lang: String,
    query: String,
    relevant: Vec<String>,
}

const K: usize = 10;
const ADMIN_EMAIL: &str = "bench@example.org";
const ADMIN_PASSWORD: &str = "bench-search-password";
const FTS_DB: &str = "medledger_bench_fts";

// ---------------------------------------------------------------- quality metrics

fn recall_at_k(ranked: &[String], relevant: &[String]) -> f64 {
    let found = ranked.iter().take(K).filter(|s| relevant.contains(s)).count();
    found as f64 / relevant.len().max(1) as f64
}

/// Binary relevance; the ideal ranking puts min(K, |relevant|) relevant datasets first.
fn ndcg_at_k(ranked: &[String], relevant: &[String]) -> f64 {
    let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = ranked.iter().take(K).enumerate().filter(|(_, s)| relevant.contains(s)).map(|(i, _)| gain(i)).sum();
    let ideal: f64 = (0..relevant.len().min(K)).map(gain).sum();
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

// ---------------------------------------------------------------- the server

/// A `medledger` command on one data directory, embedded SQLite.
fn medledger(bin: &Path, data_dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("MEDLEDGER_DATA_DIR", data_dir).env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    c
}

/// Runs a CLI command to completion: its wall time and stdout.
fn run_cli(bin: &Path, data_dir: &Path, args: &[&str]) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let out = medledger(bin, data_dir).args(args).stdin(Stdio::null()).output().with_context(|| format!("run {}", bin.display()))?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("medledger {} failed ({}): {stdout}{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok((elapsed, stdout))
}

/// Import, then every read model rebuilt by the CLI (so the server starts caught up).
struct Prepared {
    import: Duration,
    import_out: String,
    index: Duration,
    index_out: String,
}

fn prepare(bin: &Path, data_dir: &Path, file: &Path) -> anyhow::Result<Prepared> {
    let file = file.to_str().context("catalog path is not UTF-8")?;
    eprintln!("  import {file}");
    let (import, import_out) = run_cli(bin, data_dir, &["catalog", "import", file])?;
    eprintln!("  replay catalog_index");
    let (index, index_out) = run_cli(bin, data_dir, &["replay", "--projection", "catalog_index"])?;
    eprintln!("  replay datasets");
    run_cli(bin, data_dir, &["replay", "--projection", "datasets"])?;
    Ok(Prepared { import, import_out: import_out.trim().to_string(), index, index_out: last_line(&index_out, "catalog_index:") })
}

fn last_line(text: &str, prefix: &str) -> String {
    text.lines().filter(|l| l.trim_start().starts_with(prefix)).last().unwrap_or("").trim().to_string()
}

/// A running `medledger serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(bin: &Path, data_dir: &Path, http: &reqwest::Client) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(data_dir.join("server.log")).context("create server.log")?;
        let child = medledger(bin, data_dir)
            .args(["serve", "--port", &port.to_string()])
            .env("MEDLEDGER_BIND", "127.0.0.1")
            .env("MEDLEDGER_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("MEDLEDGER_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("MEDLEDGER_FAST_PASSWORD_HASH", "1")
            .env("MEDLEDGER_API_RATE_LIMIT", "0")
            .env("MEDLEDGER_AUTH_RATE_LIMIT", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut server = Server { child, base: format!("http://127.0.0.1:{port}"), token: String::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http.get(format!("{}/readyz", server.base)).send().await.is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("the server exited ({status}); see {}", data_dir.join("server.log").display());
            }
            if Instant::now() > deadline {
                bail!("the server was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let login: Value = http
            .post(format!("{}/api/v1/auth/login/", server.base))
            .json(&json!({"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await?
            .error_for_status()
            .context("login")?
            .json()
            .await?;
        server.token = login["access_token"].as_str().context("login answered no access_token")?.to_string();
        server.caught_up(http).await?;
        Ok(server)
    }

    /// Waits until every read model has applied the whole history (the lag gauges of
    /// /metrics all read 0).
    async fn caught_up(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let text = http.get(format!("{}/metrics", self.base)).send().await?.text().await?;
            let lags: Vec<f64> = text
                .lines()
                .filter(|l| l.starts_with("medledger_projection_lag_events"))
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect();
            if !lags.is_empty() && lags.iter().all(|l| *l == 0.0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("read models still behind after 300 s: {lags:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn rss_kb(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).context("read /proc/PID/status")?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS value")
    }

    async fn search(&self, http: &reqwest::Client, body: &Value) -> anyhow::Result<Vec<String>> {
        let hits: Vec<Value> = http
            .post(format!("{}/api/v1/search/datasets/", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(hits.iter().filter_map(|h| h["dataset"]["slug"].as_str().map(str::to_string)).collect())
    }

    async fn list(&self, http: &reqwest::Client, query: &[(&str, &str)]) -> anyhow::Result<Vec<String>> {
        let rows: Vec<Value> = http
            .get(format!("{}/api/v1/datasets/", self.base))
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(rows.iter().filter_map(|r| r["slug"].as_str().map(str::to_string)).collect())
    }
}

// ---------------------------------------------------------------- PostgreSQL FTS

/// The text medledger indexes for a dataset, in PostgreSQL's weight classes: title (A);
/// tags, task types and slug words (B); description (D).
#[derive(Clone)]
struct Doc {
    slug: String,
    title: String,
    description: String,
    keywords: String,
    modality: String,
    area: String,
    task_types: String,
    tags: String,
    year: Option<i32>,
    num_images: Option<i64>,
}

fn doc_of(d: &Map<String, Value>) -> Doc {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |k: &str| -> Vec<String> {
        d.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let (tags, tasks) = (list("tags"), list("task_types"));
    Doc {
        slug: s("slug"),
        title: s("title"),
        description: s("description"),
        keywords: format!("{}\n{}\n{}", tags.join(", "), tasks.join(" "), s("slug").replace('-', " ")),
        modality: list("modality").join(","),
        area: s("area"),
        task_types: tasks.join(","),
        tags: tags.join(","),
        year: d.get("year").and_then(Value::as_i64).map(|y| y as i32),
        num_images: d.get("num_images").and_then(Value::as_i64),
    }
}

async fn fts_database(admin_url: &str) -> anyhow::Result<PgPool> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await.context("connect to PostgreSQL")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {FTS_DB} WITH (FORCE)"))).execute(&mut admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {FTS_DB}"))).execute(&mut admin).await?;
    let (prefix, _) = admin_url.rsplit_once('/').context("URL without database")?;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(&format!("{prefix}/{FTS_DB}")).await?;
    let vector = |cfg: &str| {
        format!(
            "setweight(to_tsvector('{cfg}', title), 'A') || setweight(to_tsvector('{cfg}', keywords), 'B') \
             || setweight(to_tsvector('{cfg}', description), 'D')"
        )
    };
    let ddl = format!(
        "CREATE TABLE docs (
            id serial PRIMARY KEY, slug text NOT NULL, title text NOT NULL, description text NOT NULL,
            keywords text NOT NULL, modality text[] NOT NULL, area text NOT NULL, task_types text[] NOT NULL,
            tags text[] NOT NULL, year int, num_images bigint,
            doc_en tsvector GENERATED ALWAYS AS ({en}) STORED,
            doc_ru tsvector GENERATED ALWAYS AS ({ru}) STORED,
            doc_both tsvector GENERATED ALWAYS AS ({en} || {ru}) STORED)",
        en = vector("english"),
        ru = vector("russian"),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&pool).await?;
    Ok(pool)
}

async fn fts_load(pool: &PgPool, docs: &[Doc]) -> anyhow::Result<()> {
    sqlx::raw_sql("TRUNCATE docs RESTART IDENTITY; DROP INDEX IF EXISTS docs_both").execute(pool).await?;
    for chunk in docs.chunks(5_000) {
        let col = |f: fn(&Doc) -> &String| chunk.iter().map(|d| f(d).clone()).collect::<Vec<String>>();
        sqlx::query(
            "INSERT INTO docs (slug, title, description, keywords, modality, area, task_types, tags, year, num_images)
             SELECT s, t, d, k, coalesce(string_to_array(NULLIF(m, ''), ','), '{}'), a,
                    coalesce(string_to_array(NULLIF(tt, ''), ','), '{}'), coalesce(string_to_array(NULLIF(tg, ''), ','), '{}'), y, n
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::int[], $10::bigint[]) AS u(s, t, d, k, m, a, tt, tg, y, n)",
        )
        .bind(col(|d| &d.slug))
        .bind(col(|d| &d.title))
        .bind(col(|d| &d.description))
        .bind(col(|d| &d.keywords))
        .bind(col(|d| &d.modality))
        .bind(col(|d| &d.area))
        .bind(col(|d| &d.task_types))
        .bind(col(|d| &d.tags))
        .bind(chunk.iter().map(|d| d.year).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.num_images).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// The PostgreSQL formulations compared. `AND`: `websearch_to_tsquery` (every word must
/// match); `OR`: the same lexemes with `&` turned into `|` (any word may match).
/// "both": document vector english || russian, query english || russian.
const FTS_VARIANTS: [(&str, &str, &str); 6] = [
    ("english, AND", "doc_en", "websearch_to_tsquery('english', $1)"),
    ("english, OR", "doc_en", "replace(websearch_to_tsquery('english', $1)::text, '&', '|')::tsquery"),
    ("russian, AND", "doc_ru", "websearch_to_tsquery('russian', $1)"),
    ("russian, OR", "doc_ru", "replace(websearch_to_tsquery('russian', $1)::text, '&', '|')::tsquery"),
    ("both, AND", "doc_both", BOTH_AND),
    ("both, OR", "doc_both", BOTH_OR),
];
const BOTH_AND: &str = "(websearch_to_tsquery('english', $1) || websearch_to_tsquery('russian', $1))";
const BOTH_OR: &str = "replace((websearch_to_tsquery('english', $1) || websearch_to_tsquery('russian', $1))::text, '&', '|')::tsquery";

/// Top `limit` by `ts_rank_cd`, with optional hard filters ($2 modality, $3 area, $4 task types).
fn fts_sql(vector: &str, tsquery: &str, limit: usize) -> String {
    format!(
        "SELECT d.id, d.slug, d.title, d.description, d.modality, d.area, d.task_types, d.tags, d.year, d.num_images,
                ts_rank_cd(d.{vector}, q.query) AS rank
         FROM docs d, (SELECT {tsquery} AS query) q
         WHERE d.{vector} @@ q.query
           AND ($2::text[] IS NULL OR d.modality && $2) AND ($3::text IS NULL OR d.area = $3)
           AND ($4::text[] IS NULL OR d.task_types && $4)
         ORDER BY rank DESC, d.id LIMIT {limit}"
    )
}

#[derive(Clone, Default)]
struct Filters {
    modality: Vec<String>,
    area: Option<String>,
    task_types: Vec<String>,
}

impl Filters {
    fn json(&self) -> Value {
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

async fn fts_query(pool: &PgPool, sql: &str, text: &str, f: &Filters) -> anyhow::Result<Vec<String>> {
    let none_if_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let rows: Vec<sqlx::postgres::PgRow> = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(text)
        .bind(none_if_empty(&f.modality))
        .bind(f.area.clone())
        .bind(none_if_empty(&f.task_types))
        .fetch_all(pool)
        .await?;
    use sqlx::Row as _;
    rows.iter().map(|r| r.try_get::<String, _>("slug").map_err(Into::into)).collect()
}

// ---------------------------------------------------------------- the 100k catalog

/// The real catalog expanded to `total` datasets: the originals, then rounds of variants
/// ("-v{n}" slugs, a variant word in the title, the description's sentences shuffled
/// and mixed with a sentence of another dataset of the same area, a subset of the tags,
/// year and sizes jittered; modality, area and task types kept).
fn expand(real: &[Map<String, Value>], total: usize) -> Vec<Map<String, Value>> {
    const WORDS: [&str; 12] = [
        "Extension", "Cohort", "Release", "Subset", "Multicentre", "External Validation", "Follow-up", "Benchmark",
        "Challenge", "Archive", "Replication", "Pilot",
    ];
    let mut rng = StdRng::seed_from_u64(3);
    let mut by_area: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, d) in real.iter().enumerate() {
        by_area.entry(d.get("area").and_then(Value::as_str).unwrap_or("")).or_default().push(i);
    }
    let sentences = |d: &Map<String, Value>| -> Vec<String> {
        let text = d.get("description").and_then(Value::as_str).unwrap_or("");
        text.split(". ").map(|s| s.trim().trim_end_matches('.').to_string()).filter(|s| !s.is_empty()).collect()
    };
    let mut out: Vec<Map<String, Value>> = real.iter().take(total).cloned().collect();
    let mut round = 1;
    while out.len() < total {
        for (i, d) in real.iter().enumerate() {
            if out.len() == total {
                break;
            }
            let mut v = d.clone();
            let area = d.get("area").and_then(Value::as_str).unwrap_or("");
            let partner = &real[*by_area[area].choose(&mut rng).unwrap_or(&i)];
            let slug = d.get("slug").and_then(Value::as_str).unwrap_or("dataset");
            let title = d.get("title").and_then(Value::as_str).unwrap_or("");
            v.insert("slug".into(), json!(format!("{slug}-v{round}")));
            v.insert("title".into(), json!(format!("{title} ({} {round})", WORDS[rng.random_range(0..WORDS.len())])));
            let mut text = sentences(d);
            text.shuffle(&mut rng);
            if let Some(extra) = sentences(partner).choose(&mut rng).filter(|_| rng.random_bool(0.5)) {
                text.push(extra.clone());
            }
            if !text.is_empty() {
                v.insert("description".into(), json!(format!("{}.", text.join(". "))));
            }
            let mut tags: Vec<Value> = d.get("tags").and_then(Value::as_array).cloned().unwrap_or_default();
            tags.retain(|_| rng.random_bool(0.75));
            if let Some(t) = partner.get("tags").and_then(Value::as_array).and_then(|t| t.choose(&mut rng)) {
                if rng.random_bool(0.3) && !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            v.insert("tags".into(), Value::Array(tags));
            if let Some(y) = d.get("year").and_then(Value::as_i64) {
                v.insert("year".into(), json!((y + rng.random_range(-3..=3)).min(2026)));
            }
            for k in ["num_images", "size_mb"] {
                if let Some(n) = d.get(k).and_then(Value::as_i64) {
                    v.insert(k.into(), json!(((n as f64) * rng.random_range(0.5..1.5)).round().max(1.0) as i64));
                }
            }
            out.push(v);
        }
        round += 1;
    }
    out
}

// ---------------------------------------------------------------- open-loop load

/// One request of the latency mix.
#[derive(Clone)]
enum Request {
    /// POST /api/v1/search/datasets/ (ranked: any concept may match), 20 results.
    Search { text: String, filters: Filters },
    /// GET /api/v1/datasets/?q=...&modality=... (every concept must match), 20 results.
    List { text: String, modality: Option<String> },
}

/// Per judged query: three searches with different filters and one filtered list.
fn request_mix(judged: &[Judged]) -> Vec<Request> {
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
    for (i, j) in judged.iter().enumerate() {
        for k in [0, 2, 4] {
            mix.push(Request::Search { text: j.query.clone(), filters: filters[(i + k) % filters.len()].clone() });
        }
        mix.push(Request::List { text: j.query.clone(), modality: modalities[i % modalities.len()].map(str::to_string) });
    }
    mix.shuffle(&mut StdRng::seed_from_u64(7));
    mix
}

struct Sample {
    list: bool,
    latency: Duration,
    error: Option<String>,
}

/// Sends `mix` round-robin at a fixed rate, each request on its own task whatever the
/// earlier ones do; latency runs from the scheduled send time to the full answer.
async fn open_loop<F, Fut>(rate: u64, seconds: u64, mix: &[Request], send: F) -> Vec<Sample>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
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
fn latency_rows(engine: &str, samples: &[Sample]) -> String {
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

// ---------------------------------------------------------------- the runs

fn read_catalog(path: &Path) -> anyhow::Result<Vec<Map<String, Value>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), n + 1)))
        .collect()
}

fn write_catalog(path: &Path, datasets: &[Map<String, Value>]) -> anyhow::Result<()> {
    let mut text = String::new();
    for d in datasets {
        text.push_str(&serde_json::to_string(d)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
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

async fn quality(args: &Args, work: &Path, http: &reqwest::Client, pg: &PgPool, judged: &[Judged], report: &mut String) -> anyhow::Result<()> {
    let real = read_catalog(&args.catalog)?;
    eprintln!("quality: {} datasets, {} judged queries", real.len(), judged.len());
    let data = work.join("quality");
    prepare(&args.medledger, &data, &args.catalog)?;
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

    fts_load(pg, &real.iter().map(doc_of).collect::<Vec<_>>()).await?;
    for (name, vector, tsquery) in FTS_VARIANTS {
        let sql = fts_sql(vector, tsquery, K);
        let mut ranked = Vec::new();
        for j in judged {
            ranked.push(fts_query(pg, &sql, &j.query, &Filters::default()).await?);
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

async fn latency(args: &Args, work: &Path, http: &reqwest::Client, pg: &PgPool, judged: &[Judged], report: &mut String) -> anyhow::Result<()> {
    let real = read_catalog(&args.catalog)?;
    let big = expand(&real, args.datasets);
    let file = work.join(format!("catalog-{}.jsonl", big.len()));
    write_catalog(&file, &big)?;
    eprintln!("latency: {} datasets in {}", big.len(), file.display());
    let data = work.join("latency");
    let prepared = prepare(&args.medledger, &data, &file)?;
    let index_bytes = dir_size(&data.join("catalog-index"));
    let mix = request_mix(judged);
    let load = format!("{} requests/s for {} s, open loop", args.rate, args.seconds);
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ");

    let server = Arc::new(Server::start(&args.medledger, &data, http).await?);
    let rss_idle = server.rss_kb()?;
    let send = {
        let (server, http) = (server.clone(), http.clone());
        move |r: Request| {
            let (server, http) = (server.clone(), http.clone());
            async move {
                let response = match r {
                    Request::Search { text, filters } => {
                        http.post(format!("{}/api/v1/search/datasets/", server.base))
                            .bearer_auth(&server.token)
                            .json(&json!({"query_text": text, "filters": filters.json()}))
                            .send()
                            .await?
                    }
                    Request::List { text, modality } => {
                        let mut q = vec![("q", text), ("limit", "20".to_string())];
                        q.extend(modality.map(|m| ("modality", m)));
                        http.get(format!("{}/api/v1/datasets/", server.base)).bearer_auth(&server.token).query(&q).send().await?
                    }
                };
                let status = response.status();
                let body = response.bytes().await?;
                anyhow::ensure!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
                Ok(())
            }
        }
    };
    // Warm-up: every request of the mix once, one at a time (not measured).
    for r in &mix {
        let _ = send(r.clone()).await;
    }
    let load_before = loadavg();
    eprintln!("  medledger: {load} (load average before: {load_before})");
    let medledger_samples = open_loop(args.rate, args.seconds, &mix, send).await;
    let rss_after = server.rss_kb()?;
    drop(server);

    eprintln!("  PostgreSQL: load {} docs, GIN index", big.len());
    let started = Instant::now();
    fts_load(pg, &big.iter().map(doc_of).collect::<Vec<_>>()).await?;
    let pg_load = started.elapsed();
    let started = Instant::now();
    sqlx::raw_sql("CREATE INDEX docs_both ON docs USING gin (doc_both); VACUUM ANALYZE docs").execute(pg).await?;
    let pg_index = started.elapsed();
    let sql_search = Arc::new(fts_sql("doc_both", BOTH_OR, 20));
    let sql_list = Arc::new(fts_sql("doc_both", BOTH_AND, 20));
    let send = {
        let pg = pg.clone();
        move |r: Request| {
            let (pg, sql_search, sql_list) = (pg.clone(), sql_search.clone(), sql_list.clone());
            async move {
                match r {
                    Request::Search { text, filters } => fts_query(&pg, &sql_search, &text, &filters).await?,
                    Request::List { text, modality } => {
                        let filters = Filters { modality: modality.into_iter().collect(), ..Default::default() };
                        fts_query(&pg, &sql_list, &text, &filters).await?
                    }
                };
                Ok(())
            }
        }
    };
    for r in &mix {
        let _ = send(r.clone()).await;
    }
    let pg_before = loadavg();
    eprintln!("  PostgreSQL: {load} (load average before: {pg_before})");
    let pg_samples = open_loop(args.rate, args.seconds, &mix, send).await;

    let _ = writeln!(report, "### At {} datasets\n", big.len());
    let _ = writeln!(report, "| step | result |\n|---|---|");
    let _ = writeln!(report, "| `medledger catalog import` (embedded SQLite) | {:.1} s ({}) |", prepared.import.as_secs_f64(), prepared.import_out);
    let _ = writeln!(
        report,
        "| `medledger replay --projection catalog_index` (process wall time) | {:.1} s (`{}`) |",
        prepared.index.as_secs_f64(),
        prepared.index_out
    );
    let _ = writeln!(report, "| catalog index on disk | {:.1} MB |", index_bytes as f64 / 1e6);
    let _ = writeln!(report, "| server RSS: caught up, before load / after load | {:.1} MB / {:.1} MB |", rss_idle as f64 / 1024.0, rss_after as f64 / 1024.0);
    let _ = writeln!(report, "| PostgreSQL: load rows / build GIN index + ANALYZE | {:.1} s / {:.1} s |\n", pg_load.as_secs_f64(), pg_index.as_secs_f64());
    let _ = writeln!(report, "Latency, {load}, {} distinct requests round-robin (ms, from scheduled send to full answer):\n", mix.len());
    let _ = writeln!(report, "| engine | requests | n | p50 | p90 | p99 | max | errors |\n|---|---|---|---|---|---|---|---|");
    report.push_str(&latency_rows("medledger (HTTP)", &medledger_samples));
    report.push_str(&latency_rows("PostgreSQL FTS (SQL)", &pg_samples));
    let _ = writeln!(report, "\nLoad average (1/5/15 min) before each run: medledger {load_before}; PostgreSQL {pg_before}.\n");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.medledger.exists(), "{} not found: cargo build --release -p medledger-api", args.medledger.display());
    anyhow::ensure!(args.rate > 0 && args.seconds > 0, "--rate and --seconds must be positive");
    let judged: Vec<Judged> = serde_json::from_str(&std::fs::read_to_string(&args.judged).with_context(|| format!("read {}", args.judged.display()))?)
        .context("judged queries")?;
    let work = std::env::temp_dir().join(format!("medledger-bench-search-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let pg = fts_database(&args.admin_url).await?;

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
    result?;
    print!("{report}");
    Ok(())
}
