//! Personal-data keys beside the event store (crypto-shredding: erasing a subject's
//! key makes its encrypted event fields unreadable). Portable SQL over `AnyPool`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use medledger_application::ports::{PersonalDataVault, StoreError};
use sqlx::AnyPool;

use crate::crypto::SecretKey;
use crate::store::unavailable;

const KEY_CACHE_LIMIT: usize = 10_000;

/// Per-subject keys, each wrapped under a key derived from the server secret, so a
/// copy of the database alone does not open personal data.
pub struct SqlVault {
    pool: AnyPool,
    kek: SecretKey,
    cache: Mutex<HashMap<String, SecretKey>>,
}

impl SqlVault {
    pub fn new(pool: AnyPool, server_secret: &[u8]) -> Self {
        Self { pool, kek: SecretKey::derive(server_secret, "subject-key-wrap"), cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, subject: &str) -> Option<SecretKey> {
        self.cache.lock().ok()?.get(subject).cloned()
    }

    fn remember(&self, subject: &str, key: &SecretKey) {
        if let Ok(mut c) = self.cache.lock() {
            // Bounded: a cold key costs one indexed read to fetch again.
            if c.len() >= KEY_CACHE_LIMIT {
                c.clear();
            }
            c.insert(subject.to_string(), key.clone());
        }
    }

    /// The subject's key; `Ok(None)` if it has been erased or never existed.
    async fn key(&self, subject: &str) -> Result<Option<SecretKey>, StoreError> {
        if let Some(k) = self.cached(subject) {
            return Ok(Some(k));
        }
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as("SELECT wrapped_key FROM subject_keys WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some((Some(wrapped),)) = row else { return Ok(None) };
        let key = self
            .kek
            .open(&wrapped, subject.as_bytes())
            .and_then(|raw| SecretKey::from_bytes(&raw))
            .ok_or_else(|| StoreError::Corrupt(format!("the key of {subject} does not open with this server's secret")))?;
        self.remember(subject, &key);
        Ok(Some(key))
    }
}

#[async_trait]
impl PersonalDataVault for SqlVault {
    async fn seal(&self, subject: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        if let Some(key) = self.key(subject).await? {
            return Ok(key.seal(plaintext, subject.as_bytes()));
        }
        let fresh = SecretKey::random();
        let wrapped = self.kek.seal(fresh.as_bytes(), subject.as_bytes());
        // Concurrent first seals for one subject: one insert wins, both use its key.
        sqlx::query("INSERT INTO subject_keys (subject, wrapped_key, created_at_us) VALUES ($1, $2, $3) ON CONFLICT (subject) DO NOTHING")
            .bind(subject)
            .bind(wrapped)
            .bind(chrono::Utc::now().timestamp_micros())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        match self.key(subject).await? {
            Some(key) => Ok(key.seal(plaintext, subject.as_bytes())),
            // The row exists without a key: this subject was erased.
            None => Err(StoreError::Erased(subject.to_string())),
        }
    }

    async fn open(&self, subject: &str, sealed: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(key) = self.key(subject).await? else { return Ok(None) };
        key.open(sealed, subject.as_bytes())
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("personal data of {subject} does not open with its key")))
    }

    async fn erase(&self, subject: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE subject_keys SET wrapped_key = NULL, erased_at_us = $2 WHERE subject = $1")
            .bind(subject)
            .bind(chrono::Utc::now().timestamp_micros())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        if let Ok(mut c) = self.cache.lock() {
            c.remove(subject);
        }
        Ok(())
    }
}
