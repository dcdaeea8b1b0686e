//! Adapters behind the application's ports.

pub mod blobs;
pub mod crypto;
pub mod idempotency;
pub mod ids;
pub mod jwt;
pub mod mail;
mod migrate;
pub mod onnx;
pub mod password;
pub mod private_files;
pub mod secret;
pub mod store;
pub mod vault;

pub use migrate::{Migration, MigrationError, Migrations};
