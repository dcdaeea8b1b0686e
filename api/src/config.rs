//! Server configuration. Every setting has a default, so `medledger` with no
//! arguments serves on port 8000 with everything under `./data`.

use std::path::PathBuf;

use crate::priority::RequestPriority;

/// Decision #45 and its revision #48 (BENCHMARKS.md, stop 12).
pub const DEFAULT_REQUEST_PRIORITY: RequestPriority = RequestPriority::Nice(19);

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub bind: String,
    pub data_dir: PathBuf,
    /// `postgres://...` selects PostgreSQL; none selects SQLite files in `data_dir`.
    pub database_url: Option<String>,
    /// `MEDLEDGER_SECRET_KEY`; when unset a random one is generated into `data_dir`.
    pub secret_key: Option<String>,
    pub access_ttl: chrono::Duration,
    pub refresh_ttl: chrono::Duration,
    /// Requests per minute per client on auth endpoints; 0 turns the limit off.
    pub auth_rate_limit: u32,
    /// Requests per minute per user on the 002 API; 0 turns the limit off.
    pub api_rate_limit: u32,
    /// Cheap password hashing for tests and benchmarks only.
    pub fast_password_hash: bool,
    pub max_json_bytes: usize,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    pub reset_link_base: String,
    /// `smtp://[user:password@]host[:port]`; unset: mail goes to the outbox directory.
    pub smtp_url: Option<String>,
    pub mail_from: String,
    /// How long a built collection archive stays downloadable (`MEDLEDGER_COLLECTION_TTL_SECS`).
    pub collection_ttl: chrono::Duration,
    /// ONNX Runtime's shared library (`MEDLEDGER_ONNXRUNTIME`); unset: `ORT_DYLIB_PATH`,
    /// then where `scripts/fetch-onnxruntime.sh` puts it.
    pub onnxruntime: Option<PathBuf>,
    /// Intra-op threads of each model session (`MEDLEDGER_INFERENCE_THREADS`).
    pub inference_threads: usize,
    /// Inference tasks in flight at once (`MEDLEDGER_INFERENCE_QUEUE`).
    pub inference_queue: usize,
    /// `MEDLEDGER_INFERENCE_WORKERS`: threads that run models.
    pub inference_workers: usize,
    /// `MEDLEDGER_INFERENCE_BATCH`: at most this many queued tasks share one run of a
    /// model (1: every task runs alone).
    pub inference_batch: usize,
    /// `MEDLEDGER_REQUEST_PRIORITY`: where every thread but the model threads runs,
    /// `idle` or a number of nice levels below them (0: all alike). See `priority`; an
    /// unreadable value is kept as the message `serve` refuses to start with.
    pub request_priority: Result<RequestPriority, String>,
}

/// `MEDLEDGER_REQUEST_PRIORITY`, else the name it had until stop 12,
/// `MEDLEDGER_REQUEST_NICE` (a server configured with it keeps its setting), else the
/// default.
fn request_priority(priority: Option<String>, old_nice: Option<String>) -> Result<RequestPriority, String> {
    let named = priority.map(|v| ("MEDLEDGER_REQUEST_PRIORITY", v)).or(old_nice.map(|v| ("MEDLEDGER_REQUEST_NICE", v)));
    named.map_or(Ok(DEFAULT_REQUEST_PRIORITY), |(name, v)| v.parse().map_err(|e| format!("{name}: {e}")))
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Defaults overridden by environment variables.
    pub fn from_env() -> Self {
        Self {
            port: env_u32("PORT", 8000) as u16,
            bind: env_opt("MEDLEDGER_BIND").unwrap_or_else(|| "0.0.0.0".into()),
            data_dir: env_opt("MEDLEDGER_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data")),
            database_url: env_opt("DATABASE_URL"),
            secret_key: env_opt("MEDLEDGER_SECRET_KEY"),
            access_ttl: chrono::Duration::minutes(env_u32("MEDLEDGER_ACCESS_TTL_MINUTES", 15) as i64),
            refresh_ttl: chrono::Duration::days(env_u32("MEDLEDGER_REFRESH_TTL_DAYS", 7) as i64),
            auth_rate_limit: env_u32("MEDLEDGER_AUTH_RATE_LIMIT", 5),
            api_rate_limit: env_u32("MEDLEDGER_API_RATE_LIMIT", 100),
            fast_password_hash: env_opt("MEDLEDGER_FAST_PASSWORD_HASH").is_some_and(|v| v == "1" || v == "true"),
            max_json_bytes: env_u32("MEDLEDGER_MAX_JSON_BYTES", 1024 * 1024) as usize,
            admin_email: env_opt("MEDLEDGER_ADMIN_EMAIL"),
            admin_password: env_opt("MEDLEDGER_ADMIN_PASSWORD"),
            reset_link_base: env_opt("MEDLEDGER_RESET_LINK_BASE").unwrap_or_else(|| "http://localhost:3000/reset-password".into()),
            smtp_url: env_opt("MEDLEDGER_SMTP_URL"),
            mail_from: env_opt("MEDLEDGER_MAIL_FROM").unwrap_or_else(|| "medledger <noreply@medledger.local>".into()),
            collection_ttl: chrono::Duration::seconds(
                env_opt("MEDLEDGER_COLLECTION_TTL_SECS").and_then(|v| v.parse().ok()).unwrap_or(7 * 24 * 3600),
            ),
            onnxruntime: env_opt("MEDLEDGER_ONNXRUNTIME").map(PathBuf::from),
            inference_threads: env_u32("MEDLEDGER_INFERENCE_THREADS", 1).max(1) as usize,
            inference_queue: env_u32("MEDLEDGER_INFERENCE_QUEUE", 32).max(1) as usize,
            inference_workers: env_u32("MEDLEDGER_INFERENCE_WORKERS", 1).max(1) as usize,
            inference_batch: env_u32("MEDLEDGER_INFERENCE_BATCH", 8).max(1) as usize,
            request_priority: request_priority(env_opt("MEDLEDGER_REQUEST_PRIORITY"), env_opt("MEDLEDGER_REQUEST_NICE")),
        }
    }

    /// The catalog's full-text index: local to each server, rebuilt from the history.
    pub fn catalog_index_dir(&self) -> PathBuf {
        self.data_dir.join("catalog-index")
    }

    /// Dataset items and collection archives.
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_priority_takes_the_new_name_then_the_old_one() {
        let some = |v: &str| Some(v.to_string());
        assert_eq!(request_priority(None, None), Ok(DEFAULT_REQUEST_PRIORITY));
        assert_eq!(request_priority(some("idle"), some("0")), Ok(RequestPriority::Idle));
        assert_eq!(request_priority(None, some("0")), Ok(RequestPriority::Nice(0)), "a server set up before the rename keeps its setting");
        let refused = request_priority(None, some("lots")).unwrap_err();
        assert!(refused.starts_with("MEDLEDGER_REQUEST_NICE: "), "{refused}");
    }
}
