//! `medledger`: serve, migrate, replay, verify, user admin.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use medledger_api::Config;
use medledger_api::priority::RequestPriority;
use medledger_application::chain::{VerifyError, verify_store};
use medledger_application::identity::accounts::Registration;
use medledger_application::metadata::CommandContext;
use medledger_domain::identity::role::{Role, Roles};

/// glibc's malloc cost the server about a tenth of its CPU outside the models under load
/// (many small, short-lived allocations across threads); mimalloc's thread-local heaps
/// take far less (BENCHMARKS.md, stop 11).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "medledger", version, about = "Event-sourced backend for medical-imaging data work")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every contract on one port (the default command).
    Serve,
    /// Create or upgrade the database schema.
    Migrate,
    /// Rebuild read models from zero by replaying the history.
    Replay {
        /// Only this read model (default: all).
        #[arg(long)]
        projection: Option<String>,
    },
    /// Check the hash chain; exit 1 naming the first bad position.
    Verify {
        /// Print the sealed head digest (POSITION:HASH) to keep outside the database.
        #[arg(long)]
        digest: bool,
        /// Also check that the history still contains this earlier digest.
        #[arg(long, value_name = "POSITION:HASH")]
        expect: Option<String>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the dataset catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Load datasets from a JSONL file (one dataset per line); importing the same file
    /// again changes nothing.
    Import { file: PathBuf },
    /// Attach every file under DIR (recursively) to dataset ID as items; each item's
    /// name is its path relative to DIR, labelled with LABELS (comma list).
    Items {
        #[arg(long)]
        dataset: i64,
        #[arg(long, default_value = "")]
        labels: String,
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (use --admin for the first administrator). The password is asked
    /// for without echo when standard input is a terminal, else read from it with
    /// --password-stdin.
    Create {
        #[arg(long)]
        email: String,
        /// The password on the command line, for scripts: other users of the machine can
        /// read it in the process list (ps). Prefer --password-stdin or the prompt.
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        username: Option<String>,
        /// A role; repeat for several (admin, doctor, technician, annotator, student_dev,
        /// standard, demo, customer, labeler, universal).
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long)]
        admin: bool,
    },
}

use medledger_projections::catalog::CATALOG_INDEX;
use medledger_projections::catalog::index::{CatalogIndex, rebuild_index};

#[tokio::main]
async fn main() -> ExitCode {
    // Whatever this process creates (the SQLite files, the catalog index, blobs, mail)
    // is the server user's alone; the places that create files also ask for 0600
    // themselves, for embedders and the tests, which keep their own umask.
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    medledger_api::telemetry::init();
    // A bad setting stops here, naming its variable, before anything starts.
    let cli: Cli = medledger_api::config::parse_command_line();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await?,
        Command::Migrate => {
            medledger_api::core(&config).await?;
            println!("schema is up to date");
        }
        Command::Replay { projection } => replay(&config, projection).await?,
        Command::Verify { digest, expect } => return verify(&config, digest, expect).await,
        Command::User { command: UserCommand::Create { email, password, password_stdin, username, roles, admin } } => {
            let mut parsed = roles.iter().map(|r| r.parse::<Role>()).collect::<Result<Vec<_>, _>>()?;
            if admin {
                parsed.push(Role::Admin);
            }
            if parsed.is_empty() {
                parsed.push(Role::Doctor);
            }
            let password = new_password(password, password_stdin)?;
            let core = medledger_api::core(&config).await?;
            let form = Registration { email, username, password, roles: Roles::new(parsed), ..Default::default() };
            let (id, _) = core.accounts.register(form, &CommandContext::system()).await.map_err(explained)?;
            println!("created user {id}");
        }
        Command::Catalog { command: CatalogCommand::Import { file } } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut datasets = Vec::new();
            for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let fields =
                    medledger_application::catalog::parse_line(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), n + 1))?;
                datasets.push(fields);
            }
            let core = medledger_api::core(&config).await?;
            let report = core
                .get::<medledger_application::catalog::Catalog>()?
                .import(datasets, &CommandContext::system())
                .await
                .map_err(|e| anyhow::anyhow!("import failed: {e}"))?;
            println!("{} created, {} updated, {} unchanged", report.created, report.updated, report.unchanged);
        }
        Command::Catalog { command: CatalogCommand::Items { dataset, labels, dir } } => {
            let core = medledger_api::core(&config).await?;
            let labels: Vec<String> = labels.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
            let mut files = Vec::new();
            collect_files(&dir, &mut files).with_context(|| format!("cannot read {}", dir.display()))?;
            files.sort();
            for path in &files {
                let name = path.strip_prefix(&dir).unwrap_or(path).to_string_lossy().replace('\\', "/");
                let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot read {}", path.display()))?;
                let metadata = (labels.clone(), String::new(), Default::default());
                // Streamed from the file: an item is never held whole, whatever its size.
                core.get::<medledger_application::collections::Collections>()?
                    .add_item(dataset, &name, "application/octet-stream", file_stream(file), u64::MAX, metadata, &CommandContext::system())
                    .await
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            }
            println!("{} items added to dataset {dataset}", files.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let addr = format!("{}:{}", config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let priority = config.request_priority();
    let intra_threads = config.contexts.inference.threads;
    let app = medledger_api::build(config).await?;
    favour_model_threads(priority, intra_threads);
    tracing::info!(%addr, ready_in_ms = started.elapsed().as_millis() as u64, "medledger is serving");
    if let Some(metrics) = app.metrics_addr() {
        tracing::info!(addr = %metrics, "/metrics is served on its own address (MEDLEDGER_METRICS_BIND), not on the main port");
    }
    app.serve(listener, shutdown_signal()).await
}

/// Once the models are loaded and the runtime is up: every thread but the model
/// threads moves down to `priority` (decisions #45, #48). Not with several intra-op
/// threads: ONNX Runtime's own pool threads carry no name to keep them apart by.
fn favour_model_threads(priority: RequestPriority, intra_threads: usize) {
    if priority == RequestPriority::Nice(0) {
        return;
    }
    if intra_threads > 1 {
        tracing::info!("MEDLEDGER_REQUEST_PRIORITY left unapplied: the models run on several intra-op threads");
        return;
    }
    let model_threads = format!("{}-", medledger_api::inference::MODEL_THREADS);
    match medledger_api::priority::lower_threads_except(&model_threads, priority) {
        Ok(threads) => tracing::info!(threads, ?priority, "request threads run below the model threads"),
        Err(e) => tracing::warn!(error = %e, "could not lower the request threads' priority"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!("{what:>12} [{{bar:40}}] {{pos}}/{{len}} events ({{per_sec}})")) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn replay(config: &Config, only: Option<String>) -> anyhow::Result<()> {
    let core = medledger_api::core(config).await?;
    let projections = medledger_api::contexts::read_models(&core.contexts);
    let mut names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    names.push(CATALOG_INDEX);
    if let Some(name) = &only {
        anyhow::ensure!(names.contains(&name.as_str()), "unknown projection '{name}'; known: {}", names.join(", "));
    }
    for p in projections.into_iter().filter(|p| only.as_deref().is_none_or(|n| n == p.name())) {
        let name = p.name();
        let head = core.dbs.store.head().await?.position;
        let progress = bar(head as u64, name);
        let started = std::time::Instant::now();
        let reached =
            medledger_projections::rebuild(p, &*core.dbs.store, &core.codec, &core.dbs.read, |pos, _| progress.set_position(pos as u64))
                .await?;
        progress.finish();
        println!("{name}: rebuilt from {reached} events in {:.2?}", started.elapsed());
    }
    if only.as_deref().is_none_or(|n| n == CATALOG_INDEX) {
        let dir = config.catalog_index_dir();
        // A running server holds the index's writer lock: replay it with the server stopped.
        let index = CatalogIndex::open(&dir)
            .with_context(|| format!("cannot open the catalog index in {} (is a server running?)", dir.display()))?;
        let head = core.dbs.store.head().await?.position;
        let progress = bar(head as u64, CATALOG_INDEX);
        let started = std::time::Instant::now();
        let reached = rebuild_index(&index, &*core.dbs.store, &core.codec, |pos| progress.set_position(pos as u64)).await?;
        progress.finish();
        println!("{CATALOG_INDEX}: rebuilt from {reached} events in {:.2?} ({} datasets)", started.elapsed(), index.num_docs());
    }
    Ok(())
}

/// A file's bytes as a stream of chunks of at most 256 KiB.
fn file_stream(file: tokio::fs::File) -> medledger_application::ports::ByteStream {
    use futures::StreamExt as _;
    use tokio::io::AsyncReadExt as _;
    futures::stream::try_unfold(file, |mut file| async move {
        let mut chunk = bytes::BytesMut::with_capacity(256 * 1024);
        let read = file.read_buf(&mut chunk).await?;
        Ok((read > 0).then(|| (chunk.freeze(), file)))
    })
    .boxed()
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        // Symbolic links are skipped: an import must not wander outside DIR.
        if kind.is_dir() {
            collect_files(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

async fn verify(config: &Config, print_digest: bool, expect: Option<String>) -> anyhow::Result<ExitCode> {
    let core = medledger_api::core(config).await?;
    let head = core.dbs.store.head().await?.position;
    let progress = bar(head as u64, "verify");
    let result = verify_store(&*core.dbs.store, |p| progress.set_position(p as u64)).await;
    progress.finish_and_clear();
    match result {
        Ok(report) => {
            if let Some(expect) = expect {
                let (pos, hash) = expect.split_once(':').context("--expect takes POSITION:HASH")?;
                let pos: i64 = pos.parse().context("--expect position")?;
                let found = core.dbs.store.read_all(pos - 1, 1).await?;
                let matches = found.first().is_some_and(|e| e.position == pos && hex::encode(e.hash) == hash);
                if !matches {
                    println!("FAILED: the history no longer contains digest {expect}: it was rewritten");
                    return Ok(ExitCode::from(1));
                }
            }
            println!("ok: {} events verified, head {}", report.events, report.head.digest());
            if print_digest {
                println!("{}", report.head.digest());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Broken(b)) => {
            println!("FAILED at position {}: {}", b.position, b.reason);
            Ok(ExitCode::from(1))
        }
        Err(VerifyError::Store(e)) => Err(e.into()),
    }
}

/// The new user's password: `--password`, one line of standard input
/// (`--password-stdin`), or typed at a prompt that does not echo it.
fn new_password(flag: Option<String>, from_stdin: bool) -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    if let Some(password) = flag {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if from_stdin {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).context("cannot read the password from standard input")?;
        let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
        anyhow::ensure!(!password.is_empty(), "--password-stdin: standard input held no password");
        return Ok(password.to_string());
    }
    anyhow::ensure!(stdin.is_terminal(), "no password given: pass --password-stdin (one line on standard input) or run on a terminal");
    let first = prompt_hidden("Password: ")?;
    let again = prompt_hidden("Repeat the password: ")?;
    anyhow::ensure!(first == again, "the two passwords differ");
    Ok(first)
}

/// Reads one line from the terminal with echo off (restored afterwards, also on error).
#[cfg(unix)]
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead as _, Write as _};
    use std::os::fd::AsRawFd as _;
    let stdin = std::io::stdin();
    let fd = stdin.as_raw_fd();
    // SAFETY: termios is plain data, filled in by tcgetattr before it is read.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is this process's open standard input; saved is a valid termios.
    anyhow::ensure!(unsafe { libc::tcgetattr(fd, &mut saved) } == 0, "cannot read the terminal's settings");
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above, with settings derived from the terminal's own.
    anyhow::ensure!(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } == 0, "cannot turn the terminal's echo off");
    // Only now: what is typed (or pasted) as soon as the prompt shows is not echoed.
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(not(unix))]
fn prompt_hidden(_prompt: &str) -> anyhow::Result<String> {
    anyhow::bail!("no hidden prompt on this platform: use --password-stdin")
}

/// An application error with each field's message, as the API words it (a form
/// error's own text is only "invalid input").
fn explained(e: medledger_application::AppError) -> anyhow::Error {
    use medledger_application::AppError;
    match e {
        AppError::Domain(_) | AppError::Account(_) => {
            anyhow::anyhow!(medledger_api::error::ApiError::<medledger_api::error::Detail>::from(e).detail)
        }
        other => anyhow::Error::new(other),
    }
}
