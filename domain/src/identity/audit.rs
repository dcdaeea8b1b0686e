//! Audit entries that clients post explicitly (002 `POST /api/audit-logs/`).
//! Everything else in the audit log is derived from the history itself.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::user::UserId;
use crate::values::BoundedText;
use crate::{DomainError, DomainEvent, EventNames};

pub fn stream_id(entry_id: Uuid) -> String {
    format!("audit-{entry_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventNames)]
#[serde(tag = "type", content = "data")]
pub enum AuditEvent {
    AuditEntryRecorded {
        /// Who posted it; their key seals the details.
        #[serde(default)]
        actor_user_id: Option<UserId>,
        action: String,
        resource_type: String,
        resource_id: String,
        personal: AuditDetails,
    },
}

/// Free-form details a client sends (the seed's example carries a diagnosis): personal
/// data, sealed under the posting user's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDetails {
    #[serde(default = "erased_details")]
    pub details: serde_json::Value,
}

fn erased_details() -> serde_json::Value {
    serde_json::Value::String(crate::ERASED.into())
}

impl DomainEvent for AuditEvent {
    fn personal_subject(&self) -> Option<String> {
        let AuditEvent::AuditEntryRecorded { actor_user_id, .. } = self;
        actor_user_id.map(crate::identity::user::stream_id)
    }
}

/// A client-supplied audit entry, checked against the 002 model's field sizes.
pub fn record_entry(
    actor_user_id: Option<UserId>,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    details: serde_json::Value,
) -> Result<AuditEvent, DomainError> {
    let mut errors = std::collections::BTreeMap::new();
    let mut check = |field: &'static str, value: &str, max: usize, required: bool| {
        if required && value.trim().is_empty() {
            errors.insert(field.to_string(), vec!["This field is required".to_string()]);
        } else if let Err(e) = BoundedText::parse(value, field, max) {
            let DomainError::InvalidValue { message, .. } = e else { return };
            errors.insert(field.to_string(), vec![message]);
        }
    };
    check("action", action, 50, true);
    check("resource_type", resource_type, 50, true);
    check("resource_id", resource_id, 100, false);
    if !details.is_object() {
        errors.insert("details".to_string(), vec!["Expected a JSON object".to_string()]);
    }
    if !errors.is_empty() {
        return Err(DomainError::InvalidFields(errors));
    }
    Ok(AuditEvent::AuditEntryRecorded {
        actor_user_id,
        action: action.trim().to_string(),
        resource_type: resource_type.trim().to_string(),
        resource_id: resource_id.trim().to_string(),
        personal: AuditDetails { details },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_entry_is_trimmed() {
        let e = record_entry(Some(1), " upload_created ", "upload", "u1", json!({"a": 1})).unwrap();
        assert_eq!(e.personal_subject().as_deref(), Some("user-1"));
        assert!(matches!(e, AuditEvent::AuditEntryRecorded { ref action, .. } if action == "upload_created"));
    }

    #[test]
    fn every_bad_field_is_reported() {
        let Err(DomainError::InvalidFields(errors)) = record_entry(None, "", &"x".repeat(51), "", json!([1])) else { panic!("accepted") };
        let fields: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(fields, ["action", "details", "resource_type"]);
    }
}
