//! The read models' names, as a response names the ones it waits for
//! (`Progress::caught_up_on`): the same strings as each read model's `name()`.

pub const USERS: &str = "users";
pub const AUDIT_LOG: &str = "audit_log";
pub const DATASETS: &str = "datasets";
pub const DATASET_ITEMS: &str = "dataset_items";
pub const COLLECTIONS: &str = "collections";
pub const INFERENCE_MODELS: &str = "inference_models";
pub const INFERENCE_TASKS: &str = crate::inference::TASKS_PROJECTION;
/// Sessions and roles as requests check them (`AccessProjection`).
pub const ACCESS: &str = "access";
/// The catalog's full-text index.
pub const CATALOG_INDEX: &str = "catalog_index";

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that matches no read model would make a response wait for nothing.
    #[test]
    fn each_name_is_a_read_models() {
        let names: Vec<&str> = crate::all().iter().map(|p| p.name()).collect();
        for name in [USERS, AUDIT_LOG, DATASETS, DATASET_ITEMS, COLLECTIONS, INFERENCE_MODELS, INFERENCE_TASKS] {
            assert!(names.contains(&name), "{name} is not among {names:?}");
        }
    }
}
