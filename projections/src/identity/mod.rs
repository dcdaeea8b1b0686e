//! Identity's read models: users, the audit log, and the access model requests are
//! judged by.

mod access;
mod audit_log;
pub mod queries;
mod users;

use std::sync::Arc;

pub use access::AccessProjection;
pub use audit_log::AuditLogProjection;
pub use users::{SqlUserDirectory, UsersProjection};

use crate::Projection;

/// The read models' names, as the runner's progress knows them (`Progress::caught_up_on`).
pub const USERS: &str = "users";
pub const AUDIT_LOG: &str = "audit_log";
/// Sessions and roles as requests check them (`AccessProjection`).
pub const ACCESS: &str = "access";

/// Identity's SQL read models (the access model is fed as an index: it lives in memory).
pub fn read_models() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(UsersProjection), Arc::new(AuditLogProjection)]
}
