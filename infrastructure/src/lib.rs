//! Adapters behind the application's ports.

pub mod aux;
pub mod blobs;
pub mod crypto;
pub mod ids;
pub mod jwt;
pub mod mail;
pub mod onnx;
mod migrate;
pub mod password;
pub mod secret;
pub mod store;

pub use migrate::{MigrationError, Migrations};
