//! Identity: accounts, their roles, sessions and the audit entries people record.

pub mod audit;
pub mod role;
pub mod session;
pub mod user;
