//! What every event enum shares: its type names (derived once from the variants by
//! `#[derive(EventNames)]`), the sets of names subscribers handle, and the upcasters
//! that bring old stored schemas up to the one the enum reads.

use std::collections::BTreeSet;

pub use medledger_domain_derive::EventNames;

/// An event enum's stored type names. Derive it: the names are the variant identifiers,
/// and the derive refuses any serde attribute that would make serde's tag differ.
pub trait EventNames {
    /// Every type name of the enum, in declaration order.
    const EVENT_TYPES: &'static [&'static str];

    /// One fieldless value per variant (`<Enum>Kind`), to name event types in code.
    type Kind: EventKind;

    /// The stable name stored with the event (serde's tag).
    fn event_type(&self) -> &'static str;

    fn kind(&self) -> Self::Kind;
}

/// A fieldless handle on one event type, generated beside each event enum.
pub trait EventKind: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    fn name(self) -> &'static str;
}

/// The event types a subscriber handles: a set of names, looked up without
/// deserialising anything. A subscriber gives it once; the runner hands it only events
/// whose type is in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypes {
    names: BTreeSet<&'static str>,
    every: bool,
}

impl EventTypes {
    /// Every event, whatever its type (the audit log keeps one row per event).
    pub fn every() -> Self {
        Self { names: BTreeSet::new(), every: true }
    }

    /// Every type of one enum.
    pub fn of<E: EventNames>() -> Self {
        Self { names: E::EVENT_TYPES.iter().copied().collect(), every: false }
    }

    /// Just these types.
    pub fn only<K: EventKind>(kinds: impl IntoIterator<Item = K>) -> Self {
        Self { names: kinds.into_iter().map(EventKind::name).collect(), every: false }
    }

    /// These types and `other`'s.
    pub fn and(mut self, other: EventTypes) -> Self {
        self.every |= other.every;
        self.names.extend(other.names);
        self
    }

    pub fn contains(&self, event_type: &str) -> bool {
        self.every || self.names.contains(event_type)
    }

    /// The names, for logs and tests (empty when it is every event).
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.names.iter().copied()
    }
}

/// Brings one stored schema version of one event type up by one version. Registered
/// beside the event enum (`DomainEvent::UPCASTERS`); the codec applies them in order
/// until the payload is at the version this code writes.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    /// The stored version this reads; the result is `from_version + 1`.
    pub from_version: u32,
    pub upcast: fn(serde_json::Value) -> serde_json::Value,
}

/// One event enum as the codec and the checks over all enums see it.
#[derive(Debug, Clone, Copy)]
pub struct EventEnum {
    pub name: &'static str,
    pub event_types: &'static [&'static str],
    pub upcasters: &'static [Upcaster],
    /// The type names serde reads for this enum (from its "unknown variant" error),
    /// so a test can hold them against `event_types`.
    pub serde_tags: fn() -> Vec<String>,
}

impl EventEnum {
    pub const fn of<E: crate::DomainEvent>(name: &'static str) -> Self {
        Self { name, event_types: E::EVENT_TYPES, upcasters: E::UPCASTERS, serde_tags: serde_tags::<E> }
    }
}

/// serde names the variants it expects when it meets an unknown one ("expected `A`",
/// "`A` or `B`", "one of `A`, `B`, `C`"): that list is exactly the tags it reads.
fn serde_tags<E: crate::DomainEvent>() -> Vec<String> {
    let probe = serde_json::json!({"type": "\u{0}no such event", "data": {}});
    let Err(e) = serde_json::from_value::<E>(probe) else { return Vec::new() };
    let text = e.to_string();
    let Some((_, expected)) = text.split_once("expected ") else { return Vec::new() };
    let expected = expected.strip_prefix("one of ").unwrap_or(expected);
    expected.split(", ").flat_map(|t| t.split(" or ")).map(|t| t.trim().trim_matches('`').to_string()).filter(|t| !t.is_empty()).collect()
}

/// Every event enum of the domain. Each context adds its enums here.
pub const ALL: &[EventEnum] = &[
    EventEnum::of::<crate::identity::user::UserEvent>("UserEvent"),
    EventEnum::of::<crate::identity::user::ClaimEvent>("ClaimEvent"),
    EventEnum::of::<crate::identity::session::SessionEvent>("SessionEvent"),
    EventEnum::of::<crate::identity::audit::AuditEvent>("AuditEvent"),
    EventEnum::of::<crate::catalog::DatasetEvent>("DatasetEvent"),
    EventEnum::of::<crate::collections::collection::CollectionEvent>("CollectionEvent"),
    EventEnum::of::<crate::inference::model::ModelEvent>("ModelEvent"),
    EventEnum::of::<crate::inference::task::TaskEvent>("TaskEvent"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn serde_reads_exactly_the_derived_names_of_every_enum() {
        for e in ALL {
            let mut tags = (e.serde_tags)();
            let mut names: Vec<String> = e.event_types.iter().map(|s| s.to_string()).collect();
            tags.sort();
            names.sort();
            assert_eq!(tags, names, "{}: serde's tags and the derived type names differ", e.name);
        }
    }

    #[test]
    fn no_two_enums_share_a_type_name() {
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for e in ALL {
            for t in e.event_types {
                if let Some(first) = owner.insert(t, e.name) {
                    panic!("{t} is a type of both {first} and {}", e.name);
                }
            }
        }
    }

    #[test]
    fn every_upcaster_belongs_to_its_enum_and_is_registered_once() {
        let mut seen = std::collections::BTreeSet::new();
        for e in ALL {
            for u in e.upcasters {
                assert!(e.event_types.contains(&u.event_type), "{}: upcaster for a foreign type {}", e.name, u.event_type);
                assert!(seen.insert((u.event_type, u.from_version)), "two upcasters for {} v{}", u.event_type, u.from_version);
            }
        }
    }

    #[test]
    fn a_set_of_kinds_holds_their_names() {
        use crate::catalog::DatasetEventKind;
        let set = EventTypes::only([DatasetEventKind::DatasetCreated, DatasetEventKind::DatasetRetired]);
        assert!(set.contains("DatasetCreated") && set.contains("DatasetRetired"));
        assert!(!set.contains("DatasetUpdated"));
        assert!(EventTypes::every().contains("anything"));
        assert!(EventTypes::of::<crate::catalog::DatasetEvent>().contains("DatasetItemAdded"));
    }
}
