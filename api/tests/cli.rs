//! The `medledger` binary: user admin, migrate, replay, verify (and its exit codes).

use std::path::Path;
use std::process::{Command, Output};

use sqlx::Connection as _;

fn medledger(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medledger"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env("MEDLEDGER_FAST_PASSWORD_HASH", "1")
        .env("RUST_LOG", "error")
        .output()
        .expect("run medledger")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("medledger-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn user_admin_replay_and_verify_work_on_the_servers_store() {
    let dir = temp_dir();
    let o = medledger(&dir, &["user", "create", "--email", "root@example.org", "--password", "correct horse", "--admin"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("created user 1"));
    let o = medledger(
        &dir,
        &["user", "create", "--email", "l@example.org", "--password", "correct horse", "--role", "labeler", "--role", "customer"],
    );
    assert!(o.status.success(), "{o:?}");
    let o = medledger(&dir, &["user", "create", "--email", "ROOT@example.org", "--password", "correct horse"]);
    assert!(!o.status.success(), "a second account with the same email");
    let o = medledger(&dir, &["user", "create", "--email", "x@example.org", "--password", "correct horse", "--role", "wizard"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("allowed"));

    assert!(medledger(&dir, &["migrate"]).status.success());
    // The global option also works before the subcommand.
    let o = Command::new(env!("CARGO_BIN_EXE_medledger")).arg("--data-dir").arg(&dir).arg("verify").arg("--digest").output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let digest = stdout(&o).lines().last().unwrap().to_string();
    let (position, hash) = digest.split_once(':').unwrap();
    assert!(position.parse::<i64>().unwrap() >= 4);
    assert_eq!(hash.len(), 64);

    let o = medledger(&dir, &["replay"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("users: rebuilt"), "{}", stdout(&o));
    let o = medledger(&dir, &["replay", "--projection", "nope"]);
    assert_eq!(o.status.code(), Some(2));

    // The history still contains the digest taken earlier.
    assert!(medledger(&dir, &["verify", "--expect", &digest]).status.success());

    // Edit an event behind the database's back: verify names the position, exits 1.
    let url = format!("sqlite://{}", dir.join("events.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("DROP TRIGGER events_no_update; UPDATE events SET payload = replace(payload, 'admin', 'doctor') WHERE position = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let o = medledger(&dir, &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("position 2"), "{}", stdout(&o));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn replay_stops_at_an_event_that_does_not_decode_and_names_it() {
    let dir = temp_dir();
    let o = medledger(&dir, &["user", "create", "--email", "root@example.org", "--password", "correct horse", "--admin"]);
    assert!(o.status.success(), "{o:?}");
    // A DatasetCreated without its fields, written behind the server's back: a schema
    // that drifted without an upcaster. Replay never reads hashes, so zeros do.
    let url = format!("sqlite://{}", dir.join("events.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let position: i64 = sqlx::query_scalar("SELECT MAX(position) + 1 FROM events").fetch_one(&mut conn).await.unwrap();
    sqlx::query(
        "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, payload, metadata, \
         recorded_at_us, prev_hash, hash) VALUES ($1, 'dataset-999', 1, $2, 'DatasetCreated', 1, '{\"dataset_id\": 999}', '{}', 0, \
         zeroblob(32), zeroblob(32))",
    )
    .bind(position)
    .bind(uuid::Uuid::new_v4().to_string())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("UPDATE chain_head SET position = $1").bind(position).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let o = medledger(&dir, &["replay"]);
    assert!(!o.status.success(), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&format!("position {position}")) && stderr.contains("DatasetCreated"), "{stderr}");
    assert!(stderr.contains("fields"), "serde's reason: {stderr}");
    // Read models that do not handle datasets replay as before.
    let o = medledger(&dir, &["replay", "--projection", "users"]);
    assert!(o.status.success(), "{o:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn catalog_import_items_and_index_replay_from_the_command_line() {
    let dir = temp_dir();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/datasets.jsonl");
    let o = medledger(&dir, &["catalog", "import", fixture]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("283 created"), "{}", stdout(&o));
    let again = medledger(&dir, &["catalog", "import", fixture]);
    assert!(stdout(&again).contains("0 created, 0 updated, 283 unchanged"), "{}", stdout(&again));

    let files = dir.join("upload");
    std::fs::create_dir_all(files.join("series")).unwrap();
    std::fs::write(files.join("a.png"), b"a").unwrap();
    std::fs::write(files.join("series/b.png"), b"b").unwrap();
    let o = medledger(&dir, &["catalog", "items", "--dataset", "1", "--labels", "pneumonia", files.to_str().unwrap()]);
    assert!(o.status.success() && stdout(&o).contains("2 items added"), "{}", stdout(&o));
    let o = medledger(&dir, &["catalog", "items", "--dataset", "99999", files.to_str().unwrap()]);
    assert!(!o.status.success(), "a missing dataset is an error");

    let o = medledger(&dir, &["replay", "--projection", "catalog_index"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("(283 datasets)"), "{}", stdout(&o));
}

/// `medledger serve` on a data directory of its own, as a real child process.
struct Served {
    child: std::process::Child,
    base: String,
}

const ADMIN: (&str, &str) = ("root@example.org", "correct horse battery");

impl Served {
    async fn start(dir: &Path, http: &reqwest::Client) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_medledger"))
            .args(["serve", "--port", &port.to_string()])
            .env("MEDLEDGER_DATA_DIR", dir)
            .env_remove("DATABASE_URL")
            .env("MEDLEDGER_BIND", "127.0.0.1")
            .env("MEDLEDGER_ADMIN_EMAIL", ADMIN.0)
            .env("MEDLEDGER_ADMIN_PASSWORD", ADMIN.1)
            .env("MEDLEDGER_FAST_PASSWORD_HASH", "1")
            .env("MEDLEDGER_API_RATE_LIMIT", "0")
            .env("MEDLEDGER_AUTH_RATE_LIMIT", "0")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start medledger serve");
        let mut served = Served { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !http.get(format!("{}/readyz", served.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(served.child.try_wait().unwrap().is_none(), "the server exited; see {}", dir.join("server.log").display());
            assert!(std::time::Instant::now() < deadline, "the server was not ready in 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        served
    }

    /// The admin's token, once the users read model knows the admin.
    async fn token(&self, http: &reqwest::Client) -> String {
        for _ in 0..300 {
            let r =
                http.post(format!("{}/oauth/login", self.base)).form(&[("username", ADMIN.0), ("password", ADMIN.1)]).send().await.unwrap();
            if r.status().is_success() {
                let body: serde_json::Value = r.json().await.unwrap();
                return body["access_token"].as_str().unwrap().to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the admin could not log in");
    }

    /// SIGKILL: no shutdown hook runs.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Per task stream: how often it was started, completed and failed.
async fn task_histories(dir: &Path) -> Vec<(String, i64, i64, i64)> {
    let url = format!("sqlite://{}", dir.join("events.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT stream_id, \
                SUM(event_type = 'InferenceTaskStarted'), \
                SUM(event_type = 'InferenceTaskCompleted'), \
                SUM(event_type = 'InferenceTaskFailed') \
         FROM events WHERE stream_id LIKE 'inference_task-%' GROUP BY stream_id ORDER BY stream_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows
}

#[tokio::test]
async fn a_server_killed_while_tasks_run_finishes_each_exactly_once_after_restart() {
    let dir = temp_dir();
    let http = reqwest::Client::new();
    let images: Vec<Vec<u8>> = (1..=6)
        .map(|i| {
            let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/inference");
            let name = std::fs::read_dir(fixtures)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .find(|n| n.starts_with(&format!("fixture_{i}_")))
                .unwrap();
            std::fs::read(format!("{fixtures}/{name}")).unwrap()
        })
        .collect();

    // Submit a burst of tasks and SIGKILL the server as soon as they are accepted; retry
    // until a kill has caught at least one task started and not finished.
    let mut submitted = 0;
    let mut interrupted = Vec::new();
    for _round in 0..5 {
        let server = Served::start(&dir, &http).await;
        let token = server.token(&http).await;
        let posts = (0..24).map(|i| {
            let request = http
                .post(format!("{}/api/tasks?detection_model_id={}&classification_model_id=3", server.base, 1 + i % 2))
                .bearer_auth(&token)
                .body(images[i % images.len()].clone());
            async move { request.send().await.unwrap().status() }
        });
        let statuses = futures::future::join_all(posts).await;
        assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
        submitted += statuses.len();
        server.kill();
        interrupted =
            task_histories(&dir).await.into_iter().filter(|(_, started, completed, failed)| *started > completed + failed).collect();
        if !interrupted.is_empty() {
            break;
        }
    }
    assert!(!interrupted.is_empty(), "no kill caught a task while it ran");

    let server = Served::start(&dir, &http).await;
    let token = server.token(&http).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let list: serde_json::Value =
            http.get(format!("{}/api/tasks", server.base)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let tasks = list["tasks"].as_array().unwrap();
        let done = tasks.iter().filter(|t| t["status"] == "done").count();
        if tasks.len() == submitted && done == submitted {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{done} of {submitted} tasks done 120 s after the restart: {list}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill();

    let histories = task_histories(&dir).await;
    assert_eq!(histories.len(), submitted);
    for (stream, _, completed, failed) in &histories {
        assert_eq!((*completed, *failed), (1, 0), "{stream}: one result, no failure");
    }
    // The tasks the kill interrupted were started again, and still have one result.
    for (stream, started_before, ..) in &interrupted {
        let (_, started, ..) = histories.iter().find(|h| &h.0 == stream).unwrap();
        assert!(started > started_before, "{stream} was not started again after the restart");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `user create` with the password on standard input (so it never shows in `ps`), and
/// the data directory of a real server, umask and all, private to its user.
#[tokio::test]
async fn user_create_takes_the_password_on_stdin_and_the_servers_files_stay_private() {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir();
    let create = |line: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_medledger"))
            .args(["user", "create", "--email", "stdin@example.org", "--password-stdin", "--data-dir"])
            .arg(&dir)
            .env_remove("DATABASE_URL")
            .env("MEDLEDGER_FAST_PASSWORD_HASH", "1")
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run medledger");
        child.stdin.take().unwrap().write_all(line.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let o = create("elevenchars\n");
    assert!(!o.status.success(), "an 11-character password");
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 12 characters"), "{o:?}");
    // Neither flag and no terminal to prompt on: told what to do, nothing created.
    let o = medledger(&dir, &["user", "create", "--email", "stdin@example.org"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--password-stdin"), "{o:?}");
    let password = "typed on stdin, not argv";
    let o = create(&format!("{password}\n"));
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("created user"), "{}", stdout(&o));

    let http = reqwest::Client::new();
    let server = Served::start(&dir, &http).await;
    let mut status = 0;
    for _ in 0..300 {
        let r = http
            .post(format!("{}/api/auth/login/", server.base))
            .json(&serde_json::json!({"email": "stdin@example.org", "password": password}))
            .send()
            .await
            .unwrap();
        status = r.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "log in with the password given on stdin");
    server.kill();

    // Everything the server made: the directory 0700, each file 0600 (the catalog index
    // included, which only the process's umask covers).
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let mut stack = vec![dir.clone()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "server.log") {
                continue; // made by this test, not the server
            }
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(files >= 5, "events.db, read.db, secret.key, the index…: {files}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `medledger` with `env` added to a clean configuration, expecting it to stop on
/// its own (a bad setting stops it before it serves); its exit status and stderr.
fn refused_with(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let dir = temp_dir();
    let mut command = Command::new(env!("CARGO_BIN_EXE_medledger"));
    command.args(args).env("MEDLEDGER_DATA_DIR", &dir).env("RUST_LOG", "error").env_remove("DATABASE_URL");
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("run medledger");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("medledger {args:?} with {env:?} kept running: the bad value was accepted");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_dir_all(dir);
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_bad_setting_stops_the_server_naming_its_variable() {
    // Before, 70000 wrapped to 4464 and the server listened there.
    let (code, stderr) = refused_with(&[("PORT", "70000")], &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("PORT") && stderr.contains("70000"), "{stderr}");

    let (code, stderr) = refused_with(&[("MEDLEDGER_TASK_RATE_LIMIT", "lots")], &["serve"]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("MEDLEDGER_TASK_RATE_LIMIT") && stderr.contains("lots"), "{stderr}");

    let (code, stderr) = refused_with(&[("MEDLEDGER_HTTPS", "yes please")], &["migrate"]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("MEDLEDGER_HTTPS"), "{stderr}");

    // Given on the command line, the option is what is named.
    let (code, stderr) = refused_with(&[], &["--port", "70000"]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let dir = temp_dir();
    let o = Command::new(env!("CARGO_BIN_EXE_medledger"))
        .arg("migrate")
        .env("MEDLEDGER_DATA_DIR", &dir)
        .env_remove("DATABASE_URL")
        .env("PORT", "")
        .env("MEDLEDGER_TASK_RATE_LIMIT", "")
        .env("MEDLEDGER_SMTP_URL", "")
        .env("RUST_LOG", "error")
        .output()
        .expect("run medledger");
    assert!(o.status.success(), "{o:?}");
    let _ = std::fs::remove_dir_all(dir);
}
