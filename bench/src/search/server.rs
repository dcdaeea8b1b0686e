//! The release server under test: its CLI (import, replay) and `medledger serve` on a
//! data directory of its own (embedded SQLite).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::load::{Request, Sent};

const ADMIN_EMAIL: &str = "bench@example.org";
const ADMIN_PASSWORD: &str = "bench-search-password";

/// A `medledger` command on one data directory, embedded SQLite. Its log level is
/// `warn` unless `BENCH_SERVER_LOG` says otherwise (say `sqlx::query=debug`, to count
/// statements in the kept `server.log`).
fn medledger(bin: &Path, data_dir: &Path) -> Command {
    let mut c = Command::new(bin);
    let level = std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_string());
    c.env("MEDLEDGER_DATA_DIR", data_dir).env_remove("DATABASE_URL").env("RUST_LOG", level);
    c
}

/// Runs a CLI command to completion: its wall time and stdout.
pub fn run_cli(bin: &Path, data_dir: &Path, args: &[&str]) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let out = medledger(bin, data_dir).args(args).stdin(Stdio::null()).output().with_context(|| format!("run {}", bin.display()))?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("medledger {} failed ({}): {stdout}{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok((elapsed, stdout))
}

/// Import, then the catalog index rebuilt by the CLI (the server catches up the other
/// read models itself when it starts).
pub struct Prepared {
    pub import: Duration,
    pub import_out: String,
    pub index: Duration,
    pub index_out: String,
}

pub fn prepare(bin: &Path, data_dir: &Path, file: &Path, import: bool) -> anyhow::Result<Prepared> {
    let file = file.to_str().context("catalog path is not UTF-8")?;
    let (import, import_out) = if import {
        eprintln!("  import {file}");
        run_cli(bin, data_dir, &["catalog", "import", file])?
    } else {
        (Duration::ZERO, "not run: --reuse-data".to_string())
    };
    eprintln!("  replay catalog_index");
    let (index, index_out) = run_cli(bin, data_dir, &["replay", "--projection", "catalog_index"])?;
    Ok(Prepared { import, import_out: import_out.trim().to_string(), index, index_out: last_line(&index_out, "catalog_index:") })
}

fn last_line(text: &str, prefix: &str) -> String {
    text.lines().rfind(|l| l.trim_start().starts_with(prefix)).unwrap_or("").trim().to_string()
}

/// A running `medledger serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    /// `MEDLEDGER_METRICS_BIND`: where `/metrics` is served without a login.
    pub metrics: String,
    pub token: String,
    /// Start to ready, and ready to every read model caught up.
    pub ready: Duration,
    pub caught_up: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub async fn start(bin: &Path, data_dir: &Path, http: &reqwest::Client) -> anyhow::Result<Server> {
        Self::start_with(bin, data_dir, http, &[]).await
    }

    /// `start` with extra environment variables for the server.
    pub async fn start_with(bin: &Path, data_dir: &Path, http: &reqwest::Client, env: &[(&str, String)]) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(data_dir.join("server.log")).context("create server.log")?;
        let child = medledger(bin, data_dir)
            .args(["serve", "--port", &port.to_string()])
            .env("MEDLEDGER_BIND", "127.0.0.1")
            .env("MEDLEDGER_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env("MEDLEDGER_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("MEDLEDGER_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("MEDLEDGER_FAST_PASSWORD_HASH", "1")
            .env("MEDLEDGER_API_RATE_LIMIT", "0")
            .env("MEDLEDGER_AUTH_RATE_LIMIT", "0")
            // The benchmarks drive thousands of tasks from one account.
            .env("MEDLEDGER_TASK_RATE_LIMIT", "0")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let started = Instant::now();
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            token: String::new(),
            ready: Duration::ZERO,
            caught_up: Duration::ZERO,
        };
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
        server.ready = started.elapsed();
        // The admin can log in once the users read model has caught up.
        server.caught_up(http).await?;
        server.caught_up = started.elapsed() - server.ready;
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
        Ok(server)
    }

    /// Waits until every read model has applied the whole history (the lag gauges of
    /// /metrics all read 0).
    async fn caught_up(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let text = http.get(format!("{}/metrics", self.metrics)).send().await?.text().await?;
            let lags: Vec<f64> = text
                .lines()
                .filter(|l| l.starts_with("medledger_projection_lag_events"))
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect();
            if !lags.is_empty() && lags.iter().all(|l| *l == 0.0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("read models still behind after 600 s: {lags:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn rss_kb(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).context("read /proc/PID/status")?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS value")
    }

    /// The server's process id, for [`thread_times`].
    #[allow(dead_code)] // bench-inference's; bench-search includes this module too
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn search(&self, http: &reqwest::Client, body: &Value) -> anyhow::Result<Vec<String>> {
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

    pub async fn list(&self, http: &reqwest::Client, query: &[(&str, &str)]) -> anyhow::Result<Vec<String>> {
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

pub fn sender(server: &Arc<Server>, http: &reqwest::Client) -> impl Fn(Request) -> Sent + Send + Sync + 'static {
    let (server, http) = (server.clone(), http.clone());
    move |r: Request| {
        let (server, http) = (server.clone(), http.clone());
        Box::pin(async move {
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
        })
    }
}

/// What the kernel has counted so far for one thread of a process.
#[allow(dead_code)] // bench-inference's; bench-search includes this module too
pub struct ThreadTimes {
    pub name: String,
    /// User + system CPU time, ms (from `stat`, in clock ticks).
    pub cpu_ms: f64,
    /// On a CPU, and runnable but waiting for one, ns (from `schedstat`).
    pub running_ns: f64,
    pub waiting_ns: f64,
}

/// Every thread of process `pid`, read once each.
#[allow(dead_code)] // bench-inference's; bench-search includes this module too
pub fn thread_times(pid: u32) -> anyhow::Result<Vec<ThreadTimes>> {
    // The kernel counts in clock ticks of 10 ms (USER_HZ is 100 on Linux).
    const MS_PER_TICK: f64 = 10.0;
    let mut threads = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path();
        // A thread that ended since the listing has nothing left to count.
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else { continue };
        // "tid (name) state ...": the name may hold spaces, so split after its ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        let schedstat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let mut sched = schedstat.split_whitespace().map(|f| f.parse::<f64>().unwrap_or(0.0));
        threads.push(ThreadTimes {
            name: stat[open + 1..close].to_string(),
            // After the name: state is field 0, utime 11, stime 12.
            cpu_ms: (ticks(11) + ticks(12)) * MS_PER_TICK,
            running_ns: sched.next().unwrap_or(0.0),
            waiting_ns: sched.next().unwrap_or(0.0),
        });
    }
    Ok(threads)
}
