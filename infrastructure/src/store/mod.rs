//! The event store adapters and how they are opened.

mod postgres;
mod sqlite;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use medledger_application::ports::{EventStore, StoreError};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use postgres::PostgresEventStore;
pub use sqlite::SqliteEventStore;

use crate::Migrations;
use crate::migrate::MigrationError;

pub(crate) fn hash32(bytes: Vec<u8>, what: &str, position: i64) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(format!("{what} of event {position} is not 32 bytes")))
}

pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Where the data lives: PostgreSQL when a `postgres://` URL is given, otherwise SQLite
/// files in the data directory.
#[derive(Debug, Clone)]
pub enum Backend {
    Postgres { url: String },
    Sqlite { store: PathBuf, read: PathBuf },
}

impl Backend {
    pub fn select(database_url: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        match database_url.filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Backend::Postgres { url: url.to_string() })
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = PathBuf::from(url.trim_start_matches("sqlite://").trim_start_matches("sqlite:"));
                let read = path.with_extension("read.db");
                Ok(Backend::Sqlite { store: path, read })
            }
            Some(other) => Err(StoreError::Unavailable(format!(
                "unsupported database URL '{other}': use postgres://... or sqlite:PATH (or none for the data dir)"
            ))),
            None => Ok(Backend::Sqlite { store: data_dir.join("events.db"), read: data_dir.join("read.db") }),
        }
    }
}

/// Everything persistent the server talks to.
#[derive(Clone)]
pub struct Databases {
    pub store: Arc<dyn EventStore>,
    /// The store's database, for keys, id sequences and idempotency records.
    pub aux: AnyPool,
    /// The read models' database (the same database on PostgreSQL).
    pub read: AnyPool,
    /// SQLite: one writer at a time per file, so this process's read-model writers should
    /// take turns among themselves rather than meet in SQLite's busy handler (which
    /// sleeps in steps of milliseconds).
    pub read_single_writer: bool,
    /// Whether the databases are PostgreSQL (migrations take its advisory lock).
    pub postgres: bool,
}

/// How much a pool's commits wait for the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Acknowledged means on disk: events, id sequences, idempotency records, saga
    /// checkpoints.
    Full,
    /// Read models: a commit may be lost to a power failure (never to a killed process),
    /// but never half of one; a read model's checkpoint sits in the same transaction as
    /// its rows, so the runner re-applies whatever was lost (decision #35).
    Rebuildable,
}

async fn any_pool(url: &str, sqlite: bool, max: u32, durability: Durability) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(max)
        // An SQLite connection is a file handle: a ping before each use (the default)
        // only costs a round trip to its worker thread.
        .test_before_acquire(!sqlite)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(60))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let synchronous = match (sqlite, durability) {
                    (true, Durability::Full) => "FULL",
                    (true, Durability::Rebuildable) => "NORMAL",
                    (false, Durability::Full) => return Ok(()),
                    (false, Durability::Rebuildable) => {
                        sqlx::raw_sql("SET synchronous_commit = off").execute(conn).await?;
                        return Ok(());
                    }
                };
                // No `mmap_size`: see the event store's options below.
                let settings = format!("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};");
                sqlx::raw_sql(sqlx::AssertSqlSafe(settings)).execute(conn).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(unavailable)
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl Databases {
    /// Opens (creating SQLite files as needed) and migrates.
    pub async fn open(backend: &Backend) -> Result<Self, StoreError> {
        match backend {
            Backend::Postgres { url } => {
                let aux = any_pool(url, false, 4, Durability::Full).await?;
                let read = any_pool(url, false, 6, Durability::Rebuildable).await?;
                Self::migrate_with(&aux, &read, true).await?;
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    // A ping per acquire would add a round trip to every append batch;
                    // a dead connection fails the batch, which the caller sees as 503.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // Every store query has an index made for it. Without this a
                            // plan cached while the table was small keeps scanning it whole
                            // as it grows, and appends slow down with the history's size.
                            sqlx::raw_sql("SET enable_seqscan = off").execute(conn).await?;
                            Ok(())
                        })
                    })
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await
                    .map_err(unavailable)?;
                let store = PostgresEventStore::start(pool).await?;
                Ok(Self { store: Arc::new(store), aux, read, read_single_writer: false, postgres: true })
            }
            Backend::Sqlite { store, read } => {
                if let Some(dir) = store.parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::private_files::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
                }
                for db in [store, read] {
                    sqlite::private_database_files(db).map_err(|e| StoreError::Unavailable(format!("{}: {e}", db.display())))?;
                }
                let aux = any_pool(&sqlite_url(store), true, 2, Durability::Full).await?;
                let read_pool = any_pool(&sqlite_url(read), true, 4, Durability::Rebuildable).await?;
                Self::migrate_with(&aux, &read_pool, false).await?;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&sqlite_url(store))
                    .map_err(unavailable)?
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    // Pages are read with a system call each, not through a memory
                    // mapping (decision #51): SQLite unmaps a connection's whole mapping
                    // whenever another connection has committed since its last read, and
                    // every unmapping flushes the TLB of each CPU running this process,
                    // the model threads' included (about two per inference task).
                    .busy_timeout(Duration::from_secs(10));
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(4)
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await
                    .map_err(unavailable)?;
                let store = SqliteEventStore::start(pool).await?;
                Ok(Self { store: Arc::new(store), aux, read: read_pool, read_single_writer: true, postgres: false })
            }
        }
    }

    /// Applies a context's own read-model migrations (its set named after it), after the
    /// shared ones `open` ran.
    pub async fn migrate_read_models(&self, migrations: &Migrations) -> Result<usize, MigrationError> {
        migrations.run(&self.read, self.postgres).await
    }

    async fn migrate_with(aux: &AnyPool, read: &AnyPool, postgres: bool) -> Result<(), StoreError> {
        let store = if postgres { Migrations::POSTGRES_STORE } else { Migrations::SQLITE_STORE };
        store.run(aux, postgres).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Migrations::READ_MODELS.run(read, postgres).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(())
    }
}
