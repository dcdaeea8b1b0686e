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
    let o = medledger(&dir, &["user", "create", "--email", "l@example.org", "--password", "correct horse", "--role", "labeler", "--role", "customer"]);
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
