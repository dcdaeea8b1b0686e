//! Global order under writers in two OS processes: a subscriber polling `read_all`
//! from its checkpoint sees every committed event exactly once, in gapless order.
//!
//! The test binary runs itself twice as a child process (`order_writer_child`, an
//! ignored test that does nothing unless `CHILD_ENV` is set); each child runs
//! `WRITERS` writer tasks against the same database while the parent subscribes.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use medledger_application::ports::{EventStore, ExpectedVersion, Position};
use medledger_infrastructure::store::{Backend, Databases};
use medledger_tests::Kind;
use uuid::Uuid;

use super::support::{Fixture, append_to, event, verify};

/// `postgres|URL` or `sqlite|DATA_DIR`: which store the child writes to.
const CHILD_ENV: &str = "MEDLEDGER_IT_ORDER_CHILD";
/// `ROUND PROCESS START_AT_UNIX_MS`
const CHILD_ARGS_ENV: &str = "MEDLEDGER_IT_ORDER_CHILD_ARGS";
/// How a child reports each event it committed: `MARK EVENT_ID POSITION`.
const MARK: &str = "MEDLEDGER-ORDER-EVENT";

const PROCESSES: usize = 2;
const WRITERS: usize = 4;
const APPENDS: usize = 20;
const ROUNDS: usize = 5;
/// The children start writing at the same wall-clock instant, this long after spawn.
const START_DELAY_MS: u64 = 400;

conformance!(global_order_across_processes);

async fn global_order_across_processes(kind: Kind) {
    let Some(f) = Fixture::new(kind).await else { return };
    let spec = match &f.backend {
        Backend::Postgres { url } => format!("postgres|{url}"),
        Backend::Sqlite { .. } => format!("sqlite|{}", f.dir.display()),
    };
    let mut interleavings = 0;
    for round in 0..ROUNDS {
        interleavings += run_round(&f, &spec, round).await;
    }
    // Not the property under test, but its precondition: the processes did write at
    // the same time.
    assert!(interleavings > ROUNDS, "the writer processes never overlapped ({interleavings} switches)");
    assert!(verify(f.store()).await.is_ok(), "the chain verifies after all rounds");
}

/// One round; how often the history switches from one writer process to the other.
async fn run_round(f: &Fixture, spec: &str, round: usize) -> usize {
    let store = f.db.store.clone();
    let start = store.head().await.unwrap().position;
    let done = Arc::new(AtomicBool::new(false));
    let subscriber = tokio::spawn(subscribe(store.clone(), start, done.clone()));

    let start_at = unix_ms() + START_DELAY_MS;
    let children = (0..PROCESSES).map(|p| run_child(spec, round, p, start_at));
    let mut committed: HashMap<Uuid, Position> = HashMap::new();
    let mut writer_of: HashMap<Position, usize> = HashMap::new();
    for (process, reported) in futures::future::join_all(children).await.into_iter().enumerate() {
        for (id, position) in reported {
            assert!(committed.insert(id, position).is_none(), "round {round}: event {id} reported twice by the writers");
            assert!(writer_of.insert(position, process).is_none(), "round {round}: two events reported at position {position}");
        }
    }
    done.store(true, Ordering::SeqCst);
    let (seen, busy_polls) = tokio::time::timeout(Duration::from_secs(30), subscriber)
        .await
        .unwrap_or_else(|_| panic!("round {round}: the subscriber did not catch up with the head in 30 s"))
        .expect("subscriber task");

    assert!(committed.len() >= PROCESSES * WRITERS * APPENDS, "round {round}: the writers reported only {} events", committed.len());
    let head = store.head().await.unwrap().position;
    assert_eq!(head, start + committed.len() as i64, "round {round}: the head moved by exactly the committed events");

    // Gapless and strictly increasing by one, starting right after the checkpoint.
    for (i, (position, id)) in seen.iter().enumerate() {
        assert_eq!(*position, start + 1 + i as i64, "round {round}: the subscriber's {i}th event ({id})");
    }
    // Exactly the committed set, each where its writer was told it went.
    let ids: HashSet<Uuid> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), seen.len(), "round {round}: the subscriber saw an event twice");
    let missing: Vec<_> = committed.keys().filter(|id| !ids.contains(id)).collect();
    let extra: Vec<_> = ids.iter().filter(|id| !committed.contains_key(id)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "round {round}: missed {missing:?}, unexpected {extra:?}");
    for (position, id) in &seen {
        assert_eq!(committed[id], *position, "round {round}: event {id} is not where its writer was told");
    }
    let switches = seen.windows(2).filter(|w| writer_of[&w[0].0] != writer_of[&w[1].0]).count();
    eprintln!("global order ({spec}) round {round}: {} events, {switches} process switches, {busy_polls} non-empty polls", seen.len());
    switches
}

/// Polls `read_all` from `checkpoint` until `done` and caught up with the head;
/// the (position, id) of every event seen, and how many polls returned events.
async fn subscribe(store: Arc<dyn EventStore>, mut checkpoint: Position, done: Arc<AtomicBool>) -> (Vec<(Position, Uuid)>, usize) {
    let mut seen = Vec::new();
    let mut busy_polls = 0;
    loop {
        let page = store.read_all(checkpoint, 100).await.expect("read_all");
        if page.is_empty() {
            if done.load(Ordering::SeqCst) && checkpoint >= store.head().await.expect("head").position {
                return (seen, busy_polls);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        busy_polls += 1;
        for e in page {
            seen.push((e.position, e.event_id));
            checkpoint = e.position;
        }
    }
}

/// Runs one writer process to completion; the events it reports committed.
async fn run_child(spec: &str, round: usize, process: usize, start_at: u64) -> Vec<(Uuid, Position)> {
    let exe = std::env::current_exe().expect("the test binary's path");
    let (_, module) = module_path!().split_once("::").expect("module path has a crate prefix");
    let name = format!("{module}::order_writer_child");
    let child = Command::new(exe)
        .args(["--exact", &name, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .env(CHILD_ARGS_ENV, format!("{round} {process} {start_at}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a writer process");
    let pid = child.id();
    let output = match tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(move || child.wait_with_output())).await {
        Ok(joined) => joined.expect("wait for the writer process").expect("writer process output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("writer process {pid} (round {round}) did not finish in 60 s");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "writer process {process} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    let reported: Vec<(Uuid, Position)> = stdout
        .lines()
        .filter_map(|line| line.find(MARK).map(|at| &line[at + MARK.len()..]))
        .map(|rest| {
            let mut parts = rest.split_whitespace();
            let id = parts.next().and_then(|s| s.parse().ok()).expect("event id");
            let position = parts.next().and_then(|s| s.parse().ok()).expect("position");
            (id, position)
        })
        .collect();
    assert!(
        reported.len() >= WRITERS * APPENDS,
        "writer process {process} reported {} events (did `{name}` run?)\nstdout:\n{stdout}\nstderr:\n{stderr}",
        reported.len()
    );
    reported
}

/// The writer process. Ignored, and a no-op unless started by
/// `global_order_across_processes` with `CHILD_ENV` set.
#[test]
#[ignore = "helper: global_order_across_processes runs it in a child process"]
fn order_writer_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let args = std::env::var(CHILD_ARGS_ENV).expect("child arguments");
    let args: Vec<u64> = args.split_whitespace().map(|s| s.parse().expect("numeric child argument")).collect();
    let [round, process, start_at] = args[..] else { panic!("expected ROUND PROCESS START_AT") };
    let backend = match spec.split_once('|') {
        Some(("postgres", url)) => Backend::Postgres { url: url.to_string() },
        Some(("sqlite", dir)) => Backend::select(None, std::path::Path::new(dir)).expect("sqlite backend"),
        _ => panic!("bad {CHILD_ENV}: {spec}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let committed = runtime.block_on(write_as_child(backend, round, process, start_at));
    let mut out = std::io::stdout().lock();
    for (id, position) in committed {
        writeln!(out, "{MARK} {id} {position}").expect("report to the parent");
    }
    out.flush().expect("flush the report");
}

async fn write_as_child(backend: Backend, round: u64, process: u64, start_at: u64) -> Vec<(Uuid, Position)> {
    let db = Databases::open(&backend).await.expect("open the store in the writer process");
    if let Some(wait) = start_at.checked_sub(unix_ms()) {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let mut committed = Vec::new();
                for i in 0..APPENDS {
                    let pause = rand::random_range(0..=3u64);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let n = rand::random_range(1..=3usize);
                    let events: Vec<_> = (0..n)
                        .map(|k| event(format!("{{\"round\":{round},\"process\":{process},\"writer\":{w},\"append\":{i},\"k\":{k}}}")))
                        .collect();
                    let stream = if i % 5 == 4 { format!("shared-{round}") } else { format!("r{round}-p{process}-w{w}") };
                    let a = append_to(&*store, &stream, ExpectedVersion::Any, events.clone()).await.expect("append");
                    assert!(!a.duplicate);
                    assert_eq!(a.last_position - a.first_position + 1, n as i64);
                    committed.extend(events.iter().zip(a.first_position..).map(|(e, p)| (e.event_id, p)));
                }
                committed
            })
        })
        .collect();
    let mut committed = Vec::new();
    for w in writers {
        committed.extend(w.await.expect("writer task"));
    }
    committed
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}
