//! Idempotency records: the first response to a command that carried an
//! `Idempotency-Key`, kept beside the event store. Portable SQL over `AnyPool`.

use medledger_application::ports::StoreError;
use sqlx::AnyPool;

use crate::store::unavailable;

/// A stored response to a command that carried an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedResponse {
    pub request_hash: String,
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

pub struct IdempotencyRecords {
    pool: AnyPool,
}

impl IdempotencyRecords {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    pub async fn find(&self, scope: &str, key: &str) -> Result<Option<SavedResponse>, StoreError> {
        let row: Option<(String, i64, String, String)> =
            sqlx::query_as("SELECT request_hash, status, content_type, body FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(row.map(|(request_hash, status, content_type, body)| SavedResponse { request_hash, status: status as u16, content_type, body }))
    }

    /// Saves the first response for a key; a concurrent duplicate keeps the first.
    pub async fn save(&self, scope: &str, key: &str, r: &SavedResponse) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status, content_type, body, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(&r.request_hash)
        .bind(r.status as i64)
        .bind(&r.content_type)
        .bind(&r.body)
        .bind(chrono::Utc::now().timestamp_micros())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}
