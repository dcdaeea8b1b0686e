//! The medledger domain: aggregates, commands, events, invariants and value types.
//!
//! Everything here is pure — no IO, no async, no clocks. Time and randomness come in
//! as command fields so that every decision can be tested with given/when/then.

// The derive names `::medledger_domain::…`, which must resolve inside this crate too.
extern crate self as medledger_domain;

mod aggregate;
pub mod audit;
pub mod catalog;
pub mod collection;
pub mod dataset_item;
mod error;
pub mod events;
pub mod inference;
pub mod job;
pub mod role;
pub mod session;
pub mod testing;
pub mod user;
pub mod values;
pub mod vocabulary;

pub use aggregate::{Aggregate, DomainEvent};
pub use error::DomainError;
pub use events::{EventKind, EventNames, EventTypes, Upcaster};

/// What personal fields read as once their owner's key has been erased.
pub const ERASED: &str = "[erased]";

fn erased() -> String {
    ERASED.to_string()
}
