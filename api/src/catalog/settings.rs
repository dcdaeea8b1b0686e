//! The catalog's settings.

use crate::config::parse;
use clap::Args;

/// The catalog's settings.
#[derive(Args, Debug, Clone)]
#[group(skip)]
pub struct Settings {
    /// 000's catalog reads (datasets, a dataset, its items, search, vocabulary) answer
    /// without a token; writes and collections still need one.
    #[arg(long = "catalog-public", env = "MEDLEDGER_CATALOG_PUBLIC", global = true, value_parser = parse::switch, action = clap::ArgAction::Set, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub public: bool,
}
