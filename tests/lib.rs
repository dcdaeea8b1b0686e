//! Test harness: fresh databases per test, `spawn_app` (a real server on a random port
//! over a fresh store), and a typed client per contract to call it (`clients`).

pub mod app;
pub mod clients;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use medledger_infrastructure::store::Backend;
use sqlx::Connection as _;

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which event store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A new, empty PostgreSQL database for one test. When PostgreSQL is unreachable the
/// test is skipped locally, but with `CI=true` it fails: CI must never go green by
/// skipping the PostgreSQL half of the suite.
pub async fn fresh_postgres() -> Option<String> {
    let base = std::env::var("MEDLEDGER_TEST_PG").unwrap_or_else(|_| ADMIN_URL.to_string());
    let mut admin = match sqlx::PgConnection::connect(&base).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("PostgreSQL is unreachable at {base} and CI=true: {e}");
            }
            eprintln!("skipping PostgreSQL test: {e}");
            return None;
        }
    };
    let name = format!("medledger_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.expect("create test database");
    leftovers::track(leftovers::Leftover::Database { admin: base.clone(), name: name.clone() });
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    Some(format!("{prefix}/{name}"))
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("medledger-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    leftovers::track(leftovers::Leftover::Dir(dir.clone()));
    dir
}

/// What tests create outside their process (directories, PostgreSQL databases) is
/// removed when the test process ends, unless something panicked in it: a failed
/// test's data stays for a look (its paths are printed), a passed test's goes. Each
/// test is its own process under nextest, so "the process" is "the test".
mod leftovers {
    use super::*;

    pub(crate) enum Leftover {
        Dir(PathBuf),
        Database { admin: String, name: String },
    }

    static CREATED: Mutex<Vec<Leftover>> = Mutex::new(Vec::new());
    static PANICKED: AtomicBool = AtomicBool::new(false);

    pub(crate) fn track(leftover: Leftover) {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                PANICKED.store(true, Ordering::SeqCst);
                previous(info);
            }));
            // SAFETY: registers a plain `extern "C" fn` with no arguments, as atexit requires.
            unsafe { libc::atexit(remove_at_exit) };
        });
        CREATED.lock().unwrap_or_else(|p| p.into_inner()).push(leftover);
    }

    extern "C" fn remove_at_exit() {
        let created = std::mem::take(&mut *CREATED.lock().unwrap_or_else(|p| p.into_inner()));
        if PANICKED.load(Ordering::SeqCst) {
            for leftover in &created {
                match leftover {
                    Leftover::Dir(dir) => eprintln!("kept for a look: {}", dir.display()),
                    Leftover::Database { name, .. } => eprintln!("kept for a look: PostgreSQL database {name}"),
                }
            }
            return;
        }
        let mut databases = Vec::new();
        for leftover in created {
            match leftover {
                Leftover::Dir(dir) => {
                    let _ = std::fs::remove_dir_all(dir);
                }
                Leftover::Database { admin, name } => databases.push((admin, name)),
            }
        }
        if databases.is_empty() {
            return;
        }
        // The test's runtime is gone by now: a thread of its own with a small runtime.
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                for (admin, name) in databases {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await;
                    }
                }
            });
        });
        let _ = dropping.join();
    }
}

/// A fresh backend of the given kind, or `None` when the test should be skipped.
pub async fn fresh_backend(kind: Kind) -> Option<(Backend, PathBuf)> {
    let dir = temp_dir("store");
    match kind {
        Kind::Sqlite => Some((Backend::select(None, &dir).expect("sqlite backend"), dir)),
        Kind::Postgres => {
            let url = fresh_postgres().await?;
            Some((Backend::select(Some(&url), &dir).expect("postgres backend"), dir))
        }
    }
}

/// A minimal SMTP server on a random local port: it speaks enough of the protocol
/// for a real client (EHLO, MAIL, RCPT, DATA, QUIT) and hands over each message.
pub async fn smtp_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind smtp sink");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            let _ = tx.send(std::mem::take(body));
                            data = None;
                            let _ = write.write_all(b"250 OK queued\r\n").await;
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 OK\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (port, rx)
}
