//! Explicit audit entries (002 `POST /api/audit-logs/`).

use medledger_domain::identity::audit::{self, record_entry};
use uuid::Uuid;

use crate::AppError;
use crate::ledger::Ledger;
use crate::metadata::CommandContext;
use crate::ports::{ExpectedVersion, Position};

pub async fn record(
    ledger: &Ledger,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    details: serde_json::Value,
    ctx: &CommandContext,
) -> Result<Position, AppError> {
    let event = record_entry(ctx.metadata.actor_user_id, action, resource_type, resource_id, details)?;
    let stream = audit::stream_id(match &ctx.idempotency_key {
        Some(_) => ctx.event_id("audit", 0),
        None => Uuid::now_v7(),
    });
    let part = ledger.prepare(&stream, ExpectedVersion::Any, &[event], ctx).await?;
    Ok(ledger.commit(vec![part]).await?.last_position)
}
