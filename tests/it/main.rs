//! The one integration-test binary: HTTP contracts end to end, and the event store
//! conformance suite against both adapters.

mod api;
mod architecture;
mod harness;
mod inference_engine;
mod store;
