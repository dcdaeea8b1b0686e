//! Collections: the files of datasets (items) and the archives people build of them.

pub mod collection;
pub mod dataset_item;
