//! Use cases of medledger: command handlers, sagas, and the ports they run against.
//!
//! Nothing here knows which database, hash function for passwords, or mail transport
//! is in use; `infrastructure` implements the ports and `api` wires them together.

pub mod access;
pub mod accounts;
pub mod archive;
pub mod audit;
pub mod blobs;
pub mod catalog;
pub mod chain;
pub mod codec;
pub mod collections;
mod error;
pub mod inference;
pub mod jobs;
pub mod ledger;
pub mod metadata;
pub mod model_threads;
pub mod ports;
pub mod sagas;
pub mod store;

pub use error::{AccountError, AppError, CatalogError, InferenceError, Internal};
