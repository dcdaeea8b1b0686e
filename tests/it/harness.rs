//! The harness itself: what a test leaves behind.

use std::path::PathBuf;
use std::process::Command;

use medledger_tests::{ADMIN_URL, fresh_postgres, temp_dir};
use sqlx::Connection as _;

const CHILD: &str = "MEDLEDGER_HARNESS_CHILD";

/// Run by `a_passing_test_leaves_nothing_behind_and_a_failing_one_keeps_its_data` in a
/// process of its own; ignored otherwise.
#[tokio::test]
#[ignore = "run as a child process by the harness test"]
async fn creates_a_directory_and_a_database() {
    let Ok(outcome) = std::env::var(CHILD) else { return };
    let dir = temp_dir("harness");
    std::fs::write(dir.join("file"), b"data").expect("write");
    println!("dir={}", dir.display());
    if let Some(url) = fresh_postgres().await {
        println!("db={}", url.rsplit('/').next().unwrap_or_default());
    }
    assert_eq!(outcome, "pass", "failing on purpose");
}

async fn database_exists(name: &str) -> bool {
    let mut admin = sqlx::PgConnection::connect(ADMIN_URL).await.expect("admin connection");
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1").bind(name).fetch_optional(&mut admin).await.expect("query");
    found.is_some()
}

fn run_child(outcome: &str) -> (PathBuf, Option<String>, bool) {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "harness::creates_a_directory_and_a_database", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, outcome)
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // libtest prints the test's name on the line the first output continues.
    let value = |key: &str| stdout.lines().find_map(|l| l.split_once(key).map(|(_, v)| v.trim().to_string()));
    let dir = PathBuf::from(value("dir=").unwrap_or_else(|| panic!("the child printed no directory: {stdout}")));
    (dir, value("db="), output.status.success())
}

#[tokio::test]
async fn a_passing_test_leaves_nothing_behind_and_a_failing_one_keeps_its_data() {
    let postgres = fresh_postgres().await.is_some();

    let (dir, db, passed) = run_child("pass");
    assert!(passed, "the passing child failed");
    assert!(!dir.exists(), "a passed test's directory is removed: {}", dir.display());
    if postgres {
        let db = db.expect("the child made a database");
        assert!(!database_exists(&db).await, "a passed test's database is dropped: {db}");
    }

    let (dir, db, passed) = run_child("fail");
    assert!(!passed, "the failing child passed");
    assert!(dir.join("file").exists(), "a failed test's directory stays for a look: {}", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    if postgres {
        let db = db.expect("the child made a database");
        assert!(database_exists(&db).await, "a failed test's database stays for a look: {db}");
        let mut admin = sqlx::PgConnection::connect(ADMIN_URL).await.expect("admin connection");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))).execute(&mut admin).await.expect("drop");
    }
}
