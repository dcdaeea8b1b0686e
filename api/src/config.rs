//! Server configuration. Every setting has a default, so `medledger` with no
//! arguments serves on port 8000 with everything under `./data`.
//!
//! Each setting is a command-line option and an environment variable (an empty variable
//! counts as unset). A value that does not parse stops the binary with a message naming
//! the variable or option it came from, before anything starts.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser};

use crate::priority::RequestPriority;

pub(crate) mod parse;
mod secret;

pub use secret::{Secret, SmtpUrl};

/// Decision #45 and its revision #48 (BENCHMARKS.md, stop 12).
pub const DEFAULT_REQUEST_PRIORITY: RequestPriority = RequestPriority::Nice(19);

/// Refreshes per minute per client address. A refresh cannot guess a credential (it
/// needs a signed token), so the bound is on cost; one address may stand for a whole
/// clinic behind NAT, where each open frontend refreshes every 15 minutes.
pub const DEFAULT_REFRESH_RATE_LIMIT: u32 = 30;

/// Every option is global, so it may come before or after the subcommand.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Listening port.
    #[arg(long, env = "PORT", global = true, default_value_t = 8000)]
    pub port: u16,
    /// Listening address.
    #[arg(long, env = "MEDLEDGER_BIND", global = true, default_value = "0.0.0.0")]
    pub bind: String,
    /// Where the SQLite files, blobs, outbox and secret live.
    #[arg(long, env = "MEDLEDGER_DATA_DIR", global = true, default_value = "data")]
    pub data_dir: PathBuf,
    /// `postgres://...` selects PostgreSQL; none selects SQLite files in `data_dir`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Signs tokens and wraps personal-data keys; when unset a random one is generated
    /// into `data_dir`.
    #[arg(long, env = "MEDLEDGER_SECRET_KEY", global = true, hide_env_values = true)]
    pub secret_key: Option<Secret>,
    /// Requests per minute per client on auth endpoints; 0 turns the limit off.
    #[arg(long, env = "MEDLEDGER_AUTH_RATE_LIMIT", global = true, default_value_t = 5)]
    pub auth_rate_limit: u32,
    /// Requests per minute per user on the 002 API; 0 turns the limit off.
    #[arg(long, env = "MEDLEDGER_API_RATE_LIMIT", global = true, default_value_t = 100)]
    pub api_rate_limit: u32,
    /// Larger JSON bodies get 413.
    #[arg(long, env = "MEDLEDGER_MAX_JSON_BYTES", global = true, default_value_t = 1024 * 1024)]
    pub max_json_bytes: usize,
    /// `smtp://[user:password@]host[:port]`; unset: mail goes to the outbox directory.
    #[arg(long, env = "MEDLEDGER_SMTP_URL", global = true, hide_env_values = true)]
    pub smtp_url: Option<SmtpUrl>,
    /// Sender of outgoing mail.
    #[arg(long, env = "MEDLEDGER_MAIL_FROM", global = true, default_value = "medledger <noreply@medledger.local>")]
    pub mail_from: String,
    /// Where every thread but the model threads runs: `idle` or a number of nice levels
    /// below them (0: all alike). See `priority`; unset: `request_nice`, then
    /// `DEFAULT_REQUEST_PRIORITY` (read both through `request_priority()`).
    #[arg(long, env = "MEDLEDGER_REQUEST_PRIORITY", global = true)]
    pub request_priority: Option<RequestPriority>,
    /// The name `MEDLEDGER_REQUEST_PRIORITY` had until stop 12: a server configured with
    /// it keeps its setting.
    #[arg(long, env = "MEDLEDGER_REQUEST_NICE", global = true, hide = true)]
    pub request_nice: Option<RequestPriority>,
    /// Clients reach the server over HTTPS (directly or through a TLS-terminating
    /// proxy): cookies are `Secure` (the session cookie `__Host-`).
    #[arg(long, env = "MEDLEDGER_HTTPS", global = true, value_parser = parse::switch, action = clap::ArgAction::Set, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub https: bool,
    /// E.g. `127.0.0.1:9100`: serve `/metrics` there, without authentication and not on
    /// the main port; unset: `/metrics` on the main port, to admins only.
    #[arg(long, env = "MEDLEDGER_METRICS_BIND", global = true)]
    pub metrics_bind: Option<String>,
    /// A request's headers must arrive within this many seconds, and an idle kept-alive
    /// connection is closed after it (zero: no limit).
    #[arg(long = "header-timeout-secs", env = "MEDLEDGER_HEADER_TIMEOUT_SECS", global = true, value_parser = parse::secs, default_value = "30")]
    pub header_timeout: std::time::Duration,
    /// The grace period of a request body, in seconds; after it the body must have
    /// averaged `body_min_rate` (else 408).
    #[arg(long = "body-timeout-secs", env = "MEDLEDGER_BODY_TIMEOUT_SECS", global = true, value_parser = parse::secs, default_value = "30")]
    pub body_timeout: std::time::Duration,
    /// Zero: no minimum rate.
    #[arg(long = "body-min-bytes-per-sec", env = "MEDLEDGER_BODY_MIN_BYTES_PER_SEC", global = true, default_value_t = 1024)]
    pub body_min_rate: u32,
    /// Browser origins (`scheme://host[:port]`, comma-separated) that may call the API
    /// with credentials; empty: no CORS headers at all. Checked when the server is built.
    // A qualified `Vec` is one value to clap (the whole comma list), not one per flag.
    #[arg(long, env = "MEDLEDGER_CORS_ORIGINS", global = true, value_parser = parse::comma_list, default_value = "")]
    pub cors_origins: std::vec::Vec<String>,
    /// Addresses or CIDR ranges of the reverse proxies in front of the server; only a
    /// request from one of them has its `X-Forwarded-*` headers believed. Empty: none.
    /// Checked when the server is built.
    #[arg(long, env = "MEDLEDGER_TRUSTED_PROXIES", global = true, value_parser = parse::comma_list, default_value = "")]
    pub trusted_proxies: std::vec::Vec<String>,
    /// Token refreshes per minute per client, a bucket of its own (a refresh is not a
    /// login attempt); 0 turns the limit off.
    #[arg(long, env = "MEDLEDGER_REFRESH_RATE_LIMIT", global = true, default_value_t = DEFAULT_REFRESH_RATE_LIMIT)]
    pub refresh_rate_limit: u32,
    /// Each context's own settings (`contexts.rs`).
    #[command(flatten)]
    pub contexts: crate::contexts::Settings,
}

/// `Config` alone as a command line, for `from_env` and `default`.
#[derive(Parser)]
#[command(name = "medledger")]
struct Settings {
    #[command(flatten)]
    config: Config,
}

impl Default for Config {
    /// Every setting's default, whatever the environment holds.
    fn default() -> Self {
        let command = Settings::command().mut_args(|arg| arg.env(None::<&str>));
        let parsed = command.try_get_matches_from(["medledger"]).and_then(|m| Settings::from_arg_matches(&m));
        parsed.map(|s| s.config).unwrap_or_else(|e| unreachable!("the defaults parse: {e}"))
    }
}

impl Config {
    /// Defaults overridden by environment variables (no command-line options).
    pub fn from_env() -> Result<Self, clap::Error> {
        parse_from::<Settings, _>(["medledger"]).map(|s| s.config)
    }

    /// Where every thread but the model threads runs: `MEDLEDGER_REQUEST_PRIORITY`,
    /// else its old name `MEDLEDGER_REQUEST_NICE`, else the default.
    pub fn request_priority(&self) -> RequestPriority {
        self.request_priority.or(self.request_nice).unwrap_or(DEFAULT_REQUEST_PRIORITY)
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

/// The command line of `C` (a parser that flattens `Config`) read with the environment,
/// or exits with clap's message: a bad value names its environment variable.
pub fn parse_command_line<C: Parser>() -> C {
    parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// `parse_command_line` over `args`, returning the error.
pub fn parse_from<C, I>(args: I) -> Result<C, clap::Error>
where
    C: Parser,
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    // An empty variable counts as unset (as `VAR= medledger` or an empty line in a
    // compose file means), not as a value that fails to parse.
    let command = C::command().mut_args(|arg| {
        let empty = arg.get_env().is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()));
        if empty { arg.env(None::<&str>) } else { arg }
    });
    let mut matches = match command.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(e) => return Err(parse::name_the_variable(e, command, &args)),
    };
    C::from_arg_matches_mut(&mut matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Config {
        let command = Settings::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.try_get_matches_from(std::iter::once("medledger").chain(args.iter().copied())).expect("parses");
        Settings::from_arg_matches(&matches).expect("parses").config
    }

    #[test]
    fn request_priority_takes_the_new_name_then_the_old_one() {
        assert_eq!(parsed(&[]).request_priority(), DEFAULT_REQUEST_PRIORITY);
        assert_eq!(parsed(&["--request-priority", "idle", "--request-nice", "0"]).request_priority(), RequestPriority::Idle);
        let old = parsed(&["--request-nice", "0"]);
        assert_eq!(old.request_priority(), RequestPriority::Nice(0), "a server set up before the rename keeps its setting");
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!((c.port, c.bind.as_str(), c.data_dir.as_path()), (8000, "0.0.0.0", std::path::Path::new("data")));
        assert_eq!(
            (c.contexts.identity.access_ttl, c.contexts.identity.refresh_ttl),
            (chrono::Duration::minutes(15), chrono::Duration::days(7))
        );
        assert_eq!((c.auth_rate_limit, c.api_rate_limit, c.contexts.inference.task_rate_limit, c.refresh_rate_limit), (5, 100, 120, 30));
        assert_eq!(c.contexts.inference.max_image_pixels, 2048 * 2048);
        assert_eq!((c.contexts.identity.fast_password_hash, c.https, c.contexts.catalog.public), (false, false, false));
        assert_eq!(c.contexts.collections.ttl, chrono::Duration::days(7));
        assert_eq!(
            (c.contexts.inference.threads, c.contexts.inference.queue, c.contexts.inference.workers, c.contexts.inference.batch),
            (1, 32, 1, 8)
        );
        assert_eq!(
            (c.contexts.collections.max_items, c.contexts.collections.per_user, c.contexts.identity.min_password_length),
            (10_000, 10, 12)
        );
        assert!(c.cors_origins.is_empty() && c.trusted_proxies.is_empty() && c.secret_key.is_none());
        let grace = medledger_domain::identity::session::DEFAULT_REFRESH_GRACE_SECS;
        assert_eq!(
            c.contexts.identity.refresh_grace,
            std::time::Duration::from_secs(grace.into()),
            "the literal default follows the domain's"
        );
        assert_eq!(c.request_priority(), DEFAULT_REQUEST_PRIORITY);
    }

    #[test]
    fn values_keep_their_old_meaning() {
        let c = parsed(&[
            "--inference-threads=0",
            "--min-password-length=3",
            "--cors-origins= http://a.example , ,http://b.example",
            "--https",
            "--catalog-public=1",
            "--fast-password-hash=false",
        ]);
        assert_eq!(c.contexts.inference.threads, 1, "0 counts as 1");
        assert_eq!(c.contexts.identity.min_password_length, 8, "kept within 8 to 128");
        assert_eq!(c.cors_origins, ["http://a.example", "http://b.example"], "blanks dropped");
        assert!(c.https && c.contexts.catalog.public && !c.contexts.identity.fast_password_hash);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = parsed(&[
            "--secret-key=key-material",
            "--admin-password=hunter2hunter2",
            "--smtp-url=smtp://mailer:p4ssw0rd@mail.example:2525",
        ]);
        let shown = format!("{c:?}");
        for secret in ["key-material", "hunter2hunter2", "p4ssw0rd"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        assert!(shown.contains("[redacted]"));
        assert!(shown.contains("smtp://mailer:[redacted]@mail.example:2525"), "the rest of the URL still helps: {shown}");
        assert_eq!(c.secret_key.as_ref().map(Secret::expose), Some("key-material"));
    }
}
