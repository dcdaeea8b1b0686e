//! Use cases of medledger: command handlers, sagas, and the ports they run against.
//!
//! Nothing here knows which database, hash function for passwords, or mail transport
//! is in use; `infrastructure` implements the ports and `api` wires them together.

// The shared kernel: ports, the ledger, the codec, jobs, sagas.
pub mod blobs;
pub mod chain;
pub mod codec;
mod error;
pub mod jobs;
pub mod ledger;
pub mod metadata;
pub mod ports;
pub mod sagas;
pub mod store;

// The bounded contexts, one folder each (ARCHITECTURE.md).
pub mod catalog;
pub mod collections;
pub mod identity;
pub mod inference;

pub use error::{AppError, Internal};
