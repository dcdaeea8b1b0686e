//! A small migration runner over `AnyPool`: the SQL files in `migrations/` are compiled
//! into the binary, so `medledger migrate` needs nothing on disk.

use sqlx::AnyPool;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration {set}/{version} ({name}) failed: {source}")]
    Failed { set: &'static str, version: i64, name: &'static str, source: sqlx::Error },
    #[error("database error while migrating: {0}")]
    Database(#[from] sqlx::Error),
}

/// One migration: its version within its set, its name, its SQL.
pub type Migration = (i64, &'static str, &'static str);

pub struct Migrations {
    set: &'static str,
    items: &'static [Migration],
}

impl Migrations {
    /// A set of migrations applied in version order, each once per database.
    pub const fn new(set: &'static str, items: &'static [Migration]) -> Self {
        Self { set, items }
    }

    pub const POSTGRES_STORE: Migrations =
        Migrations { set: "store", items: &[(1, "event_store", include_str!("../../migrations/postgres/0001_event_store.sql"))] };
    pub const SQLITE_STORE: Migrations =
        Migrations { set: "store", items: &[(1, "event_store", include_str!("../../migrations/sqlite/0001_event_store.sql"))] };
    pub const READ_MODELS: Migrations = Migrations {
        set: "read",
        items: &[
            (1, "read_models", include_str!("../../migrations/read/0001_read_models.sql")),
            (2, "datasets", include_str!("../../migrations/read/0002_datasets.sql")),
            (3, "collections", include_str!("../../migrations/read/0003_collections.sql")),
            (4, "inference", include_str!("../../migrations/read/0004_inference.sql")),
            (5, "dataset_item_blobs", include_str!("../../migrations/read/0005_dataset_item_blobs.sql")),
        ],
    };

    /// Applies what is missing; returns how many migrations ran.
    pub async fn run(&self, pool: &AnyPool, postgres: bool) -> Result<usize, MigrationError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS medledger_migrations (
                set_name TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL,
                PRIMARY KEY (set_name, version))",
        )
        .execute(pool)
        .await?;
        let mut applied = 0;
        for &(version, name, sql) in self.items {
            let mut tx = pool.begin().await?;
            if postgres {
                // Two processes migrating at once: one waits for the other.
                sqlx::query("SELECT pg_advisory_xact_lock(7262712)").execute(&mut *tx).await?;
            }
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM medledger_migrations WHERE set_name = $1 AND version = $2")
                .bind(self.set)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(|source| MigrationError::Failed { set: self.set, version, name, source })?;
            sqlx::query("INSERT INTO medledger_migrations (set_name, version, name) VALUES ($1, $2, $3)")
                .bind(self.set)
                .bind(version)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            applied += 1;
        }
        Ok(applied)
    }
}
