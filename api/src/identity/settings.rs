//! Identity's settings: tokens, passwords, the first admin, reset mail.

use crate::config::Secret;
use crate::config::parse;
use clap::Args;

/// Identity's settings: tokens, passwords, the first admin, reset mail.
#[derive(Args, Debug, Clone)]
#[group(skip)]
pub struct Settings {
    /// Access token lifetime, in minutes.
    #[arg(long = "access-ttl-minutes", env = "MEDLEDGER_ACCESS_TTL_MINUTES", global = true, value_parser = parse::minutes, default_value = "15")]
    pub access_ttl: chrono::Duration,
    /// Refresh token lifetime, in days.
    #[arg(long = "refresh-ttl-days", env = "MEDLEDGER_REFRESH_TTL_DAYS", global = true, value_parser = parse::days, default_value = "7")]
    pub refresh_ttl: chrono::Duration,
    /// Cheap password hashing for tests and benchmarks only (`1`/`true`).
    #[arg(long, env = "MEDLEDGER_FAST_PASSWORD_HASH", global = true, value_parser = parse::switch, action = clap::ArgAction::Set, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub fast_password_hash: bool,
    /// With the password: create this admin at start if absent.
    #[arg(long, env = "MEDLEDGER_ADMIN_EMAIL", global = true)]
    pub admin_email: Option<String>,
    #[arg(long, env = "MEDLEDGER_ADMIN_PASSWORD", global = true, hide_env_values = true)]
    pub admin_password: Option<Secret>,
    /// The link in password-reset mail.
    #[arg(long, env = "MEDLEDGER_RESET_LINK_BASE", global = true, default_value = "http://localhost:3000/reset-password")]
    pub reset_link_base: String,
    /// The shortest new password, kept within 8 to 128 (ASVS 2.1.1 asks for 12).
    #[arg(long, env = "MEDLEDGER_MIN_PASSWORD_LENGTH", global = true, value_parser = parse::password_length, default_value = "12")]
    pub min_password_length: usize,
    /// How long after a refresh token's rotation, in seconds, that token still gets the
    /// same answer instead of revoking the session (0: never).
    #[arg(long = "refresh-grace-secs", env = "MEDLEDGER_REFRESH_GRACE_SECS", global = true, value_parser = parse::secs, default_value = "10")]
    pub refresh_grace: std::time::Duration,
}
