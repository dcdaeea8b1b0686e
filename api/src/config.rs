//! Server configuration. Every setting has a default, so `medledger` with no
//! arguments serves on port 8000 with everything under `./data`.

use std::path::PathBuf;

use crate::priority::RequestPriority;

/// 2048×2048: sixteen times the side the built-in models take (128×128), so nothing a
/// model can see is lost, and one decode stays within 2048² × (8 + 3) bytes ≈ 46 MB.
pub const DEFAULT_MAX_IMAGE_PIXELS: u32 = 2048 * 2048;

/// A person creates a task and waits for its result; a script sending a folder at
/// this pace stays far below what the server runs (hundreds of tasks a second), and a
/// flood from one account is cut off within a minute.
pub const DEFAULT_TASK_RATE_LIMIT: u32 = 120;

/// The built-in models need a few MB each and run in about 3 ms an image: these
/// bounds are for models that try more (decision in docs/decisions.md, issue 15).
pub const DEFAULT_MODEL_MAX_MEMORY_MB: u32 = 1024;
pub const DEFAULT_MODEL_RUN_TIMEOUT_MS: u32 = 5_000;

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
    /// `MEDLEDGER_TASK_RATE_LIMIT`: inference tasks a user may create per minute; 0 turns
    /// the limit off.
    pub task_rate_limit: u32,
    /// `MEDLEDGER_MAX_IMAGE_PIXELS`: the largest task image, width × height, checked in
    /// its header before it is decoded.
    pub max_image_pixels: u64,
    /// `MEDLEDGER_IMAGE_DECODES`: task images decoded at once (default: one per core);
    /// 0 lifts the bound.
    pub image_decodes: usize,
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
    /// `MEDLEDGER_MODEL_MAX_MEMORY_MB`: the most memory ONNX Runtime may allocate for
    /// all the models of this process together (their weights and the tensors of the runs
    /// under way); a run that would need more fails its task. Process-wide: the first
    /// engine of a process sets it.
    pub model_max_memory_mb: usize,
    /// `MEDLEDGER_MODEL_RUN_TIMEOUT_MS`: the longest one model run may take before it is
    /// stopped and its task fails.
    pub model_run_timeout: std::time::Duration,
    /// `MEDLEDGER_REQUEST_PRIORITY`: where every thread but the model threads runs,
    /// `idle` or a number of nice levels below them (0: all alike). See `priority`; an
    /// unreadable value is kept as the message `serve` refuses to start with.
    pub request_priority: Result<RequestPriority, String>,
    /// `MEDLEDGER_HTTPS`: clients reach the server over HTTPS (directly or through a
    /// TLS-terminating proxy): cookies are `Secure` (the session cookie `__Host-`).
    pub https: bool,
    /// `MEDLEDGER_METRICS_BIND` (`127.0.0.1:9100`): serve `/metrics` there, without
    /// authentication and not on the main port; unset: `/metrics` on the main port, to
    /// admins only.
    pub metrics_bind: Option<String>,
    /// `MEDLEDGER_HEADER_TIMEOUT_SECS`: a request's headers must arrive within this
    /// time, and an idle kept-alive connection is closed after it (zero: no limit).
    pub header_timeout: std::time::Duration,
    /// `MEDLEDGER_BODY_TIMEOUT_SECS`: the grace period of a request body; after it the
    /// body must have averaged `body_min_rate` (else 408).
    pub body_timeout: std::time::Duration,
    /// `MEDLEDGER_BODY_MIN_BYTES_PER_SEC` (zero: no minimum rate).
    pub body_min_rate: u32,
    /// `MEDLEDGER_COLLECTION_MAX_ITEMS`: the most items one collection archive may hold.
    pub collection_max_items: usize,
    /// `MEDLEDGER_COLLECTIONS_PER_USER`: collections one user may have pending or ready
    /// (not expired) at once.
    pub collections_per_user: usize,
    /// `MEDLEDGER_MIN_PASSWORD_LENGTH` (8 to 128; ASVS 2.1.1 asks for 12).
    pub min_password_length: usize,
    /// `MEDLEDGER_CATALOG_PUBLIC`: 000's catalog reads (datasets, a dataset, its items,
    /// search, vocabulary) answer without a token; writes and collections still need one.
    pub catalog_public: bool,
    /// `MEDLEDGER_CORS_ORIGINS`: browser origins (`scheme://host[:port]`, comma-separated)
    /// that may call the API with credentials; empty: no CORS headers at all. Checked
    /// when the server is built.
    pub cors_origins: Vec<String>,
    /// `MEDLEDGER_TRUSTED_PROXIES`: addresses or CIDR ranges of the reverse proxies in
    /// front of the server; only a request from one of them has its `X-Forwarded-*`
    /// headers believed. Empty: none. Checked when the server is built.
    pub trusted_proxies: Vec<String>,
    /// `MEDLEDGER_REFRESH_GRACE_SECS`: how long after a refresh token's rotation that
    /// token still gets the same answer instead of revoking the session (0: never).
    pub refresh_grace: std::time::Duration,
    /// `MEDLEDGER_REFRESH_RATE_LIMIT`: token refreshes per minute per client, a bucket
    /// of its own (a refresh is not a login attempt); 0 turns the limit off.
    pub refresh_rate_limit: u32,
}

/// Refreshes per minute per client address. A refresh cannot guess a credential (it
/// needs a signed token), so the bound is on cost; one address may stand for a whole
/// clinic behind NAT, where each open frontend refreshes every 15 minutes.
pub const DEFAULT_REFRESH_RATE_LIMIT: u32 = 30;

/// A comma-separated list, blanks dropped.
fn env_list(name: &str) -> Vec<String> {
    env_opt(name).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
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
            task_rate_limit: env_u32("MEDLEDGER_TASK_RATE_LIMIT", DEFAULT_TASK_RATE_LIMIT),
            max_image_pixels: u64::from(env_u32("MEDLEDGER_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS).max(1)),
            image_decodes: env_opt("MEDLEDGER_IMAGE_DECODES")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(medledger_application::inference::default_concurrent_decodes),
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
            model_max_memory_mb: env_u32("MEDLEDGER_MODEL_MAX_MEMORY_MB", DEFAULT_MODEL_MAX_MEMORY_MB).max(1) as usize,
            model_run_timeout: std::time::Duration::from_millis(
                env_u32("MEDLEDGER_MODEL_RUN_TIMEOUT_MS", DEFAULT_MODEL_RUN_TIMEOUT_MS).max(1).into(),
            ),
            request_priority: request_priority(env_opt("MEDLEDGER_REQUEST_PRIORITY"), env_opt("MEDLEDGER_REQUEST_NICE")),
            https: env_opt("MEDLEDGER_HTTPS").is_some_and(|v| v == "1" || v == "true"),
            metrics_bind: env_opt("MEDLEDGER_METRICS_BIND"),
            header_timeout: std::time::Duration::from_secs(env_u32("MEDLEDGER_HEADER_TIMEOUT_SECS", 30).into()),
            body_timeout: std::time::Duration::from_secs(env_u32("MEDLEDGER_BODY_TIMEOUT_SECS", 30).into()),
            body_min_rate: env_u32("MEDLEDGER_BODY_MIN_BYTES_PER_SEC", 1024),
            collection_max_items: env_u32("MEDLEDGER_COLLECTION_MAX_ITEMS", 10_000).max(1) as usize,
            collections_per_user: env_u32("MEDLEDGER_COLLECTIONS_PER_USER", 10).max(1) as usize,
            min_password_length: (env_u32("MEDLEDGER_MIN_PASSWORD_LENGTH", 12) as usize)
                .clamp(medledger_domain::values::PasswordPolicy::LOWEST, medledger_domain::values::NewPassword::MAX_CHARS),
            catalog_public: env_opt("MEDLEDGER_CATALOG_PUBLIC").is_some_and(|v| v == "1" || v == "true"),
            cors_origins: env_list("MEDLEDGER_CORS_ORIGINS"),
            trusted_proxies: env_list("MEDLEDGER_TRUSTED_PROXIES"),
            refresh_grace: std::time::Duration::from_secs(
                env_u32("MEDLEDGER_REFRESH_GRACE_SECS", medledger_domain::session::DEFAULT_REFRESH_GRACE_SECS).into(),
            ),
            refresh_rate_limit: env_u32("MEDLEDGER_REFRESH_RATE_LIMIT", DEFAULT_REFRESH_RATE_LIMIT),
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
