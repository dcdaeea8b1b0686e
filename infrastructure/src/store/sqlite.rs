//! The SQLite event store, the zero-setup default.
//!
//! Ordering: each append transaction starts with `BEGIN IMMEDIATE`, which takes the
//! database's single write lock, so appends are serialised across processes and
//! positions commit in order, exactly as on PostgreSQL with its head-row lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use medledger_application::ports::{Appended, ChainHead, EventStore, Position, RecordedEvent, StoreError, StreamWrite};
use sqlx::{Connection as _, SqlitePool};
use tokio::sync::watch;
use uuid::Uuid;

use super::writer::{Backend, Committed, GroupCommitWriter, advance};
use super::{hash32, unavailable};
use medledger_application::store::plan::{self, Existing, Snapshot};

/// The event columns in `Row` order, followed by the rest of a literal query.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT position, stream_id, version, event_id, event_type, schema_version, payload, metadata, ",
            "recorded_at_us, prev_hash, hash FROM events ",
            $rest
        )
    };
}

type Row = (i64, String, i64, String, String, i32, String, String, i64, Vec<u8>, Vec<u8>);

fn to_recorded(r: Row) -> Result<RecordedEvent, StoreError> {
    let (position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at_us, prev, hash) = r;
    Ok(RecordedEvent {
        position,
        stream_id,
        version,
        event_id: Uuid::parse_str(&event_id).map_err(|e| StoreError::Corrupt(format!("event {position}: {e}")))?,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at_us,
        prev_hash: hash32(prev, "prev_hash", position)?,
        hash: hash32(hash, "hash", position)?,
    })
}

pub struct SqliteEventStore {
    pool: SqlitePool,
    writer: GroupCommitWriter,
    committed: watch::Receiver<Position>,
}

struct SqliteBackend {
    pool: SqlitePool,
}

async fn read_head<'e, E: sqlx::SqliteExecutor<'e>>(e: E) -> Result<ChainHead, StoreError> {
    let (position, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT position, hash FROM chain_head WHERE id = 1").fetch_one(e).await.map_err(unavailable)?;
    Ok(ChainHead { position, hash: hash32(hash, "chain head", position)? })
}

impl SqliteEventStore {
    pub async fn start(pool: SqlitePool) -> Result<Self, StoreError> {
        let head = read_head(&pool).await?;
        let (tx, committed) = watch::channel(head.position);
        let tx = Arc::new(tx);
        // SQLite has no notifications: poll for appends made by other processes.
        tokio::spawn(poll(pool.clone(), Arc::downgrade(&tx)));
        let writer = GroupCommitWriter::spawn(Arc::new(SqliteBackend { pool: pool.clone() }), tx);
        Ok(Self { pool, writer, committed })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

async fn poll(pool: SqlitePool, committed: std::sync::Weak<watch::Sender<Position>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(tx) = committed.upgrade() else { return };
        if let Ok(head) = read_head(&pool).await {
            advance(&tx, head.position);
        }
    }
}

/// Most bound values in one statement: SQLite's default limit is 32,766.
const MAX_BINDS: usize = 30_000;
const EVENT_COLUMNS: usize = 11;

/// "?, ?, …" for `n` values (appends are batched: a statement per batch, not per row).
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// What a batch must know under the write lock, read in one statement (each statement
/// is a round trip to the connection's thread): the head, each stream's current version
/// (absent: no events yet) and which of the batch's event ids are stored already (a
/// retried command).
async fn snapshot(tx: &mut sqlx::SqliteConnection, streams: &[String], ids: &[Uuid]) -> Result<Snapshot, StoreError> {
    type Found = (i64, Option<String>, i64, Option<Vec<u8>>, Option<String>, Option<String>, Option<String>);
    let mut head = None;
    let (mut versions, mut existing) = (HashMap::new(), HashMap::new());
    // Almost always one statement; a batch beyond SQLite's bind limit takes several.
    let per_statement = MAX_BINDS / 2;
    let (mut streams, mut ids) = (streams.chunks(per_statement), ids.chunks(per_statement));
    let mut first = true;
    loop {
        let (some_streams, some_ids) = (streams.next().unwrap_or_default(), ids.next().unwrap_or_default());
        if !first && some_streams.is_empty() && some_ids.is_empty() {
            break;
        }
        let sql = format!(
            "SELECT 0, NULL, position, hash, NULL, NULL, NULL FROM chain_head WHERE id = 1 AND ? \
             UNION ALL SELECT 1, stream_id, MAX(version), NULL, NULL, NULL, NULL FROM events WHERE stream_id IN ({}) GROUP BY stream_id \
             UNION ALL SELECT 2, event_id, position, NULL, stream_id, event_type, payload FROM events WHERE event_id IN ({})",
            placeholders(some_streams.len().max(1)),
            placeholders(some_ids.len().max(1)),
        );
        let mut query = sqlx::query_as::<_, Found>(sqlx::AssertSqlSafe(sql)).bind(first);
        if some_streams.is_empty() {
            query = query.bind(None::<String>);
        }
        for stream in some_streams {
            query = query.bind(stream);
        }
        if some_ids.is_empty() {
            query = query.bind(None::<String>);
        }
        for id in some_ids {
            query = query.bind(id.to_string());
        }
        for (kind, key, n, hash, stream_id, event_type, payload) in query.fetch_all(&mut *tx).await.map_err(unavailable)? {
            match (kind, key) {
                (0, _) => head = Some(ChainHead { position: n, hash: hash32(hash.unwrap_or_default(), "chain head", n)? }),
                (1, Some(stream)) => {
                    versions.insert(stream, n);
                }
                (_, Some(id)) => {
                    let id = Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("event {n}: {e}")))?;
                    let (stream_id, event_type, payload) =
                        (stream_id.unwrap_or_default(), event_type.unwrap_or_default(), payload.unwrap_or_default());
                    existing.insert(id, Existing { position: n, stream_id, event_type, payload });
                }
                _ => {}
            }
        }
        first = false;
    }
    let head = head.ok_or_else(|| StoreError::Corrupt("the chain head row is missing".into()))?;
    Ok(Snapshot { head, versions, existing })
}

/// Inserts the rows and moves the head in one round trip: sqlx runs every statement of
/// a query, binding each one's `?`s from where the last one's ended.
async fn insert_events(tx: &mut sqlx::SqliteConnection, rows: &[RecordedEvent], head: ChainHead) -> Result<(), StoreError> {
    let chunks = rows.chunks(MAX_BINDS / EVENT_COLUMNS);
    let count = chunks.len();
    for (i, chunk) in chunks.enumerate() {
        let row = format!("({})", placeholders(EVENT_COLUMNS));
        let mut sql = format!(
            "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, payload, \
             metadata, recorded_at_us, prev_hash, hash) VALUES {}",
            vec![row.as_str(); chunk.len()].join(", ")
        );
        let last = i + 1 == count;
        if last {
            sql.push_str("; UPDATE chain_head SET position = ?, hash = ? WHERE id = 1");
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            query = query
                .bind(r.position)
                .bind(&r.stream_id)
                .bind(r.version)
                .bind(r.event_id.to_string())
                .bind(&r.event_type)
                .bind(r.schema_version)
                .bind(&r.payload)
                .bind(&r.metadata)
                .bind(r.recorded_at_us)
                .bind(r.prev_hash.to_vec())
                .bind(r.hash.to_vec());
        }
        if last {
            query = query.bind(head.position).bind(head.hash.to_vec());
        }
        query.execute(&mut *tx).await.map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn commit(&self, requests: &[Vec<StreamWrite>]) -> Result<Committed, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let (streams, ids) = plan::keys(requests);
        let snapshot = snapshot(&mut tx, &streams, &ids).await?;
        let head = snapshot.head;
        let now_us = chrono::Utc::now().timestamp_micros();
        let planned = plan::plan(snapshot, requests, now_us);
        if planned.rows.is_empty() {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(Committed { results: planned.results, head, rows: Vec::new() });
        }
        insert_events(&mut tx, &planned.rows, planned.head).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Committed { results: planned.results, head: planned.head, rows: planned.rows })
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Appended, StoreError> {
        self.writer.append(writes).await
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(select_events!("WHERE stream_id = ?1 ORDER BY version"))
            .bind(stream_id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(to_recorded).collect()
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(select_events!("WHERE position > ?1 ORDER BY position LIMIT ?2"))
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(to_recorded).collect()
    }

    fn read_recent(&self, after: Position, limit: usize) -> Option<Vec<RecordedEvent>> {
        self.writer.recent(after, limit)
    }

    async fn head(&self) -> Result<ChainHead, StoreError> {
        read_head(&self.pool).await
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.committed.clone()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(unavailable)
    }
}

/// Makes a database file (and its journal files, if there) the server user's alone
/// before SQLite opens it. SQLite creates files 0644 whatever we ask, but gives the
/// `-wal` and `-shm` files it creates later the mode of their database file, so a
/// database created here empty, 0600, keeps all three private.
pub(crate) fn private_database_files(path: &std::path::Path) -> std::io::Result<()> {
    use crate::private_files::{FILE_MODE, file_options, restrict};
    match file_options().write(true).create_new(true).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => restrict(path, FILE_MODE)?,
        Err(e) => return Err(e),
    }
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        match restrict(std::path::Path::new(&name), FILE_MODE) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
