//! The audit log (002 `/api/audit-logs/`): one row per event in the history, the
//! explicit entries clients post included. Its id is the event's global position.

use async_trait::async_trait;
use medledger_application::codec::DecodedEvent;
use medledger_domain::EventTypes;
use serde_json::Value;
use sqlx::AnyConnection;

use crate::{Projection, ProjectionError, timestamp};

pub struct AuditLogProjection;

/// Payload fields never copied into the audit log's details.
const HIDDEN: [&str; 4] = ["personal", "password_hash", "token_hash", "token"];

fn snake_case(event_type: &str) -> String {
    let mut out = String::with_capacity(event_type.len() + 4);
    for (i, c) in event_type.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The resource an event is about, as its stream names it (`user-7`: user 7). An item's
/// event names its dataset, as it did while items were recorded on the dataset's stream
/// (decision #81).
fn resource(stream_id: &str, data: &Value) -> (String, String) {
    let (category, suffix) = stream_id.split_once('-').unwrap_or((stream_id, ""));
    if category == "dataset_item"
        && let Some(dataset) = data["dataset_id"].as_i64()
    {
        return ("dataset".to_string(), dataset.to_string());
    }
    (category.to_string(), suffix.to_string())
}

#[async_trait]
impl Projection for AuditLogProjection {
    fn name(&self) -> &'static str {
        super::AUDIT_LOG
    }

    /// One row per event.
    fn handles(&self) -> EventTypes {
        EventTypes::every()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    async fn apply(&self, tx: &mut AnyConnection, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let r = &event.recorded;
        let (category, suffix) = resource(&r.stream_id, &event.data);
        let (action, resource_type, resource_id, details) = if r.event_type == "AuditEntryRecorded" {
            let text = |k: &str| event.data[k].as_str().unwrap_or_default().to_string();
            (text("action"), text("resource_type"), text("resource_id"), event.data["personal"]["details"].clone())
        } else {
            let mut details = event.data.clone();
            if let Value::Object(map) = &mut details {
                for k in HIDDEN {
                    map.remove(k);
                }
            }
            (snake_case(&r.event_type), category, suffix, details)
        };
        let user_id = event.metadata.actor_user_id.or_else(|| event.data["user_id"].as_i64());
        sqlx::query(
            "INSERT INTO audit_log (id, user_id, action, resource_type, resource_id, timestamp, ip_address, user_agent, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(r.position)
        .bind(user_id)
        .bind(action)
        .bind(resource_type)
        .bind(resource_id)
        .bind(timestamp(r.recorded_at()))
        .bind(event.metadata.client_ip.clone())
        .bind(event.metadata.user_agent.clone())
        .bind(details.to_string())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_item_is_audited_under_its_dataset_wherever_it_is_recorded() {
        let data = serde_json::json!({"dataset_id": 4, "item": {}});
        assert_eq!(super::resource("dataset_item-12", &data), ("dataset".into(), "4".into()));
        assert_eq!(super::resource("dataset-4", &data), ("dataset".into(), "4".into()));
        assert_eq!(super::resource("user-7", &serde_json::json!({})), ("user".into(), "7".into()));
    }

    #[test]
    fn event_types_become_snake_case_actions() {
        assert_eq!(super::snake_case("UserRegistered"), "user_registered");
        assert_eq!(super::snake_case("RefreshTokenReuseDetected"), "refresh_token_reuse_detected");
    }
}
