//! The HTTP face of medledger: every contract's routes on one server
//! (../shared/API-MAP.md), contributed by the bounded contexts (`contexts.rs`), plus the
//! `medledger` binary's building blocks.

// Shared: wiring, the contracts' wire formats and error shapes, middleware.
mod blob_response;
pub mod builtin_models;
pub mod config;
pub mod contexts;
pub mod contracts;
pub mod cors;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod module;
pub mod openapi;
pub mod ops;
pub mod priority;
pub mod proxy;
pub mod ratelimit;
pub mod schemas;
pub mod startup;
pub mod state;
pub mod telemetry;

// The bounded contexts, one folder each (ARCHITECTURE.md).
pub mod catalog;
pub mod collections;
pub mod identity;
pub mod inference;
pub mod scans;

pub use config::Config;
pub use startup::{App, build, core};
