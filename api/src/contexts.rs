//! The server's bounded contexts: the one line a new context is registered in.

use std::sync::Arc;

use medledger_domain::events::EventEnum;
use medledger_projections::Projection;

use crate::error::ShapeKind;
use crate::module::{Contexts, Module};

/// Declares the contexts: each one's `MODULE` in [`MODULES`] (then medledger's own
/// operations), and its `Settings` as a section of the configuration
/// (`config.contexts.<context>`).
macro_rules! contexts {
    ($($context:ident),* $(,)?) => {
        pub const MODULES: &[Module] = &[$(crate::$context::MODULE,)* crate::ops::MODULE];

        /// Every context's settings, each under its own heading in `--help`.
        #[derive(clap::Args, Debug, Clone)]
        #[group(skip)]
        pub struct Settings {
            $(
                #[command(flatten, next_help_heading = stringify!($context))]
                pub $context: crate::$context::Settings,
            )*
        }
    };
}

contexts!(identity, catalog, collections, inference, scans);

/// Which contract's error shape answers for `path` outside a handler.
pub fn shape_for(path: &str) -> ShapeKind {
    MODULES.iter().flat_map(|m| m.paths).find(|(prefix, _)| path.starts_with(prefix)).map_or(ShapeKind::Detail, |(_, shape)| *shape)
}

/// Every event enum of every context.
pub fn events() -> impl Iterator<Item = &'static EventEnum> {
    MODULES.iter().flat_map(|m| m.events)
}

/// Every SQL read model of every context.
pub fn read_models(contexts: &Contexts) -> Vec<Arc<dyn Projection>> {
    MODULES.iter().flat_map(|m| (m.read_models)(contexts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_prefix_belongs_to_one_module() {
        let prefixes: Vec<&str> = MODULES.iter().flat_map(|m| m.paths).map(|(p, _)| *p).collect();
        for (i, a) in prefixes.iter().enumerate() {
            for b in &prefixes[i + 1..] {
                assert!(!a.starts_with(b) && !b.starts_with(a), "{a} and {b} overlap: which shape wins would depend on the list's order");
            }
        }
    }

    #[test]
    fn paths_answer_in_their_contracts_shape() {
        assert_eq!(shape_for("/api/users/7"), ShapeKind::Myo);
        assert_eq!(shape_for("/api/health/"), ShapeKind::Myo);
        assert_eq!(shape_for("/upload/"), ShapeKind::Django);
        assert_eq!(shape_for("/api/v1/datasets/"), ShapeKind::Detail);
        assert_eq!(shape_for("/api/tasks"), ShapeKind::Detail);
    }

    #[test]
    fn the_event_enums_of_all_contexts_are_sound_together() {
        let all: Vec<EventEnum> = events().copied().collect();
        assert!(all.len() >= 8, "every context lists its enums");
        assert_eq!(medledger_domain::events::problems(&all), Vec::<String>::new());
    }

    #[test]
    fn module_names_are_unique() {
        let mut names: Vec<&str> = MODULES.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MODULES.len());
    }
}
