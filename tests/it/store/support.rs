//! Shared pieces of the conformance suite: a fresh store, event builders, a chain
//! verifier over the port, and a direct connection that can bypass the store.

use std::path::PathBuf;
use std::time::Duration;

use medledger_application::chain::{ChainBreak, ChainVerifier, VerifyReport};
use medledger_application::ports::{Appended, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError, StreamWrite};
use medledger_infrastructure::store::{Backend, Databases};
use medledger_tests::{Kind, fresh_backend};
use sqlx::Connection as _;
use uuid::Uuid;

/// A fresh, migrated store of one kind.
pub struct Fixture {
    pub backend: Backend,
    pub dir: PathBuf,
    pub db: Databases,
}

impl Fixture {
    /// `None` when the backend is unavailable and the test should be skipped.
    pub async fn new(kind: Kind) -> Option<Self> {
        let (backend, dir) = fresh_backend(kind).await?;
        let db = Databases::open(&backend).await.expect("open and migrate the store");
        Some(Self { backend, dir, db })
    }

    pub fn store(&self) -> &dyn EventStore {
        &*self.db.store
    }

    /// A second, independent store instance over the same database (as another
    /// process would open it).
    pub async fn second_instance(&self) -> Databases {
        Databases::open(&self.backend).await.expect("open a second store instance")
    }

    /// A connection that talks to the database directly, past the store.
    pub async fn direct(&self) -> Direct {
        Direct::connect(&self.backend).await
    }
}

pub fn event(payload: impl Into<String>) -> NewEvent {
    NewEvent { event_id: Uuid::new_v4(), event_type: "TestEvent".into(), schema_version: 1, payload: payload.into(), metadata: "{}".into() }
}

pub fn numbered(n: usize) -> NewEvent {
    event(format!("{{\"n\":{n}}}"))
}

pub fn write(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamWrite {
    StreamWrite { stream_id: stream.to_string(), expected, events }
}

/// Appends one write to one stream.
pub async fn append_to(
    store: &dyn EventStore,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Appended, StoreError> {
    store.append(vec![write(stream, expected, events)]).await
}

/// The whole history, paged through `read_all`.
pub async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.position);
        let page = store.read_all(after, 500).await.expect("read_all");
        let Some(last) = page.last() else { return all };
        assert!(last.position > after, "read_all({after}, 500) went backwards to {}", last.position);
        all.extend(page);
    }
}

/// The stream's current version (0 when it has no events).
pub async fn stream_version(store: &dyn EventStore, stream: &str) -> i64 {
    store.read_stream(stream).await.expect("read_stream").last().map_or(0, |e| e.version)
}

/// Verifies the whole history as an auditor would: every event through `read_all`
/// (pages of 500) into a `ChainVerifier`, then the end against the sealed head.
pub async fn verify(store: &dyn EventStore) -> Result<VerifyReport, ChainBreak> {
    let mut verifier = ChainVerifier::default();
    let mut after: Position = 0;
    loop {
        let page = store.read_all(after, 500).await.expect("read_all");
        let Some(last) = page.last().map(|e| e.position) else { break };
        assert!(last > after, "read_all({after}, 500) went backwards to {last}");
        for e in &page {
            verifier.push(e)?;
        }
        after = last;
    }
    let head = store.head().await.expect("head");
    verifier.finish(&head)
}

/// A direct connection to the store's database, for tampering and for checking the
/// database's own protections.
pub enum Direct {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Direct {
    pub async fn connect(backend: &Backend) -> Self {
        match backend {
            Backend::Postgres { url } => Direct::Postgres(sqlx::PgConnection::connect(url).await.expect("direct PostgreSQL connection")),
            Backend::Sqlite { store, .. } => {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(store).busy_timeout(Duration::from_secs(10));
                Direct::Sqlite(sqlx::SqliteConnection::connect_with(&options).await.expect("direct SQLite connection"))
            }
        }
    }

    /// Runs SQL text; the number of rows it affected.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Direct::Postgres(c) => sqlx::raw_sql(sql).execute(&mut *c).await.map(|r| r.rows_affected()),
            Direct::Sqlite(c) => sqlx::raw_sql(sql).execute(&mut *c).await.map(|r| r.rows_affected()),
        }
    }

    /// What an attacker with database access does first: switch off the append-only
    /// triggers (PostgreSQL: replica mode for this session, as superuser; SQLite:
    /// drop the triggers).
    pub async fn bypass_protections(&mut self) {
        let sql = match self {
            Direct::Postgres(_) => "SET session_replication_role = replica",
            Direct::Sqlite(_) => "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;",
        };
        self.execute(sql).await.expect("bypass the append-only protections");
    }

    /// A byte-string literal in this database's SQL dialect.
    pub fn blob(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self {
            Direct::Postgres(_) => format!("decode('{hex}', 'hex')"),
            Direct::Sqlite(_) => format!("X'{hex}'"),
        }
    }
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Fixture {
    /// PostgreSQL: waits (up to 10 s) until `n` sessions on this database are
    /// LISTENing for appends, i.e. the store instances' listeners are subscribed.
    /// SQLite (which polls): returns at once.
    pub async fn wait_for_listeners(&self, n: i64) {
        let Backend::Postgres { url } = &self.backend else { return };
        let mut db = sqlx::PgConnection::connect(url).await.expect("direct PostgreSQL connection");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let listening: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN %'")
                    .fetch_one(&mut db)
                    .await
                    .expect("pg_stat_activity");
            if listening >= n {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "only {listening} of {n} store instances are listening after 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
