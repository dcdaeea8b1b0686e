//! Event store benchmarks behind BENCHMARKS.md: append throughput (against a pgbench
//! INSERT baseline at the same concurrency), append latency and projection lag at a
//! fixed command rate, and replay speed.
//!
//! cargo run --release -p medledger-bench --bin bench-append -- --help

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use clap::Parser;
use medledger_application::codec::{DecodedEvent, EventCodec};
use medledger_application::ports::{EventStore, ExpectedVersion, NewEvent, PersonalDataVault, StoreError, StreamWrite};
use medledger_infrastructure::store::{Backend, Databases};
use medledger_projections::{Projection, ProjectionError, Runner};
use sqlx::AnyConnection;
use sqlx::Connection as _;

#[derive(Parser)]
struct Args {
    /// Server to create the benchmark databases on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    admin_url: String,
    #[arg(long, default_value_t = 16)]
    writers: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Commands per second for the latency and lag runs.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Events to replay (appended first, in large batches).
    #[arg(long, default_value_t = 500_000)]
    replay_events: usize,
    /// Also run the SQLite store.
    #[arg(long)]
    sqlite: bool,
}

/// Benchmark events carry no personal data: the vault is never asked.
struct NoVault;

#[async_trait]
impl PersonalDataVault for NoVault {
    async fn seal(&self, _: &str, p: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(p.to_vec())
    }
    async fn open(&self, _: &str, s: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(Some(s.to_vec()))
    }
    async fn erase(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The trivial projection: counts events per type in memory.
struct CountByType(Mutex<BTreeMap<String, u64>>);

#[async_trait]
impl Projection for CountByType {
    fn name(&self) -> &'static str {
        "bench_count"
    }
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    fn handles(&self) -> medledger_domain::EventTypes {
        medledger_domain::EventTypes::every()
    }
    async fn apply(&self, _: &mut AnyConnection, e: &DecodedEvent) -> Result<(), ProjectionError> {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(e.recorded.event_type.clone()).or_default() += 1;
        }
        Ok(())
    }
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "ScanViewed".into(),
        schema_version: 1,
        payload: format!(r#"{{"scan_id":{n},"viewer":"bench","note":"a typical small event payload"}}"#),
        metadata: r#"{"actor_user_id":1,"request_id":"bench"}"#.into(),
    }
}

async fn fresh_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await.context("connect to PostgreSQL")?;
    // Separate statements: CREATE DATABASE refuses to run in a multi-statement string.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    let (prefix, _) = admin_url.rsplit_once('/').context("URL without database")?;
    Ok(format!("{prefix}/{name}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// N writers, each appending one-event commands to its own stream with an exact
/// expected version, as fast as they can.
async fn throughput(store: Arc<dyn EventStore>, writers: usize, seconds: u64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("bench-{}-{w}", uuid::Uuid::new_v4().simple());
            let mut version = 0i64;
            while Instant::now() < deadline {
                let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
                store.append(vec![StreamWrite { stream_id: stream.clone(), expected, events: vec![event(version as u64)] }]).await?;
                version += 1;
            }
            Ok::<i64, StoreError>(version)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Open-loop load at `rate` commands/s: append latency, and the lag until a
/// projection on the runner has applied each event.
async fn latency_and_lag(
    store: Arc<dyn EventStore>,
    read: sqlx::AnyPool,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let codec = EventCodec::new(Arc::new(NoVault));
    let runner =
        Runner::new(store.clone(), codec, read.clone(), read).projection(Arc::new(CountByType(Mutex::new(BTreeMap::new())))).spawn();
    let progress = runner.progress();
    // Let the runner catch up with what the throughput run left behind.
    let head = store.head().await?.position;
    progress.wait_for(head, Duration::from_secs(300)).await;

    let acked: Arc<Mutex<BTreeMap<i64, Instant>>> = Arc::default();
    let lags: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = {
        let (acked, lags, stop, progress) = (acked.clone(), lags.clone(), stop.clone(), progress.clone());
        tokio::spawn(async move {
            let mut seen = head;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reached = progress.positions().iter().map(|(_, p)| *p).min().unwrap_or(0);
                if reached > seen {
                    let now = Instant::now();
                    if let (Ok(mut a), Ok(mut l)) = (acked.lock(), lags.lock()) {
                        let later = a.split_off(&(reached + 1));
                        for (_, t) in std::mem::replace(&mut *a, later) {
                            l.push(now.saturating_duration_since(t));
                        }
                    }
                    seen = reached;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let total = rate * seconds;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        tick.tick().await;
        let (store, latencies, acked) = (store.clone(), latencies.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let stream = format!("lat-{n}");
            let r =
                store.append(vec![StreamWrite { stream_id: stream, expected: ExpectedVersion::NoStream, events: vec![event(n)] }]).await;
            let done = Instant::now();
            if let Ok(a) = r {
                if let Ok(mut l) = latencies.lock() {
                    l.push(done - sent);
                }
                if let Ok(mut m) = acked.lock() {
                    m.insert(a.last_position, done);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let end = store.head().await?.position;
    progress.wait_for(end, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    monitor.await?;
    runner.stop().await;
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let mut lag = lags.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort();
    lag.sort();
    Ok((lat, lag))
}

/// Appends `n` events in large batches, then replays them through the runner's
/// page loop into the trivial projection.
async fn replay(store: Arc<dyn EventStore>, read: &sqlx::AnyPool, n: usize) -> anyhow::Result<(usize, f64)> {
    let batch = 1_000;
    let mut written = 0;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut i = w;
                while i * batch < n {
                    let events = (0..batch).map(|k| event((i * batch + k) as u64)).collect();
                    store.append(vec![StreamWrite { stream_id: format!("replay-{i}"), expected: ExpectedVersion::Any, events }]).await?;
                    i += 4;
                }
                Ok::<(), StoreError>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    written += n;
    let codec = EventCodec::new(Arc::new(NoVault));
    let projection = Arc::new(CountByType(Mutex::new(BTreeMap::new())));
    let started = Instant::now();
    let reached = medledger_projections::rebuild(projection.clone(), &*store, &codec, read, |_, _| {}).await?;
    let secs = started.elapsed().as_secs_f64();
    let counted: u64 = projection.0.lock().map(|m| m.values().sum()).unwrap_or(0);
    if counted as i64 != reached {
        bail!("replay applied {counted} events but reached position {reached}");
    }
    Ok((written, counted as f64 / secs))
}

/// pgbench: single-row INSERTs into an equivalent table at the same concurrency.
fn pgbench(url: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join("medledger-pgbench-insert.sql");
    std::fs::write(
        &script,
        "INSERT INTO raw_events (stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at_us, prev_hash, hash) \
         VALUES ('s-' || :client_id, 1, gen_random_uuid(), 'ScanViewed', 1, \
         '{\"scan_id\":1,\"viewer\":\"bench\",\"note\":\"a typical small event payload\"}', '{\"actor_user_id\":1}', \
         (extract(epoch from clock_timestamp()) * 1000000)::bigint, '\\x00', '\\x00');\n",
    )?;
    let out = Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string(), "-f"])
        .arg(&script)
        .arg(url)
        .output()
        .context("run pgbench (apt-get install postgresql-contrib / postgresql-client)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("pgbench output: {text}{}", String::from_utf8_lossy(&out.stderr)))?;
    Ok(tps)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("# medledger event store benchmark ({} writers, {} s runs, {} cmd/s)", args.writers, args.seconds, args.rate);

    let raw_url = fresh_database(&args.admin_url, "medledger_bench_raw").await?;
    let mut raw = sqlx::PgConnection::connect(&raw_url).await?;
    sqlx::raw_sql(
        "CREATE TABLE raw_events (position BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, version BIGINT NOT NULL, \
         event_id UUID NOT NULL UNIQUE, event_type TEXT NOT NULL, schema_version INT NOT NULL, payload TEXT NOT NULL, \
         metadata TEXT NOT NULL, recorded_at_us BIGINT NOT NULL, prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL)",
    )
    .execute(&mut raw)
    .await?;
    let baseline = pgbench(&raw_url, args.writers, args.seconds)?;

    let url = fresh_database(&args.admin_url, "medledger_bench").await?;
    let dir = std::env::temp_dir().join("medledger-bench");
    let dbs = Databases::open(&Backend::select(Some(&url), &dir)?).await?;
    let rate = throughput(dbs.store.clone(), args.writers, args.seconds).await?;
    println!("\n## PostgreSQL");
    println!("append throughput, {} writers: {rate:.0} events/s", args.writers);
    println!("pgbench raw INSERT baseline, {} clients: {baseline:.0} rows/s", args.writers);
    println!("ratio: {:.0}% of the raw INSERT baseline", 100.0 * rate / baseline);

    let (lat, lag) = latency_and_lag(dbs.store.clone(), dbs.read.clone(), args.rate, args.seconds).await?;
    println!(
        "append latency at {} cmd/s: p50 {} p99 {} max {} ({} commands)",
        args.rate,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&lat, 1.0)),
        lat.len()
    );
    println!(
        "projection lag at {} cmd/s: p50 {} p99 {} max {} ({} events)",
        args.rate,
        ms(percentile(&lag, 0.5)),
        ms(percentile(&lag, 0.99)),
        ms(percentile(&lag, 1.0)),
        lag.len()
    );
    let (n, per_sec) = replay(dbs.store.clone(), &dbs.read, args.replay_events).await?;
    println!(
        "replay into a trivial projection: {per_sec:.0} events/s (history of {} events, {n} appended for it)",
        dbs.store.head().await?.position
    );

    if args.sqlite {
        let dir = std::env::temp_dir().join(format!("medledger-bench-sqlite-{}", uuid::Uuid::new_v4().simple()));
        let dbs = Databases::open(&Backend::select(None, &dir)?).await?;
        let rate = throughput(dbs.store.clone(), args.writers, args.seconds).await?;
        println!("\n## SQLite");
        println!("append throughput, {} writers: {rate:.0} events/s", args.writers);
        let (lat, lag) = latency_and_lag(dbs.store.clone(), dbs.read.clone(), args.rate, args.seconds).await?;
        println!("append latency at {} cmd/s: p50 {} p99 {}", args.rate, ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)));
        println!("projection lag at {} cmd/s: p50 {} p99 {}", args.rate, ms(percentile(&lag, 0.5)), ms(percentile(&lag, 0.99)));
        let (_, per_sec) = replay(dbs.store.clone(), &dbs.read, args.replay_events).await?;
        println!("replay into a trivial projection: {per_sec:.0} events/s");
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}
