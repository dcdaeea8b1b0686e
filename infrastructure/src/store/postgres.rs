//! The PostgreSQL event store.
//!
//! Ordering: every append transaction locks the single `chain_head` row first, assigns
//! positions after the head, and releases the lock only at commit. Appends are thus
//! serialised across all processes, positions are gapless, and a transaction holding
//! position p+1 cannot start before p is visible. A reader that asks for
//! `position > checkpoint` can therefore never skip an event. Throughput comes from
//! group commit in each process's writer, not from concurrent transactions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use medledger_application::ports::{Appended, ChainHead, EventStore, Position, RecordedEvent, StoreError, StreamWrite};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use uuid::Uuid;

use super::writer::{Backend, Committed, GroupCommitWriter, advance};
use super::{hash32, unavailable};
use medledger_application::store::plan::{self, Existing, Snapshot};

pub const NOTIFY_CHANNEL: &str = "medledger_events";

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

type Row = (i64, String, i64, Uuid, String, i32, String, String, i64, Vec<u8>, Vec<u8>);

fn to_recorded(r: Row) -> Result<RecordedEvent, StoreError> {
    let (position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at_us, prev, hash) = r;
    Ok(RecordedEvent {
        position,
        stream_id,
        version,
        event_id,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at_us,
        prev_hash: hash32(prev, "prev_hash", position)?,
        hash: hash32(hash, "hash", position)?,
    })
}

pub struct PostgresEventStore {
    pool: PgPool,
    writer: GroupCommitWriter,
    committed: watch::Receiver<Position>,
}

struct PgBackend {
    pool: PgPool,
    /// Positions committed by this process, for `announce`.
    local_commits: watch::Sender<Position>,
}

impl PostgresEventStore {
    pub async fn start(pool: PgPool) -> Result<Self, StoreError> {
        let head = read_head(&pool).await?;
        let (tx, committed) = watch::channel(head.position);
        let tx = Arc::new(tx);
        // The listener holds a weak handle: it stops once the store and its writer are gone.
        tokio::spawn(listen(pool.clone(), Arc::downgrade(&tx)));
        let (local_commits, local) = watch::channel(head.position);
        tokio::spawn(announce(pool.clone(), local));
        let writer = GroupCommitWriter::spawn(Arc::new(PgBackend { pool: pool.clone(), local_commits }), tx);
        Ok(Self { pool, writer, committed })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Wakes local subscribers when another process appends. Notifications only wake:
/// subscribers always re-query the table.
async fn listen(pool: PgPool, committed: std::sync::Weak<watch::Sender<Position>>) {
    loop {
        let Some(tx) = committed.upgrade() else { return };
        if tx.is_closed() {
            return;
        }
        drop(tx);
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if listener.listen(NOTIFY_CHANNEL).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Appends notified before LISTEN took effect were not heard: catch up once
        // now that nothing more can be missed.
        if let (Some(tx), Ok(head)) = (committed.upgrade(), read_head(&pool).await) {
            advance(&tx, head.position);
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await {
                Ok(Ok(Some(n))) => {
                    let Some(tx) = committed.upgrade() else { return };
                    if let Ok(p) = n.payload().parse::<Position>() {
                        advance(&tx, p);
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => break,
                Err(_) => {
                    let Some(tx) = committed.upgrade() else { return };
                    if tx.is_closed() {
                        return;
                    }
                }
            }
        }
    }
}

/// Tells other processes about this process's appends. NOTIFY inside the append
/// transaction would serialise every commit on the notification queue lock while the
/// head lock is held; here it runs after commit, coalesced to the latest position.
async fn announce(pool: PgPool, mut local: watch::Receiver<Position>) {
    while local.changed().await.is_ok() {
        let position = *local.borrow_and_update();
        let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(NOTIFY_CHANNEL).bind(position.to_string()).execute(&pool).await;
        if sent.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn read_head(pool: &PgPool) -> Result<ChainHead, StoreError> {
    let (position, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT position, hash FROM chain_head WHERE id = 1").fetch_one(pool).await.map_err(unavailable)?;
    Ok(ChainHead { position, hash: hash32(hash, "chain head", position)? })
}

#[async_trait]
impl Backend for PgBackend {
    async fn commit(&self, requests: &[Vec<StreamWrite>]) -> Result<Committed, StoreError> {
        // BEGIN and the head lock travel in one round trip.
        let mut tx = self.pool.begin_with("BEGIN; SELECT 1 FROM chain_head WHERE id = 1 FOR UPDATE").await.map_err(unavailable)?;
        // A separate statement, so its snapshot is taken after the lock was granted and
        // sees every append committed before ours: the head, the streams' versions (one
        // index probe each) and any of the batch's event ids already stored.
        let (streams, ids) = plan::keys(requests);
        type Found = (i32, String, i64, Option<String>, Option<String>, Option<String>);
        let found: Vec<Found> = sqlx::query_as(
            "SELECT 0, encode(hash, 'hex'), position, NULL::text, NULL::text, NULL::text FROM chain_head WHERE id = 1 \
             UNION ALL SELECT 1, s.stream, v.version, NULL::text, NULL::text, NULL::text \
             FROM unnest($1::text[]) AS s(stream) CROSS JOIN LATERAL \
             (SELECT e.version FROM events e WHERE e.stream_id = s.stream ORDER BY e.version DESC LIMIT 1) v \
             UNION ALL SELECT 2, e.event_id::text, e.position, e.stream_id, e.event_type, e.payload \
             FROM unnest($2::uuid[]) AS i(id) JOIN events e ON e.event_id = i.id",
        )
        .bind(&streams)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut head = None;
        let mut versions = HashMap::new();
        let mut existing: HashMap<Uuid, Existing> = HashMap::new();
        for (kind, key, n, stream_id, event_type, payload) in found {
            match kind {
                0 => {
                    let hash = hex::decode(&key).map_err(|e| StoreError::Corrupt(format!("chain head hash: {e}")))?;
                    head = Some(ChainHead { position: n, hash: hash32(hash, "chain head", n)? });
                }
                1 => {
                    versions.insert(key, n);
                }
                _ => {
                    if let Ok(id) = Uuid::parse_str(&key) {
                        let (stream_id, event_type, payload) =
                            (stream_id.unwrap_or_default(), event_type.unwrap_or_default(), payload.unwrap_or_default());
                        existing.insert(id, Existing { position: n, stream_id, event_type, payload });
                    }
                }
            }
        }
        let head = head.ok_or_else(|| StoreError::Corrupt("the chain head row is missing".into()))?;
        let now_us = chrono::Utc::now().timestamp_micros();
        let planned = plan::plan(Snapshot { head, versions, existing }, requests, now_us);
        if planned.rows.is_empty() {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(Committed { results: planned.results, head, rows: Vec::new() });
        }
        let rows = &planned.rows;
        // Insert and move the head in one statement: one round trip while the head lock
        // is held. NOTIFY happens after commit, off the lock (see `announce`).
        sqlx::query(
            "WITH inserted AS (INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, \
             payload, metadata, recorded_at_us, prev_hash, hash) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], $7::text[], \
             $8::text[], $9::bigint[], $10::bytea[], $11::bytea[]) RETURNING 1), \
             head AS (UPDATE chain_head SET position = $12, hash = $13 WHERE id = 1 RETURNING position) \
             SELECT (SELECT position FROM head), (SELECT count(*) FROM inserted)",
        )
        .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.stream_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.event_type.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.schema_version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.metadata.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.recorded_at_us).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.prev_hash.to_vec()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.hash.to_vec()).collect::<Vec<_>>())
        .bind(planned.head.position)
        .bind(planned.head.hash.to_vec())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        advance(&self.local_commits, planned.head.position);
        Ok(Committed { results: planned.results, head: planned.head, rows: planned.rows })
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Appended, StoreError> {
        self.writer.append(writes).await
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(select_events!("WHERE stream_id = $1 ORDER BY version"))
            .bind(stream_id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(to_recorded).collect()
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(select_events!("WHERE position > $1 ORDER BY position LIMIT $2"))
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
