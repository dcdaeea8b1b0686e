//! Identity: accounts, their roles, sessions and the audit entries people record.

pub mod audit;
pub mod role;
pub mod session;
pub mod user;

use crate::events::EventEnum;

/// Identity's event enums, as the server reads them (their upcasters included).
pub const EVENTS: &[EventEnum] = &[
    EventEnum::of::<user::UserEvent>("UserEvent"),
    EventEnum::of::<user::ClaimEvent>("ClaimEvent"),
    EventEnum::of::<session::SessionEvent>("SessionEvent"),
    EventEnum::of::<audit::AuditEvent>("AuditEvent"),
];
