//! What every event store adapter shares: the pure planning of an append batch
//! (`plan`), and the in-memory store that runs use cases without a database.

mod memory;
pub mod plan;

pub use memory::InMemoryEventStore;
