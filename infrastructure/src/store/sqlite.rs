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

#[async_trait]
impl Backend for SqliteBackend {
    async fn commit(&self, requests: &[Vec<StreamWrite>]) -> Result<(Vec<Result<Appended, StoreError>>, ChainHead), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let head = read_head(&mut *tx).await?;
        let (streams, ids) = plan::keys(requests);
        let mut versions = HashMap::new();
        for stream in streams {
            let v: Option<i64> =
                sqlx::query_scalar("SELECT version FROM events WHERE stream_id = ?1 ORDER BY version DESC LIMIT 1")
                .bind(&stream)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            if let Some(v) = v {
                versions.insert(stream, v);
            }
        }
        let mut existing = HashMap::new();
        for id in ids {
            let found: Option<(i64, String, String, String)> =
                sqlx::query_as("SELECT position, stream_id, event_type, payload FROM events WHERE event_id = ?1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            if let Some((position, stream_id, event_type, payload)) = found {
                existing.insert(id, Existing { position, stream_id, event_type, payload });
            }
        }
        let now_us = chrono::Utc::now().timestamp_micros();
        let planned = plan::plan(Snapshot { head, versions, existing }, requests, now_us);
        if planned.rows.is_empty() {
            tx.rollback().await.map_err(unavailable)?;
            return Ok((planned.results, head));
        }
        for r in &planned.rows {
            sqlx::query(
                "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, payload, \
                 metadata, recorded_at_us, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
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
            .bind(r.hash.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
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
