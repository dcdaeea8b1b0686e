//! Adapters behind the application's ports.

pub mod aux;
pub mod blobs;
pub mod crypto;
pub mod ids;
pub mod jwt;
pub mod mail;
mod migrate;
pub mod onnx;
pub mod password;
pub mod private_files;
pub mod secret;
pub mod store;

pub use migrate::{MigrationError, Migrations};
