use serde::{Serialize, de::DeserializeOwned};

use crate::DomainError;
use crate::events::{EventNames, Upcaster};

/// An event a domain aggregate emits.
///
/// Events serialise adjacently tagged (`{"type": ..., "data": ...}`): the store keeps
/// the type and the data apart, and the codec in `application` puts them back together.
/// The type names are the variants' identifiers (`#[derive(EventNames)]`).
/// A top-level `personal` object in `data` holds personal data; the codec encrypts it
/// under the key of [`DomainEvent::personal_subject`] so that erasing that key shreds it.
pub trait DomainEvent: EventNames + Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// How stored events of an older schema version become the one this code reads.
    const UPCASTERS: &'static [Upcaster] = &[];

    /// The schema version this code writes for the event's type.
    fn schema_version(&self) -> u32 {
        1
    }

    /// Whose key encrypts the event's `personal` object, if it has one.
    fn personal_subject(&self) -> Option<String> {
        None
    }
}

/// The cqrs-es shape: a command is decided against the current state into events,
/// and the state is a left fold of `apply` over the stream's events.
pub trait Aggregate: Default + Send + Sync {
    type Command;
    type Event: DomainEvent;

    /// The stream category, e.g. `user` for streams `user-42`.
    const CATEGORY: &'static str;

    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, DomainError>;

    fn apply(&mut self, event: &Self::Event);

    fn from_events<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}
