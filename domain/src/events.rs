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

/// What is wrong with a set of event enums read by one server: serde's tags that differ
/// from the derived names, a type name two enums share, an upcaster for a foreign type
/// or registered twice. Empty when nothing is.
pub fn problems(enums: &[EventEnum]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut owner: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    let mut upcasters = std::collections::BTreeSet::new();
    for e in enums {
        let mut tags = (e.serde_tags)();
        let mut names: Vec<String> = e.event_types.iter().map(|s| s.to_string()).collect();
        tags.sort();
        names.sort();
        if tags != names {
            problems.push(format!("{}: serde reads {tags:?}, the derived names are {names:?}", e.name));
        }
        for t in e.event_types {
            if let Some(first) = owner.insert(t, e.name) {
                problems.push(format!("{t} is a type of both {first} and {}", e.name));
            }
        }
        for u in e.upcasters {
            if !e.event_types.contains(&u.event_type) {
                problems.push(format!("{}: upcaster for a foreign type {}", e.name, u.event_type));
            }
            if !upcasters.insert((u.event_type, u.from_version)) {
                problems.push(format!("two upcasters for {} v{}", u.event_type, u.from_version));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_found() {
        assert_eq!(problems(crate::catalog::EVENTS), Vec::<String>::new());
        let twice = [crate::catalog::EVENTS, crate::catalog::EVENTS].concat();
        assert!(problems(&twice).iter().any(|p| p.contains("DatasetCreated is a type of both")), "{:?}", problems(&twice));
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
