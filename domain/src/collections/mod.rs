//! Collections: the files of datasets (items) and the archives people build of them.

pub mod collection;
pub mod dataset_item;

pub use dataset_item::{DatasetItem, parse_item_path};

use crate::events::EventEnum;

/// Collections' event enums (an item's one event is a dataset's: `DatasetItemAdded`).
pub const EVENTS: &[EventEnum] = &[EventEnum::of::<collection::CollectionEvent>("CollectionEvent")];
