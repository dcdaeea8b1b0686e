//! The HTTP face of medledger: one router per contract, mounted side by side
//! (../shared/API-MAP.md), plus the `medledger` binary's building blocks.

mod blob_response;
pub mod builtin_models;
pub mod config;
pub mod cors;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod priority;
pub mod proxy;
pub mod ratelimit;
pub mod routes;
pub mod schemas;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use config::Config;
pub use startup::{App, build, core};
