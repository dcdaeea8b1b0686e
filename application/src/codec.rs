//! Domain events ⇄ stored events: serialisation, sealing personal data, upcasting.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use medledger_domain::DomainEvent;
use medledger_domain::events::{EventEnum, Upcaster};
use serde::de::value::MapDeserializer;
use serde_json::{Map, Value, json};

use crate::AppError;
use crate::metadata::EventMetadata;
use crate::ports::{NewEvent, PersonalDataVault, Position, RecordedEvent, StoreError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A stored event with its payload opened (personal data decrypted, or `{}` once
/// erased) and upcast to the schema this code reads.
#[derive(Debug, Clone)]
pub struct DecodedEvent {
    pub recorded: RecordedEvent,
    pub data: Value,
    pub metadata: EventMetadata,
    /// True when personal data in this event could not be opened (its key is erased).
    pub erased: bool,
    /// What `to_domain` made of the event, by domain enum.
    read_as: ReadAs,
}

/// Every subscriber asks each event whether it is one of its own (a dozen of them per
/// event), and the ones it is asks again to apply it: one parse per domain enum, not
/// one per question.
#[derive(Default)]
struct ReadAs(Mutex<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>);

impl ReadAs {
    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<(TypeId, Arc<dyn Any + Send + Sync>)>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clone for ReadAs {
    fn clone(&self) -> Self {
        Self(Mutex::new(self.entries().clone()))
    }
}

impl std::fmt::Debug for ReadAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadAs")
    }
}

impl DecodedEvent {
    pub fn event_type(&self) -> &str {
        &self.recorded.event_type
    }

    /// Deserialises into the domain enum: `Ok(None)` when the type is not one of `E`'s,
    /// an error when it is one of `E`'s but does not decode (a drifted schema): never
    /// silently "not mine".
    pub fn to_domain<E: DomainEvent>(&self) -> Result<Option<E>, DecodeError> {
        if !E::EVENT_TYPES.contains(&self.event_type()) {
            return Ok(None);
        }
        let enum_id = TypeId::of::<E>();
        // One lock for the look and the store: two subscribers asking at once parse once.
        let mut entries = self.read_as.entries();
        if let Some((_, read)) = entries.iter().find(|(id, _)| *id == enum_id)
            && let Some(read) = read.downcast_ref::<Result<E, DecodeError>>()
        {
            return read.clone().map(Some);
        }
        let read: Result<E, DecodeError> = self.parse();
        entries.push((enum_id, Arc::new(read.clone())));
        read.map(Some)
    }

    /// The stored shape is `{"type": …, "data": …}`; read from the parts in place
    /// rather than from a copy of the payload put back together.
    fn parse<E: DomainEvent>(&self) -> Result<E, DecodeError> {
        let tag = Value::String(self.recorded.event_type.clone());
        let fields = [("type", &tag), ("data", &self.data)];
        E::deserialize(MapDeserializer::<_, serde_json::Error>::new(fields.into_iter())).map_err(|source| DecodeError {
            position: self.recorded.position,
            event_type: self.recorded.event_type.clone(),
            source: Arc::new(source),
        })
    }
}

/// A stored event of a type this code knows that does not decode as that type: its
/// schema drifted from the code's (a missing upcaster, a field renamed without one).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the {event_type} at position {position} does not decode as this code reads {event_type}")]
pub struct DecodeError {
    pub position: Position,
    pub event_type: String,
    #[source]
    pub source: Arc<serde_json::Error>,
}

#[derive(Clone)]
pub struct EventCodec {
    vault: Arc<dyn PersonalDataVault>,
    upcasters: Arc<Upcasters>,
}

impl EventCodec {
    /// A codec that reads every event at the schema it was stored with.
    pub fn new(vault: Arc<dyn PersonalDataVault>) -> Self {
        Self { vault, upcasters: Arc::default() }
    }

    /// Old schemas of these enums' events are brought up to date as they are read.
    pub fn upcasting<'a>(mut self, enums: impl IntoIterator<Item = &'a EventEnum>) -> Self {
        self.upcasters = Arc::new(Upcasters::of(enums));
        self
    }

    pub fn vault(&self) -> &Arc<dyn PersonalDataVault> {
        &self.vault
    }

    pub async fn encode<E: DomainEvent>(&self, event: &E, event_id: uuid::Uuid, metadata: &EventMetadata) -> Result<NewEvent, AppError> {
        let tagged = serde_json::to_value(event)?;
        let mut data = match tagged.get("data") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let subject = event.personal_subject();
        if let (Some(subject), Some(personal)) = (&subject, data.remove("personal")) {
            data.insert("personal".into(), self.seal(subject, &personal).await?);
        }
        let metadata_subject = metadata.actor_user_id.map(medledger_domain::identity::user::stream_id).or(subject);
        Ok(NewEvent {
            event_id,
            event_type: event.event_type().to_string(),
            schema_version: event.schema_version() as i32,
            payload: Value::Object(data).to_string(),
            metadata: self.encode_metadata(metadata, metadata_subject.as_deref()).await?,
        })
    }

    async fn seal(&self, subject: &str, value: &Value) -> Result<Value, AppError> {
        let sealed = self.vault.seal(subject, value.to_string().as_bytes()).await?;
        Ok(json!({"subject": subject, "sealed": B64.encode(sealed)}))
    }

    /// Opens a sealed object; `Ok(None)` when the key is gone.
    async fn open(&self, sealed: &Value) -> Result<Option<Value>, AppError> {
        let (Some(subject), Some(blob)) = (sealed["subject"].as_str(), sealed["sealed"].as_str()) else {
            // Not sealed (written before sealing, or plain by design): use as is.
            return Ok(Some(sealed.clone()));
        };
        let bytes = B64.decode(blob).map_err(|e| StoreError::Corrupt(format!("sealed personal data is not base64: {e}")))?;
        match self.vault.open(subject, &bytes).await? {
            Some(plain) => Ok(Some(serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt(format!("sealed personal data: {e}")))?)),
            None => Ok(None),
        }
    }

    async fn encode_metadata(&self, m: &EventMetadata, subject: Option<&str>) -> Result<String, AppError> {
        let mut public = m.clone();
        let personal = json!({"client_ip": public.client_ip.take(), "user_agent": public.user_agent.take()});
        let mut value = serde_json::to_value(&public)?;
        let has_personal = m.client_ip.is_some() || m.user_agent.is_some();
        // With nobody to seal it for, the address and user agent are not stored at all:
        // plaintext personal data in the history could never be erased.
        if let (true, Some(subject), Some(obj)) = (has_personal, subject, value.as_object_mut()) {
            obj.insert("personal".into(), self.seal(subject, &personal).await?);
        }
        Ok(value.to_string())
    }

    pub async fn decode(&self, recorded: RecordedEvent) -> Result<DecodedEvent, AppError> {
        let corrupt = |what: &str, e: serde_json::Error| StoreError::Corrupt(format!("{what} of event {}: {e}", recorded.position));
        let mut data: Value = serde_json::from_str(&recorded.payload).map_err(|e| corrupt("payload", e))?;
        let mut erased = false;
        if let Some(sealed) = data.get("personal").cloned() {
            let opened = self.open(&sealed).await?;
            erased |= opened.is_none();
            data["personal"] = opened.unwrap_or_else(|| json!({}));
        }
        let data = self.upcasters.upcast(&recorded.event_type, recorded.schema_version, data);

        let mut meta_value: Value = serde_json::from_str(&recorded.metadata).map_err(|e| corrupt("metadata", e))?;
        let personal = match meta_value.as_object_mut().and_then(|o| o.remove("personal")) {
            Some(sealed) => {
                let opened = self.open(&sealed).await?;
                erased |= opened.is_none();
                opened
            }
            None => None,
        };
        let mut metadata: EventMetadata = serde_json::from_value(meta_value).map_err(|e| corrupt("metadata", e))?;
        if let Some(p) = personal {
            metadata.client_ip = p["client_ip"].as_str().map(str::to_string);
            metadata.user_agent = p["user_agent"].as_str().map(str::to_string);
        } else if erased {
            metadata.client_ip = Some(medledger_domain::ERASED.into());
            metadata.user_agent = Some(medledger_domain::ERASED.into());
        }
        Ok(DecodedEvent { recorded, data, metadata, erased, read_as: ReadAs::default() })
    }
}

/// The upcasters of the event enums the server reads, by (event type, stored schema
/// version): each context's, as its module lists them.
#[derive(Default)]
struct Upcasters(HashMap<(&'static str, u32), Upcaster>);

impl Upcasters {
    fn of<'a>(enums: impl IntoIterator<Item = &'a EventEnum>) -> Self {
        Self(enums.into_iter().flat_map(|e| e.upcasters).map(|u| ((u.event_type, u.from_version), *u)).collect())
    }

    /// Brings an old event schema up to the one the domain reads, one version at a time,
    /// with the upcasters the domain registers beside each event (`DomainEvent::UPCASTERS`).
    fn upcast(&self, event_type: &str, schema_version: i32, mut data: Value) -> Value {
        let mut version = u32::try_from(schema_version).unwrap_or(0);
        while let Some(u) = self.0.get(&(event_type, version)) {
            data = (u.upcast)(data);
            version += 1;
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Upcasters {
        Upcasters::of(medledger_domain::identity::EVENTS)
    }

    #[test]
    fn v1_user_registered_splits_full_name() {
        let v1 = json!({"user_id": 1, "personal": {"email": "a@b.org", "full_name": "Ada King Lovelace"}});
        let v2 = identity().upcast("UserRegistered", 1, v1);
        assert_eq!(v2["personal"]["first_name"], "Ada");
        assert_eq!(v2["personal"]["last_name"], "King Lovelace");
        assert!(v2["personal"].get("full_name").is_none());
    }

    #[test]
    fn current_schema_is_left_alone() {
        let v2 = json!({"personal": {"first_name": "A", "full_name": "x"}});
        assert_eq!(identity().upcast("UserRegistered", 2, v2.clone()), v2);
    }
}
