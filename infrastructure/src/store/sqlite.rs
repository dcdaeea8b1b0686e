//! The SQLite event store, the zero-setup default.
//!
//! Ordering: each append transaction starts with `BEGIN IMMEDIATE`, which takes the
//! database's single write lock, so appends are serialised across processes and
//! positions commit in order, exactly as on PostgreSQL with its head-row lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use medledger_application::ports::{
    Appended, ChainHead, EventStore, Position, RecordedEvent, StoreError, StreamWrite,
};
use sqlx::{Connection as _, SqlitePool};
use tokio::sync::watch;
use uuid::Uuid;

use super::plan::{self, Existing, Snapshot};
use super::writer::{Backend, GroupCommitWriter, advance};
use super::{hash32, unavailable};

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
    let (position, hash): (i64, Vec<u8>) = sqlx::query_as("SELECT position, hash FROM chain_head WHERE id = 1")
        .fetch_one(e)
        .await
        .map_err(unavailable)?;
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

/// Each stream's current version (absent: no events yet).
async fn latest_versions(tx: &mut sqlx::SqliteConnection, streams: &[String]) -> Result<HashMap<String, i64>, StoreError> {
    let mut versions = HashMap::new();
    for chunk in streams.chunks(MAX_BINDS) {
        let sql = format!("SELECT stream_id, MAX(version) FROM events WHERE stream_id IN ({}) GROUP BY stream_id", placeholders(chunk.len()));
        let mut query = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
        for stream in chunk {
            query = query.bind(stream);
        }
        versions.extend(query.fetch_all(&mut *tx).await.map_err(unavailable)?);
    }
    Ok(versions)
}

/// The batch's event ids that are already stored (a retried command).
async fn stored_events(tx: &mut sqlx::SqliteConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, Existing>, StoreError> {
    let mut existing = HashMap::new();
    for chunk in ids.chunks(MAX_BINDS) {
        let sql = format!("SELECT event_id, position, stream_id, event_type, payload FROM events WHERE event_id IN ({})", placeholders(chunk.len()));
        let mut query = sqlx::query_as::<_, (String, i64, String, String, String)>(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for (id, position, stream_id, event_type, payload) in query.fetch_all(&mut *tx).await.map_err(unavailable)? {
            let id = Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("event {position}: {e}")))?;
            existing.insert(id, Existing { position, stream_id, event_type, payload });
        }
    }
    Ok(existing)
}

async fn insert_events(tx: &mut sqlx::SqliteConnection, rows: &[RecordedEvent]) -> Result<(), StoreError> {
    for chunk in rows.chunks(MAX_BINDS / EVENT_COLUMNS) {
        let row = format!("({})", placeholders(EVENT_COLUMNS));
        let sql = format!(
            "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, payload, \
             metadata, recorded_at_us, prev_hash, hash) VALUES {}",
            vec![row.as_str(); chunk.len()].join(", ")
        );
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
        query.execute(&mut *tx).await.map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn commit(&self, requests: &[Vec<StreamWrite>]) -> Result<(Vec<Result<Appended, StoreError>>, ChainHead), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let head = read_head(&mut *tx).await?;
        let (streams, ids) = plan::keys(requests);
        let versions = latest_versions(&mut tx, &streams).await?;
        let existing = stored_events(&mut tx, &ids).await?;
        let now_us = chrono::Utc::now().timestamp_micros();
        let planned = plan::plan(Snapshot { head, versions, existing }, requests, now_us);
        if planned.rows.is_empty() {
            tx.rollback().await.map_err(unavailable)?;
            return Ok((planned.results, head));
        }
        insert_events(&mut tx, &planned.rows).await?;
        sqlx::query("UPDATE chain_head SET position = ?1, hash = ?2 WHERE id = 1")
            .bind(planned.head.position)
            .bind(planned.head.hash.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok((planned.results, planned.head))
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
