//! The event store conformance suite: every case runs against the SQLite and the
//! PostgreSQL adapter, as two tests (`<case>::sqlite` and `<case>::postgres`).

/// Turns `async fn $name(kind: Kind)` of the enclosing module into two tests,
/// `$name::sqlite` and `$name::postgres`; attributes given before the name (such as
/// `#[ignore = "why"]`) go on both.
macro_rules! conformance {
    ($(#[$attr:meta])* $name:ident) => {
        mod $name {
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(medledger_tests::Kind::Sqlite).await;
            }

            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(medledger_tests::Kind::Postgres).await;
            }
        }
    };
}

mod support;

mod append_read;
mod chain;
mod concurrency;
mod expected_version;
mod global_order;
mod idempotency;
mod ids;
mod recent;
mod watch;
