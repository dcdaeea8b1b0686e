use serde::{Deserialize, Serialize};
use uuid::Uuid;

use medledger_domain::identity::user::UserId;

/// Who caused an event and from where. `client_ip` and `user_agent` are personal data:
/// the codec seals them under the actor's key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_user_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
}

/// What a command needs besides its own fields: the metadata to stamp on its events and
/// an optional idempotency key from which the event ids are derived.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    pub metadata: EventMetadata,
    pub idempotency_key: Option<String>,
}

/// The event a saga acts on, as the events it appends remember it: their
/// `causation_id` is its id, their `correlation_id` its correlation (the request that
/// began the chain), so `/api/events` leads from a request to its side effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    pub event_id: Uuid,
    pub correlation_id: Uuid,
}

impl Cause {
    pub fn of(event: &crate::codec::DecodedEvent) -> Self {
        Self::new(event.recorded.event_id, event.metadata.correlation_id)
    }

    /// An event recorded without a correlation (before there were any, or by the
    /// system) begins its own chain.
    pub fn new(event_id: Uuid, correlation_id: Option<Uuid>) -> Self {
        Self { event_id, correlation_id: correlation_id.unwrap_or(event_id) }
    }
}

impl CommandContext {
    pub fn system() -> Self {
        Self::default()
    }

    /// The context of a command a saga issues because of `cause`.
    pub fn caused_by(cause: Cause) -> Self {
        let mut ctx = Self::default();
        ctx.metadata.causation_id = Some(cause.event_id);
        ctx.metadata.correlation_id = Some(cause.correlation_id);
        ctx
    }

    pub fn with_actor(mut self, user_id: UserId) -> Self {
        self.metadata.actor_user_id = Some(user_id);
        self
    }

    /// The id of the `index`th event this command writes to `stream`: derived from
    /// the idempotency key when there is one, so that a retry writes the same ids and
    /// the store recognises it.
    pub fn event_id(&self, stream: &str, index: usize) -> Uuid {
        match &self.idempotency_key {
            Some(key) => {
                use sha2::{Digest, Sha256};
                let actor = self.metadata.actor_user_id.unwrap_or(0);
                let digest = Sha256::digest(format!("{actor}\u{0}{key}\u{0}{stream}\u{0}{index}"));
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                uuid::Builder::from_custom_bytes(bytes).into_uuid()
            }
            None => Uuid::now_v7(),
        }
    }
}
