//! The medledger domain: aggregates, commands, events, invariants and value types.
//!
//! Everything here is pure — no IO, no async, no clocks. Time and randomness come in
//! as command fields so that every decision can be tested with given/when/then.

// The derive names `::medledger_domain::…`, which must resolve inside this crate too.
extern crate self as medledger_domain;

// The shared kernel: what every context builds on.
mod aggregate;
mod error;
pub mod events;
pub mod job;
pub mod testing;
pub mod values;

// The bounded contexts, one folder each (ARCHITECTURE.md).
pub mod catalog;
pub mod collections;
pub mod identity;
pub mod inference;

pub use aggregate::{Aggregate, DomainEvent};
pub use error::DomainError;
pub use events::{EventKind, EventNames, EventTypes, Upcaster};

/// What personal fields read as once their owner's key has been erased.
pub const ERASED: &str = "[erased]";

fn erased() -> String {
    ERASED.to_string()
}
