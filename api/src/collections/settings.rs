//! Collections' settings.

use crate::config::parse;
use clap::Args;

/// Collections' settings.
#[derive(Args, Debug, Clone)]
#[group(skip)]
pub struct Settings {
    /// How long a built collection archive stays downloadable, in seconds.
    #[arg(long = "collection-ttl-secs", env = "MEDLEDGER_COLLECTION_TTL_SECS", global = true, value_parser = parse::seconds, default_value = "604800")]
    pub ttl: chrono::Duration,
    /// The most items one collection archive may hold (0 counts as 1).
    #[arg(long = "collection-max-items", env = "MEDLEDGER_COLLECTION_MAX_ITEMS", global = true, value_parser = parse::at_least_one, default_value = "10000")]
    pub max_items: usize,
    /// Collections one user may have pending or ready (not expired) at once (0 counts
    /// as 1).
    #[arg(long = "collections-per-user", env = "MEDLEDGER_COLLECTIONS_PER_USER", global = true, value_parser = parse::at_least_one, default_value = "10")]
    pub per_user: usize,
}
